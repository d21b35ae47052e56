package redisstore

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
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

// leaseRenewedAfter waits until b's lease has been renewed by a PING sent
// after mono: b has then applied every announcement published before.
func leaseRenewedAfter(tb testing.TB, b replica, mono int64) {
	tb.Helper()
	waitFor(tb, "b's lease renewed past the revocation", func() bool { return b.cache.until.Load() > mono+int64(lease) })
}

// TestCacheRevokeUserMany: RevokeUser of a user with more sessions than
// one announcement carries (revokeBatch) ends every one of them on the
// other replica, by the lease's promise, with an hour's cache TTL.
func TestCacheRevokeUserMany(t *testing.T) {
	r := startRedis(t)
	a := newReplica(t, r, replicaOpts{cache: 10})
	b := newReplica(t, r, replicaOpts{cache: 3000, cacheTTL: time.Hour})
	waitTrusted(t, b)
	const n = 2*revokeBatch + 7
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = save(t, a.Store, nil, session.Session{User: "many", Expiry: time.Now().Add(time.Hour)})
		if _, err := b.Load(reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.RevokeUser(context.Background(), "many")
	if err != nil || got != n {
		t.Fatalf("RevokeUser = %d, %v; want %d", got, err, n)
	}
	leaseRenewedAfter(t, b, b.cache.mono())
	for i, req := range reqs {
		if _, err := b.Load(req); !isNoSession(err) {
			t.Fatalf("session %d of %d served by b after RevokeUser on a: %v", i, n, err)
		}
	}
}

// TestCacheTicketKey: the cache is keyed by session id but answers only the
// ticket that carries the session's own key; and a ticket cookie sealed with
// a secret removed by SetSecrets (a reload) is refused although its session
// is cached.
func TestCacheTicketKey(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{cache: 100})
	waitTrusted(t, s)
	victim := save(t, s.Store, nil, session.Session{User: "victim", Expiry: time.Now().Add(time.Hour)})
	if _, err := s.Load(victim); err != nil {
		t.Fatal(err)
	}
	id := idOf(t, s, victim)
	forge := func(tk string) *http.Request {
		t.Helper()
		v, err := securecookie.EncodeMulti(cookieName, ticketCookie{Ticket: tk, Expiry: time.Now().Add(time.Hour)}, s.keys.Load().codecs...)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: cookieName, Value: v})
		return req
	}
	other := newTicket()
	zero := ticket{id: id}
	flip := newTicket()
	vt, _ := s.ticket(victim)
	flip.key = vt.key
	flip.key[0] ^= 1
	for name, tk := range map[string]string{
		"victim id, another key":        id + other.String()[idLen:],
		"victim id, zero key":           zero.String(),
		"victim id, key off by one bit": id + ticket{key: flip.key}.String(),
	} {
		if got, err := s.Load(forge(tk)); !isNoSession(err) {
			t.Errorf("%s: Load = %+v, %v; want ErrNoSession", name, got, err)
		}
	}
	if _, err := s.Load(victim); err != nil {
		t.Fatalf("the victim's own ticket after the forgeries: %v", err)
	}
	// A reload that removes the secret the cookie was sealed with.
	if err := s.SetSecrets([][]byte{secret(9)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(victim); !isNoSession(err) {
		t.Errorf("a ticket cookie sealed with a removed secret, its session cached: Load = %v, want ErrNoSession", err)
	}
}

// lostReply makes the next pipeline starting with an UNLINK run in Redis
// but fail as if its connection had been reset before the replies came
// back: the deletions happened, the caller sees an error.
type lostReply struct{ armed *atomic.Bool }

func (h lostReply) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h lostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h lostReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 0 && cmds[0].Name() == "unlink" && h.armed.CompareAndSwap(true, false) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
}

// TestCacheRevocationReplyLost: a revocation whose deletions ran in Redis
// although the revoking call failed (its reply lost) must still be
// announced. Otherwise the other replicas keep serving the deleted session
// from their caches until the cache TTL, while a retry finds nothing to
// revoke (RevokeUser: the index is gone too; 404 at the admin API) and so
// announces nothing either.
func TestCacheRevocationReplyLost(t *testing.T) {
	r := startRedis(t)
	for _, kind := range []string{"Revoke", "RevokeUser", "Logout"} {
		t.Run(kind, func(t *testing.T) {
			var armed atomic.Bool
			ac := r.Client(t)
			ac.AddHook(lostReply{&armed})
			a := newReplica(t, r, replicaOpts{cache: 10, client: ac})
			b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour})
			waitTrusted(t, b)
			user := "lost-reply-" + kind
			req := save(t, a.Store, nil, session.Session{User: user, Expiry: time.Now().Add(time.Hour)})
			if _, err := b.Load(req); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			ctx := context.Background()
			var err error
			switch kind {
			case "Revoke":
				err = a.Revoke(ctx, idOf(t, a, req))
			case "RevokeUser":
				_, err = a.RevokeUser(ctx, user)
			case "Logout":
				err = a.Logout(httptest.NewRecorder(), req)
			}
			if err == nil || armed.Load() {
				t.Fatalf("%s with its reply lost = %v, want an error", kind, err)
			}
			if n := r.Client(t).Exists(ctx, a.sessionKey(idOf(t, a, req))).Val(); n != 0 {
				t.Fatalf("the session is still in Redis")
			}
			// The operator retries, as the error asks.
			if kind == "RevokeUser" {
				if n, err := a.RevokeUser(ctx, user); err != nil || n != 0 {
					t.Fatalf("RevokeUser again = %d, %v; want 0 (already deleted)", n, err)
				}
			}
			leaseRenewedAfter(t, b, b.cache.mono())
			if _, err := b.Load(req); !isNoSession(err) {
				t.Fatalf("b serves a session deleted from Redis by a %s whose reply was lost: %v", kind, err)
			}
		})
	}
}

