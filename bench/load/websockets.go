package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authproxy/authproxy/proxy"
)

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// serveWebSocket accepts a WebSocket handshake (after the X-User check)
// and echoes every byte back until the proxy closes the connection.
func (u *upstream) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !u.checkUser(r) || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "refused", http.StatusForbidden)
		return
	}
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	u.wsOpen.Add(1)
	defer u.wsOpen.Add(-1)
	_, err = fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	if err == nil {
		_, _ = io.Copy(c, rw.Reader)
	}
}

// socket is a client WebSocket through a proxy.
type socket struct {
	c      net.Conn
	closed atomic.Int64 // unix nanoseconds when the proxy closed it; 0 while open
}

// wsMode measures open WebSockets, first through the bare proxy, then
// through authproxy: RSS and goroutines per socket once every socket is
// open and idle (and authproxy watches each one's session). Then it
// revokes every session behind authproxy's sockets through the admin API
// and waits until each socket is closed, reporting how long after the
// revocation; the target is within the revalidation interval.
func wsMode(ctx context.Context, o options, auth, bare *proc, upAuth, upBare *upstream, _ *redisServer) error {
	if err := raiseFileLimit(3*o.wsCount + 1000); err != nil {
		return err
	}
	var failures []string
	cookies := make([]string, o.wsSessions)
	for i := range cookies {
		var err error
		if cookies[i], err = login(ctx, "http://"+auth.addr, benchUser); err != nil {
			return fmt.Errorf("login %d: %w\n%s", i+1, err, auth.logs)
		}
	}
	settle := proxy.WatchAfter + 2*time.Second
	fmt.Printf("\n== %d WebSockets per proxy over %d sessions of %q; measured %s after the last opened (authproxy watches a response after %s) ==\n",
		o.wsCount, o.wsSessions, benchUser, settle, proxy.WatchAfter)
	fmt.Printf("%-10s %11s %11s %10s %11s %11s\n", "target", "RSS before", "RSS open", "RSS/sock", "goroutines", "gor./sock")
	measure := func(p *proc, up *upstream) ([]*socket, error) {
		time.Sleep(time.Second)
		base := p.status()
		baseG, err := goroutines(p)
		if err != nil {
			return nil, err
		}
		okBefore := up.ok.Load()
		socks, err := openSockets(ctx, p.addr, cookies, o.wsCount)
		if err != nil {
			return socks, fmt.Errorf("%s: %w", p.name, err)
		}
		if got := up.ok.Load() - okBefore; got != int64(len(socks)) {
			failures = append(failures, fmt.Sprintf("%s: the upstream accepted %d handshakes with the right X-User, the client opened %d sockets", p.name, got, len(socks)))
		}
		time.Sleep(settle)
		st := p.status()
		g, err := goroutines(p)
		if err != nil {
			return socks, err
		}
		if n := countClosed(socks); n > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d sockets closed before any revocation", p.name, n))
		}
		fmt.Printf("%-10s %11s %11s %10s %11s %11.2f   (open at the upstream: %d)\n", p.name, mib(base.rss), mib(st.rss),
			kib(float64(st.rss-base.rss)/float64(o.wsCount)), fmt.Sprintf("%d->%d", baseG, g), float64(g-baseG)/float64(o.wsCount), up.wsOpen.Load())
		return socks, nil
	}

	socks, err := measure(bare, upBare)
	for _, s := range socks {
		s.c.Close()
	}
	if err != nil {
		return err
	}
	if socks, err = measure(auth, upAuth); err != nil {
		closeSockets(socks)
		return err
	}
	defer closeSockets(socks)

	// Revoke every session of the user: DELETE /admin/sessions?user=U.
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+auth.metrics+"/admin/sessions?user="+benchUser, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin revoke: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	revoked := time.Now()
	var answer struct{ Revoked int }
	// The sockets' sessions, and the first login's.
	if err := json.Unmarshal(body, &answer); err != nil || resp.StatusCode != http.StatusOK || answer.Revoked < o.wsSessions {
		return fmt.Errorf("admin revoke: %s %s, want 200 and at least %d revoked", resp.Status, body, o.wsSessions)
	}
	bound := proxy.DefaultRevalidate + time.Minute
	fmt.Printf("\nrevoked %d sessions at %s; waiting up to %s for the %d sockets to close ...\n", answer.Revoked, revoked.Format("15:04:05.000"), bound, len(socks))
	for countClosed(socks) < len(socks) && time.Since(revoked) < bound && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	var delays []time.Duration
	for _, s := range socks {
		if at := s.closed.Load(); at != 0 {
			delays = append(delays, time.Unix(0, at).Sub(revoked))
		}
	}
	slices.Sort(delays)
	within := 0
	for _, d := range delays {
		if d <= proxy.DefaultRevalidate {
			within++
		}
	}
	if len(delays) < len(socks) {
		failures = append(failures, fmt.Sprintf("authproxy: %d of %d WebSockets still open %s after their sessions were revoked", len(socks)-len(delays), len(socks), bound))
	}
	var p50, p99, maxD time.Duration
	if len(delays) > 0 {
		p50, p99, maxD = pct(delays, 0.50), pct(delays, 0.99), delays[len(delays)-1]
	}
	fmt.Printf("closed after the revocation: %d of %d; delay p50 %s, p99 %s, max %s; within the revalidation interval (%s): %d\n",
		len(delays), len(socks), p50.Round(time.Millisecond), p99.Round(time.Millisecond), maxD.Round(time.Millisecond), proxy.DefaultRevalidate, within)
	verdict := "met"
	if within < len(socks) {
		verdict = fmt.Sprintf("MISSED: %d sockets later (max %s)", len(socks)-within, maxD.Round(time.Millisecond))
	}
	fmt.Printf("  target all closed within the revalidation interval: %s\n", verdict)
	// The proxy closed its upstream side too.
	for deadline := time.Now().Add(30 * time.Second); upAuth.wsOpen.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := upAuth.wsOpen.Load(); n > 0 {
		failures = append(failures, fmt.Sprintf("authproxy: %d upstream WebSockets still open after the client side closed", n))
	}
	// And a revoked session is refused outright.
	if status, err := oneRequest(auth.addr, buildRequest(auth.addr, "/app/items?page=2", cookies[0])); err != nil || status != http.StatusFound {
		failures = append(failures, fmt.Sprintf("authproxy: a page load with a revoked session answered %d (%v), want 302 to log in", status, err))
	}
	if len(failures) > 0 {
		return fmt.Errorf("FAILED:\n  %s", strings.Join(failures, "\n  "))
	}
	fmt.Println("\nall checks passed")
	return nil
}

