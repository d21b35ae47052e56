package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/session"
)

// routesTo is the one-upstream route table.
func routesTo(u *url.URL) *route.Table {
	t, err := route.Single(u, false)
	if err != nil {
		panic(err)
	}
	return t
}

// transport gives every route rt.
func transport(rt http.RoundTripper) func(*route.Route) http.RoundTripper {
	return func(*route.Route) http.RoundTripper { return rt }
}

// recorder is an upstream that remembers what it received.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, r.Clone(r.Context()))
	rec.mu.Unlock()
	fmt.Fprintf(w, "hello %s", r.Header.Get("X-User"))
}

func (rec *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("upstream received nothing")
	}
	return rec.reqs[len(rec.reqs)-1]
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

type fixture struct {
	store    *cookie.Store
	upstream *recorder
	front    *httptest.Server
	session  []*http.Cookie // a valid session for alice
}

func newFixture(t *testing.T, upstream http.Handler, mutate ...func(*Config)) *fixture {
	t.Helper()
	rec, _ := upstream.(*recorder)
	back := httptest.NewServer(upstream)
	t.Cleanup(back.Close)
	store, err := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(back.URL)
	cfg := Config{
		Routes: routesTo(u), UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth: authFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot) // marks "handled by the auth handler"
		}),
		Ready:     func() bool { return true },
		Transport: transport(back.Client().Transport),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)

	w := httptest.NewRecorder()
	if err := store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", IDToken: "secret-token", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return &fixture{store: store, upstream: rec, front: front, session: w.Result().Cookies()}
}

