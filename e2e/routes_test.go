package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// routesStack is one proxy in front of three apps on two host names, with
// a third name for the one callback, all resolved to 127.0.0.1 by the test:
//
//	app.authproxy.test   /       App
//	app.authproxy.test   /api/   API (strip-prefix)
//	wiki.authproxy.test  /       Wiki
//	auth.authproxy.test          callback only (AUTHPROXY_REDIRECT_URL)
//
// with AUTHPROXY_COOKIE_DOMAIN=.authproxy.test, and rules that close the
// wiki's /admin/ to non-admins but not the app's.
type routesStack struct {
	*stack
	App, API, Wiki *recorder
	Port           int
}

const routesDomain = "authproxy.test"

func newRoutesStack(t *testing.T) *routesStack {
	t.Helper()
	requireE2E(t)
	rs := &routesStack{App: newRecorder(t), API: newRecorder(t), Wiki: newRecorder(t), Port: freePort(t)}
	routes := writeTestFile(t, "routes.txt", fmt.Sprintf(`# host               path     upstream
app.%[1]s     /        %[2]s
app.%[1]s     /api/    %[3]s     strip-prefix
wiki.%[1]s    /        %[4]s
`, routesDomain, rs.App.URL, rs.API.URL, rs.Wiki.URL))
	rules := writeTestFile(t, "rules.txt", fmt.Sprintf(`allow * wiki.%s/admin/ group:admins
allow * / any
`, routesDomain))
	callback := rs.url("auth", "/auth/callback")
	s := &stack{PKI: newPKI(t), Landing: newRecorder(t)}
	postLogout := s.Landing.URL.String() + "/signed-out"
	s.Client = providerClient{
		ClientID:                "e2e-routes",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{callback},
		PostLogoutRedirectURIs:  []string{postLogout},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	s.Provider = startProvider(t, s.PKI, providerConfig{
		Clients:  []providerClient{s.Client},
		Features: providerFeatures{RPInitiatedLogout: true},
	})
	s.Proxy = startProxy(t, s.PKI, proxyConfig{
		Port:          rs.Port,
		Issuer:        s.Provider.Issuer,
		ClientID:      s.Client.ClientID,
		ClientSecret:  s.Client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: postLogout,
		Env: map[string]string{
			"AUTHPROXY_UPSTREAM":      "", // set, and empty: the routes file says where requests go
			"AUTHPROXY_ROUTES_FILE":   routes,
			"AUTHPROXY_RULES_FILE":    rules,
			"AUTHPROXY_REDIRECT_URL":  callback,
			"AUTHPROXY_COOKIE_DOMAIN": "." + routesDomain,
		},
	})
	rs.stack = s
	return rs
}

// url is http://NAME.authproxy.test:PORT/PATH.
func (rs *routesStack) url(name, pathQuery string) string {
	return fmt.Sprintf("http://%s.%s:%d%s", name, routesDomain, rs.Port, pathQuery)
}

// dialLocal makes a Go client reach every *.authproxy.test name at
// 127.0.0.1, as Chromium's host-resolver-rules do.
func dialLocal(tr *http.Transport) {
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil && strings.HasSuffix(strings.TrimSuffix(host, "."), "."+routesDomain) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// TestRoutesOneLoginChromium: in a real browser, one login on the app's
// host is a login on the wiki's host too; host-scoped rules refuse the
// wiki's /admin/ but not the app's; the API behind /api/ sees its paths
// without the prefix; a logout on the wiki ends the session on both hosts.
func TestRoutesOneLoginChromium(t *testing.T) {
	rs := newRoutesStack(t)
	execPath := requireChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), // the provider's throwaway CA, as in TestChromiumLogin
		// The test's host names, all on this machine.
		chromedp.Flag("host-resolver-rules", "MAP *."+routesDomain+" 127.0.0.1"),
		// Plain http on these names, as the proxy serves them.
		chromedp.Flag("disable-features", "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(browserCtx, hangTimeout)
	defer cancel()

	const user = "ivan"
	userShown := func(start string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(start), chromedp.WaitVisible(chromedp.CSS(`#user`))); err != nil {
			t.Fatalf("open %s: %v\n%s", start, err, describePage(browserCtx))
		}
		shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#user`)))
		if err != nil || strings.TrimSpace(shown) != user {
			t.Errorf("%s shows user %q (%v), want %q", start, shown, err, user)
		}
		if landed, err := chromedp.Run(ctx, chromedp.Location()); err != nil || landed != start {
			t.Errorf("opened %s, landed on %s (%v)", start, landed, err)
		}
	}

	// Log in on the app's host; the callback is on auth.authproxy.test, and
	// the browser comes back to the app.
	start := rs.url("app", "/dashboard?tab=1")
	err := chromedp.Do(ctx,
		chromedp.Navigate(start),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password works"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS(`input[name="prompt"][value="consent"]`)),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#user`)),
	)
	if err != nil {
		t.Fatalf("login on the app's host: %v\n%s", err, describePage(browserCtx))
	}
	if landed, _ := chromedp.Run(ctx, chromedp.Location()); landed != start {
		t.Errorf("after the login, landed on %s, want %s", landed, start)
	}
	logins := len(rs.Provider.Events("grant.success"))

	// The wiki's host: logged in already, no trip to the provider.
	userShown(rs.url("wiki", "/page"))
	if n := len(rs.Provider.Events("grant.success")); n != logins {
		t.Errorf("opening the wiki logged in again at the provider (%d grants, want %d)", n, logins)
	}
	if got := rs.Wiki.ByRequestURI("/page"); len(got) != 1 || got[0].Header.Get("X-User") != user ||
		got[0].Header.Get("X-Forwarded-Host") != fmt.Sprintf("wiki.%s:%d", routesDomain, rs.Port) {
		t.Errorf("wiki saw %+v, want one request as %s with X-Forwarded-Host its own name", got, user)
	}

	// Host-scoped rules: the wiki's /admin/ is closed to non-admins, the
	// app's is not.
	if err := chromedp.Do(ctx, chromedp.Navigate(rs.url("wiki", "/admin/users")), chromedp.WaitVisible(chromedp.CSS(`h1`))); err != nil {
		t.Fatalf("wiki /admin/: %v", err)
	}
	if h1, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`h1`))); !strings.Contains(h1, "Access denied") {
		t.Errorf("wiki /admin/users shows %q, want the 403 page\n%s", h1, describePage(browserCtx))
	}
	if got := rs.Wiki.ByPath("/admin/users"); len(got) != 0 {
		t.Errorf("the wiki saw /admin/users: %+v", got)
	}
	userShown(rs.url("app", "/admin/users"))

	// Strip-prefix: the API sees /items, not /api/items.
	userShown(rs.url("app", "/api/items?x=1"))
	if got := rs.API.ByRequestURI("/items?x=1"); len(got) != 1 || got[0].Header.Get("X-User") != user {
		t.Errorf("API saw %+v, want /items?x=1 as %s; all: %+v", got, user, rs.API.Requests())
	}
	if got := rs.App.ByPath("/api/items"); len(got) != 0 {
		t.Errorf("the app saw /api/items: %+v", got)
	}

	// Logout on the wiki's host ends the session on both: the session
	// cookie, shared by the cookie domain, is gone from the browser.
	sessionCookies := func() []string {
		t.Helper()
		res, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
			return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{rs.url("app", "/"), rs.url("wiki", "/")}})
		})
		if err != nil {
			t.Fatalf("read cookies: %v", err)
		}
		var names []string
		for _, c := range res.Cookies {
			if strings.HasPrefix(c.Name, "_authproxy") && !strings.Contains(c.Name, "login") {
				names = append(names, c.Name+"@"+c.Domain)
			}
		}
		return names
	}
	if got := sessionCookies(); len(got) == 0 || !strings.Contains(strings.Join(got, " "), "@."+routesDomain) {
		t.Fatalf("before logout, session cookies %q, want one for .%s", got, routesDomain)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(rs.url("wiki", "/auth/logout")),
		chromedp.WaitVisible(chromedp.CSS(`button[name="logout"][value="yes"]`)),
	)
	if err != nil {
		t.Fatalf("logout on the wiki's host: %v\n%s", err, describePage(browserCtx))
	}
	if got := sessionCookies(); len(got) != 0 {
		t.Errorf("after logout, the browser still holds session cookies %q", got)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button[name="logout"][value="yes"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#path`)),
	)
	if err != nil {
		t.Fatalf("confirm the provider's logout: %v\n%s", err, describePage(browserCtx))
	}
	for _, name := range []string{"app", "wiki"} {
		err := chromedp.Do(ctx, chromedp.Navigate(rs.url(name, "/after-logout")), chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)))
		if err != nil {
			t.Errorf("%s after logout: %v, want the provider's login form\n%s", name, err, describePage(browserCtx))
		}
	}
	if got := append(rs.App.ByPath("/after-logout"), rs.Wiki.ByPath("/after-logout")...); len(got) != 0 {
		t.Errorf("after logout, the apps saw %+v", got)
	}
}

