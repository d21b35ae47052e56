package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// revokedSockets is how many WebSockets TestWebSocketsClosedOnRevocation
// opens for the user whose sessions it revokes: the full 1,000.
// (Idle sockets cost the test process two goroutines and two descriptors
// each, and the proxy a session check per revalidation interval: light
// enough for -race on two shared cores.)
const revokedSockets = 1000

// keptSockets are opened for another user, whose session stays valid.
const keptSockets = 20

// TestWebSocketsClosedOnRevocation opens 1,000 WebSockets through two Redis
// replicas (A and B, alternately) for one user logged in from three
// browsers, and 20 for another user, then revokes all of the first user's
// sessions through A's admin API.
//
//   - Every socket carries data both ways before (an echo through the
//     upstream), and none is closed before the revocation.
//   - After it, every one of the 1,000 is closed by the proxy, client side
//     and upstream side: polled with a generous bound (a hang, not a
//     speed, fails the test); the delays are logged, not asserted. The
//     proxy checks a long response's session every revalidation interval
//     (proxy.DefaultRevalidate), so they fall within about that.
//   - The other user's 20 sockets stay open and still echo.
func TestWebSocketsClosedOnRevocation(t *testing.T) {
	token := randomToken(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ws := &wsUpstream{}
	rs := newReplicaSet(t, replicaOptions{
		Replicas: []replicaSpec{
			{Name: "a", Env: map[string]string{"AUTHPROXY_METRICS_ADDR": metricsAddr, "AUTHPROXY_ADMIN_TOKEN": token}},
			{Name: "b"},
		},
		Upstream: ws.handler,
	})
	admin := &adminClient{t: t, c: rawClient(t), base: "http://" + metricsAddr, token: token}
	const revokedUser, keptUser = "ws-revoked-user", "ws-kept-user"

	login := func(user string, i int) *http.Cookie {
		b := newBrowser(t, rs.PKI)
		start := rs.URL("a", fmt.Sprintf("/login?user=%s&browser=%d", user, i))
		if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start {
			t.Fatalf("%s, browser %d: login landed on %d %s; hops:\n%s", user, i, p.Status, p.URL, b.HopsString())
		}
		return sessionCookie(t, b, rs)
	}
	revokedCookies := []*http.Cookie{login(revokedUser, 1), login(revokedUser, 2), login(revokedUser, 3)}
	keptCookie := login(keptUser, 1)

	open := func(n int, user string, cookies []*http.Cookie) []*wsClient {
		socks := make([]*wsClient, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 16)
		for i := range socks {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				replica := []string{"a", "b"}[i%2]
				s, err := dialWebSocket(rs.Proxy[replica].URL.Host, fmt.Sprintf("/ws?user=%s&n=%d", user, i), cookies[i%len(cookies)])
				if err != nil {
					errs <- fmt.Errorf("%s socket %d through %s: %w", user, i, replica, err)
					return
				}
				socks[i] = s
			}()
		}
		wg.Wait()
		close(errs)
		t.Cleanup(func() {
			for _, s := range socks {
				if s != nil {
					s.c.Close()
				}
			}
		})
		if err := <-errs; err != nil {
			t.Fatalf("open WebSockets (%d failed): %v", len(errs)+1, err)
		}
		return socks
	}
	revokedSocks := open(revokedSockets, revokedUser, revokedCookies)
	keptSocks := open(keptSockets, keptUser, []*http.Cookie{keptCookie})
	if got, want := ws.accepted(revokedUser), revokedSockets; got != want {
		t.Fatalf("the upstream accepted %d WebSockets with X-User %s, want %d", got, revokedUser, want)
	}
	if n := ws.refused.Load(); n != 0 {
		t.Fatalf("the upstream saw %d handshakes with a wrong or missing X-User", n)
	}
	if n := closedCount(revokedSocks) + closedCount(keptSocks); n != 0 {
		t.Fatalf("%d WebSockets closed before any revocation", n)
	}

	a := admin.call(http.MethodDelete, "/admin/sessions?user="+revokedUser, "Bearer "+token)
	revoked := time.Now()
	if a.Status != http.StatusOK || !strings.Contains(a.Body, `"revoked":3`) {
		t.Fatalf("DELETE /admin/sessions?user=%s: status %d, want 200 revoked 3; body:\n%s", revokedUser, a.Status, a.Body)
	}

	// Every revoked socket closes: bounded by a hang, not by speed.
	deadline := revoked.Add(revalidateEvery + hangTimeout)
	for closedCount(revokedSocks) < len(revokedSocks) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(revokedSocks) - closedCount(revokedSocks); n > 0 {
		t.Fatalf("%d of %d WebSockets of the revoked sessions still open %s after the revocation", n, len(revokedSocks), time.Since(revoked).Round(time.Second))
	}
	var delays []time.Duration
	for _, s := range revokedSocks {
		delays = append(delays, time.Unix(0, s.closed.Load()).Sub(revoked))
	}
	slices.Sort(delays)
	t.Logf("%d WebSockets closed after the revocation: delay min %s, p50 %s, p99 %s, max %s (revalidation interval %s; not asserted)",
		len(delays), delays[0].Round(time.Millisecond), delays[len(delays)/2].Round(time.Millisecond),
		delays[len(delays)*99/100].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond), revalidateEvery)

	// The upstream's side of each is closed too.
	for time.Now().Before(deadline) && ws.open.Load() > keptSockets {
		time.Sleep(100 * time.Millisecond)
	}
	if n := ws.open.Load(); n != keptSockets {
		t.Errorf("the upstream has %d WebSockets open, want the %d of %s: the proxy closed the client's side only", n, keptSockets, keptUser)
	}

	// The other user's sockets are untouched.
	if n := closedCount(keptSocks); n != 0 {
		t.Fatalf("%d of %s's %d WebSockets closed, though that session was not revoked", n, keptUser, keptSockets)
	}
	for i, s := range keptSocks {
		if err := s.echo([]byte(fmt.Sprintf("still here %d", i))); err != nil {
			t.Errorf("%s socket %d after the revocation: %v", keptUser, i, err)
		}
	}
	checkLoggedOut(t, rs, admin.c, "b", "/after-ws?step=revoked", revokedCookies[0])
}