func (f *fixture) get(t *testing.T, path string, cookies []*http.Cookie, hdr http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", f.front.URL+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestForgedIdentityHeaders sends every spelling of X-User a downstream stack
// might merge with the real one; the upstream must see exactly ours.
func TestForgedIdentityHeaders(t *testing.T) {
	f := newFixture(t, &recorder{}, func(c *Config) {
		c.Headers = Headers{Email: "X-Email", Name: "X-Name", Groups: "X-Groups", GroupsClaim: "groups"}
		c.Assertion = fakeAsserter{}
	})
	tests := []struct {
		name string
		hdr  http.Header
	}{
		{"canonical", http.Header{"X-User": {"mallory"}}},
		{"lower case", http.Header{"x-user": {"mallory"}}},
		{"upper case", http.Header{"X-USER": {"mallory"}}},
		{"mixed case", http.Header{"x-UsEr": {"mallory"}}},
		{"underscore", http.Header{"X_User": {"mallory"}}},
		{"underscore lower", http.Header{"x_user": {"mallory"}}},
		{"underscore upper", http.Header{"X_USER": {"mallory"}}},
		{"duplicates", http.Header{"X-User": {"mallory", "eve"}}},
		{"several spellings", http.Header{"X-User": {"mallory"}, "X_User": {"eve"}, "x_uSer": {"trent"}}},
		{"empty value", http.Header{"X-User": {""}}},
		{"comma list", http.Header{"X-User": {"mallory, alice"}}},
		{"connection names it", http.Header{"Connection": {"X-User"}}},
		{"connection names it lower", http.Header{"Connection": {"x-user, close"}}},
		{"connection and forged", http.Header{"Connection": {"X-User"}, "X-User": {"mallory"}}},
		// PHP and CGI gateways read "." like "_" and "-".
		{"dot", http.Header{"X.User": {"mallory"}}},
		{"dot lower", http.Header{"x.user": {"mallory"}}},
		{"dot and underscore", http.Header{"X.User": {"mallory"}, "X_User": {"eve"}}},
		{"dot, other identity headers", http.Header{"X.Email": {"m@x"}, "X.Name": {"M"}, "X.Groups": {"admins"},
			"X.Authproxy.Jwt.Assertion": {"forged"}, "x_authproxy.jwt-assertion": {"forged"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.get(t, "/x", f.session, tt.hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := f.upstream.last(t)
			assertOnlyUser(t, got.Header, "alice")
		})
	}
}

func assertOnlyUser(t *testing.T, h http.Header, user string) {
	t.Helper()
	var seen []string
	for name, vs := range h {
		if NormalizeHeader(name) == "x-user" {
			seen = append(seen, fmt.Sprintf("%s=%q", name, vs))
		}
	}
	if len(seen) != 1 || len(h.Values("X-User")) != 1 || h.Get("X-User") != user {
		t.Errorf("upstream saw identity headers %v, want only X-User=%q", seen, user)
	}
	// The other identity headers: only the proxy's own, which it sets for
	// alice from her (claim-less) session: the assertion.
	for name, vs := range h {
		switch NormalizeHeader(name) {
		case "x-email", "x-name", "x-groups":
			t.Errorf("upstream saw %s=%q", name, vs)
		case "x-authproxy-jwt-assertion":
			if name != AssertionHeader || len(vs) != 1 || vs[0] != "signed-for-"+user {
				t.Errorf("upstream saw %s=%q", name, vs)
			}
		}
	}
}

// TestForgedIdentityRawWire writes requests byte by byte, for spellings a Go
// client would not send. Each must be refused or arrive with only our header.
func TestForgedIdentityRawWire(t *testing.T) {
	f := newFixture(t, &recorder{}, func(c *Config) { c.Assertion = fakeAsserter{} })
	cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
	tests := []struct{ name, headers string }{
		{"tab before value", "X-User:\tmallory\r\n"},
		{"no space", "X-User:mallory\r\n"},
		{"space before colon", "X-User : mallory\r\n"},
		{"obsolete line folding", "X-Other: a\r\n X-User: mallory\r\n"},
		{"folded value", "X-User: a\r\n mallory\r\n"},
		{"dot instead of dash", "X.User: mallory\r\n"},
		{"dots and underscores", "x.user: mallory\r\nX_USER: eve\r\nX.uSeR: trent\r\n"},
		{"dotted assertion", "X.Authproxy.Jwt.Assertion: forged\r\n"},
		{"two headers, two spellings", "x_user: mallory\r\nX-USER: eve\r\n"},
		{"NUL in name", "X-User\x00: mallory\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.upstream.count()
			conn, err := net.Dial("tcp", f.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /raw HTTP/1.1\r\nHost: x\r\n%s%sConnection: close\r\n\r\n", cookieLine, tt.headers)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if f.upstream.count() == before {
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("not forwarded, status %d; want 400", resp.StatusCode)
				}
				return
			}
			got := f.upstream.last(t)
			assertOnlyUser(t, got.Header, "alice")
			for name := range got.Header {
				if strings.Contains(strings.ToLower(name), "user") && name != "X-User" && name != "User-Agent" {
					t.Errorf("upstream saw %s: %q", name, got.Header[name])
				}
			}
		})
	}
}

func TestOwnCookiesStripped(t *testing.T) {
	f := newFixture(t, &recorder{})
	cookies := append([]*http.Cookie{{Name: "app", Value: "1"}}, f.session...)
	cookies = append(cookies, &http.Cookie{Name: "_authproxy_login_AAAAAAAAAAAAAAAA", Value: "x"},
		&http.Cookie{Name: "_authproxy_3", Value: "y"}, &http.Cookie{Name: "other", Value: "a=b"})
	f.get(t, "/", cookies, nil)
	got := f.upstream.last(t).Header.Values("Cookie")
	if len(got) != 1 || got[0] != "app=1; other=a=b" {
		t.Errorf("upstream Cookie = %q, want only the app's cookies", got)
	}

	f.get(t, "/", f.session, nil)
	if got := f.upstream.last(t).Header.Values("Cookie"); len(got) != 0 {
		t.Errorf("upstream Cookie = %q, want none", got)
	}
}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t, &recorder{})
	tamper := []*http.Cookie{{Name: f.session[0].Name, Value: f.session[0].Value[:20] + "x" + f.session[0].Value[21:]}}
	tests := []struct {
		name    string
		method  string
		cookies []*http.Cookie
		hdr     http.Header
		status  int
	}{
		{"browser page load", "GET", nil, http.Header{"Accept": {"text/html,application/xhtml+xml"}}, 302},
		{"browser HEAD", "HEAD", nil, http.Header{"Accept": {"text/html"}}, 302},
		{"navigation per Sec-Fetch", "GET", nil, http.Header{"Accept": {"*/*"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}, 302},
		{"navigation into an iframe", "GET", nil, http.Header{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"iframe"}}, 302},
		{"navigation per Sec-Fetch with html", "GET", nil, http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}}, 302},
		{"fetch() that accepts html", "GET", nil, http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Dest": {"empty"}}, 401},
		{"image load", "GET", nil, http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"image"}}, 401},
		{"api call", "GET", nil, http.Header{"Accept": {"application/json"}}, 401},
		{"form post", "POST", nil, http.Header{"Accept": {"text/html"}}, 401},
		{"tampered cookie", "GET", tamper, http.Header{"Accept": {"text/html"}}, 302},
		{"garbage cookie", "GET", []*http.Cookie{{Name: "_authproxy", Value: "%%%"}}, http.Header{"Accept": {"application/json"}}, 401},
		{"chunk without head", "GET", []*http.Cookie{{Name: "_authproxy_1", Value: "abc"}}, http.Header{"Accept": {"application/json"}}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, f.front.URL+"/reports/q1?year=2026&x=%2F", nil)
			req.Header = tt.hdr
			for _, c := range tt.cookies {
				req.AddCookie(c)
			}
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			wantLogin := "/auth/login?rd=" + url.QueryEscape("/reports/q1?year=2026&x=%2F")
			switch tt.status {
			case 302:
				if loc := resp.Header.Get("Location"); loc != wantLogin {
					t.Errorf("Location = %q, want %q", loc, wantLogin)
				}
			case 401:
				if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="authproxy"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				var body map[string]string
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("401 Content-Type = %q, want JSON even when Accept mentions html", ct)
				}
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
					t.Errorf("401 body is not JSON: %v", err)
				} else if body["error"] != "unauthenticated" || body["login_url"] != wantLogin {
					t.Errorf("401 body = %v", body)
				}
			}
		})
	}
	if n := f.upstream.count(); n != 0 {
		t.Errorf("upstream received %d unauthenticated requests", n)
	}
}

