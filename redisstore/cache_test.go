package redisstore

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/session"
)

// hang bounds every wait of these tests: only a store that never gets there
// fails it, whatever the machine's load.
const hang = 2 * time.Minute

// waitFor polls cond until it holds, failing the test after hang.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("still waiting after %v: %s", hang, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitTrusted waits until s's cache holds a lease: hits are allowed.
func waitTrusted(tb testing.TB, s replica) {
	tb.Helper()
	waitFor(tb, "the cache's lease", s.cache.trusted)
}

// gets counts the GETs a client sends, and can run a function right after
// a GET has been answered (before its caller sees the answer).
type gets struct {
	n     atomic.Int64
	mu    sync.Mutex
	after func()
}

func (g *gets) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *gets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "get" {
			g.n.Add(1)
			g.mu.Lock()
			after := g.after
			g.mu.Unlock()
			if after != nil {
				after()
			}
		}
		return err
	}
}
func (g *gets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (g *gets) setAfter(f func()) {
	g.mu.Lock()
	g.after = f
	g.mu.Unlock()
}

// counted returns a client of r whose GETs g counts.
func counted(tb testing.TB, r *testRedis) (redis.UniversalClient, *gets) {
	c := r.Client(tb)
	g := &gets{}
	c.AddHook(g)
	return c, g
}

func idOf(tb testing.TB, s replica, req *http.Request) string {
	tb.Helper()
	tk, err := s.ticket(req)
	if err != nil {
		tb.Fatal(err)
	}
	return tk.id
}

// TestCacheHit: once a session is cached and the lease holds, Load sends
// nothing to Redis; without the cache, one GET per Load.
func TestCacheHit(t *testing.T) {
	r := startRedis(t)
	for _, size := range []int{0, 100} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			client, g := counted(t, r)
			s := newReplica(t, r, replicaOpts{cache: size, client: client, idle: time.Hour})
			if size > 0 {
				waitTrusted(t, s)
			}
			sess := bigSession(time.Now())
			sess.IDToken, sess.Claims, sess.AccessToken = idToken(900), nil, ""
			req := save(t, s.Store, nil, sess)
			g.n.Store(0)
			const loads = 100
			for range loads {
				got, err := s.Load(req)
				if err != nil {
					t.Fatal(err)
				}
				if got.IDToken != sess.IDToken || got.ID == "" {
					t.Fatalf("Load = %+v", got)
				}
			}
			want := int64(loads)
			if size > 0 {
				want = 1 // the first Load fills the cache
			}
			if n := g.n.Load(); n != want {
				t.Errorf("%d GETs for %d Loads, want %d", n, loads, want)
			}
			// A session too large is read each time.
			if size > 0 {
				big := save(t, s.Store, nil, bigSession(time.Now()))
				g.n.Store(0)
				for range 3 {
					if _, err := s.Load(big); err != nil {
						t.Fatal(err)
					}
				}
				if n := g.n.Load(); n != 3 {
					t.Errorf("a session over %d bytes: %d GETs for 3 Loads, want 3", maxCachedEntry, n)
				}
			}
		})
	}
}

// revokers are the ways a session ends on another replica: each returns
// when its call has returned.
func revokers(t *testing.T, a replica) []struct {
	name   string
	revoke func(req *http.Request)
} {
	ctx := context.Background()
	return []struct {
		name   string
		revoke func(req *http.Request)
	}{
		{"logout", func(req *http.Request) {
			if err := a.Logout(httptest.NewRecorder(), req); err != nil {
				t.Error(err)
			}
		}},
		{"admin revoke", func(req *http.Request) {
			if err := a.Revoke(ctx, idOf(t, a, req)); err != nil {
				t.Error(err)
			}
		}},
		{"revoke user", func(req *http.Request) {
			sess, err := a.Load(req)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := a.RevokeUser(ctx, sess.User); err != nil || n != 1 {
				t.Errorf("RevokeUser = %d, %v", n, err)
			}
		}},
		{"back-channel logout (sid)", func(req *http.Request) {
			sess, err := a.Load(req)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := a.RevokeSID(ctx, sess.SID); err != nil || n != 1 {
				t.Errorf("RevokeSID = %d, %v", n, err)
			}
		}},
		{"login in the same browser", func(req *http.Request) {
			_ = save(t, a.Store, req, session.Session{User: "next", Expiry: time.Now().Add(time.Hour)})
		}},
	}
}

// TestCacheRevocation: a session cached on b and ended on a is refused by
// b once a's announcement has reached it, and never served again.
func TestCacheRevocation(t *testing.T) {
	r := startRedis(t)
	a := newReplica(t, r, replicaOpts{cache: 100})
	b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour})
	checkRevocations(t, a, b)
}