// wsUpstream adds /ws to the recording upstream: a WebSocket handshake,
// accepted when X-User is set, then an echo of every byte until the proxy
// closes the connection.
type wsUpstream struct {
	mu      sync.Mutex
	byUser  map[string]int
	open    atomic.Int64
	refused atomic.Int64
}

func (u *wsUpstream) accepted(user string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byUser[user]
}

func (u *wsUpstream) handler(rec *recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			rec.serveHTTP(w, r)
			return
		}
		user := r.Header.Get("X-User")
		if user == "" || user != r.URL.Query().Get("user") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			u.refused.Add(1)
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		u.mu.Lock()
		if u.byUser == nil {
			u.byUser = map[string]int{}
		}
		u.byUser[user]++
		u.mu.Unlock()
		u.open.Add(1)
		defer u.open.Add(-1)
		if _, err := fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			webSocketAccept(r.Header.Get("Sec-WebSocket-Key"))); err != nil {
			return
		}
		_, _ = io.Copy(c, rw.Reader)
	})
}

func webSocketAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsClient is a WebSocket opened through the proxy; a reader notes when
// the proxy closes it.
type wsClient struct {
	c      net.Conn
	echoes chan []byte  // what came back, frame by frame, while open
	closed atomic.Int64 // unix nanoseconds when it was closed; 0 while open
}

// dialWebSocket opens path on addr with cookie, as a page of the proxy's
// own origin would, and checks that a frame comes back through the tunnel.
func dialWebSocket(addr, path string, cookie *http.Cookie) (*wsClient, error) {
	c, err := net.DialTimeout("tcp", addr, hangTimeout)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = c.SetDeadline(time.Now().Add(hangTimeout))
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: http://%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nCookie: %s=%s\r\n\r\n", path, addr, addr, key, cookie.Name, cookie.Value)
	br := bufio.NewReader(c)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, nil)
	}
	if err == nil && (resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != webSocketAccept(key)) {
		err = fmt.Errorf("handshake answered %s, Sec-WebSocket-Accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	s := &wsClient{c: c, echoes: make(chan []byte, 4)}
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				select {
				case s.echoes <- bytes.Clone(buf[:n]):
				default:
				}
			}
			if err != nil {
				s.closed.Store(time.Now().UnixNano())
				close(s.echoes)
				return
			}
		}
	}()
	if err := s.echo([]byte("hello " + path)); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// echo sends payload as one masked text frame and waits for the same bytes
// back (the upstream echoes bytes, not frames).
func (s *wsClient) echo(payload []byte) error {
	if len(payload) > 125 {
		return fmt.Errorf("payload of %d bytes: one short frame only", len(payload))
	}
	mask := [4]byte{0x3c, 0xa1, 0x5e, 0x07}
	frame := append([]byte{0x81, 0x80 | byte(len(payload))}, mask[:]...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := s.c.Write(frame); err != nil {
		return err
	}
	var got []byte
	timeout := time.After(hangTimeout)
	for len(got) < len(frame) {
		select {
		case b, ok := <-s.echoes:
			if !ok {
				return fmt.Errorf("closed after %d of %d echoed bytes", len(got), len(frame))
			}
			got = append(got, b...)
		case <-timeout:
			return fmt.Errorf("no echo within %s", hangTimeout)
		}
	}
	if !bytes.Equal(got, frame) {
		return fmt.Errorf("echoed %q, want %q", got, frame)
	}
	return nil
}

func closedCount(socks []*wsClient) int {
	n := 0
	for _, s := range socks {
		if s.closed.Load() != 0 {
			n++
		}
	}
	return n
}
