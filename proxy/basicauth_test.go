package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

const basicPassword = "s3cret-shared-with-the-app"

// basicOf is the Authorization value the upstream must see for user.
func basicOf(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+basicPassword))
}

func withBasic(c *Config) {
	withAuthz(c)
	c.BasicPassword = basicPassword
}

// assertOnlyBasic fails unless h holds exactly one Authorization header
// value, want ("" for none), under exactly one spelling.
func assertOnlyBasic(t *testing.T, h http.Header, want string) {
	t.Helper()
	var seen []string
	for name, vs := range h {
		if NormalizeHeader(name) == "authorization" {
			seen = append(seen, fmt.Sprintf("%s=%q", name, vs))
		}
	}
	switch {
	case want == "" && len(seen) != 0:
		t.Errorf("upstream saw %v, want no Authorization", seen)
	case want != "" && (len(seen) != 1 || len(h["Authorization"]) != 1 || h["Authorization"][0] != want):
		t.Errorf("upstream saw %v, want only Authorization=%q", seen, want)
	}
}

// TestBasicAuthHostileHeaders sends the upstream's Authorization in every
// spelling and trick a client has: the upstream must see the proxy's basic
// credentials for the logged-in user and nothing of the client's.
func TestBasicAuthHostileHeaders(t *testing.T) {
	f := newFixture(t, &recorder{}, withBasic)
	tests := []struct {
		name string
		hdr  http.Header
		user string // who the upstream must see
	}{
		{"none", nil, "alice"},
		{"forged basic", http.Header{"Authorization": {basicOf("admin")}}, "alice"},
		{"forged basic, lower case", http.Header{"authorization": {basicOf("admin")}}, "alice"},
		{"forged basic, upper case", http.Header{"AUTHORIZATION": {basicOf("admin")}}, "alice"},
		{"several spellings", http.Header{"Authorization": {basicOf("admin")}, "aUtHoRiZaTiOn": {basicOf("root")}}, "alice"},
		{"two values", http.Header{"Authorization": {basicOf("admin"), basicOf("root")}}, "alice"},
		{"empty value", http.Header{"Authorization": {""}}, "alice"},
		{"digest", http.Header{"Authorization": {`Digest username="admin"`}}, "alice"},
		{"connection names it", http.Header{"Connection": {"Authorization"}}, "alice"},
		{"connection names it, and forged", http.Header{"Connection": {"authorization, close"}, "Authorization": {basicOf("admin")}}, "alice"},
		{"proxy-authorization", http.Header{"Proxy-Authorization": {basicOf("admin")}}, "alice"},
		// The bearer token is verified first, then replaced: the app sees
		// the token's user, never the token.
		{"valid bearer", http.Header{"Authorization": {"Bearer good-machine"}}, "machine"},
		{"valid bearer, lower-case scheme", http.Header{"Authorization": {"bearer good-machine"}}, "machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.upstream.count()
			resp := f.get(t, "/app/page", f.session, tt.hdr)
			if resp.StatusCode != 200 || f.upstream.count() != before+1 {
				t.Fatalf("status %d, forwarded %d", resp.StatusCode, f.upstream.count()-before)
			}
			got := f.upstream.last(t)
			assertOnlyBasic(t, got.Header, basicOf(tt.user))
			if u := got.Header.Values("X-User"); len(u) != 1 || u[0] != tt.user {
				t.Errorf("X-User = %q, want %q", u, tt.user)
			}
			if u, pw, ok := got.BasicAuth(); !ok || u != tt.user || pw != basicPassword {
				t.Errorf("upstream's BasicAuth() = %q, %q, %v", u, pw, ok)
			}
			if got.Header.Get("Proxy-Authorization") != "" {
				t.Errorf("Proxy-Authorization reached the upstream")
			}
		})
	}
}