// checkRevocations is TestCacheRevocation on replicas a and b (b's cache
// TTL an hour).
func checkRevocations(t *testing.T, a, b replica) {
	waitTrusted(t, b)
	for i, rv := range revokers(t, a) {
		t.Run(rv.name, func(t *testing.T) {
			req := save(t, a.Store, nil, session.Session{User: fmt.Sprintf("u%d", i), SID: fmt.Sprintf("sid%d", i), Expiry: time.Now().Add(time.Hour)})
			for range 2 { // fill a's and b's caches, then a hit
				for _, s := range []replica{a, b} {
					if _, err := s.Load(req); err != nil {
						t.Fatal(err)
					}
				}
			}
			rv.revoke(req)
			// a revoked it: refused there at once.
			if _, err := a.Load(req); !isNoSession(err) {
				t.Fatalf("a.Load after a's revocation = %v", err)
			}
			// b: as soon as the announcement arrives (the cache TTL is an
			// hour, so only the announcement can end it).
			waitFor(t, "b refusing the revoked session", func() bool {
				_, err := b.Load(req)
				return isNoSession(err)
			})
			for range 10 {
				if _, err := b.Load(req); !isNoSession(err) {
					t.Fatalf("b served a revoked session again: %v", err)
				}
			}
		})
	}
}

// TestCacheRefreshSeen: a touch or token refresh saved on one replica
// replaces every replica's copy, so idle expiry and rotated tokens follow
// the newest save.
func TestCacheRefreshSeen(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	a := newReplica(t, r, replicaOpts{cache: 100, clock: clk.Now, idle: time.Hour})
	client, g := counted(t, r)
	b := newReplica(t, r, replicaOpts{cache: 100, clock: clk.Now, idle: time.Hour, cacheTTL: time.Hour, client: client})
	waitTrusted(t, a)
	waitTrusted(t, b)
	sess := smallSession("ada", clk.Now())
	sess.Expiry = clk.Now().Add(6 * time.Hour)
	sess.RefreshToken = "r1"
	req := save(t, a.Store, nil, sess)
	loaded, err := b.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	// Touches: a quarter of the idle timeout later, one save, then hits.
	clk.Add(20 * time.Minute)
	g.n.Store(0)
	got, err := b.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Touch(&got) {
		t.Fatal("Touch after a quarter of the idle timeout = false")
	}
	if err := b.Save(httptest.NewRecorder(), req, got); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		got, err := b.Load(req)
		if err != nil {
			t.Fatal(err)
		}
		if b.Touch(&got) {
			t.Fatal("Touch asks for a save again right after one")
		}
	}
	// The Load before the touch was a hit, the save checks the entry (1 GET),
	// the first Load after it reads the new Seen (1 GET), the rest are hits;
	// b's own announcement may drop its copy once more when it comes back.
	if n := g.n.Load(); n < 2 || n > 3 {
		t.Errorf("%d GETs for a touch and 51 Loads, want 2 or 3", n)
	}
	// a rotates the refresh token: b never serves r1 again once a's
	// announcement has arrived.
	loaded, err = a.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	loaded.RefreshToken = "r2"
	if err := a.Save(httptest.NewRecorder(), req, loaded); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b reading the rotated refresh token", func() bool {
		got, err := b.Load(req)
		return err == nil && got.RefreshToken == "r2"
	})
	// Idle expiry: b ends the session when Redis does, after the last
	// recorded use, not after its own.
	clk.Add(time.Hour + time.Second)
	if _, err := b.Load(req); !isNoSession(err) {
		t.Errorf("b.Load an idle timeout after the last save = %v", err)
	}
}

// TestCacheFillRace is the race a cache of this kind gets wrong: a request
// reads the session from Redis, the session is revoked on another replica
// and the announcement applied here, and only then does the request put
// what it read in the cache. Each iteration forces that order; the session
// must never come back. Run against each way of ending a session, and with
// a token refresh (the old tokens must not come back).
func TestCacheFillRace(t *testing.T) {
	r := startRedis(t)
	a := newReplica(t, r, replicaOpts{cache: 100})
	client, g := counted(t, r)
	b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour, client: client})
	checkFillRace(t, a, b, g, 60)
}

