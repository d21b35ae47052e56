package proxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// watchLog records the requests a lateList watches.
type watchLog struct {
	mu   sync.Mutex
	seen map[*reqInfo]int
}

func (w *watchLog) watch(info *reqInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[*reqInfo]int{}
	}
	w.seen[info]++
}

func (w *watchLog) count(info *reqInfo) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[info]
}

func (w *watchLog) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// waitFor polls cond for a minute: generous for a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", what)
		}
	}
}

// TestLateList: a response still running after the delay is watched,
// once; one over before is not; one whose session expires sooner is
// watched at the expiry; and once nothing is listed the sweep stops.
func TestLateList(t *testing.T) {
	var log watchLog
	l := newLateList(30*time.Millisecond, log.watch)
	long, short := &reqInfo{}, &reqInfo{}
	expiring := &reqInfo{sess: session.Session{Expiry: time.Now().Add(20 * time.Millisecond)}}
	l.add(long, time.Now())
	l.add(short, time.Now())
	if !l.remove(short) {
		t.Fatal("remove of a listed request reported it unlisted")
	}
	waitFor(t, "the long response is not watched", func() bool { return log.count(long) == 1 })
	if l.remove(long) {
		t.Error("remove of a watched request reported it listed")
	}

	// Past the delay, a session that expires in a moment: watched at its
	// expiry, not an hour later.
	slow := newLateList(time.Hour, log.watch)
	if slow.tick != time.Second {
		t.Fatalf("tick %s for an hour's delay, want 1s", slow.tick)
	}
	slow.add(expiring, time.Now())
	waitFor(t, "the response of an expiring session is not watched", func() bool { return log.count(expiring) == 1 })
	slow.remove(expiring)

	waitFor(t, "the sweeps did not stop", func() bool { return !l.armed.Load() && !slow.armed.Load() })
	if l.len() != 0 || slow.len() != 0 {
		t.Errorf("listed %d and %d after every response ended", l.len(), slow.len())
	}
	if n := log.count(short); n != 0 {
		t.Errorf("a response over before the delay was watched %d times", n)
	}
	if n := log.total(); n != 2 {
		t.Errorf("%d requests watched, want 2", n)
	}
}

// TestLateListConcurrent: responses end while the sweep takes others, from
// many goroutines (run it with -race). Each is either unlisted by its end
// or watched, exactly once, never both; and the sweep stops afterwards.
func TestLateListConcurrent(t *testing.T) {
	var log watchLog
	l := newLateList(2*time.Millisecond, log.watch)
	const goroutines, each = 8, 300
	var unlisted atomic.Int64
	infos := make([][]*reqInfo, goroutines)
	removed := make([][]bool, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		infos[g], removed[g] = make([]*reqInfo, each), make([]bool, each)
		wg.Go(func() {
			for i := range each {
				info := &reqInfo{}
				infos[g][i] = info
				l.add(info, time.Now())
				if i%3 != 0 {
					time.Sleep(time.Duration(i%5) * time.Millisecond) // some outlive the delay
				}
				if removed[g][i] = l.remove(info); removed[g][i] {
					unlisted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	watched := goroutines*each - int(unlisted.Load())
	waitFor(t, "the watches of the taken responses did not all start", func() bool { return log.total() == watched })
	for g := range goroutines {
		for i, info := range infos[g] {
			if n := log.count(info); removed[g][i] && n != 0 || !removed[g][i] && n != 1 {
				t.Fatalf("request %d/%d: unlisted by its end %v, watched %d times", g, i, removed[g][i], n)
			}
		}
	}
	waitFor(t, "the sweep did not stop", func() bool { return !l.armed.Load() })
	if n := l.len(); n != 0 {
		t.Errorf("listed %d after every response ended", n)
	}
	t.Logf("%d of %d responses watched", watched, goroutines*each)
}