// TestBasicAuthRawWire writes Authorization spellings byte by byte; each
// must be refused or replaced.
func TestBasicAuthRawWire(t *testing.T) {
	f := newFixture(t, &recorder{}, withBasic)
	cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
	forged := base64.StdEncoding.EncodeToString([]byte("admin:" + basicPassword))
	tests := []struct{ name, headers string }{
		{"lower case", "authorization: Basic " + forged + "\r\n"},
		{"no space", "Authorization:Basic " + forged + "\r\n"},
		{"tab before value", "Authorization:\tBasic " + forged + "\r\n"},
		{"space before colon", "Authorization : Basic " + forged + "\r\n"},
		{"obsolete line folding", "X-Other: a\r\n Authorization: Basic " + forged + "\r\n"},
		{"folded value", "Authorization: Basic\r\n " + forged + "\r\n"},
		{"twice", "Authorization: Basic " + forged + "\r\nAUTHORIZATION: Basic " + forged + "\r\n"},
		{"connection names it", "Connection: Authorization\r\nAuthorization: Basic " + forged + "\r\n"},
		{"NUL in name", "Authorization\x00: Basic " + forged + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.upstream.count()
			conn, err := net.Dial("tcp", f.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /raw HTTP/1.1\r\nHost: x\r\n%s%s\r\n", cookieLine, tt.headers)
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
			assertOnlyBasic(t, f.upstream.last(t).Header, basicOf("alice"))
		})
	}
}

// TestBasicAuthAnonymousAndRefused: public paths get no Authorization at
// all (the client's is stripped too, so nobody can guess the password
// through the proxy); refused callers never reach the upstream.
func TestBasicAuthAnonymousAndRefused(t *testing.T) {
	f := newFixture(t, &recorder{}, withBasic)
	resp := f.get(t, "/public/x", nil, http.Header{"Authorization": {basicOf("admin")}})
	if resp.StatusCode != 200 {
		t.Fatalf("public path: %d", resp.StatusCode)
	}
	assertOnlyBasic(t, f.upstream.last(t).Header, "")
	before := f.upstream.count()
	for _, hdr := range []http.Header{
		{"Authorization": {"Bearer forged"}},
		{"Authorization": {basicOf("admin")}, "Accept": {"application/json"}}, // no session
	} {
		if resp := f.get(t, "/app", nil, hdr); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%v: status %d, want 401", hdr, resp.StatusCode)
		}
	}
	if n := f.upstream.count() - before; n != 0 {
		t.Errorf("upstream received %d refused requests", n)
	}
}

// TestBasicAuthUserNames: a user id is sent as it is (UTF-8), unless it
// holds a colon, which RFC 7617 cannot carry in a user name: that user
// gets a 403 page, the log says why, and the upstream sees nothing.
func TestBasicAuthUserNames(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t, &recorder{}, withBasic, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	save := func(user string) []*http.Cookie {
		return f.saveSession(t, session.Session{User: user, Expiry: time.Now().Add(time.Hour)})
	}
	for _, user := range []string{"auth0|5f7c8ec7", "google-oauth2|1234", "jürgen@example.com", "ann@example.com", "名前"} {
		before := f.upstream.count()
		if resp := f.get(t, "/app", save(user), nil); resp.StatusCode != 200 || f.upstream.count() != before+1 {
			t.Errorf("%q: status %d", user, resp.StatusCode)
			continue
		}
		got := f.upstream.last(t)
		if u, pw, ok := got.BasicAuth(); !ok || u != user || pw != basicPassword {
			t.Errorf("%q: upstream's BasicAuth() = %q, %q, %v", user, u, pw, ok)
		}
	}
	for _, user := range []string{"urn:example:ann", "ann:", ":ann", "a:b:c"} {
		before := f.upstream.count()
		for _, accept := range []string{"text/html", "application/json"} {
			resp, body := f.do(t, "GET", "/app", save(user), http.Header{"Accept": {accept}})
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "user_not_representable") {
				t.Errorf("%q (%s): %d %s, want 403 user_not_representable", user, accept, resp.StatusCode, body)
			}
			if strings.Contains(body, basicPassword) {
				t.Errorf("the 403 page gives away the password")
			}
		}
		if f.upstream.count() != before {
			t.Errorf("%q: the upstream received the request", user)
		}
	}
	if !strings.Contains(logs.String(), "contains ':'") {
		t.Errorf("no log line says why:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), basicPassword) {
		t.Errorf("the log gives away the password")
	}
}