// TestCacheTTLWallClockJump: CacheTTL bounds an entry on the monotonic
// clock, so a wall clock (Config.Now) set back an hour after the fill does
// not keep a session deleted outside authproxy (an operator's DEL, no
// announcement) for that hour. Jumps forward are covered too: the entry
// then simply looks ended and Redis decides.
func TestCacheTTLWallClockJump(t *testing.T) {
	r := startRedis(t)
	for _, jump := range []time.Duration{-time.Hour, time.Minute} {
		t.Run(jump.String(), func(t *testing.T) {
			clk := newClock()
			s := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: 200 * time.Millisecond, clock: clk.Now})
			waitTrusted(t, s)
			req := save(t, s.Store, nil, session.Session{User: "jump", Expiry: clk.Now().Add(3 * time.Hour)})
			if _, err := s.Load(req); err != nil {
				t.Fatal(err)
			}
			clk.Add(jump)
			if n := r.Client(t).Del(context.Background(), s.sessionKey(idOf(t, s, req))).Val(); n != 1 {
				t.Fatalf("DEL = %d", n)
			}
			waitFor(t, "the cached copy of a session deleted in Redis to expire", func() bool {
				_, err := s.Load(req)
				return isNoSession(err)
			})
		})
	}
}

// TestCacheSubscriberOverflow: a subscriber that Redis drops for its
// output buffer (a slow replica; here a limit below one announcement of
// revokeBatch ids) loses the messages queued for it; it must not trust its
// cache afterwards, and every session RevokeUser ended is refused on it.
//
// Whether Redis drops the subscriber depends on how much output waits for
// it when it checks (its first 16 kB of replies are not counted), so the
// scenario runs again, on a fresh Redis, until Redis did; every run must
// refuse every revoked session.
func TestCacheSubscriberOverflow(t *testing.T) {
	const attempts = 20
	for i := range attempts {
		if subscriberOverflow(t) {
			return
		}
		t.Logf("attempt %d: Redis dropped no subscriber for its output buffer; again", i+1)
	}
	t.Errorf("Redis dropped no subscriber for its output buffer in %d attempts; the test did not test that", attempts)
}

// subscriberOverflow runs the scenario once and reports whether Redis
// dropped a subscriber for its output buffer.
func subscriberOverflow(t *testing.T) bool {
	r := startRedisWith(t, "--client-output-buffer-limit", "pubsub 2kb 1kb 1")
	a := newReplica(t, r, replicaOpts{cache: 10})
	b := newReplica(t, r, replicaOpts{cache: 1000, cacheTTL: time.Hour})
	waitTrusted(t, b)
	const n = revokeBatch + 3
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = save(t, a.Store, nil, session.Session{User: "overflow", Expiry: time.Now().Add(time.Hour)})
		if _, err := b.Load(reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := a.RevokeUser(context.Background(), "overflow"); err != nil || got != n {
		t.Fatalf("RevokeUser = %d, %v; want %d", got, err, n)
	}
	leaseRenewedAfter(t, b, b.cache.mono())
	for i, req := range reqs {
		if _, err := b.Load(req); !isNoSession(err) {
			t.Fatalf("session %d of %d served by b after RevokeUser on a: %v", i, n, err)
		}
	}
	return strings.Contains(r.log(), "overcoming of output buffer limits")
}

// TestCacheClusterReplicaReads: a Cluster client that may subscribe on a
// replica is refused with the cache: there an announcement arrives over the
// cluster bus after PUBLISH has answered, outside the PING lease.
func TestCacheClusterReplicaReads(t *testing.T) {
	for _, o := range []redis.ClusterOptions{{ReadOnly: true}, {RouteByLatency: true}, {RouteRandomly: true}} {
		o.Addrs = []string{"127.0.0.1:1"}
		c := redis.NewClusterClient(&o)
		t.Cleanup(func() { c.Close() })
		cfg := replicaOpts{cache: 10, client: c}.config()
		if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("New with a Cluster client %+v and a cache = %v, want an error about replicas", o, err)
		}
	}
}
