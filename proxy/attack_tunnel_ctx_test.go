package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// tunnelUpstream answers by path: a real 101 with an echoing tunnel, or
// ways of answering an upgrade other than a clean switch.
func tunnelUpstream(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/public")
	switch path {
	case "/ws", "/sw-noupgrade", "/sw-other", "/sw-close":
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		switch path {
		case "/ws", "/sw-close":
			fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		case "/sw-noupgrade":
			fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
		case "/sw-other":
			fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
		}
		brw.Flush()
		if path != "/sw-close" {
			io.Copy(conn, brw)
		}
	default:
		io.WriteString(w, "plain answer")
	}
}

// TestFramingNotOffWhileHTTP attacks the framing check's tunnel switch:
// every way of ending up with a connection that Go's server still parses
// after an upgrade attempt (upgrades the upstream answers with a non-101
// or a bad 101, a 101 to a request that asked for none, a 101 then close,
// HEAD/OPTIONS/CONNECT and HTTP/1.0 upgrades, h2c, a refused upgrade, and
// a head with both framing fields pipelined behind the upgrade in one
// write). After each, a head with both framing fields is sent; the proxy's
// server must never have parsed it as a request (it is refused with 400,
// or it went down a tunnel as bytes).
func TestFramingNotOffWhileHTTP(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(tunnelUpstream), withAuthz) // /public/ is public
	// A server per row, each noting the paths it parsed: a head a row
	// left unread cannot be blamed on the next.
	guard := func(t *testing.T) (addr string, parsed func() []string) {
		var mu sync.Mutex
		var paths []string
		inner := f.front.Config.Handler
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			paths = append(paths, r.URL.Path)
			mu.Unlock()
			inner.ServeHTTP(w, r)
		}))
		s.Listener = RefuseAmbiguousFraming(s.Listener)
		s.Start()
		return s.Listener.Addr().String(), func() []string {
			s.Close() // waits for the requests it parsed
			mu.Lock()
			defer mu.Unlock()
			return paths
		}
	}

	var cookie strings.Builder
	for _, c := range f.session {
		fmt.Fprintf(&cookie, "%s=%s; ", c.Name, c.Value)
	}
	const ambiguous = "POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	head := func(line, upgrade string, auth bool) string {
		s := line + "\r\nHost: x\r\n" + upgrade
		if auth {
			s += "Cookie: " + cookie.String() + "\r\n"
		}
		return s + "\r\n"
	}
	const ws = "Connection: Upgrade\r\nUpgrade: websocket\r\n"
	rows := []struct{ name, method, first string }{
		{"upstream answers 200", "GET", head("GET /ok HTTP/1.1", ws, true)},
		{"upstream 101 without Upgrade", "GET", head("GET /sw-noupgrade HTTP/1.1", ws, true)},
		{"upstream 101 to another protocol", "GET", head("GET /sw-other HTTP/1.1", ws, true)},
		{"upstream 101 to a plain request", "GET", head("GET /ws HTTP/1.1", "", true)},
		{"upstream 101 then close", "GET", head("GET /sw-close HTTP/1.1", ws, true)},
		{"tunnel", "GET", head("GET /ws HTTP/1.1", ws, true)},
		{"tunnel, ambiguous head pipelined", "GET", head("GET /ws HTTP/1.1", ws, true) + ambiguous},
		{"200, ambiguous head pipelined", "GET", head("GET /ok HTTP/1.1", ws, true) + ambiguous},
		{"HEAD upgrade", "HEAD", head("HEAD /ws HTTP/1.1", ws, true)},
		{"OPTIONS upgrade", "OPTIONS", head("OPTIONS /ws HTTP/1.1", ws, true)},
		{"CONNECT upgrade", "CONNECT", head("CONNECT x:443 HTTP/1.1", ws, true)},
		{"HTTP/1.0 upgrade, keep-alive", "GET", head("GET /ws HTTP/1.0", "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n", true)},
		{"h2c upgrade", "GET", head("GET /ok HTTP/1.1", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", true)},
		{"anonymous upgrade (refused)", "GET", head("GET /ws HTTP/1.1", ws, false)},
		{"anonymous upgrade, ambiguous head pipelined", "GET", head("GET /ws HTTP/1.1", ws, false) + ambiguous},
		{"public path, upstream answers 200", "GET", head("GET /public/ok HTTP/1.1", ws, false)},
		{"public path, upstream 101 without Upgrade", "GET", head("GET /public/sw-noupgrade HTTP/1.1", ws, false)},
		{"public path tunnel, ambiguous head pipelined", "GET", head("GET /public/ws HTTP/1.1", ws, false) + ambiguous},
		{"public path 200, ambiguous head pipelined", "GET", head("GET /public/ok HTTP/1.1", ws, false) + ambiguous},
		{"forward-auth check with upgrade", "GET", head("GET /auth/check HTTP/1.1", ws+"X-Forwarded-Uri: /ws\r\nX-Forwarded-Host: x\r\n", true)},
		{"forward-auth check with upgrade, anonymous", "GET", head("GET /auth/check HTTP/1.1", ws+"X-Forwarded-Uri: /ws\r\nX-Forwarded-Host: x\r\n", false) + ambiguous},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			addr, parsed := guard(t)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Bounds only a hang; nothing is asserted about time.
			conn.SetDeadline(time.Now().Add(time.Minute))
			if _, err := io.WriteString(conn, row.first); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, &http.Request{Method: row.method})
			if err != nil {
				t.Logf("first answer: %v", err)
			} else {
				t.Logf("first answer: %d", resp.StatusCode)
				if resp.StatusCode != http.StatusSwitchingProtocols {
					io.Copy(io.Discard, resp.Body)
				}
			}
			// The connection may be closed by now; what matters is what
			// the server parsed.
			io.WriteString(conn, ambiguous)
			var buf [64]byte
			io.ReadAtLeast(br, buf[:], 1)
			conn.Close()
			seen := parsed()
			for _, p := range seen {
				if p == "/smuggled" {
					t.Fatalf("the server parsed a head with both framing fields (paths %q)", seen)
				}
			}
		})
	}
}

