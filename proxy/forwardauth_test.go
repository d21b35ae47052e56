package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/proxy/rules"
	"github.com/authproxy/authproxy/session"
)

// faRules are the rules of the forward-auth tests: the real rules package,
// so that every reading of a hostile path is in play.
const faRules = `public  GET  /public/
allow   *    /admin/  group:admins
allow   *    /        any
`

// faFixture is the proxy with faRules in front of an in-memory upstream,
// and the cookies of three callers.
type faFixture struct {
	h       http.Handler
	cookies map[string]string // caller -> Cookie header ("" for the visitor)
}

var faCallers = []string{"visitor", "alice", "admin"}

func newFAFixture(t testing.TB) *faFixture {
	t.Helper()
	return newFAFixtureWith(t, faRules)
}

// newFAFixtureWith is newFAFixture with other rules.
func newFAFixtureWith(t testing.TB, rulesText string) *faFixture {
	t.Helper()
	rs, err := rules.Parse("rules.txt", strings.NewReader(rulesText))
	if err != nil {
		t.Fatal(err)
	}
	store := mustStore(t)
	h, err := New(Config{
		Routes: routesTo(&url.URL{Scheme: "http", Host: "app.internal"}), UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth:  authFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		Ready: func() bool { return true }, Rules: rs, PublicHost: "app.example",
		Transport: transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("upstream:" + r.URL.EscapedPath())), Request: r}, nil
		})),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &faFixture{h: h, cookies: map[string]string{"visitor": ""}}
	for user, groups := range map[string][]any{"alice": nil, "admin": {"admins"}} {
		w := httptest.NewRecorder()
		sess := session.Session{User: user, Expiry: time.Now().Add(time.Hour), Claims: map[string]any{"groups": groups}}
		if err := store.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, c := range w.Result().Cookies() {
			parts = append(parts, c.Name+"="+c.Value)
		}
		f.cookies[user] = strings.Join(parts, "; ")
	}
	return f
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// verdict is what became of a request, in either mode.
type verdict string

const (
	vPass     verdict = "pass"    // proxy: reached the upstream; check: 200
	vLogin    verdict = "login"   // 401
	vDeny     verdict = "deny"    // 403
	vRefused  verdict = "refused" // 400: not a request either mode serves
	vRedirect verdict = "redirect"
)

func verdictOf(status int, body string) verdict {
	switch {
	case status == 200 && strings.HasPrefix(body, "upstream:"):
		return vPass
	case status == 200 && body == "": // /auth/check says yes
		return vPass
	case status == 401:
		return vLogin
	case status == 403:
		return vDeny
	case status == 400:
		return vRefused
	case status == 301 || status == 307 || status == 308:
		return vRedirect
	}
	return verdict(fmt.Sprintf("status %d", status))
}

// proxyMode sends target as the request line, byte for byte, the way a
// client talks to the proxy; a redirect of the router to the cleaned path
// is followed, as a browser would. It returns the final verdict and whether
// a redirect was followed.
func (f *faFixture) proxyMode(t testing.TB, target, cookieHeader string) (verdict, bool) {
	t.Helper()
	redirected := false
	for range 4 {
		raw := "GET " + target + " HTTP/1.1\r\nHost: app.example\r\nAccept: application/json\r\n"
		if cookieHeader != "" {
			raw += "Cookie: " + cookieHeader + "\r\n"
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			return vRefused, redirected // Go's server answers 400
		}
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		v := verdictOf(w.Code, w.Body.String())
		if v != vRedirect {
			return v, redirected
		}
		redirected, target = true, w.Header().Get("Location")
	}
	t.Fatalf("redirect loop from %q", target)
	return "", false
}