// TestBasicAuthUpstreamRefuses: an upstream that refuses the proxy's
// credentials (the passwords differ) answers 401 with a Basic challenge;
// the browser gets the 401 without the challenge, which would open a
// password dialog whose answer the proxy replaces anyway, and the log says
// what to check.
func TestBasicAuthUpstreamRefuses(t *testing.T) {
	var logs bytes.Buffer
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); !ok || pw != "another-password" {
			w.Header().Set("WWW-Authenticate", `Basic realm="legacy"`)
			http.Error(w, "Authorization Required", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "ok")
	})
	f := newFixture(t, app, withBasic, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	resp := f.get(t, "/app", f.session, http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("status %d, WWW-Authenticate %q; want 401 without a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if !strings.Contains(logs.String(), "AUTHPROXY_UPSTREAM_BASIC_PASSWORD") {
		t.Errorf("the log does not point at the password setting:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), basicPassword) {
		t.Errorf("the log gives away the password")
	}
}

// TestBasicAuthNotInForwardAuth: /auth/check answers reach whoever called
// them, which may be the client itself: they never carry the credentials.
func TestBasicAuthNotInForwardAuth(t *testing.T) {
	f := newFixture(t, &recorder{}, withBasic)
	resp, body := f.do(t, "GET", "/auth/check", f.session, http.Header{"X-Forwarded-Uri": {"/app"}})
	if resp.StatusCode != 200 || resp.Header.Get("X-User") != "alice" {
		t.Fatalf("check: %d, X-User %q", resp.StatusCode, resp.Header.Get("X-User"))
	}
	for name, vs := range resp.Header {
		for _, v := range vs {
			if NormalizeHeader(name) == "authorization" || strings.Contains(v, base64.StdEncoding.EncodeToString([]byte("alice:"+basicPassword))) {
				t.Errorf("check answer carries %s: %q", name, v)
			}
		}
	}
	if strings.Contains(body, basicPassword) {
		t.Errorf("check answer body gives away the password")
	}
}

// TestBasicAuthOff: without a password, the client's Authorization passes
// as before (cookie sessions, no bearer verification).
func TestBasicAuthOff(t *testing.T) {
	f := newFixture(t, &recorder{})
	f.get(t, "/app", f.session, http.Header{"Authorization": {"Basic Zm9vOmJhcg=="}})
	assertOnlyBasic(t, f.upstream.last(t).Header, "Basic Zm9vOmJhcg==")
}

// BenchmarkRewriteBasic is BenchmarkRewrite's "authproxy" case with basic
// auth on: what the Authorization header costs per request.
func BenchmarkRewriteBasic(b *testing.B) {
	store, sessionCookies := benchSession(b)
	ph, err := newHandler(Config{Routes: routesTo(benchUpstreamURL), UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth: authFunc(http.NotFound), Ready: func() bool { return true }, BasicPassword: basicPassword})
	if err != nil {
		b.Fatal(err)
	}
	in := benchRequest(sessionCookies, true)
	in.Header.Set("Authorization", basicOf("mallory")) // a forged one, to be replaced
	in = in.WithContext(context.WithValue(in.Context(), infoKey{}, &reqInfo{sess: session.Session{User: benchUser}, route: ph.cfg.Routes.Routes()[0]}))
	out := in.Clone(in.Context())
	pr := &httputil.ProxyRequest{In: in, Out: out}
	b.ReportAllocs()
	for b.Loop() {
		clear(out.Header)
		for k, v := range in.Header {
			out.Header[k] = v
		}
		*out.URL = *in.URL
		out.Host = in.Host
		ph.rewrite(pr)
	}
	if got := out.Header["Authorization"]; len(got) != 1 || got[0] != basicOf(benchUser) {
		b.Fatalf("Authorization = %q", got)
	}
}