// TestHijackerOverHTTP2: over HTTP/2 the recorder's Hijack answers an
// error (no panic), and a 101 from the upstream is a 502, not a hang.
func TestHijackerOverHTTP2(t *testing.T) {
	var s statusWriter
	s.ResponseWriter = httptest.NewRecorder() // no Hijack, like HTTP/2's writer
	if _, _, err := s.Hijack(); err == nil {
		t.Fatal("Hijack of a writer that cannot hijack succeeded")
	}
	f := newFixture(t, http.HandlerFunc(tunnelUpstream))
	h2 := httptest.NewUnstartedServer(f.front.Config.Handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	req, _ := http.NewRequest("GET", h2.URL+"/ws", nil)
	for _, c := range f.session {
		req.AddCookie(c)
	}
	resp, err := h2.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 400 {
		t.Fatalf("HTTP/2 request the upstream answers 101: %s %d", resp.Proto, resp.StatusCode)
	}
}

// keepingTracer keeps every request's context (as a tracer, or any code
// holding a request's context after it ended, would) with the user the
// client asked as.
type keepingTracer struct {
	mu   sync.Mutex
	kept []keptCtx
}

type keptCtx struct {
	ctx  context.Context
	want string
}

func (k *keepingTracer) Start(r *http.Request, _ bool) (context.Context, string) {
	return context.WithValue(r.Context(), otherKey{}, "span"), "trace"
}

func (k *keepingTracer) End(r *http.Request, _, _ string, _ int, user string) {
	ctx, cancel := context.WithCancel(r.Context())
	cancel()
	k.mu.Lock()
	k.kept = append(k.kept, keptCtx{ctx, r.URL.Query().Get("who")})
	k.mu.Unlock()
}

func (k *keepingTracer) Fields() []string { return nil }

// TestIdentityStaysWithItsRequest: many concurrent requests of two users,
// over HTTP/1.1 connections and over HTTP/2 streams of one connection,
// with tracing on: each reaches the upstream as its own user, and a
// context derived from a request's and kept after it ended (and was
// cancelled) still answers that request's info, and the tracer's value.
func TestIdentityStaysWithItsRequest(t *testing.T) {
	var mismatches sync.Map
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if who := r.URL.Query().Get("who"); r.Header.Get("X-User") != who {
			mismatches.Store(who+" got "+r.Header.Get("X-User"), true)
		}
	})
	tr := &keepingTracer{}
	f := newFixture(t, up, func(c *Config) { c.Tracer = tr })
	w := httptest.NewRecorder()
	if err := f.store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "bob", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cookies := map[string][]*http.Cookie{"alice": f.session, "bob": w.Result().Cookies()}
	h2 := httptest.NewUnstartedServer(f.front.Config.Handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	h2c := h2.Client()
	h2c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	h2c.Transport.(*http.Transport).MaxConnsPerHost = 1 // one connection: streams

	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who, base, client := "alice", f.front.URL, f.front.Client()
			if i%2 == 1 {
				who = "bob"
			}
			if i%4 >= 2 {
				base, client = h2.URL, h2c
			}
			req, _ := http.NewRequest("GET", base+"/x?who="+who, nil)
			for _, c := range cookies[who] {
				req.AddCookie(c)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if i%4 >= 2 && resp.ProtoMajor != 2 {
				t.Errorf("not HTTP/2: %s", resp.Proto)
			}
		}()
	}
	wg.Wait()
	mismatches.Range(func(k, _ any) bool {
		t.Errorf("upstream saw another request's user: %s", k)
		return true
	})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.kept) != n {
		t.Fatalf("tracer kept %d contexts, want %d", len(tr.kept), n)
	}
	for _, k := range tr.kept {
		info, _ := k.ctx.Value(infoKey{}).(*reqInfo)
		if info == nil || info.sess.User != k.want {
			got := "no info"
			if info != nil {
				got = info.sess.User
			}
			t.Errorf("a kept context of %s's request answers the info of %q", k.want, got)
		}
		if k.ctx.Value(otherKey{}) != "span" {
			t.Errorf("a kept context lost the tracer's value")
		}
		if k.ctx.Err() == nil {
			t.Errorf("a cancelled derived context is not done")
		}
	}
}