// TestRoutes: each route takes the methods it accepts; under /auth/, other
// methods get 405 with Allow and unknown paths 404; none of the proxy's own
// routes reaches the upstream.
func TestRoutes(t *testing.T) {
	ready := true
	f := newFixture(t, &recorder{}, func(c *Config) {
		c.Ready = func() bool { return ready }
		c.JWKS = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	})
	for _, tt := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/auth/login", http.StatusTeapot, ""},
		{"HEAD", "/auth/login", http.StatusTeapot, ""},
		{"POST", "/auth/login", 405, "GET, HEAD"},
		{"GET", "/auth/callback?code=x", http.StatusTeapot, ""},
		{"POST", "/auth/callback", http.StatusTeapot, ""},
		{"GET", "/auth/logout", http.StatusTeapot, ""},
		{"POST", "/auth/logout", http.StatusTeapot, ""},
		{"PUT", "/auth/logout", 405, "GET, HEAD, POST"},
		{"POST", "/auth/backchannel-logout", http.StatusTeapot, ""},
		{"GET", "/auth/backchannel-logout", 405, "POST"},
		{"GET", "/auth/check", 400, ""}, // no X-Forwarded-Uri
		{"POST", "/auth/check", 400, ""},
		{"GET", "/auth/jwks.json", http.StatusAccepted, ""},
		{"DELETE", "/auth/jwks.json", 405, "GET, HEAD"},
		{"GET", "/auth/nope", 404, ""},
		{"POST", "/auth/", 404, ""},
		{"GET", "/auth", http.StatusTemporaryRedirect, ""}, // ServeMux: to /auth/
		{"GET", "/healthz", 200, ""},
		{"HEAD", "/readyz", 200, ""},
	} {
		req, _ := http.NewRequest(tt.method, f.front.URL+tt.path, nil)
		resp, err := f.front.Client().Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, Allow %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.status, tt.allow)
		}
	}
	ready = false
	if resp := f.get(t, "/readyz", nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz while not ready: %d", resp.StatusCode)
	}
	if resp := f.get(t, "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Errorf("healthz while not ready: %d", resp.StatusCode)
	}
	if n := f.upstream.count(); n != 0 {
		t.Errorf("upstream received %d requests for the proxy's own routes", n)
	}
}

// TestRouteTable: README's route table lists exactly the patterns that
// routes registers.
func TestRouteTable(t *testing.T) {
	p, err := newHandler(Config{Routes: routesTo(&url.URL{Scheme: "http", Host: "x"}), UserHeader: "X-User", Sessions: mustStore(t), IsOwnCookie: mustStore(t).IsOwn,
		Auth: authFunc(http.NotFound), Ready: func() bool { return true }, JWKS: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	var registered patterns
	p.routes(&registered, &registered)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "\n## Routes\n")
	table, _, _ = strings.Cut(table, "\n## ")
	var documented patterns
	for line := range strings.Lines(table) {
		// A row starts with its pattern in backticks, shown with a query
		// where the route takes a parameter.
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			pattern, _, _ := strings.Cut(rest, "`")
			pattern, _, _ = strings.Cut(pattern, "?")
			documented = append(documented, pattern)
		}
	}
	slices.Sort(registered)
	slices.Sort(documented)
	if !slices.Equal(registered, documented) {
		t.Errorf("README's route table: %q\nroutes registers:     %q", documented, registered)
	}
}