// TestRoutesScriptedBrowser checks the same set-up from a Go client that
// reaches the names with a dialer of its own: a login on the wiki returns
// to the wiki, the rules and strip-prefix as in Chromium, and a host or
// path that no route serves gets the proxy's 404 with nothing forwarded.
func TestRoutesScriptedBrowser(t *testing.T) {
	rs := newRoutesStack(t)
	b := newBrowser(t, rs.PKI)
	dialLocal(b.client.Transport.(*http.Transport))

	start := rs.url("wiki", "/start?a=1")
	if p := b.Login(start, "judy"); p.Status != http.StatusOK || p.URL.String() != start {
		t.Fatalf("login on the wiki: landed on %d %s, want %s; hops:\n%s", p.Status, p.URL, start, b.HopsString())
	}
	cb := b.FirstHop(func(u *url.URL) bool { return u.Path == "/auth/callback" })
	if cb.URL.Host != fmt.Sprintf("auth.%s:%d", routesDomain, rs.Port) {
		t.Errorf("callback at %s, want the auth host", cb.URL)
	}
	for _, tt := range []struct {
		target string
		status int
	}{
		{rs.url("app", "/x"), 200},
		{rs.url("wiki", "/admin/"), 403},
		{rs.url("WIKI", "/admin/"), 403},
		{fmt.Sprintf("http://wiki.%s.:%d/admin/", routesDomain, rs.Port), 403},
		{rs.url("app", "/admin/"), 200},
		{rs.url("app", "/api/v1/things"), 200},
		{rs.url("app", "/api/..%2fadmin"), 400},
		{rs.url("other", "/x"), 404},
		{rs.url("auth", "/x"), 404},
		{fmt.Sprintf("http://127.0.0.1:%d/x", rs.Port), 404},
		{rs.url("other", "/healthz"), 200},
	} {
		before := len(rs.App.Requests()) + len(rs.API.Requests()) + len(rs.Wiki.Requests())
		p := b.Do(http.MethodGet, tt.target, navigationHeaders(), nil)
		if p.Status != tt.status {
			t.Errorf("GET %s: %d, want %d\n%s", tt.target, p.Status, tt.status, p.Body)
		}
		after := len(rs.App.Requests()) + len(rs.API.Requests()) + len(rs.Wiki.Requests())
		if forwarded := after > before; forwarded != (tt.status == 200 && !strings.HasSuffix(tt.target, "/healthz")) {
			t.Errorf("GET %s: forwarded = %v", tt.target, forwarded)
		}
	}
	if got := rs.API.ByPath("/v1/things"); len(got) != 1 {
		t.Errorf("API saw %+v, want /v1/things", rs.API.Requests())
	}
}