// checkMode asks /auth/check about target as nginx does (the shipped
// config sends $request_uri in all three headers).
func (f *faFixture) checkMode(target, cookieHeader string) verdict {
	req := httptest.NewRequest("GET", "/auth/check", nil)
	req.Host = "app.example"
	for _, h := range []string{"X-Forwarded-Uri", "X-Original-Url", "X-Original-Uri"} {
		req.Header[h] = []string{target}
	}
	req.Header.Set("Accept", "application/json")
	if cookieHeader != "" {
		req.Header.Set("Cookie", cookieHeader)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return verdictOf(w.Code, w.Body.String())
}

// sameJudgement fails t unless forward auth judges target as proxy mode
// does. Where proxy mode's router redirected to the cleaned path (which
// forward auth cannot do: nginx passes the path as it is), forward auth may
// be stricter, never more lenient.
func sameJudgement(t testing.TB, pv verdict, redirected bool, cv verdict, target, caller string) {
	t.Helper()
	switch {
	case !redirected && pv != cv:
		t.Errorf("%s %q: proxy mode %s, forward auth %s", caller, target, pv, cv)
	case redirected && cv == vPass && pv != vPass:
		t.Errorf("%s %q: forward auth passes what proxy mode (after its redirect) does not: %s", caller, target, pv)
	}
}

// hostileTargets are request targets an attacker aims at /admin/ past the
// rules, in proxy mode and through an ingress.
var hostileTargets = []string{
	"/admin/secret.html", "//admin/secret.html", "///admin/secret.html", "//admin//secret.html",
	"/admin./secret.html", "/admin%2e/secret.html", "/admin%20/secret.html", "/admin.%20/secret.html",
	"/%61dmin/secret.html", "/%41DMIN/secret.html", "/ADMIN/secret.html", "/%2561dmin/secret.html",
	"/public/../admin/secret.html", "/public/..%2fadmin/secret.html", "/public/..%2Fadmin/secret.html",
	"/public/%2e%2e/admin/secret.html", "/public/%2e%2e%2fadmin/secret.html", "/public/%252e%252e%252fadmin/secret.html",
	"/public/..%5cadmin/secret.html", "/public\\..\\admin/secret.html", "/public/..;/admin/secret.html",
	"/public;/../admin/secret.html", "/admin;x=1/secret.html", "/./admin/secret.html", "/public/./../admin/secret.html",
	"/public/%c0%ae%c0%ae/admin/secret.html", "/public/\uff0e\uff0e/admin/secret.html", "/\uff41dmin/secret.html",
	"/%EF%BD%81dmin/secret.html", "/admin%00/secret.html", "/admin%2fsecret.html", "/%2fadmin/secret.html",
	"/public/x#/../../admin/secret.html", "/public/x?/../../admin/secret.html", "/admin/secret.html?/public/",
	"/public/x%23/../../admin/secret.html", "/admin /secret.html", "/admin\t/secret.html",
	"https://app.example/admin/secret.html", "https://app.example//admin/secret.html", "http://admin/secret.html",
	"//app.example/admin/secret.html", "/public/app.css", "/data",
}

// TestForwardAuthMatchesProxyMode sends each hostile target both ways: as
// the request line in proxy mode, and in the original-URL headers of
// /auth/check, for a visitor, a user and an admin. The verdicts must agree.
func TestForwardAuthMatchesProxyMode(t *testing.T) {
	f := newFAFixture(t)
	for _, target := range hostileTargets {
		for _, caller := range faCallers {
			pv, redirected := f.proxyMode(t, target, f.cookies[caller])
			cv := f.checkMode(target, f.cookies[caller])
			sameJudgement(t, pv, redirected, cv, target, caller)
			// Whatever the spelling, only the admin gets to /admin/ (case
			// folding is for upstreams that need CaseInsensitive rules).
			if caller != "admin" && reachesAdmin(target) && (pv == vPass || cv == vPass) {
				t.Errorf("%s reaches %q: proxy mode %s, forward auth %s", caller, target, pv, cv)
			}
		}
	}
}

// reachesAdmin reports whether an upstream that decodes, cleans and
// strips the path as the lenient servers do could serve target from
// /admin/, ignoring case folding.
func reachesAdmin(target string) bool {
	path, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(target, "https://app.example"), "http://admin"), "?")
	return strings.Contains(path, "dmin") && !strings.Contains(path, "DMIN") && !strings.HasPrefix(path, "//app.example/")
}

// TestForwardAuthMatchesProxyModeOnTheWire is the same over real
// connections: the request line and the header are written byte for byte.
func TestForwardAuthMatchesProxyModeOnTheWire(t *testing.T) {
	f := newFAFixture(t)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	send := func(raw string) (int, string) {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, raw)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 == 3 {
			return resp.StatusCode, resp.Header.Get("Location")
		}
		return resp.StatusCode, string(body)
	}
	for _, target := range hostileTargets {
		for _, caller := range faCallers {
			cookieLine := ""
			if c := f.cookies[caller]; c != "" {
				cookieLine = "Cookie: " + c + "\r\n"
			}
			head := "Host: app.example\r\nAccept: application/json\r\n" + cookieLine + "Connection: close\r\n\r\n"
			pv, redirected, t2 := vRedirect, false, target
			for range 4 {
				status, body := send("GET " + t2 + " HTTP/1.1\r\n" + head)
				if pv = verdictOf(status, body); pv != vRedirect {
					break
				}
				redirected, t2 = true, body
			}
			status, body := send("GET /auth/check HTTP/1.1\r\nX-Forwarded-Uri: " + target + "\r\nX-Original-URL: " + target + "\r\n" + head)
			sameJudgement(t, pv, redirected, verdictOf(status, body), target, caller)
		}
	}
}

// FuzzForwardAuthTarget: whatever the original-URL header holds, forward
// auth hands the rules exactly what proxy mode would for the same request
// line, or refuses with 400; and both modes judge it alike.
func FuzzForwardAuthTarget(f *testing.F) {
	for _, s := range hostileTargets {
		f.Add(s)
	}
	fx := newFAFixture(f)
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsAny(v, "\r\n") {
			return // cannot be one header value or one request line
		}
		req := httptest.NewRequest("GET", "/auth/check", nil)
		req.Host = "app.example"
		req.Header.Set("X-Forwarded-Uri", v)
		orig, _, checkErr := originalRequest(req)
		line, lineErr := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + v + " HTTP/1.1\r\nHost: app.example\r\n\r\n")))
		if checkErr == nil {
			if lineErr != nil {
				t.Fatalf("forward auth accepts %q, proxy mode refuses it: %v", v, lineErr)
			}
			if ruleTarget(orig) != ruleTarget(line.URL) || orig.RawQuery != line.URL.RawQuery {
				t.Fatalf("%q: forward auth judges %q?%q, proxy mode %q?%q", v, ruleTarget(orig), orig.RawQuery, ruleTarget(line.URL), line.URL.RawQuery)
			}
		} else if lineErr == nil && strings.HasPrefix(v, "/") {
			t.Fatalf("forward auth refuses the request target %q that proxy mode serves: %v", v, checkErr)
		}
		for _, caller := range faCallers {
			pv, redirected := fx.proxyMode(t, v, fx.cookies[caller])
			sameJudgement(t, pv, redirected, fx.checkMode(v, fx.cookies[caller]), v, caller)
		}
	})
}