// checkFillRace is TestCacheFillRace on replicas a and b, b's GETs hooked by
// g, with that many iterations per way of ending a session.
func checkFillRace(t *testing.T, a, b replica, g *gets, iterations int) {
	waitTrusted(t, b)
	n := 0
	for _, rv := range revokers(t, a) {
		t.Run(rv.name, func(t *testing.T) {
			for i := range iterations {
				n++
				req := save(t, a.Store, nil, session.Session{User: fmt.Sprintf("race%d", n), SID: fmt.Sprintf("sid%d", n), Expiry: time.Now().Add(time.Hour)})
				g.setAfter(func() {
					g.setAfter(nil)
					// b's GET has read the live session; revoke it on a
					// and wait until b has applied the announcement.
					before := b.cache.applied.Load()
					rv.revoke(req)
					waitFor(t, "b applying the announcement", func() bool { return b.cache.applied.Load() != before })
				})
				if _, err := b.Load(req); err != nil {
					t.Fatalf("iteration %d: the in-flight Load = %v; it read the session before the revocation", i, err)
				}
				for range 3 {
					if sess, err := b.Load(req); !isNoSession(err) {
						t.Fatalf("iteration %d: b serves a session revoked while a request was filling its cache: %+v, %v", i, sess, err)
					}
				}
			}
		})
	}
	t.Run("refresh", func(t *testing.T) {
		for i := range iterations {
			req := save(t, a.Store, nil, session.Session{User: "rot", RefreshToken: "old", Expiry: time.Now().Add(time.Hour)})
			g.setAfter(func() {
				g.setAfter(nil)
				before := b.cache.applied.Load()
				sess, err := a.Load(req)
				if err != nil {
					t.Fatal(err)
				}
				sess.RefreshToken = "new"
				if err := a.Save(httptest.NewRecorder(), req, sess); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "b applying the announcement", func() bool { return b.cache.applied.Load() != before })
			})
			if _, err := b.Load(req); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if sess, err := b.Load(req); err != nil || sess.RefreshToken != "new" {
					t.Fatalf("iteration %d: after the refresh b serves %q, %v", i, sess.RefreshToken, err)
				}
			}
		}
	})
}

// TestCacheConcurrentRevocation: loads run without pause on b while a ends
// sessions. Once a's call has returned and b has applied the announcement,
// no Load that starts afterwards may serve the session, whatever fills
// the loads still in flight were doing.
func TestCacheConcurrentRevocation(t *testing.T) {
	r := startRedis(t)
	a := newReplica(t, r, replicaOpts{cache: 100})
	b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour})
	waitTrusted(t, b)
	ctx := context.Background()
	for i := range 100 {
		req := save(t, a.Store, nil, session.Session{User: fmt.Sprintf("c%d", i), Expiry: time.Now().Add(time.Hour)})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				r := req.Clone(ctx)
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, _ = b.Load(r)
				}
			})
		}
		if _, err := b.Load(req); err != nil {
			t.Fatal(err)
		}
		id := idOf(t, a, req)
		if err := a.Revoke(ctx, id); err != nil {
			t.Fatal(err)
		}
		// This revocation's own announcement: a count of messages could be
		// moved by another one (a copy delivered again across a
		// resubscription), leaving this one still on its way.
		waitFor(t, "b applying the announcement", func() bool {
			p := b.cache.lastApplied.Load()
			return p != nil && slices.Contains(strings.Fields(*p), id)
		})
		for range 200 {
			if _, err := b.Load(req); !isNoSession(err) {
				close(stop)
				wg.Wait()
				_, inCache := b.cache.m.Load().Get(id, b.cache.clock())
				n, _ := b.rdb.Exists(ctx, b.sessionKey(id)).Result()
				t.Fatalf("iteration %d: served after the revocation was applied: %v (in b's cache %v, in Redis %d, b trusts its cache %v)", i, err, inCache, n, b.cache.trusted())
			}
		}
		close(stop)
		wg.Wait()
	}
}

