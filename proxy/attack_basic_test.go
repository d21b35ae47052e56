package proxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// trailerApp reads the whole body, then records the request's trailers
// (as an app that merges them into the headers would see them) and its
// Trailer declaration.
type trailerApp struct {
	mu       sync.Mutex
	trailer  http.Header
	declared []string
	n        int
}

func (a *trailerApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	declared := []string{}
	for k := range r.Trailer {
		declared = append(declared, k)
	}
	_, _ = io.Copy(io.Discard, r.Body)
	a.mu.Lock()
	a.trailer, a.declared = r.Trailer.Clone(), declared
	a.n++
	a.mu.Unlock()
}

// TestRequestTrailersNeverForwarded: a chunked request's trailer section
// is a second set of header fields that the client alone chooses, after
// the proxy has rewritten the head. Servers that merge trailers into the
// headers (Apache's MergeTrailers, Go's and Node's request trailers that
// apps read) would take a trailer Authorization or X-User as the real one.
// No trailer, nor its declaration, may reach the upstream.
func TestRequestTrailersNeverForwarded(t *testing.T) {
	app := &trailerApp{}
	f := newFixture(t, app, withBasic)
	cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
	forged := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+basicPassword))
	tests := []struct {
		name, path, cookie, head, trailer string
	}{
		{"authorization", "/app", cookieLine, "Trailer: Authorization\r\n", "Authorization: " + forged + "\r\n"},
		{"authorization, undeclared", "/app", cookieLine, "", "Authorization: " + forged + "\r\n"},
		{"x-user", "/app", cookieLine, "Trailer: X-User\r\n", "X-User: admin\r\n"},
		{"x_user", "/app", cookieLine, "Trailer: X_User\r\n", "X_User: admin\r\n"},
		{"assertion", "/app", cookieLine, "Trailer: X-Authproxy-Jwt-Assertion\r\n", "X-Authproxy-Jwt-Assertion: forged\r\n"},
		{"x-forwarded-for", "/app", cookieLine, "Trailer: X-Forwarded-For\r\n", "X-Forwarded-For: 127.0.0.1\r\n"},
		{"cookie", "/app", cookieLine, "Trailer: Cookie\r\n", "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"},
		{"public path", "/public/x", "", "Trailer: Authorization, X-User\r\n", "Authorization: " + forged + "\r\nX-User: admin\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app.mu.Lock()
			before := app.n
			app.mu.Unlock()
			conn, err := net.Dial("tcp", f.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked\r\n%s\r\n3\r\nabc\r\n0\r\n%s\r\n",
				tt.path, tt.cookie, tt.head, tt.trailer)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			app.mu.Lock()
			defer app.mu.Unlock()
			if app.n == before {
				if resp.StatusCode < 400 {
					t.Errorf("not forwarded, status %d", resp.StatusCode)
				}
				return
			}
			if len(app.trailer) != 0 || len(app.declared) != 0 {
				t.Errorf("upstream received trailers %q (declared %q)", app.trailer, app.declared)
			}
		})
	}
}

// TestBasicAuthUserBreakingClaimRules: a session whose user id breaks the
// claim rules (saved by a version before logins checked them: white space
// or invisible characters at either end, control characters) is refused
// like a user with a colon: inside the base64 nothing stops it, and an app
// that trims or C-string-reads the name (PHP, Apache) would take it for
// another user's.
func TestBasicAuthUserBreakingClaimRules(t *testing.T) {
	f := newFixture(t, &recorder{}, withBasic)
	for _, user := range []string{" admin", "admin ", "admin\t", "admin\n", "admin\r\nX-User: root", "ad\x00min",
		"admin\u200b", "\ufeffadmin", "admin\u00a0", "admin\u2028", "adm\xffin"} {
		before := f.upstream.count()
		c := f.saveSession(t, session.Session{User: user, Expiry: time.Now().Add(time.Hour)})
		resp, body := f.do(t, "GET", "/app", c, http.Header{"Accept": {"application/json"}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "user_not_representable") {
			t.Errorf("%q: %d %s, want 403 user_not_representable", user, resp.StatusCode, body)
		}
		if f.upstream.count() != before {
			t.Errorf("%q: the upstream received the request", user)
		}
	}
}
