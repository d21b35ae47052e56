package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// stack is a running proxy in front of a counting upstream, with a
// logged-in user's cookie header.
type stack struct {
	base   string
	cookie string
	mu     sync.Mutex
	seen   []string // method, path and body of each complete upstream request
	logs   *syncBuffer
	jar    http.CookieJar
	// A request for /slow signals started, then waits for release.
	started chan struct{}
	release chan struct{}
	// stop cancels serve's context and returns what serve returned.
	stop func() error
}

func (s *stack) upstream() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func startStack(t *testing.T, opts ...func(*env)) *stack {
	t.Helper()
	idp, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	s := &stack{started: make(chan struct{}, 1), release: make(chan struct{})}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			s.started <- struct{}{}
			<-s.release
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the proxy aborted this request mid-body: not a request the app can act on
		}
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.URL.Path+" "+string(body))
		s.mu.Unlock()
		io.WriteString(w, "app:"+r.Header.Get("X-User"))
	})}
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close() })

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s.base = "http://" + ln.Addr().String()
	e := defaultEnv()
	e.Addr, e.Upstream, e.Issuer = ln.Addr().String(), "http://"+appLn.Addr().String(), idp.Issuer()
	e.ClientID, e.ClientSecret = "authproxy-demo", "demo-secret"
	e.RedirectURL, e.CookieSecret = s.base+"/auth/callback", testSecret
	e.Scopes, e.SessionLifetime, e.UpstreamMaxIdleConns = "openid", "1h", "8"
	e.LogLevel, e.DrainDelay, e.ShutdownTimeout = "error", "0s", "5s"
	for _, o := range opts {
		o(&e)
	}
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s.logs = &syncBuffer{}
	go func() { done <- serve(ctx, cfg, ln, newLogger(cfg.Log, s.logs)) }()
	var once sync.Once
	var serveErr error
	s.stop = func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() { _ = s.stop() })
	waitStatus(t, s.base+"/readyz", 200)

	jar, _ := cookiejar.New(nil)
	s.jar = jar
	if body := loginWithJar(t, jar, s.base+"/", "alice"); body != "app:alice" {
		t.Fatalf("login: %q", body)
	}
	for _, c := range jar.Cookies(mustURL(s.base)) {
		s.cookie = c.Name + "=" + c.Value
	}
	s.mu.Lock()
	s.seen = nil
	s.mu.Unlock()
	return s
}

// raw sends bytes on a fresh connection and returns every response the
// proxy wrote back before closing.
func (s *stack) raw(t *testing.T, payload string) []*http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, payload); err != nil {
		t.Fatal(err)
	}
	var out []*http.Response
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

func TestOversizedHeaders(t *testing.T) {
	s := startStack(t)
	big := strings.Repeat("a", 100<<10)
	for name, hdr := range map[string]string{
		"huge header":       "X-Big: " + big,
		"huge cookie":       "Cookie: " + s.cookie + "; junk=" + big,
		"many headers":      strings.Repeat("X-Many: 0123456789012345678901234567890123456789\r\n", 3000) + "X-End: 1",
		"huge session-like": "Cookie: _authproxy=" + big,
	} {
		t.Run(name, func(t *testing.T) {
			resps := s.raw(t, "GET / HTTP/1.1\r\nHost: x\r\n"+hdr+"\r\nConnection: close\r\n\r\n")
			if len(resps) != 1 || resps[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("responses %v, want one 431", statuses(resps))
			}
		})
	}
	if got := s.upstream(); len(got) != 0 {
		t.Errorf("upstream received %q", got)
	}
	// The proxy is still fine afterwards.
	if resps := s.raw(t, "GET /after HTTP/1.1\r\nHost: x\r\nCookie: "+s.cookie+"\r\nConnection: close\r\n\r\n"); len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Errorf("after oversized requests: %v", statuses(resps))
	}
}

// TestSmuggling: ambiguous framing is refused or re-framed so the upstream
// sees exactly the requests the proxy answered, never one hidden in a body.
func TestSmuggling(t *testing.T) {
	s := startStack(t)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	get := "GET /first HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\n\r\n"
	tests := []struct {
		name    string
		payload string
		want    []int // the answers, when the test pins them
	}{
		// Both framing fields: 400 and the connection closed, nothing
		// forwarded (Go's server alone would re-frame the body as chunked).
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE and CL", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"CL and TE, lower case", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		// Go's server joins folded lines (obs-fold): "Content-Length:"
		// then " 4" is Content-Length 4.
		{"CL folded and TE", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length:\r\n 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"CL and TE after a folded CL", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length:\r\n 2\r\n\r\nab" +
			"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 400}},
		// Go's server ignores Transfer-Encoding in HTTP/1.0 (no body),
		// where a front end may read a chunked body.
		{"TE in HTTP/1.0", "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nCookie: " + s.cookie + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"CL and TE, public path", "POST /auth/backchannel-logout HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"CL and TE after a request", get + "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 400}},
		{"CL and TE after a body that looks like it", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length: 50\r\n\r\n" +
			"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{200, 400}},
		{"two different CL", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length: 0\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, nil},
		{"CL list", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nContent-Length: 0, 40\r\n\r\n" + smuggled, nil},
		{"TE obfuscated", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n" + smuggled, nil},
		{"TE with space", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, nil},
		{"TE twice", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, nil},
		{"chunk size overflow", "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + s.cookie + "\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n" + smuggled, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.mu.Lock()
			s.seen = nil
			s.mu.Unlock()
			resps := s.raw(t, tt.payload)
			if tt.want != nil && !slices.Equal(statuses(resps), tt.want) {
				t.Errorf("answers %v, want %v", statuses(resps), tt.want)
			}
			answered := 0
			for _, r := range resps {
				if r.StatusCode == 200 {
					answered++
				}
			}
			got := s.upstream()
			if len(got) != answered {
				t.Errorf("upstream saw %d requests %q, proxy answered %v", len(got), got, statuses(resps))
			}
			for _, req := range got {
				if strings.Contains(req, "smuggled") && !strings.HasPrefix(req, "GET /smuggled ") {
					t.Errorf("a request hid in a body: %q", req)
				}
			}
		})
	}
}

func statuses(rs []*http.Response) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.StatusCode)
	}
	return out
}