// patterns records the patterns registered on it, as a router.
type patterns []string

func (ps *patterns) Handle(pattern string, _ http.Handler)        { *ps = append(*ps, pattern) }
func (ps *patterns) ServeHTTP(http.ResponseWriter, *http.Request) {}

// authFunc is an Auth that serves every sign-in route with one function.
type authFunc http.HandlerFunc

func (f authFunc) Login(w http.ResponseWriter, r *http.Request)             { f(w, r) }
func (f authFunc) Callback(w http.ResponseWriter, r *http.Request)          { f(w, r) }
func (f authFunc) Logout(w http.ResponseWriter, r *http.Request)            { f(w, r) }
func (f authFunc) BackchannelLogout(w http.ResponseWriter, r *http.Request) { f(w, r) }

func TestForwarding(t *testing.T) {
	f := newFixture(t, &recorder{})
	resp := f.get(t, "/a/b?c=d&e=%2F", f.session, http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"https"}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "hello alice" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	got := f.upstream.last(t)
	if got.URL.RequestURI() != "/a/b?c=d&e=%2F" {
		t.Errorf("upstream path = %q", got.URL.RequestURI())
	}
	if xff := got.Header.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q: an untrusted client's value was passed on", xff)
	}
	if h, p := got.Header.Get("X-Forwarded-Host"), got.Header.Get("X-Forwarded-Proto"); h != strings.TrimPrefix(f.front.URL, "http://") || p != "http" {
		t.Errorf("X-Forwarded-Host/Proto = %q/%q, want the proxy's own view", h, p)
	}
}

func TestTrustedProxyForwarding(t *testing.T) {
	f := newFixture(t, &recorder{}, func(c *Config) { c.Trusted = func(*http.Request) bool { return true } })
	f.get(t, "/", f.session, http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"https"}})
	got := f.upstream.last(t)
	if xff := strings.Join(got.Header.Values("X-Forwarded-For"), ", "); xff != "203.0.113.7, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", xff)
	}
	if got.Header.Get("X-Forwarded-Host") != "app.example" || got.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("trusted X-Forwarded-Host/Proto not kept: %v", got.Header)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	f := newFixture(t, &recorder{}, func(c *Config) {
		u, _ := url.Parse("http://" + addr)
		c.Routes, c.Transport = routesTo(u), nil
	})
	resp := f.get(t, "/", f.session, http.Header{"Accept": {"text/html"}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "not responding") {
		t.Errorf("upstream down: %d %q", resp.StatusCode, body)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := newFixture(t, slow, func(c *Config) {
		c.Transport = transport(&http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond})
	})
	if resp := f.get(t, "/", f.session, nil); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("slow upstream: %d, want 504", resp.StatusCode)
	}
}

// TestStreaming checks that server-sent events reach the client as they are
// written: the upstream only sends the second event after the client has
// read the first, so a buffering proxy deadlocks and the test times out.
func TestStreaming(t *testing.T) {
	next := make(chan struct{})
	sse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	})
	f := newFixture(t, sse)
	resp := f.get(t, "/events", f.session, nil)
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event = %q, %v", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Errorf("second event missing: %q", rest)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted an empty config")
	}
}