// TestCacheFailClosed: a replica that loses its subscription or Redis
// stops trusting its cache, and starts from an empty one when it is back.
// The cache TTL is an hour throughout, so only that can make these pass.
func TestCacheFailClosed(t *testing.T) {
	r := startRedis(t)
	raw := r.Client(t)
	ctx := context.Background()
	client, g := counted(t, r)
	b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour, client: client})
	waitTrusted(t, b)
	cachedSession := func() *http.Request {
		t.Helper()
		req := save(t, b.Store, nil, smallSession("ada", time.Now()))
		for range 2 {
			if _, err := b.Load(req); err != nil {
				t.Fatal(err)
			}
		}
		return req
	}

	t.Run("subscription killed; a deletion is missed", func(t *testing.T) {
		req := cachedSession()
		gen := b.cache.gen.Load()
		if err := raw.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		// Deleted without an announcement, as if published while b was
		// not subscribed.
		if err := raw.Del(ctx, b.sessionKey(idOf(t, b, req))).Err(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "b noticing the lost subscription", func() bool { return b.cache.gen.Load() != gen })
		waitFor(t, "b refusing the deleted session", func() bool {
			_, err := b.Load(req)
			return isNoSession(err)
		})
		// Back: a new session is cached again and hits.
		waitTrusted(t, b)
		req = cachedSession()
		g.n.Store(0)
		if _, err := b.Load(req); err != nil || g.n.Load() != 0 {
			t.Errorf("after resubscribing: Load = %v with %d GETs, want a hit", err, g.n.Load())
		}
	})

	t.Run("Redis killed and restarted empty", func(t *testing.T) {
		req := cachedSession()
		r.Stop()
		waitFor(t, "b refusing to answer without Redis", func() bool {
			_, err := b.Load(req)
			return isUnavailable(err)
		})
		for range 20 {
			if _, err := b.Load(req); !isUnavailable(err) {
				t.Fatalf("Redis down: Load = %v, want unavailable", err)
			}
		}
		r.Restart()
		// The new server has no sessions: the cached copy must not come
		// back.
		waitFor(t, "b answering again", func() bool {
			_, err := b.Load(req)
			return !isUnavailable(err)
		})
		waitTrusted(t, b)
		for range 10 {
			if _, err := b.Load(req); !isNoSession(err) {
				t.Fatalf("after the restart Load = %v, want ErrNoSession", err)
			}
		}
	})

	t.Run("Redis hangs", func(t *testing.T) {
		req := cachedSession()
		r.Pause()
		waitFor(t, "b refusing to answer while Redis hangs", func() bool {
			_, err := b.Load(req)
			return isUnavailable(err)
		})
		r.Resume()
		waitFor(t, "b serving again", func() bool {
			_, err := b.Load(req)
			return err == nil
		})
	})
}

// TestCacheOff: CacheSize 0 starts no subscription and Close is harmless.
func TestCacheOff(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	if s.cache != nil {
		t.Fatal("a cache without CacheSize")
	}
	s.Close()
	if _, err := New(context.Background(), replicaOpts{client: r.Client(t), cache: -1}.config()); err == nil {
		t.Error("New accepted a negative CacheSize")
	}
}

// TestCacheIdleAcrossReplicas: the user works through a only; b cached the
// session before. a's recorded use (a touch, a quarter of the idle timeout
// later) reaches b, so b neither ends the session at the old deadline nor
// keeps it past the new one.
func TestCacheIdleAcrossReplicas(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	const idle = 30 * time.Minute
	a := newReplica(t, r, replicaOpts{cache: 100, clock: clk.Now, idle: idle})
	b := newReplica(t, r, replicaOpts{cache: 100, clock: clk.Now, idle: idle, cacheTTL: 24 * time.Hour})
	waitTrusted(t, a)
	waitTrusted(t, b)
	sess := smallSession("ada", clk.Now())
	sess.Expiry, sess.Seen = clk.Now().Add(8*time.Hour), clk.Now()
	req := save(t, a.Store, nil, sess)
	for _, s := range []replica{a, b, a, b} {
		if _, err := s.Load(req); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(idle * 2 / 3)
	got, err := a.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Touch(&got) {
		t.Fatal("no touch after 2/3 of the idle timeout")
	}
	applied := b.cache.applied.Load()
	if err := a.Save(httptest.NewRecorder(), req, got); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b applying a's announcement", func() bool { return b.cache.applied.Load() != applied })
	clk.Add(idle / 2) // past the first deadline, within the new one
	for name, s := range map[string]replica{"a": a, "b": b} {
		if _, err := s.Load(req); err != nil {
			t.Errorf("%s: Load after a recorded a use, past the old idle deadline: %v", name, err)
		}
	}
	clk.Add(idle/2 + time.Second) // past the new deadline
	for name, s := range map[string]replica{"a": a, "b": b} {
		if _, err := s.Load(req); !isNoSession(err) {
			t.Errorf("%s: Load past the idle deadline of the last recorded use = %v, want ErrNoSession", name, err)
		}
	}
}

// TestCacheLockRefreshRereads: the replica that takes a session's refresh
// lock drops its cached copy, so that the Load that follows (to see whether
// the replica that held the lock renewed the tokens) reads Redis, even
// before that replica's announcement has arrived.
func TestCacheLockRefreshRereads(t *testing.T) {
	r := startRedis(t)
	client, g := counted(t, r)
	b := newReplica(t, r, replicaOpts{cache: 100, cacheTTL: time.Hour, client: client})
	waitTrusted(t, b)
	req := save(t, b.Store, nil, smallSession("ada", time.Now()))
	sess, err := b.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	g.n.Store(0)
	if _, err := b.Load(req); err != nil || g.n.Load() != 0 {
		t.Fatalf("Load = %v with %d GETs, want a hit", err, g.n.Load())
	}
	unlock, err := b.LockRefresh(context.Background(), sess)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := b.Load(req); err != nil || g.n.Load() != 1 {
		t.Errorf("Load under the refresh lock = %v with %d GETs, want one GET", err, g.n.Load())
	}
}
