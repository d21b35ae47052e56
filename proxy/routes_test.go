package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/proxy/rules"
	"github.com/authproxy/authproxy/session"
)

const testRoutes = `app.example.com      /       http://app.internal
app.example.com      /api/   http://api.internal/base/   strip-prefix
wiki.example.com     /       http://wiki.internal        pass-host
*.apps.example.com   /       http://wild.internal
*                    /       http://default.internal
`

const testHostRules = `allow  *    wiki.example.com/admin/   group:admins
public GET  app.example.com/pub/
deny   *    app.example.com/api/admin/
allow  *    /                         any
`

// seen is what an upstream received.
type seen struct {
	upstream, path, host, forwardedHost string
}

// upstreams answers every route's requests in memory and records them.
type upstreams struct {
	mu   sync.Mutex
	reqs []seen
}

func (u *upstreams) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	u.reqs = append(u.reqs, seen{r.URL.Host, r.URL.EscapedPath(), r.Host, r.Header.Get("X-Forwarded-Host")})
	u.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Request: r,
		Body: io.NopCloser(strings.NewReader("upstream " + r.URL.Host))}, nil
}

func (u *upstreams) take() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.reqs
	u.reqs = nil
	return out
}

func newRoutesFixture(t *testing.T, routesText string, mutate ...func(*Config)) (*fixture, *upstreams) {
	t.Helper()
	tab, err := route.Parse("routes.txt", strings.NewReader(routesText))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Parse("rules.txt", strings.NewReader(testHostRules))
	if err != nil {
		t.Fatal(err)
	}
	ups := &upstreams{}
	f := newFixture(t, &recorder{}, append([]func(*Config){func(c *Config) {
		c.Routes, c.Transport, c.Rules, c.PublicHost = tab, transport(ups), rs, "auth.example.com"
	}}, mutate...)...)
	return f, ups
}