// TestClientCancelReachesUpstream: a client that leaves cancels the
// upstream request, over HTTP/1.1 and HTTP/2, with and without tracing
// (the request context is the infoCtx over the server's, or the tracer's).
func TestClientCancelReachesUpstream(t *testing.T) {
	for _, traced := range []bool{false, true} {
		for _, proto := range []string{"HTTP/1.1", "HTTP/2"} {
			t.Run(fmt.Sprintf("%s traced=%v", proto, traced), func(t *testing.T) {
				started, cancelled := make(chan struct{}, 1), make(chan error, 1)
				up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
					started <- struct{}{}
					select {
					case <-r.Context().Done():
						cancelled <- nil
					case <-time.After(time.Minute): // bounds only a broken build
						cancelled <- fmt.Errorf("upstream request never cancelled")
					}
				})
				f := newFixture(t, up, func(c *Config) {
					if traced {
						c.Tracer = &keepingTracer{}
					}
				})
				base, client := f.front.URL, f.front.Client()
				if proto == "HTTP/2" {
					s := httptest.NewUnstartedServer(f.front.Config.Handler)
					s.EnableHTTP2 = true
					s.StartTLS()
					t.Cleanup(s.Close)
					base, client = s.URL, s.Client()
				}
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stream", nil)
				for _, c := range f.session {
					req.AddCookie(c)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				<-started
				cancel()
				if err := <-cancelled; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestLateSweepNeverStopsWhileListed attacks the sweep's re-arming: lists
// go empty and fill again round after round, entries are added while a
// sweep runs, and some are listed not yet due when a sweep finds nothing
// else to do. Every entry left listed must be watched.
func TestLateSweepNeverStopsWhileListed(t *testing.T) {
	var log watchLog
	// tick 1 ms: sweeps run often, and mostly find the entries not due.
	l := newLateList(5*time.Millisecond, log.watch)
	// One at a time: each round the list is empty, then has an entry that
	// is not due at the first sweep.
	for range 50 {
		info := &reqInfo{}
		l.add(info, time.Now())
		waitFor(t, "an entry listed alone is watched", func() bool { return log.count(info) == 1 })
	}
	// Many goroutines adding (some removing again at once) while sweeps run.
	const workers, each = 8, 200
	kept := make([][]*reqInfo, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				info := &reqInfo{}
				l.add(info, time.Now())
				if i%3 == 0 && l.remove(info) {
					continue
				}
				kept[g] = append(kept[g], info)
				if i%17 == 0 {
					time.Sleep(time.Millisecond) // let sweeps empty the list
				}
			}
		}()
	}
	wg.Wait()
	for _, infos := range kept {
		for _, info := range infos {
			waitFor(t, "every entry left listed is watched", func() bool { return log.count(info) == 1 })
		}
	}
	waitFor(t, "the sweep stops when nothing is listed", func() bool { return !l.armed.Load() && l.len() == 0 })
}