// TestURLOverrideHeaders: a client cannot tell the upstream which URL,
// host, port or prefix it "really" asked for, in any spelling; only a
// trusted proxy may. With a public host configured, X-Forwarded-Host is
// always that host, whatever Host the client sent.
func TestURLOverrideHeaders(t *testing.T) {
	hostile := http.Header{
		"X-Original-Url": {"/admin"}, "X_Original_URL": {"/admin"}, "X-Original-Uri": {"/admin"}, "X.Original.Uri": {"/admin"},
		"X-Rewrite-Url": {"/admin"}, "X-Forwarded-Uri": {"/admin"}, "X-Forwarded-Path": {"/admin"},
		"X-Forwarded-Prefix": {"/evil"}, "X_Forwarded_Prefix": {"/evil"}, "X-Forwarded-Port": {"8443"},
		"X-Forwarded-Server": {"evil.example"}, "X-Forwarded-Method": {"DELETE"}, "X-Original-Method": {"DELETE"},
		"Forwarded": {"for=10.0.0.1;host=evil.example;proto=https"}, "X-Real-Ip": {"10.0.0.1"}, "x_real_ip": {"10.0.0.1"},
		"X_Forwarded_Host": {"evil.example"}, "X.Forwarded.Host": {"evil.example"}, "X_Forwarded_For": {"10.0.0.1"},
		"X_Forwarded_Proto": {"https"},
	}
	names := []string{"x-original-url", "x-original-uri", "x-rewrite-url", "x-forwarded-uri", "x-forwarded-path",
		"x-forwarded-prefix", "x-forwarded-port", "x-forwarded-server", "x-forwarded-method", "x-original-method",
		"forwarded", "x-real-ip"}
	for _, tc := range []struct {
		name       string
		trusted    bool
		publicHost string
		wantHost   string // the upstream's X-Forwarded-Host
	}{
		{"untrusted", false, "", "evil.example"}, // the Host header the client sent, as before
		{"untrusted, public host", false, "app.example", "app.example"},
		{"trusted", true, "", "lb.example"},
		{"trusted, public host", true, "app.example", "lb.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, &recorder{}, func(c *Config) {
				c.Trusted = func(*http.Request) bool { return tc.trusted }
				c.PublicHost = tc.publicHost
			})
			hdr := http.Header{}
			for k, v := range hostile {
				hdr[k] = v
			}
			if tc.trusted {
				hdr["X-Forwarded-Host"] = []string{"lb.example"}
			}
			req, _ := http.NewRequest("GET", f.front.URL+"/public", nil)
			req.Header = hdr
			req.Host = "evil.example"
			req.AddCookie(f.session[0])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := f.upstream.last(t)
			if got.URL.Path != "/public" {
				t.Errorf("upstream path %q", got.URL.Path)
			}
			var seen []string
			for name := range got.Header {
				for _, n := range names {
					if sameHeader(name, n) {
						seen = append(seen, name)
					}
				}
				if n := NormalizeHeader(name); (n == "x-forwarded-host" || n == "x-forwarded-for" || n == "x-forwarded-proto") &&
					name != http.CanonicalHeaderKey(n) {
					seen = append(seen, name)
				}
			}
			if !tc.trusted && len(seen) > 0 {
				t.Errorf("untrusted client's %v reached the upstream", seen)
			}
			if tc.trusted && len(seen) == 0 {
				t.Error("a trusted proxy's X-Original-URL etc. were dropped")
			}
			if h := got.Header.Values("X-Forwarded-Host"); len(h) != 1 || h[0] != tc.wantHost {
				t.Errorf("upstream X-Forwarded-Host = %q, want %q", h, tc.wantHost)
			}
		})
	}
}