// hostGet sends a raw GET target with Host host, and the session unless
// anonymous.
func (f *fixture) hostGet(t *testing.T, host, target string, anonymous bool, extra string) *http.Response {
	t.Helper()
	raw := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra
	if !anonymous {
		for _, c := range f.session {
			raw += "Cookie: " + c.String() + "\r\n"
		}
	}
	resp, _, _ := rawExchange(t, f.front.Listener.Addr().String(), raw+"Connection: close\r\n\r\n", nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func TestRoutesSendEachHostToItsUpstream(t *testing.T) {
	f, ups := newRoutesFixture(t, testRoutes)
	for _, tt := range []struct {
		host, target string
		want         seen
	}{
		{"app.example.com", "/x?q=1", seen{"app.internal", "/x", "", "app.example.com"}},
		{"APP.Example.COM.:8080", "/x", seen{"app.internal", "/x", "", "app.example.com:8080"}},
		{"app.example.com:443", "/x", seen{"app.internal", "/x", "", "app.example.com:443"}},
		{"app.example.com", "/api/users?q=1", seen{"api.internal", "/base/users", "", "app.example.com"}},
		{"app.example.com", "/api", seen{"api.internal", "/base/", "", "app.example.com"}},
		{"app.example.com", "/api/", seen{"api.internal", "/base/", "", "app.example.com"}},
		{"app.example.com", "/api/caf%C3%A9/x%20y", seen{"api.internal", "/base/caf%C3%A9/x%20y", "", "app.example.com"}},
		{"app.example.com", "/apix", seen{"app.internal", "/apix", "", "app.example.com"}},
		{"app.example.com", "/API/x", seen{"app.internal", "/API/x", "", "app.example.com"}},
		{"wiki.example.com", "/x", seen{"wiki.internal", "/x", "wiki.example.com", "wiki.example.com"}},
		{"WIKI.Example.com.:8443", "/x", seen{"wiki.internal", "/x", "wiki.example.com:8443", "wiki.example.com:8443"}},
		{"a.apps.example.com", "/", seen{"wild.internal", "/", "", "a.apps.example.com"}},
		{"apps.example.com", "/", seen{"default.internal", "/", "", "auth.example.com"}},
		{"other.example", "/", seen{"default.internal", "/", "", "auth.example.com"}},
		{"127.0.0.1:9001", "/", seen{"default.internal", "/", "", "auth.example.com"}},
		// Absolute form: Go's server takes the target's host as the Host.
		{"app.example.com", "http://wiki.example.com/x", seen{"wiki.internal", "/x", "wiki.example.com", "wiki.example.com"}},
	} {
		resp := f.hostGet(t, tt.host, tt.target, false, "")
		got := ups.take()
		if resp.StatusCode != 200 || len(got) != 1 || got[0] != tt.want {
			t.Errorf("Host %s GET %s: %d, upstream saw %+v, want %+v", tt.host, tt.target, resp.StatusCode, got, tt.want)
		}
	}
}

// TestUnroutedRequests: a Host or path no route serves gets the proxy's
// own 404 and reaches no upstream; a Host that is no host name a 400;
// probes answer on any Host; absolute-form targets must name a routed host
// or the public one.
func TestUnroutedRequests(t *testing.T) {
	f, ups := newRoutesFixture(t, "app.example.com / http://app.internal\nci.example.com /hooks/ http://ci.internal\n")
	for _, tt := range []struct {
		host, target string
		status       int
		code         string
	}{
		{"evil.example", "/", 404, "no_route"},
		{"app.example.com.evil.example", "/", 404, "no_route"},
		{"ci.example.com", "/", 404, "no_route"},
		{"ci.example.com", "/hooksx", 404, "no_route"},
		{"auth.example.com", "/", 404, "no_route"},
		{"app.example.com", "http://evil.example/", 400, "bad_request_target"},
		{"app.example.com", "http://ci.example.com.evil.example/hooks/", 400, "bad_request_target"},
		{"app..example.com", "/", 400, "bad_host"},
		{"app.example.com:99999", "/", 400, ""}, // Go's server refuses it first
		{"user@app.example.com", "/", 400, ""},
		{"evil.example", "/healthz", 200, ""},
		{"evil.example", "/readyz", 200, ""},
		{"10.1.2.3:9001", "/healthz", 200, ""},
		{"evil.example", "/auth/login", http.StatusTeapot, ""}, // the auth handler answers on any host
	} {
		resp := f.hostGet(t, tt.host, tt.target, false, "")
		if resp.StatusCode != tt.status {
			t.Errorf("Host %s GET %s: %d, want %d", tt.host, tt.target, resp.StatusCode, tt.status)
		}
		if tt.code != "" {
			var body struct{ Error string }
			if tt.code == "no_route" {
				if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "text/html") && !strings.Contains(ct, "json") {
					t.Errorf("Host %s: 404 of type %q", tt.host, ct)
				}
			} else if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error != tt.code {
				t.Errorf("Host %s GET %s: error %q (%v), want %q", tt.host, tt.target, body.Error, err, tt.code)
			}
		}
		if got := ups.take(); len(got) != 0 {
			t.Errorf("Host %s GET %s reached an upstream: %+v", tt.host, tt.target, got)
		}
	}
	// A Host the wire cannot carry, handed to the handler itself.
	for _, host := range []string{"app.example.com evil", "app.example.com\x00", "bücher.example", "app%2eexample.com"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		w := httptest.NewRecorder()
		f.front.Config.Handler.ServeHTTP(w, r)
		if w.Code != 400 || !strings.Contains(w.Body.String(), "bad_host") {
			t.Errorf("Host %q: %d %s", host, w.Code, w.Body)
		}
		if got := ups.take(); len(got) != 0 {
			t.Errorf("Host %q reached an upstream: %+v", host, got)
		}
	}
}

// upstreamReadings are the cleaned paths an upstream that decodes (up to
// three times), maps \ to /, drops ;params or trailing dots and spaces of
// segments, or resolves dot segments could make of p.
func upstreamReadings(p string) []string {
	forms := []string{p}
	for i := 0; i < 3; i++ {
		d, err := url.PathUnescape(forms[len(forms)-1])
		if err != nil {
			break
		}
		forms = append(forms, d)
	}
	var out []string
	for _, s := range forms {
		for _, v := range []string{s, strings.ReplaceAll(s, `\`, "/")} {
			segs := strings.Split(v, "/")
			for i := range segs {
				segs[i], _, _ = strings.Cut(segs[i], ";")
				if t := strings.TrimRight(segs[i], ". "); t != "" && strings.Trim(segs[i], ".") != "" {
					segs[i] = t
				}
			}
			out = append(out, path.Clean(v), path.Clean(strings.Join(segs, "/")))
		}
	}
	return out
}

// readsOutside reports whether an upstream could read p outside prefix.
func readsOutside(p, prefix string) bool {
	for _, c := range upstreamReadings(p) {
		if c != strings.TrimSuffix(prefix, "/") && !strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// TestStripPrefixHostile: under a strip-prefix route, whatever the client
// sends, the upstream never gets a path it could read outside the route's
// base, nor one the rules judged under another prefix (deny /api/admin/):
// such requests are refused before anything is forwarded.
func TestStripPrefixHostile(t *testing.T) {
	f, ups := newRoutesFixture(t, testRoutes)
	targets := []string{
		"/api/..%2fadmin", "/api/..%2Fadmin", "/api/%2e%2e/admin", "/api/%2E%2E%2Fadmin", "/api/.%2e/admin",
		"/api/%2e./admin", "/api/..;/admin", "/api/..%3b/admin", "/api/..%3B/admin", "/api/..%5cadmin", `/api/..\admin`,
		`/api\..\admin`, "/api/%252e%252e/admin", "/api/%252e%252e%252fadmin", "/api/%2fadmin", "/api/%2F%2Fadmin",
		"/api/%c0%ae%c0%ae/admin", "/api/%ef%bc%8e%ef%bc%8e/admin", "/api/%EF%BC%8F..%EF%BC%8Fadmin", "/api/\u2025/admin",
		"/api/admin./x", "/api/admin%20/x", "/api/admin;/x", "/api/x/..", "/api/x/%2e%2e", "/api/x/%2e%2e/%2e%2e/admin",
		"/api/...", "/api/.../admin", "/api/%2e", "/api/.", "/api/%00", "/api/%0d%0aX:%20y", "/api//admin", "/api/./admin",
		"/api;/../admin", "/api%2f..%2fadmin", "/api/%61dmin/x", "/api/ADMIN/x", "/api/admin", "/api/admin/", "/api/admin/x",
		"/api/x?y=/../admin", "/api/x#/../admin",
	}
	for _, target := range targets {
		resp := f.hostGet(t, "app.example.com", target, false, "")
		got := ups.take()
		if resp.StatusCode >= 500 {
			t.Errorf("GET %q: %d", target, resp.StatusCode)
		}
		for _, s := range got {
			if s.upstream != "api.internal" {
				continue
			}
			if readsOutside(s.path, "/base/") {
				t.Errorf("GET %q: the upstream got %q, which it may read outside /base/", target, s.path)
			}
			if rest := strings.TrimPrefix(s.path, "/base"); readsUnderAdmin(rest) {
				t.Errorf("GET %q: the upstream got %q, /api/admin/ to it, which the rules deny", target, s.path)
			}
		}
	}
	if len(targets) < 40 {
		t.Fatalf("only %d hostile targets", len(targets))
	}
	// Plain paths under the prefix pass; the rules judge the client's path.
	for target, want := range map[string]int{"/api/users": 200, "/api/admin/x": 403, "/api/admin": 403} {
		if resp := f.hostGet(t, "app.example.com", target, false, ""); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", target, resp.StatusCode, want)
		}
		ups.take()
	}
}

// readsUnderAdmin reports whether an upstream could read p as /admin or
// under /admin/ (that is, /api/admin/ of the client).
func readsUnderAdmin(p string) bool {
	for _, c := range upstreamReadings(p) {
		if c == "/admin" || strings.HasPrefix(c, "/admin/") {
			return true
		}
	}
	return false
}

// TestHostScopedRulesThroughTheProxy: the wiki's rule applies to every
// spelling of the wiki's host, and to no other host.
func TestHostScopedRulesThroughTheProxy(t *testing.T) {
	f, ups := newRoutesFixture(t, testRoutes)
	for _, tt := range []struct {
		host, target string
		anonymous    bool
		status       int
	}{
		{"wiki.example.com", "/admin/x", false, 403},
		{"WIKI.EXAMPLE.COM", "/admin/x", false, 403},
		{"wiki.example.com.", "/admin/x", false, 403},
		{"wiki.example.com:443", "/admin/", false, 403},
		{"Wiki.Example.Com.:8443", "/admin", false, 403},
		{"wiki.example.com", "/%61dmin/x", false, 403},
		{"app.example.com", "http://wiki.example.com/admin/x", false, 403},
		{"wiki.example.com", "/other", false, 200},
		{"app.example.com", "/admin/x", false, 200},
		{"other.example", "/admin/x", false, 200},
		{"app.example.com", "/pub/a.css", true, 200},
		{"APP.example.com.", "/pub/a.css", true, 200},
		{"wiki.example.com", "/pub/a.css", true, 401},
		{"other.example", "/pub/a.css", true, 401},
	} {
		extra := ""
		if tt.anonymous {
			extra = "Accept: application/json\r\n"
		}
		resp := f.hostGet(t, tt.host, tt.target, tt.anonymous, extra)
		ups.take()
		if resp.StatusCode != tt.status {
			t.Errorf("Host %s GET %s: %d, want %d", tt.host, tt.target, resp.StatusCode, tt.status)
		}
	}
}

// TestForwardAuthRoutedHosts: a trusted ingress may ask about any routed
// host, whose rules then apply; an unrouted host is refused; an untrusted
// peer may not name the host in X-Forwarded-Host.
func TestForwardAuthRoutedHosts(t *testing.T) {
	f, ups := newRoutesFixture(t, "app.example.com / http://app.internal\nwiki.example.com / http://wiki.internal\n",
		func(c *Config) {
			c.Trusted = func(r *http.Request) bool { return r.Header.Get("X-Test-Trusted") == "1" }
		})
	for _, tt := range []struct {
		name   string
		hdr    string
		status int
	}{
		{"trusted, wiki admin", "X-Test-Trusted: 1\r\nX-Forwarded-Host: wiki.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 403},
		{"trusted, wiki in capitals", "X-Test-Trusted: 1\r\nX-Forwarded-Host: WIKI.example.com:443\r\nX-Forwarded-Uri: /admin/x\r\n", 403},
		{"trusted, app admin", "X-Test-Trusted: 1\r\nX-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 200},
		{"trusted, unrouted host", "X-Test-Trusted: 1\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Uri: /x\r\n", 403},
		{"trusted, bad host", "X-Test-Trusted: 1\r\nX-Forwarded-Host: wiki..example.com\r\nX-Forwarded-Uri: /x\r\n", 400},
		{"trusted, absolute URL of the wiki", "X-Test-Trusted: 1\r\nX-Forwarded-Host: wiki.example.com\r\nX-Original-Url: https://wiki.example.com/admin/x\r\n", 403},
		{"trusted, absolute URL disagrees", "X-Test-Trusted: 1\r\nX-Forwarded-Host: app.example.com\r\nX-Original-Url: https://wiki.example.com/admin/x\r\n", 400},
		{"untrusted names the host", "X-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 400},
	} {
		resp := f.hostGet(t, "wiki.example.com", "/auth/check", false, tt.hdr)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
	}
	// Without X-Forwarded-Host, the sub-request's own Host.
	if resp := f.hostGet(t, "wiki.example.com", "/auth/check", false, "X-Forwarded-Uri: /admin/x\r\n"); resp.StatusCode != 403 {
		t.Errorf("Host wiki, /admin/x: %d, want 403", resp.StatusCode)
	}
	if resp := f.hostGet(t, "evil.example", "/auth/check", false, "X-Forwarded-Uri: /x\r\n"); resp.StatusCode != 403 {
		t.Errorf("Host evil.example: %d, want 403", resp.StatusCode)
	}
	if got := ups.take(); len(got) != 0 {
		t.Errorf("forward auth reached an upstream: %+v", got)
	}
}

// TestWebSocketOriginOfRoutedHost: a page of the routed host opens
// WebSockets to it; a page of another host, even another routed one, does
// not.
func TestWebSocketOriginOfRoutedHost(t *testing.T) {
	f, ups := newRoutesFixture(t, testRoutes)
	for _, tt := range []struct {
		host, origin string
		ok           bool
	}{
		{"wiki.example.com", "https://wiki.example.com", true},
		{"wiki.example.com", "http://WIKI.example.com", true},
		{"wiki.example.com:8443", "https://wiki.example.com:8443", true},
		{"wiki.example.com", "https://auth.example.com", true}, // the public host, as before
		{"wiki.example.com", "https://app.example.com", false},
		{"wiki.example.com", "https://wiki.example.com:8443", false},
		{"wiki.example.com", "https://wiki.example.com.evil.example", false},
		{"wiki.example.com", "null", false},
		{"other.example", "https://other.example", false}, // a * route: only the public host
	} {
		extra := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: " + tt.origin + "\r\n"
		resp := f.hostGet(t, tt.host, "/ws", false, extra)
		refused := resp.StatusCode == http.StatusForbidden
		if refused == tt.ok {
			t.Errorf("Host %s Origin %s: %d, want allowed=%v", tt.host, tt.origin, resp.StatusCode, tt.ok)
		}
		ups.take()
	}
}

// TestRouteTimeoutsAreTheirOwn: each route has its own transport.
func TestRouteTransportPerRoute(t *testing.T) {
	tab, err := route.Parse("r", strings.NewReader("a.example / http://a.internal\nb.example / http://b.internal\n"))
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	var mu sync.Mutex
	f := newFixture(t, &recorder{}, func(c *Config) {
		c.Routes = tab
		c.Transport = func(rt *route.Route) http.RoundTripper {
			name := rt.Host
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				calls = append(calls, name+">"+r.URL.Host)
				mu.Unlock()
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			})
		}
	})
	f.hostGet(t, "a.example", "/", false, "")
	f.hostGet(t, "b.example", "/", false, "")
	if got := fmt.Sprint(calls); got != "[a.example>a.internal b.example>b.internal]" {
		t.Errorf("transports used: %s", got)
	}
}

// TestNewNeedsRoutes: no table is a configuration error.
func TestNewNeedsRoutes(t *testing.T) {
	store := mustStore(t)
	_, err := New(Config{UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth: authFunc(http.NotFound), Ready: func() bool { return true }})
	if err == nil || !strings.Contains(err.Error(), "routes are required") {
		t.Errorf("New without routes: %v", err)
	}
	_ = session.Session{}
}

// TestForwardAuthAmbiguousHost: where hosts matter, a check whose host is
// missing, blank or given twice is refused, never judged as a request for
// no host in particular: a * route would match that and apply only the
// rules for every host, so a trusted ingress that passes a client's
// X-Forwarded-Host beside its own (two values) would let the client past
// the wiki's /admin/ rule.
func TestForwardAuthAmbiguousHost(t *testing.T) {
	f, ups := newRoutesFixture(t, "app.example.com / http://app.internal\nwiki.example.com / http://wiki.internal\n* / http://default.internal\n",
		func(c *Config) {
			c.Trusted = func(r *http.Request) bool { return r.Header.Get("X-Test-Trusted") == "1" }
		})
	for _, tt := range []struct {
		name   string
		hdr    string
		status int
	}{
		{"trusted, wiki admin", "X-Test-Trusted: 1\r\nX-Forwarded-Host: wiki.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 403},
		{"trusted, other host", "X-Test-Trusted: 1\r\nX-Forwarded-Host: other.example\r\nX-Forwarded-Uri: /admin/x\r\n", 200},
		// An ingress that names no host (nginx's $server_name of a server
		// without server_name) must not get the rules of no host in
		// particular, which a * route would apply.
		{"trusted, empty host", "X-Test-Trusted: 1\r\nX-Forwarded-Host: \r\nX-Forwarded-Uri: /admin/x\r\n", 400},
		{"trusted, blank host", "X-Test-Trusted: 1\r\nX-Forwarded-Host:  \t\r\nX-Forwarded-Uri: /admin/x\r\n", 400},
		{"trusted, two hosts", "X-Test-Trusted: 1\r\nX-Forwarded-Host: app.example.com\r\nX-Forwarded-Host: wiki.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 400},
		{"trusted, host list", "X-Test-Trusted: 1\r\nX-Forwarded-Host: app.example.com, wiki.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 400},
		{"trusted, wiki with trailing dot", "X-Test-Trusted: 1\r\nX-Forwarded-Host: wiki.example.com.\r\nX-Forwarded-Uri: /admin/x\r\n", 403},
		{"trusted, wiki IPv6-looking", "X-Test-Trusted: 1\r\nX-Forwarded-Host: [wiki.example.com]\r\nX-Forwarded-Uri: /admin/x\r\n", 400},
		{"trusted, wiki with userinfo", "X-Test-Trusted: 1\r\nX-Forwarded-Host: x@wiki.example.com\r\nX-Forwarded-Uri: /admin/x\r\n", 400},
	} {
		resp := f.hostGet(t, "wiki.example.com", "/auth/check", false, tt.hdr)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
	}
	if got := ups.take(); len(got) != 0 {
		t.Errorf("forward auth reached an upstream: %+v", got)
	}
}

// TestNoHostWhereHostsMatter: where routes or rules tell hosts apart, a
// request that names no host (HTTP/1.0 without Host) is refused, not sent
// to the * route under the rules for every host: a pass-host * route would
// hand it to a name-based upstream's default site (the wiki, say) with no
// Host at all, past the wiki's /admin/ rule.
func TestNoHostWhereHostsMatter(t *testing.T) {
	f, ups := newRoutesFixture(t, "app.example.com / http://app.internal\nwiki.example.com / http://wiki.internal pass-host\n* / http://wiki.internal pass-host\n")
	for _, raw := range []string{
		"GET /admin/x HTTP/1.0\r\n",
		"GET /admin/x HTTP/1.0\r\nConnection: keep-alive\r\n",
		"GET /x HTTP/1.0\r\n",
	} {
		for _, c := range f.session {
			raw += "Cookie: " + c.String() + "\r\n"
		}
		resp, _, _ := rawExchange(t, f.front.Listener.Addr().String(), raw+"\r\n", nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "bad_host") {
			t.Errorf("%q: %d %s, want 400 bad_host", raw, resp.StatusCode, body)
		}
		if got := ups.take(); len(got) != 0 {
			t.Errorf("%q reached an upstream: %+v", raw, got)
		}
	}
	// The probes answer without a Host, as before.
	resp, _, _ := rawExchange(t, f.front.Listener.Addr().String(), "GET /healthz HTTP/1.0\r\n\r\n", nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz without Host: %d", resp.StatusCode)
	}
}
