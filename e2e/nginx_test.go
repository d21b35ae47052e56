package e2e

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nginxPath is Debian's nginx package.
const nginxPath = "/usr/sbin/nginx"

// nginxConfFile is the example configuration shipped for nginx auth_request,
// relative to the repository root. The test runs it, not a copy.
const nginxConfFile = "deploy/nginx/authproxy.conf"

// nginxReadyTimeout bounds nginx's start.
const nginxReadyTimeout = hangTimeout

// requireNginx fails t when nginx, or its auth_request module, is missing,
// saying how to install it.
func requireNginx(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(nginxPath); err != nil {
		t.Fatalf("e2e: nginx not found at %s: apt-get install nginx (`make test` does it when run as root): %v", nginxPath, err)
	}
	out, err := exec.Command(nginxPath, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("e2e: %s -V: %v\n%s", nginxPath, err, out)
	}
	if !strings.Contains(string(out), "--with-http_auth_request_module") {
		t.Fatalf("e2e: %s was built without the auth_request module: install Debian's nginx package (apt-get install nginx)\n%s", nginxPath, out)
	}
	return nginxPath
}

// nginxConfig is what the shipped example's placeholders become.
type nginxConfig struct {
	Port      int    // listens on 127.0.0.1:Port with TLS
	AuthProxy string // host:port of authproxy
	App       string // host:port of the app
	CertFile  string // PEM certificate for 127.0.0.1
	KeyFile   string
}

// nginx is a running nginx.
type nginx struct {
	*process
	URL *url.URL // https://127.0.0.1:PORT
	dir string   // its prefix: configuration, logs, pid and temp files
}