func TestSameHeader(t *testing.T) {
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"X-User", true}, {"x-user", true}, {"X_USER", true}, {"x_User", true}, {"X-Users", false},
		{"X-Use", false}, {"XUser", false}, {"X.User", true}, {"x.user", true}, {"X_User.", false}, {"X-\u0130ser", false}, {"", false},
	} {
		if got := sameHeader(tt.name, "x-user"); got != tt.want {
			t.Errorf("sameHeader(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzSameHeader: sameHeader agrees with the allocating NormalizeHeader
// for every header the proxy sets, and a name that an upstream reads as one
// of them ("-", "_" and "." alike, any case) is stripped from a request.
func FuzzSameHeader(f *testing.F) {
	for _, s := range []string{"X_User", "x-user", "X.User", "x.authproxy_jwt.assertion", "X-Email", "x_groups"} {
		f.Add(s)
	}
	p, err := newHandler(Config{Routes: routesTo(&url.URL{Scheme: "http", Host: "app"}), UserHeader: "X-User",
		Sessions: mustStore(f), IsOwnCookie: mustStore(f).IsOwn, Auth: authFunc(http.NotFound), Ready: func() bool { return true },
		Headers: Headers{Email: "X-Email", Name: "X-Name", Groups: "X-Groups", AccessToken: "X-Access-Token"}})
	if err != nil {
		f.Fatal(err)
	}
	upstreamReads := func(name string) string { // CGI, PHP: upper case, "-" and "." as "_"
		return strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(name))
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, id := range p.identity.names {
			if got, want := sameHeader(name, id), NormalizeHeader(name) == id; got != want {
				t.Fatalf("sameHeader(%q, %q) = %v, NormalizeHeader says %v", name, id, got, want)
			}
		}
		// The sets by length find what comparing with every name finds.
		for _, set := range []headerSet{p.identity, p.untrusted} {
			if got, want := set.has(name), slices.ContainsFunc(set.names, func(id string) bool { return sameHeader(name, id) }); got != want {
				t.Fatalf("headerSet.has(%q) = %v, the list says %v", name, got, want)
			}
		}
		h := http.Header{name: {"forged"}}
		stripHeaders(h, p.identity)
		for _, id := range p.identity.names {
			if _, kept := h[name]; kept && upstreamReads(name) == upstreamReads(id) {
				t.Fatalf("%q survives the strip, but an upstream reads it as %s", name, id)
			}
		}
	})
}

// switchProtocols answers 101 as a WebSocket upstream does and returns the
// tunnel.
func switchProtocols(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	return conn, brw, brw.Flush()
}

// echoTunnel switches protocols and echoes the raw bytes of the tunnel:
// enough to prove one.
func echoTunnel(w http.ResponseWriter) {
	conn, brw, err := switchProtocols(w)
	if conn != nil {
		defer conn.Close()
	}
	if err == nil {
		io.Copy(conn, brw)
	}
}

// TestWebSocket upgrades a logged-in connection and echoes through it; an
// anonymous upgrade never reaches the upstream.
func TestWebSocket(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-User") != "alice" {
			http.Error(w, "want an upgrade from alice", http.StatusBadRequest)
			return
		}
		echoTunnel(w)
	})
	f := newFixture(t, echo)
	dial := func(cookies []*http.Cookie) (net.Conn, *bufio.Reader, *http.Response) {
		return rawGet(t, f, "/ws", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, cookies)
	}
	conn, br, resp := dial(f.session)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	for _, msg := range []string{"ping 1\n", "ping 2\n"} {
		fmt.Fprint(conn, msg)
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Errorf("echo = %q, %v; want %q", got, err, msg)
		}
	}
	if _, _, resp := dial(nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous upgrade: %d, want 401", resp.StatusCode)
	}
}

// TestUpstreamFailsMidResponse: an upstream that dies halfway through a body
// cuts the client's response short (no crash, no hang), and neither that nor
// the other upstream faults leave goroutines behind.
func TestUpstreamFailsMidResponse(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		broken := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		})
		f := newFixture(t, broken)
		for range 20 {
			req, _ := http.NewRequest("GET", f.front.URL+"/big", nil)
			req.AddCookie(f.session[0])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue // the proxy may close before headers reach us; that is fine
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && len(body) == 1000 {
				t.Errorf("got a complete body from a broken upstream")
			}
		}
		f.front.CloseClientConnections()
		http.DefaultClient.CloseIdleConnections()
	}()
	// The fixture's servers close at test cleanup; what we check here is
	// that no per-request goroutine outlives its request.
	deadline := time.Now().Add(time.Minute) // only bounds a leak
	for runtime.NumGoroutine() > before+10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+10 {
		t.Errorf("goroutines: %d before, %d after", before, n)
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t, &recorder{})
	long := strings.Repeat("a", 128)
	for _, tt := range []struct {
		sent string
		keep bool
	}{
		{"abc-123", true}, {"A.b_C-9", true}, {long, true},
		{"", false}, {long + "a", false}, {"a b", false}, {"a\"b", false}, {"ä", false}, {"a,b", false}, {"{json}", false},
	} {
		hdr := http.Header{}
		if tt.sent != "" {
			hdr.Set("X-Request-Id", tt.sent)
		}
		resp := f.get(t, "/", f.session, hdr)
		got := f.upstream.last(t).Header.Values("X-Request-Id")
		if len(got) != 1 || resp.Header.Get("X-Request-Id") != got[0] {
			t.Errorf("sent %q: upstream got %q, client got %q", tt.sent, got, resp.Header.Get("X-Request-Id"))
			continue
		}
		if tt.keep != (got[0] == tt.sent) {
			t.Errorf("sent %q: upstream got %q (keep=%v)", tt.sent, got[0], tt.keep)
		}
		if !validRequestID(got[0]) {
			t.Errorf("sent %q: id %q is not well formed", tt.sent, got[0])
		}
	}
}

// TestDirectRouteMatchesMux: the fast path takes only requests that the
// mux itself would hand to serveProxied unchanged.
func TestDirectRouteMatchesMux(t *testing.T) {
	for _, path := range []string{
		"/", "/a", "/a/b/", "/a.b/c..d/", "/...", "/a/...", "/.well-known/x",
		"/auth", "/auth/", "/auth/login", "/authx", "/healthz", "/readyz", "/healthz/x",
		"//a", "/a//b", "/./a", "/a/./b", "/a/../b", "/a/.", "/a/..", "/..", "/%2e%2e/a", "/a%2F..%2Fb",
	} {
		for _, method := range []string{"GET", "POST", "CONNECT"} {
			checkDirect(t, method, path)
		}
	}
}

