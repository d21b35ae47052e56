package redisstore

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// BenchmarkLoad measures Load on the proxy's hot path against a real
// redis-server on loopback: the ticket cookie's check, one GET, AES-GCM and
// JSON. Compare with cookie's BenchmarkLoad; see BENCHMARKS.md.
func BenchmarkLoad(b *testing.B) {
	r := startRedis(b)
	s := newReplica(b, r, replicaOpts{})
	now := time.Now()
	login := bigSession(now)
	login.IDToken, login.AccessToken, login.Claims = idToken(900), "", nil // what the oidc package keeps
	sessions := []struct {
		name string
		req  *http.Request
	}{
		{"user only", save(b, s.Store, nil, smallSession("auth0|64f1c2a9e4b0d7c3a1b2c3d4", now))},
		{"login (900 B ID token)", save(b, s.Store, nil, login)},
		{"4 kB ID token, 300 groups", save(b, s.Store, nil, bigSession(now))},
	}
	for _, sess := range sessions {
		b.Run(sess.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Load(sess.req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sess.name+", parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := sess.req.Clone(sess.req.Context())
				for pb.Next() {
					if _, err := s.Load(req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLoadCached is BenchmarkLoad with the cache on, once the session
// is cached: the hit path, no round trip. (The 4 kB session is over
// maxCachedEntry, so it pays the GET as without the cache.)
func BenchmarkLoadCached(b *testing.B) {
	r := startRedis(b)
	s := newReplica(b, r, replicaOpts{cache: 10000})
	waitTrusted(b, s)
	now := time.Now()
	login := bigSession(now)
	login.IDToken, login.AccessToken, login.Claims = idToken(900), "", nil
	sessions := []struct {
		name string
		req  *http.Request
	}{
		{"user only", save(b, s.Store, nil, smallSession("auth0|64f1c2a9e4b0d7c3a1b2c3d4", now))},
		{"login (900 B ID token)", save(b, s.Store, nil, login)},
		{"4 kB ID token, 300 groups", save(b, s.Store, nil, bigSession(now))},
	}
	for _, sess := range sessions {
		if _, err := s.Load(sess.req); err != nil { // fills the cache
			b.Fatal(err)
		}
		b.Run(sess.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Load(sess.req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(sess.name+", parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := sess.req.Clone(sess.req.Context())
				for pb.Next() {
					if _, err := s.Load(req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRedisGet is the floor under BenchmarkLoad: one GET of a value of
// the same size through the same client, nothing else.
func BenchmarkRedisGet(b *testing.B) {
	r := startRedis(b)
	c := r.Client(b)
	ctx := b.Context()
	if err := c.Set(ctx, "k", make([]byte, 150), 0).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Get(ctx, "k").Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode is Load without the round trip: the ticket cookie's check,
// AES-GCM and JSON on an entry already fetched. Load = this + one GET.
func BenchmarkDecode(b *testing.B) {
	r := startRedis(b)
	s := newReplica(b, r, replicaOpts{})
	now := time.Now()
	login := bigSession(now)
	login.IDToken, login.AccessToken, login.Claims = idToken(900), "", nil
	for _, tc := range []struct {
		name string
		sess session.Session
	}{
		{"user only", smallSession("auth0|64f1c2a9e4b0d7c3a1b2c3d4", now)},
		{"login (900 B ID token)", login},
		{"4 kB ID token, 300 groups", bigSession(now)},
	} {
		req := save(b, s.Store, nil, tc.sess)
		t, err := s.ticket(req)
		if err != nil {
			b.Fatal(err)
		}
		stored, err := r.Client(b).Get(context.Background(), s.sessionKey(t.id)).Bytes()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			raw := make([]byte, len(stored))
			for b.Loop() {
				t, err := s.ticket(req)
				if err != nil {
					b.Fatal(err)
				}
				copy(raw, stored) // open decrypts in place
				_, plain, err := open(t, raw)
				if err != nil {
					b.Fatal(err)
				}
				var sess session.Session
				if err := json.Unmarshal(plain, &sess); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheMemory reports the heap a cached session takes (B/session):
// what AUTHPROXY_REDIS_CACHE_SIZE costs when full. Each op loads one more
// session into the cache.
func BenchmarkCacheMemory(b *testing.B) {
	r := startRedis(b)
	now := time.Now()
	login := bigSession(now)
	login.IDToken, login.AccessToken, login.Claims = idToken(900), "", map[string]any{"groups": groups(5), "email_verified": true}
	for _, tc := range []struct {
		name string
		sess session.Session
	}{
		{"user only", smallSession("auth0|64f1c2a9e4b0d7c3a1b2c3d4", now)},
		{"login (900 B ID token, 5 groups)", login},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 2000
			s := newReplica(b, r, replicaOpts{cache: n})
			reqs := make([]*http.Request, n)
			for i := range reqs {
				reqs[i] = save(b, s.Store, nil, tc.sess)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for _, req := range reqs {
				if _, err := s.Load(req); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if got := s.cache.m.Load().Len(); got != n {
				b.Fatalf("%d sessions cached, want %d", got, n)
			}
			runtime.KeepAlive(reqs)
			for b.Loop() {
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/session")
		})
	}
}