// startNginx runs the shipped example configuration, its placeholders
// replaced by cfg, in a master nginx.conf that keeps the pid file, the logs
// and the temp files in a temporary directory and stays in the foreground.
// It waits until nginx answers over TLS with a certificate from p.
func startNginx(t *testing.T, p *pki, cfg nginxConfig) *nginx {
	t.Helper()
	bin := requireNginx(t)
	dir := t.TempDir()

	data, err := os.ReadFile(filepath.Join(suite.repoRoot, nginxConfFile))
	if err != nil {
		t.Fatalf("read the shipped nginx example: %v", err)
	}
	site := string(data)
	// Each placeholder must appear exactly once, so that a change to the
	// example cannot leave part of it untested.
	for _, r := range []struct{ placeholder, value string }{
		{"listen 443 ssl;", fmt.Sprintf("listen 127.0.0.1:%d ssl;", cfg.Port)},
		{"server 127.0.0.1:9001;", "server " + cfg.AuthProxy + ";"},
		{"server 127.0.0.1:8080;", "server " + cfg.App + ";"},
		{"/etc/nginx/tls/app.example.com.crt", cfg.CertFile},
		{"/etc/nginx/tls/app.example.com.key", cfg.KeyFile},
	} {
		if n := strings.Count(site, r.placeholder); n != 1 {
			t.Fatalf("%s: placeholder %q appears %d times, want once; update startNginx with the example", nginxConfFile, r.placeholder, n)
		}
		site = strings.Replace(site, r.placeholder, r.value, 1)
	}
	siteFile := filepath.Join(dir, "authproxy.conf")
	if err := os.WriteFile(siteFile, []byte(site), 0o600); err != nil {
		t.Fatalf("write nginx site: %v", err)
	}

	args := nginxArgs(t, bin, dir, nginxConfFile, siteFile)

	n := &nginx{
		process: startProcess(t, "nginx", exec.Command(bin, args...)),
		URL:     mustParseURL(t, fmt.Sprintf("https://127.0.0.1:%d", cfg.Port)),
		dir:     dir,
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, log := range []string{"error.log", "access.log"} {
				data, _ := os.ReadFile(filepath.Join(dir, log))
				t.Logf("--- nginx %s ---\n%s", log, data)
			}
		}
	})
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: p.TLSConfig()}}
	t.Cleanup(client.CloseIdleConnections)
	n.waitFor(t, "an HTTPS answer on "+n.URL.String(), nginxReadyTimeout, func() error {
		resp, err := client.Get(n.URL.String() + "/auth/check")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return n
}

// TestNginxAuthRequest runs the shipped nginx example for real: Debian's
// nginx on 127.0.0.1 with TLS, in front of the recording app, with authproxy
// as its auth_request service, and the scripted browser going through nginx
// only. Without a session a page load ends at the provider's login and an
// API call gets authproxy's 401; after the login the browser is back on the
// page it opened, query intact, and the app sees the provider's sub in
// X-User and never a client's forged identity header; logout ends the
// session.
func TestNginxAuthRequest(t *testing.T) {
	requireE2E(t)
	requireNginx(t)
	p := newPKI(t)
	app := newRecorder(t)     // behind nginx
	direct := newRecorder(t)  // authproxy's own upstream, which nginx never uses
	landing := newRecorder(t) // after the provider's logout

	nginxPort := freePort(t)
	origin := fmt.Sprintf("https://127.0.0.1:%d", nginxPort)
	callback := origin + "/auth/callback"
	postLogout := landing.URL.String() + "/signed-out"
	client := providerClient{
		ClientID:                "e2e-nginx",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{callback},
		PostLogoutRedirectURIs:  []string{postLogout},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	prov := startProvider(t, p, providerConfig{
		Clients:  []providerClient{client},
		Features: providerFeatures{RPInitiatedLogout: true},
	})
	ap := startProxy(t, p, proxyConfig{
		Upstream:      direct.URL.String(),
		Issuer:        prov.Issuer,
		ClientID:      client.ClientID,
		ClientSecret:  client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: postLogout,
		// As the example says: nginx terminates TLS, authproxy learns the
		// public origin from its callback URL.
		Env: map[string]string{"AUTHPROXY_REDIRECT_URL": callback},
	})
	ngx := startNginx(t, p, nginxConfig{
		Port:      nginxPort,
		AuthProxy: ap.URL.Host,
		App:       app.URL.Host,
		CertFile:  p.CertFile,
		KeyFile:   p.KeyFile,
	})
	at := func(pathQuery string) string { return ngx.URL.String() + pathQuery }
	anon := newBrowser(t, p) // never logs in

	// /auth/check is nginx's internal sub-request, not a public endpoint.
	if pg := anon.Do(http.MethodGet, at("/auth/check"), apiHeaders(), nil); pg.Status != http.StatusNotFound {
		t.Errorf("GET /auth/check from a client: status %d, want 404 (internal location)", pg.Status)
	}

	// Without a session: API calls and form posts get authproxy's 401, and
	// the URL that authproxy checked (the rd of login_url) is the one
	// requested, whatever "original URL" headers the client adds.
	t.Run("no session", func(t *testing.T) {
		const pathQuery = "/api/items?a=1&b=2"
		forged := func(kv ...string) http.Header {
			h := apiHeaders()
			for i := 0; i < len(kv); i += 2 {
				h[kv[i]] = append(h[kv[i]], kv[i+1])
			}
			return h
		}
		tests := []struct {
			name   string
			method string
			header http.Header
		}{
			{"API call", http.MethodGet, apiHeaders()},
			{"API DELETE", http.MethodDelete, apiHeaders()},
			{"form POST", http.MethodPost, navigationHeaders()},
			{"forged X-Forwarded-Uri", http.MethodGet, forged("X-Forwarded-Uri", "/public/x")},
			{"forged X-Original-URL", http.MethodGet, forged("X-Original-URL", "https://evil.example/public/x")},
			{"forged X-Original-Uri", http.MethodGet, forged("X-Original-Uri", "/public/x")},
			{"forged X_Forwarded_Uri", http.MethodGet, forged("X_Forwarded_Uri", "/public/x")},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var form url.Values
				if tc.method == http.MethodPost {
					form = url.Values{"field": {"value"}}
				}
				pg := anon.Do(tc.method, at(pathQuery), tc.header, form)
				if pg.Status != http.StatusUnauthorized {
					t.Fatalf("%s %s: status %d, want 401; body:\n%s", tc.method, pathQuery, pg.Status, pg.Body)
				}
				checkUnauthorized(t, pg, pathQuery)
			})
		}
		// nginx accepts Host headers that are no URL host. The shipped config
		// sends only $request_uri, so the Host cannot make the original URL
		// unparsable (authproxy would refuse it with 400, which nginx turns
		// into a 500).
		t.Run("unparsable Host", func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, at(pathQuery), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "x%zz"
			req.Header = apiHeaders()
			tr := &http.Transport{TLSClientConfig: p.TLSConfig()}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: hangTimeout}).Do(req)
			if err != nil {
				t.Fatalf("GET %s with Host %q: %v", pathQuery, req.Host, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("GET %s with Host %q: status %d, want 401; body:\n%s", pathQuery, req.Host, resp.StatusCode, body)
			}
			checkUnauthorized(t, &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body)}, pathQuery)
		})
		if seen := app.Requests(); len(seen) != 0 {
			t.Errorf("app saw %d requests without a session, want none: %+v", len(seen), seen)
		}
	})

	// A page load goes to the provider's login, by way of authproxy's
	// /auth/login on nginx's origin with the page to come back to.
	const user = "nina"
	const start = "/some/path?a=1&b=2"
	b := newBrowser(t, p)
	pg := b.Navigate(at(start))
	if _, ok := findForm(pg, providerForm("login")); !ok || pg.URL.Host != prov.URL.Host {
		t.Fatalf("anonymous page load of %s landed on %d %s, want the provider's login form; hops:\n%s",
			start, pg.Status, pg.URL, b.HopsString())
	}
	if first := b.Hops[0]; first.Status != http.StatusFound {
		t.Errorf("GET %s without a session: status %d, want 302", start, first.Status)
	}
	login := b.FirstHop(func(u *url.URL) bool { return u.Path == "/auth/login" })
	if login.URL.Host != ngx.URL.Host || login.URL.Query().Get("rd") != start {
		t.Errorf("went to %s, want %s/auth/login?rd=%s", login.URL, ngx.URL, url.QueryEscape(start))
	}
	authz := b.FirstHop(func(u *url.URL) bool { return u.Host == prov.URL.Host && u.Path == "/authorize" })
	if got := authz.URL.Query().Get("redirect_uri"); got != callback {
		t.Errorf("authorize redirect_uri = %q, want nginx's %q", got, callback)
	}

	// After the login, back on the page, query intact, as the user.
	pg = submitProviderForms(b, pg, user)
	if pg.Status != http.StatusOK || pg.URL.String() != at(start) {
		t.Fatalf("after login, landed on %d %s, want 200 %s; hops:\n%s", pg.Status, pg.URL, at(start), b.HopsString())
	}
	if want := `<h1 id="user">` + html.EscapeString(user) + `</h1>`; !strings.Contains(pg.Body, want) {
		t.Errorf("app page does not show the user %q:\n%s", user, pg.Body)
	}
	prov.WaitEvent(t, "grant.success", func(ev providerEvent) bool {
		return ev.String("sub") == user && ev.String("client_id") == client.ClientID
	})
	seen := app.ByRequestURI(start)
	if len(seen) != 1 {
		t.Fatalf("app saw %d requests for %s, want 1; all: %+v", len(seen), start, app.Requests())
	}
	if got := seen[0].Header.Values("X-User"); !slices.Equal(got, []string{user}) {
		t.Errorf("app X-User = %q, want [%q]", got, user)
	}

	// With the session, the client's own identity headers never reach the
	// app, in any spelling; only nginx's X-User from authproxy's answer.
	t.Run("forged identity headers", func(t *testing.T) {
		type field struct{ name, value string }
		tests := []struct {
			name   string
			header []field // sent as written, in this order
		}{
			{"X-User", []field{{"X-User", "mallory"}}},
			{"x-user", []field{{"x-user", "mallory"}}},
			{"X_User", []field{{"X_User", "mallory"}}},
			{"x_user", []field{{"x_user", "mallory"}}},
			{"X.User", []field{{"X.User", "mallory"}}},
			{"two X-User", []field{{"X-User", "mallory"}, {"X-User", "eve"}}},
			{"Connection: X-User", []field{{"Connection", "X-User"}, {"X-User", "mallory"}}},
			{"other identity headers", []field{
				{"X-Email", "mallory@example.test"}, {"X_Email", "mallory@example.test"},
				{"X-Groups", "admin"}, {"X-Authproxy-Jwt-Assertion", "forged.jwt.value"},
			}},
			{"original-URL headers", []field{
				{"X-Original-URL", "/admin"}, {"X-Forwarded-Uri", "/admin"}, {"X-Original-Method", "DELETE"},
				{"X-Forwarded-Method", "DELETE"}, {"X-Rewrite-URL", "/admin"},
			}},
			{"every spelling at once", []field{
				{"X-User", "mallory"}, {"x-user", "eve"}, {"X_User", "trudy"}, {"x_user", "oscar"}, {"X-USER", "peggy"},
			}},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				path := fmt.Sprintf("/forged/%d", i)
				header := apiHeaders()
				for _, f := range tc.header {
					header[f.name] = append(header[f.name], f.value) // not canonicalized: sent as written
				}
				pg := b.Do(http.MethodGet, at(path), header, nil)
				if pg.Status != http.StatusOK {
					t.Fatalf("GET %s: status %d, want 200; body:\n%s", path, pg.Status, pg.Body)
				}
				seen := app.ByPath(path)
				if len(seen) != 1 {
					t.Fatalf("app saw %d requests for %s, want 1", len(seen), path)
				}
				got := map[string][]string{}
				for name, values := range seen[0].Header {
					switch normalize(name) {
					case "x-user", "x-email", "x-groups", "x-authproxy-jwt-assertion",
						"x-original-url", "x-forwarded-uri", "x-original-method", "x-forwarded-method", "x-rewrite-url":
						got[name] = values
					}
				}
				if len(got) != 1 || !slices.Equal(got["X-User"], []string{user}) {
					t.Errorf("app received %q, want only X-User [%q]", got, user)
				}
			})
		}
	})

	// Logout through nginx: authproxy clears the session and sends the
	// browser to the provider, which ends its session and sends it on to the
	// post-logout page.
	out := b.Do(http.MethodGet, at("/auth/logout"), navigationHeaders(), nil)
	endSession, err := out.URL.Parse(out.Header.Get("Location"))
	if !isRedirect(out.Status) || err != nil || endSession.Host != prov.URL.Host {
		t.Fatalf("GET /auth/logout: %d to %q, want a redirect to the provider's end-session endpoint", out.Status, out.Header.Get("Location"))
	}
	// authproxy believed its https callback URL, not the plain HTTP that
	// nginx speaks to it: its cookies are Secure, and the session cookie
	// has the __Host- prefix (host-only, Path=/), which browsers insist on.
	cleared := false
	for _, c := range (&http.Response{Header: out.Header}).Cookies() {
		if c.Name == "__Host-authproxy" {
			cleared = true
			if !c.Secure || c.Path != "/" || c.Domain != "" {
				t.Errorf("logout clears the session cookie with %q, want it Secure, Path=/, no Domain", c.String())
			}
		}
	}
	if !cleared {
		t.Errorf("logout did not clear the session cookie __Host-authproxy; Set-Cookie: %q", out.Header.Values("Set-Cookie"))
	}
	if pg := b.Do(http.MethodGet, at("/after-logout"), navigationHeaders(), nil); pg.Status != http.StatusFound {
		t.Errorf("page load after logout: status %d, want 302 to /auth/login", pg.Status)
	} else {
		checkLoginRedirect(t, pg, "/after-logout")
	}
	if pg := b.Do(http.MethodGet, at("/after-logout"), apiHeaders(), nil); pg.Status != http.StatusUnauthorized {
		t.Errorf("API call after logout: status %d, want 401", pg.Status)
	}
	if got := app.ByPath("/after-logout"); len(got) != 0 {
		t.Errorf("app saw %d requests after logout, want none", len(got))
	}
	confirm := b.Follow(out)
	f, ok := findForm(confirm, func(f form) bool { return f.ID == "op.logoutForm" })
	if !ok {
		t.Fatalf("no logout confirmation at %s (status %d):\n%s", confirm.URL, confirm.Status, confirm.Body)
	}
	fields := cloneValues(f.Fields)
	fields.Set("logout", "yes")
	landed := b.Submit(confirm, f, fields)
	if landed.Status != http.StatusOK || landed.URL.String() != postLogout {
		t.Errorf("after the provider's logout, landed on %d %s, want 200 %s; hops:\n%s", landed.Status, landed.URL, postLogout, b.HopsString())
	}
	prov.WaitEvent(t, "end_session.success", nil)

	// nginx sent authproxy /auth/ only; the app got everything else.
	if seen := direct.Requests(); len(seen) != 0 {
		t.Errorf("authproxy forwarded %d requests to its own upstream, want none: nginx should reach the app itself; %+v", len(seen), seen)
	}
}