// checkDirect: if the fast path takes the request, the mux alone must have
// routed it to serveProxied too, which for an anonymous API call answers 401
// (the mux's own redirects are 301/307/308, the auth routes a 418 here).
func checkDirect(t *testing.T, method, path string) {
	t.Helper()
	u, err := url.Parse(path)
	if err != nil {
		u = &url.URL{Path: path}
	}
	r := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: "x", RemoteAddr: "127.0.0.1:1"}
	if !direct(r) {
		return
	}
	p, err := newHandler(Config{Routes: routesTo(&url.URL{Scheme: "http", Host: "x"}), UserHeader: "X-User", Sessions: mustStore(t), IsOwnCookie: mustStore(t).IsOwn,
		Auth:  authFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		Ready: func() bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.mux.ServeHTTP(rec, r.WithContext(context.Background()))
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("%s %q takes the fast path, but the mux answers %d %q", method, path, rec.Code, rec.Header().Get("Location"))
	}
}

func mustStore(t testing.TB) *cookie.Store {
	s, err := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzDirectRoute: whatever the path, the fast path agrees with the mux.
func FuzzDirectRoute(f *testing.F) {
	for _, p := range []string{"/", "/a//b", "/a/../b", "/auth/x", "/healthz"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		checkDirect(t, "GET", path)
	})
}

// TestLargeDownload streams 1 GiB through the proxy: it must arrive whole,
// while the heap stays flat (the proxy copies, never buffers, a body).
func TestLargeDownload(t *testing.T) {
	const size = 1 << 30
	big := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.CopyN(w, zeros{}, size)
	})
	f := newFixture(t, big)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	resp := f.get(t, "/download", f.session, nil)
	n, err := io.Copy(io.Discard, resp.Body)
	close(stop)
	<-sampled
	if err != nil || n != size {
		t.Fatalf("received %d bytes, %v; want %d", n, err, size)
	}
	if grew := int64(peak.Load()) - int64(before.HeapInuse); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB while streaming 1 GiB", grew>>20)
	}
	t.Logf("heap in use: %d MiB before, %d MiB peak", before.HeapInuse>>20, peak.Load()>>20)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// longUpstream serves the kinds of long responses by path: each runs
// until its request ends, announced by the client or not.
func longUpstream(w http.ResponseWriter, r *http.Request) {
	tick := func(ctype, line string) {
		w.Header().Set("Content-Type", ctype)
		for {
			fmt.Fprint(w, line)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	switch r.URL.Path {
	case "/events":
		tick("text/event-stream", "data: tick\n\n")
	case "/ndjson":
		tick("application/x-ndjson", "{\"tick\":1}\n")
	case "/download":
		tick("application/octet-stream", "0123456789\n")
	case "/poll": // headers at once, the answer whenever something happens
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case "/slow-headers": // a long poll that answers after the session ended
		time.Sleep(2500 * time.Millisecond)
		fmt.Fprint(w, "too late\n")
	case "/ws":
		conn, _, err := switchProtocols(w)
		if conn != nil {
			defer conn.Close()
		}
		if err != nil {
			return
		}
		for {
			if _, err := fmt.Fprint(conn, "tick\n"); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// longKinds are the long responses; accept is what the client announces.
var longKinds = []struct{ name, path, accept string }{
	{"event stream, announced", "/events", "text/event-stream"},
	{"event stream, not announced", "/events", ""},
	{"NDJSON", "/ndjson", ""},
	{"long poll", "/poll", "application/json"},
	{"download", "/download", "*/*"},
	{"WebSocket", "/ws", ""},
}

// openLong starts a long response with the session in cookies and returns
// its body, after checking that it started.
func openLong(t *testing.T, f *fixture, path, accept string, cookies []*http.Cookie) *bufio.Reader {
	t.Helper()
	hdr := http.Header{}
	if accept != "" {
		hdr.Set("Accept", accept)
	}
	if path == "/ws" {
		hdr.Set("Connection", "Upgrade")
		hdr.Set("Upgrade", "websocket")
	}
	_, br, resp := rawGet(t, f, path, hdr, cookies)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	body := bufio.NewReader(resp.Body)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		body = br
	}
	if _, err := body.ReadString('\n'); err != nil {
		t.Fatalf("GET %s: the response did not start: %v", path, err)
	}
	return body
}

// rawGet sends GET path with hdr and cookies on a connection of its own,
// which stays open (a WebSocket tunnel may follow), and reads the response
// head.
func rawGet(t *testing.T, f *fixture, path string, hdr http.Header, cookies []*http.Cookie) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", f.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest("GET", f.front.URL+path, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

// ends fails t unless body ends within 10 s.
func ends(t *testing.T, body io.Reader, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, body)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // generous for a loaded machine; without the defence it never ends
		t.Fatalf("the response outlived %s by a minute", what)
	}
}

func shortWatch(c *Config) { c.watchAfter = 50 * time.Millisecond }

// TestLongLivedConnectionsEndWithTheSession: a long response of any kind,
// opened with a session that expires in a moment, is cut when it does,
// whether or not the client announced a stream; one whose headers come
// after the expiry is refused.
func TestLongLivedConnectionsEndWithTheSession(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(longUpstream), shortWatch)
	sessionFor := func(d time.Duration) []*http.Cookie {
		w := httptest.NewRecorder()
		if err := f.store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", Expiry: time.Now().Add(d)}); err != nil {
			t.Fatal(err)
		}
		return w.Result().Cookies()
	}
	for _, k := range longKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ends(t, openLong(t, f, k.path, k.accept, sessionFor(1500*time.Millisecond)), "its session")
		})
	}
	t.Run("headers after the expiry", func(t *testing.T) {
		t.Parallel()
		resp := f.get(t, "/slow-headers", sessionFor(1500*time.Millisecond), nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want 401; body %q", resp.StatusCode, body)
		}
	})
}

