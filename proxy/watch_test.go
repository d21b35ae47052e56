package proxy

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/session"
)

// countingStore counts the session loads of a cookie store.
type countingStore struct {
	*cookie.Store
	loads atomic.Int64
}

func (s *countingStore) Load(r *http.Request) (session.Session, error) {
	s.loads.Add(1)
	return s.Store.Load(r)
}

// TestWatchHoldsNoGoroutine: a long response that the proxy watches
// (revalidation, expiry) holds no goroutine of its own between checks, so
// that thousands of open WebSockets or streams cost no more goroutines
// than through a bare ReverseProxy. It counts goroutines per open response
// with the watch started (its first session check done) against the same
// responses never watched.
func TestWatchHoldsNoGoroutine(t *testing.T) {
	const n = 20
	perResponse := func(watchAfter time.Duration) float64 {
		store := &countingStore{Store: mustStore(t)}
		f := newFixture(t, http.HandlerFunc(longUpstream), func(c *Config) {
			c.Sessions, c.IsOwnCookie = store, store.IsOwn
			c.watchAfter = watchAfter
			c.Revalidate = time.Hour // one check, when the watch starts
		})
		w := httptest.NewRecorder()
		if err := store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		count := func() int {
			time.Sleep(200 * time.Millisecond) // let finished goroutines exit
			return runtime.NumGoroutine()
		}
		before := count()
		for range n {
			openLong(t, f, "/events", "text/event-stream", w.Result().Cookies())
		}
		if watchAfter < time.Hour {
			// One load to admit each request, one when its watch starts.
			for deadline := time.Now().Add(time.Minute); store.loads.Load() < 2*n; {
				if time.Now().After(deadline) {
					t.Fatalf("%d session loads after a minute, want %d: the watches did not start", store.loads.Load(), 2*n)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		return float64(count()-before) / n
	}
	unwatched := perResponse(time.Hour)
	watched := perResponse(50 * time.Millisecond)
	t.Logf("goroutines per open response: %.2f unwatched, %.2f watched", unwatched, watched)
	if watched > unwatched+0.5 {
		t.Errorf("a watched response holds %.2f goroutines, an unwatched one %.2f: the watch keeps a goroutine per response", watched, unwatched)
	}
}
