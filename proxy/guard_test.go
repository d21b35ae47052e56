package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawExchange writes raw on a new connection to addr and reads one
// response; writeMore, when set, runs after raw is written (a slow body).
func rawExchange(t *testing.T, addr, raw string, writeMore func(net.Conn)) (*http.Response, *bufio.Reader, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	if writeMore != nil {
		go writeMore(conn)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%q: no response: %v", raw, err)
	}
	return resp, br, conn
}

// upgrader is an upstream that switches to whatever protocol it is asked
// for (as an h2c-capable server would) and records what it saw.
type upgrader struct {
	mu   sync.Mutex
	seen []http.Header
}

func (u *upgrader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Header.Clone())
	u.mu.Unlock()
	if up := r.Header.Get("Upgrade"); up != "" {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\ntunnel open\n", up)
		brw.Flush()
		io.Copy(conn, brw)
		return
	}
	io.WriteString(w, "plain")
}

func (u *upgrader) requests() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen...)
}

// TestUpgrades: only WebSocket upgrades pass, and only from the proxy's own
// site or a listed origin; h2c or any other protocol is refused on every
// path before it reaches the upstream, and HTTP2-Settings never does.
func TestUpgrades(t *testing.T) {
	up := &upgrader{}
	f := newFixture(t, up, withAuthz, func(c *Config) { c.WebSocketOrigins = []string{"https://Partner.example/"} })
	addr := f.front.Listener.Addr().String()
	cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
	self := "http://" + addr
	tests := []struct {
		name, path, headers string
		session             bool
		status              int
	}{
		{"websocket", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n", true, 101},
		{"websocket, other case", "/ws", "Connection: upgrade\r\nUpgrade: WebSocket\r\n", true, 101},
		{"websocket from the own site", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: " + self + "\r\n", true, 101},
		{"websocket from a listed origin", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: https://partner.example\r\n", true, 101},
		{"websocket on a public path", "/public/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n", false, 101},
		{"websocket, anonymous", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n", false, 401},
		{"h2c", "/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", true, 400},
		{"h2c on a public path", "/public/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", false, 400},
		{"h2c, anonymous", "/x", "Connection: Upgrade\r\nUpgrade: h2c\r\n", false, 400},
		{"h2c without Connection", "/x", "Upgrade: h2c\r\n", true, 400},
		{"list with websocket", "/ws", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n", true, 400},
		{"two Upgrade headers", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n", true, 400},
		{"TLS upgrade", "/x", "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n", true, 400},
		{"websocket with a version", "/ws", "Connection: Upgrade\r\nUpgrade: websocket/13\r\n", true, 400},
		{"empty Upgrade", "/ws", "Connection: Upgrade\r\nUpgrade: \r\n", true, 400},
		{"cross-site websocket", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: https://evil.example\r\n", true, 403},
		{"cross-site websocket, public path", "/public/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: https://evil.example\r\n", false, 403},
		{"websocket from a null origin", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: null\r\n", true, 403},
		{"websocket from a look-alike origin", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: https://partner.example.evil.example\r\n", true, 403},
		{"websocket from the own host with userinfo", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: http://evil@" + addr + "\r\n", true, 403},
		{"websocket from a suffix of the own host", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: http://x" + addr + "\r\n", true, 403},
		{"websocket with two origins", "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nOrigin: " + self + "\r\nOrigin: https://evil.example\r\n", true, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.requests())
			raw := "GET " + tt.path + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: application/json\r\n" + tt.headers
			if tt.session {
				raw += cookieLine
			}
			resp, br, _ := rawExchange(t, addr, raw+"\r\n", nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			reached := len(up.requests()) > before
			if tt.status == 101 {
				if line, err := br.ReadString('\n'); err != nil || line != "tunnel open\n" {
					t.Errorf("tunnel: %q, %v", line, err)
				}
			} else if reached {
				t.Errorf("the upstream saw the refused upgrade: %v", up.requests()[before])
			}
		})
	}

	// HTTP2-Settings alone, in any spelling, never reaches the upstream.
	before := len(up.requests())
	resp, _, _ := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: "+addr+"\r\n"+cookieLine+
		"HTTP2-Settings: AAMAAABk\r\nhttp2_settings: AAMAAABk\r\nHttp2.Settings: AAMAAABk\r\n\r\n", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("plain request with HTTP2-Settings: status %d", resp.StatusCode)
	}
	for _, h := range up.requests()[before:] {
		for name := range h {
			if NormalizeHeader(name) == "http2-settings" {
				t.Errorf("the upstream saw %s", name)
			}
		}
	}
}

// TestCrossSiteWebSocketPublicHost: with a public host configured, the
// handshake's Origin is compared with it, not with the Host header.
func TestCrossSiteWebSocketPublicHost(t *testing.T) {
	f := newFixture(t, &upgrader{}, func(c *Config) { c.PublicHost = "app.example" })
	addr := f.front.Listener.Addr().String()
	cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
	for origin, want := range map[string]int{
		"https://app.example":      101,
		"https://APP.example":      101,
		"http://" + addr:           403, // the Host header's, which a client chooses
		"https://app.example:8443": 403,
		"https://evil.example":     403,
	} {
		resp, _, _ := rawExchange(t, addr, "GET /ws HTTP/1.1\r\nHost: "+addr+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nOrigin: "+origin+"\r\n"+cookieLine+"\r\n", nil)
		if resp.StatusCode != want {
			t.Errorf("Origin %s: status %d, want %d", origin, resp.StatusCode, want)
		}
	}
}

// TestRefusedBeforeAuth: CONNECT, TRACE and absolute-form targets for
// another host are refused before routing, authentication or the upstream.
func TestRefusedBeforeAuth(t *testing.T) {
	for _, publicHost := range []string{"", "app.example"} {
		f := newFixture(t, &recorder{}, func(c *Config) { c.PublicHost = publicHost })
		addr := f.front.Listener.Addr().String()
		cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
		tests := []struct {
			line   string
			status int
		}{
			{"CONNECT app.example:443 HTTP/1.1", 405},
			{"CONNECT 127.0.0.1:22 HTTP/1.1", 405},
			{"TRACE / HTTP/1.1", 405},
			{"TRACE /auth/login HTTP/1.1", 405},
			{"TRACE /healthz HTTP/1.1", 405},
			{"GET http://evil.example/x HTTP/1.1", 400},
			{"GET https://evil.example/auth/login HTTP/1.1", 400},
			{"GET http://app.example@evil.example/x HTTP/1.1", 400},
			{"GET http://evil.example:80/x HTTP/1.1", 400},
			{"GET ftp://app.example/x HTTP/1.1", 400},
			{"GET A://App.eXAmple/ HTTP/1.1", 400},
			{"GET ws://app.example/x HTTP/1.1", 400},
			{"GET //evil.example/x HTTP/1.1", 307}, // a path: the router cleans it
		}
		if publicHost != "" {
			tests = append(tests, struct {
				line   string
				status int
			}{"GET http://app.example/x HTTP/1.1", 200}, struct {
				line   string
				status int
			}{"GET http://APP.example/x HTTP/1.1", 200}, struct {
				line   string
				status int
			}{"GET http://app.example.evil.example/x HTTP/1.1", 400})
		} else {
			tests = append(tests, struct {
				line   string
				status int
			}{"GET http://app.example/x HTTP/1.1", 400})
		}
		for _, tt := range tests {
			before := f.upstream.count()
			resp, _, _ := rawExchange(t, addr, tt.line+"\r\nHost: app.example\r\n"+cookieLine+"Connection: close\r\n\r\n", nil)
			if resp.StatusCode != tt.status {
				t.Errorf("public host %q, %s: status %d, want %d", publicHost, tt.line, resp.StatusCode, tt.status)
			}
			if tt.status != 200 && f.upstream.count() != before {
				t.Errorf("public host %q, %s reached the upstream", publicHost, tt.line)
			}
		}
	}
}

// TestBodyBounds: where nobody has logged in yet (/auth/ and public
// paths), a request body is bounded in size and in time; a logged-in
// user's is not.
func TestBodyBounds(t *testing.T) {
	var authErr sync.Map // path -> error the auth handler got reading the body
	up := &bodyRecorder{}
	f := newFixture(t, up, withAuthz, func(c *Config) {
		c.bodyTimeout = 2 * time.Second
		c.Auth = authFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.Copy(io.Discard, r.Body)
			authErr.Store(r.URL.Path, err)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusTeapot)
		})
	})
	addr := f.front.Listener.Addr().String()
	cookieLine := "Cookie: " + f.session[0].Name + "=" + f.session[0].Value + "\r\n"
	big := strings.Repeat("x", PublicBodyLimit+1)
	chunked := func(body string) string {
		return fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	}
	stall := func(conn net.Conn) { io.WriteString(conn, "0123456789") } // then nothing
	tests := []struct {
		name      string
		head      string // request line and headers, up to the body
		more      func(net.Conn)
		status    int
		forwarded bool // a complete body reached the upstream
	}{
		{"auth, announced too large", "POST /auth/callback HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", nil, 413, false},
		{"auth, chunked too large", "POST /auth/callback HTTP/1.1\r\n" + chunked(strings.Repeat("x", AuthBodyLimit+1)), nil, 400, false},
		{"auth, slow", "POST /auth/backchannel-logout HTTP/1.1\r\nContent-Length: 100\r\n\r\n", stall, 400, false},
		{"auth, small", "POST /auth/logout HTTP/1.1\r\nContent-Length: 5\r\n\r\nstate", nil, 418, false},
		{"public, announced too large", "POST /public/hook HTTP/1.1\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n", nil, 413, false},
		{"public, chunked too large", "POST /public/hook HTTP/1.1\r\n" + chunked(big), nil, 413, false},
		{"public, slow", "POST /public/hook HTTP/1.1\r\nContent-Length: 100\r\n\r\n", stall, 408, false},
		{"public, small", "POST /public/hook HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", nil, 200, true},
		{"logged in, large", "POST /data HTTP/1.1\r\n" + cookieLine + chunked(big), nil, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.complete()
			line, rest, _ := strings.Cut(tt.head, "\r\n")
			head, body, _ := strings.Cut(rest, "\r\n\r\n")
			more := tt.more
			if more == nil && len(body) > 0 {
				// Written while the answer is read: the proxy may answer
				// and close before the whole body is in.
				more = func(c net.Conn) { io.WriteString(c, body) }
			}
			resp, _, _ := rawExchange(t, addr, line+"\r\nHost: "+addr+"\r\nAccept: application/json\r\n"+head+"\r\n\r\n", more)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := up.complete() > before; got != tt.forwarded {
				t.Errorf("a complete body reached the upstream: %v, want %v", got, tt.forwarded)
			}
		})
	}
	for _, path := range []string{"/auth/callback", "/auth/backchannel-logout"} {
		if err, _ := authErr.Load(path); err == nil {
			t.Errorf("%s: the auth handler read the oversized or stalled body without an error", path)
		}
	}
}

// bodyRecorder counts the requests whose body it read completely.
type bodyRecorder struct {
	mu sync.Mutex
	n  int
}

func (b *bodyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		panic(http.ErrAbortHandler) // no answer to a broken request
	}
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
}

func (b *bodyRecorder) complete() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