// revocable is a session store whose sessions can be revoked, like the
// Redis store.
type revocable struct {
	*cookie.Store
	revoked atomic.Bool
}

func (s *revocable) Load(r *http.Request) (session.Session, error) {
	if s.revoked.Load() {
		return session.Session{}, session.ErrNoSession
	}
	return s.Store.Load(r)
}

// TestLongLivedConnectionsEndOnRevocation: a long response of any kind
// lives on while its session does, and is cut once the session is revoked.
func TestLongLivedConnectionsEndOnRevocation(t *testing.T) {
	for _, k := range longKinds {
		t.Run(k.name, func(t *testing.T) {
			store := &revocable{Store: mustStore(t)}
			f := newFixture(t, http.HandlerFunc(longUpstream), shortWatch, func(c *Config) {
				c.Sessions = store
				c.Revalidate = 50 * time.Millisecond
			})
			w := httptest.NewRecorder()
			if err := store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", Expiry: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			body := openLong(t, f, k.path, k.accept, w.Result().Cookies())
			if k.path != "/poll" {
				// Well past the first checks, the stream still flows.
				for range 15 {
					if _, err := body.ReadString('\n'); err != nil {
						t.Fatalf("the response of a valid session ended: %v", err)
					}
				}
			}
			store.revoked.Store(true)
			ends(t, body, "the revocation of its session")
		})
	}
}

// TestSetXForwardedMatchesStdlib checks setXForwarded against
// httputil.ProxyRequest.SetXForwarded for requests whose X-Forwarded
// headers are stripped, as rewrite calls it.
func TestSetXForwardedMatchesStdlib(t *testing.T) {
	for _, remote := range []string{"192.0.2.1:51000", "[2001:db8::1]:443", "[fe80::1%eth0]:1", "no-port", "", "1.2.3.4:"} {
		for _, host := range []string{"app.example.com", "app.example.com:8443", "[::1]:9001", ""} {
			for _, tls := range []bool{false, true} {
				in := httptest.NewRequest("GET", "http://x/a", nil)
				in.RemoteAddr, in.Host = remote, host
				if tls {
					in.TLS = &tlsState
				} else {
					in.TLS = nil
				}
				want := &httputil.ProxyRequest{In: in, Out: in.Clone(in.Context())}
				want.SetXForwarded()
				got := &httputil.ProxyRequest{In: in, Out: in.Clone(in.Context())}
				setXForwarded(got, &reqInfo{})
				if !reflect.DeepEqual(got.Out.Header, want.Out.Header) {
					t.Errorf("remote %q host %q tls %v: got %v, want %v", remote, host, tls, got.Out.Header, want.Out.Header)
				}
			}
		}
	}
}

var tlsState = tls.ConnectionState{HandshakeComplete: true}
