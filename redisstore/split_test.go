package redisstore

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/session"
)

// stallRelay is a TCP relay to a real redis-server that, once armed,
// delivers the next pub/sub message it carries to the client in two parts:
// the first cut bytes of the message, then, after stall, the rest. That is
// what a lost TCP segment in the middle of a message looks like to the
// reader (the retransmission comes an RTO, 200 ms or more, later).
type stallRelay struct {
	ln    net.Listener
	to    string
	stall time.Duration
	cut   int // bytes of the message delivered before the stall
	armed atomic.Bool
	// stalled counts the messages delivered in two parts.
	stalled atomic.Int64
}

func newStallRelay(tb testing.TB, to string, stall time.Duration, cut int) *stallRelay {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &stallRelay{ln: ln, to: to, stall: stall, cut: cut}
	var wg sync.WaitGroup
	tb.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				_ = c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { defer wg.Done(); s.down(c, up); _ = c.Close() }()
		}
	}()
	return s
}

func (s *stallRelay) Addr() string { return s.ln.Addr().String() }

// down copies Redis's replies to the client, splitting one message when armed.
func (s *stallRelay) down(c, up net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			b := buf[:n]
			if i := bytes.Index(b, []byte("$7\r\nmessage\r\n")); i >= 4 && s.armed.CompareAndSwap(true, false) {
				at := i - 4 + s.cut // the message starts with its 4-byte header (*3 or >3)
				if _, err := c.Write(b[:at]); err != nil {
					return
				}
				time.Sleep(s.stall)
				s.stalled.Add(1)
				b = b[at:]
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestCacheMessageSplitByNetwork: an invalidation that reaches the
// subscriber in two parts, the second later than the subscription's read
// timeout (a TCP segment lost and retransmitted), must still end the
// session on that replica, or make it stop trusting its cache. go-redis
// keeps a connection after a read timeout, with the message half read: what
// follows is then parsed out of step (a bulk string is taken for a PONG),
// the invalidation is lost without an error, and the lease goes on being
// renewed. The check is the lease's own promise: once a PING sent after the
// revocation returned has been answered, the revoked session is refused.
func TestCacheMessageSplitByNetwork(t *testing.T) {
	r := startRedis(t)
	for _, cut := range []int{1, 4, 4 + 13, 4 + 13 + 21} { // in the header, after it, after "message", after the channel
		t.Run("", func(t *testing.T) {
			relay := newStallRelay(t, r.Addr(), 3*pingEvery, cut)
			bc := redis.NewUniversalClient(&redis.UniversalOptions{
				Addrs: []string{relay.Addr()}, ContextTimeoutEnabled: true, DialTimeout: time.Second,
			})
			t.Cleanup(func() { bc.Close() })
			a := newReplica(t, r, replicaOpts{cache: 100})
			b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour, client: bc})
			waitTrusted(t, b)
			req := save(t, a.Store, nil, session.Session{User: "split", Expiry: time.Now().Add(time.Hour)})
			for range 2 {
				if _, err := b.Load(req); err != nil {
					t.Fatal(err)
				}
			}
			relay.armed.Store(true)
			if err := a.Revoke(context.Background(), idOf(t, a, req)); err != nil {
				t.Fatal(err)
			}
			revoked := b.cache.mono()
			waitFor(t, "the split message", func() bool { return relay.stalled.Load() == 1 })
			// Renewed by a PING sent after the revocation: b has heard it.
			waitFor(t, "b's lease renewed after the revocation", func() bool {
				return b.cache.until.Load() > revoked+int64(lease)
			})
			if _, err := b.Load(req); !isNoSession(err) {
				t.Fatalf("b.Load of a session revoked on a, after b's lease was renewed past the revocation = %v, want ErrNoSession", err)
			}
		})
	}
}