func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func countClosed(socks []*socket) int {
	n := 0
	for _, s := range socks {
		if s.closed.Load() != 0 {
			n++
		}
	}
	return n
}

func closeSockets(socks []*socket) {
	for _, s := range socks {
		s.c.Close()
	}
}

// oneRequest sends req on a new connection and returns the status.
func oneRequest(addr string, req []byte) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	status, _, _, err := roundTrip(c, bufio.NewReader(c), req)
	return status, err
}

// openSockets opens n WebSockets to addr, the i-th with the session
// cookies[i%len(cookies)], checks that each echoes a frame end to end, and
// starts a reader on each that notes when the proxy closes it.
func openSockets(ctx context.Context, addr string, cookies []string, n int) ([]*socket, error) {
	socks := make([]*socket, n)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				s, err := openSocket(addr, fmt.Sprintf("/ws/%d", i), cookies[i%len(cookies)])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("socket %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				socks[i] = s
			}
		}()
	}
	wg.Wait()
	var open []*socket
	for _, s := range socks {
		if s != nil {
			open = append(open, s)
		}
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return open, firstErr
}

func openSocket(addr, path, cookies string) (*socket, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*socket, error) { c.Close(); return nil, err }
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n",
		path, addr, key, cookies); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		return fail(fmt.Errorf("handshake answered %s (Sec-WebSocket-Accept %q)", resp.Status, resp.Header.Get("Sec-WebSocket-Accept")))
	}
	// One masked text frame, echoed back byte for byte by the upstream.
	payload := []byte("ping " + path)
	frame := []byte{0x81, 0x80 | byte(len(payload)), 0, 0, 0, 0}
	mask := frame[2:6]
	binary.BigEndian.PutUint32(mask, 0x5a17c3e9)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := c.Write(frame); err != nil {
		return fail(err)
	}
	echo := make([]byte, len(frame))
	if _, err := io.ReadFull(br, echo); err != nil || !bytes.Equal(echo, frame) {
		return fail(fmt.Errorf("echo through the tunnel: %q, %v", echo, err))
	}
	_ = c.SetDeadline(time.Time{})
	s := &socket{c: c}
	go func() {
		_, _ = io.Copy(io.Discard, br)
		s.closed.Store(time.Now().UnixNano())
	}()
	return s, nil
}