// normalize maps a header name to the form upstream stacks compare on: lower
// case, "_" and "." as "-".
func normalize(name string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
}

// TestNginxNormalizingUpstream runs the shipped nginx example in front of
// an app that normalizes request paths (python3 -m http.server), with
// access rules guarding /admin/. nginx passes the request target to the
// app as the client wrote it, and authproxy's /auth/check must judge that
// same target: no spelling of /admin/ (//admin/, %61dmin, ..%2f, ...) gets
// a user who is not an admin to the admin page.
func TestNginxNormalizingUpstream(t *testing.T) {
	requireE2E(t)
	requireNginx(t)
	p := newPKI(t)
	app := startPythonApp(t)
	nginxPort := freePort(t)
	callback := fmt.Sprintf("https://127.0.0.1:%d/auth/callback", nginxPort)
	client := providerClient{
		ClientID:                "e2e-nginx-normalize",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{callback},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	cfg := providerConfig{Clients: []providerClient{client}}
	normalizeAccounts(&cfg)
	prov := startProvider(t, p, cfg)
	ap := startProxy(t, p, proxyConfig{
		Upstream:      "http://" + app, // unused: nginx proxies to the app itself
		Issuer:        prov.Issuer,
		ClientID:      client.ClientID,
		ClientSecret:  client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: "/",
		Env: map[string]string{
			"AUTHPROXY_REDIRECT_URL": callback,
			"AUTHPROXY_RULES_FILE":   writeTestFile(t, "rules.txt", normalizeRules),
		},
	})
	ngx := startNginx(t, p, nginxConfig{
		Port:      nginxPort,
		AuthProxy: ap.URL.Host,
		App:       app,
		CertFile:  p.CertFile,
		KeyFile:   p.KeyFile,
	})
	cookies := map[string]string{}
	for _, user := range []string{"root", "nina"} {
		b := newBrowser(t, p)
		if landed := b.Login(ngx.URL.String()+"/welcome.html", user); landed.Status != http.StatusOK || !strings.Contains(landed.Body, "welcome") {
			t.Fatalf("%s: login through nginx landed on %d %s; hops:\n%s", user, landed.Status, landed.URL, b.HopsString())
		}
		cookies[user] = cookieHeader(b, ngx.URL)
	}
	checkAdminPage(t, ngx.URL.Host, p.TLSConfig(), cookies)
}

// nginxArgs writes dir/nginx.conf around siteFile (a shipped example the
// caller has templated), checks it with nginx -t and returns the arguments
// that run nginx on it in the foreground, its files in dir.
func nginxArgs(t *testing.T, bin, dir, shipped, siteFile string) []string {
	t.Helper()
	// As root, nginx would run its workers as nobody, who cannot use the
	// temp directories; name the current user instead.
	var userLine string
	if os.Geteuid() == 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatalf("current user: %v", err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatalf("group %s: %v", u.Gid, err)
		}
		userLine = fmt.Sprintf("user %s %s;", u.Username, g.Name)
	}
	mainConf := fmt.Sprintf(`# Written by the e2e suite around the shipped %[1]s.
daemon off;
%[2]s
worker_processes 1;
pid %[3]s/nginx.pid;
error_log %[3]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[3]s/access.log;
    client_body_temp_path %[3]s/client_body;
    proxy_temp_path %[3]s/proxy;
    fastcgi_temp_path %[3]s/fastcgi;
    uwsgi_temp_path %[3]s/uwsgi;
    scgi_temp_path %[3]s/scgi;
    include %[4]s;
}
`, shipped, userLine, dir, siteFile)
	mainFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(mainFile, []byte(mainConf), 0o600); err != nil {
		t.Fatalf("write nginx.conf: %v", err)
	}
	args := []string{"-p", dir, "-c", mainFile, "-e", "stderr"}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejects the shipped example (templated into %s): %v\n%s", dir, err, out)
	}
	return args
}
