package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// saveFor saves sess and returns the request a browser would then send.
func saveFor(t *testing.T, s replica, sess session.Session) *http.Request {
	t.Helper()
	w := httptest.NewRecorder()
	if err := s.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
		t.Fatal(err)
	}
	return browserAfter(httptest.NewRequest("GET", "/", nil), w)
}

func TestAdminAPI(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	now := time.Now()
	reqs := []*http.Request{saveFor(t, s, smallSession("ann", now)), saveFor(t, s, smallSession("ann", now)), saveFor(t, s, smallSession("bob", now))}
	h := s.AdminHandler("admin-token")
	call := func(method, target, token string) (int, map[string]any) {
		req := httptest.NewRequest(method, target, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var body map[string]any
		_ = json.NewDecoder(w.Body).Decode(&body)
		return w.Code, body
	}
	for _, tok := range []string{"", "wrong", "admin-token "} {
		if code, _ := call("GET", "/admin/sessions?user=ann", tok); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", tok, code)
		}
	}
	code, body := call("GET", "/admin/sessions?user=ann", "admin-token")
	list, _ := body["sessions"].([]any)
	if code != 200 || len(list) != 2 {
		t.Fatalf("list ann: %d %v", code, body)
	}
	id := list[0].(map[string]any)["id"].(string)
	if code, _ := call("DELETE", "/admin/sessions/"+id, "admin-token"); code != 200 {
		t.Errorf("revoke one: %d", code)
	}
	if code, _ := call("DELETE", "/admin/sessions/"+id, "admin-token"); code != 404 {
		t.Errorf("revoke it again: %d, want 404", code)
	}
	alive := 0
	for _, req := range reqs[:2] {
		if _, err := s.Load(req); err == nil {
			alive++
		}
	}
	if alive != 1 {
		t.Errorf("after revoking one of ann's two sessions, %d are alive", alive)
	}
	if code, body := call("DELETE", "/admin/sessions?user=ann", "admin-token"); code != 200 || body["revoked"] != 1.0 {
		t.Errorf("revoke all of ann's: %d %v", code, body)
	}
	for _, req := range reqs[:2] {
		if _, err := s.Load(req); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("ann's session survived: %v", err)
		}
	}
	if _, err := s.Load(reqs[2]); err != nil {
		t.Errorf("bob's session was revoked too: %v", err)
	}
	if code, _ := call("GET", "/admin/sessions", "admin-token"); code != 400 {
		t.Errorf("list without user: %d", code)
	}
	off := httptest.NewRecorder()
	s.AdminHandler("").ServeHTTP(off, httptest.NewRequest("GET", "/admin/sessions?user=ann", nil))
	if off.Code != http.StatusNotFound {
		t.Errorf("without a token the API must be off: %d", off.Code)
	}
}

// TestLockRefresh: replicas refreshing one session take turns, so the
// provider sees one refresh; the lock is per session.
func TestLockRefresh(t *testing.T) {
	r := startRedis(t)
	a, b := newReplica(t, r, replicaOpts{}), newReplica(t, r, replicaOpts{})
	req := saveFor(t, a, smallSession("ann", time.Now()))
	sess, err := a.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	var holders, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			unlock, err := s.LockRefresh(context.Background(), sess)
			if err != nil {
				t.Error(err)
				return
			}
			n := holders.Add(1)
			if n > most.Load() {
				most.Store(n)
			}
			time.Sleep(20 * time.Millisecond)
			holders.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d replicas held one session's refresh lock at once", most.Load())
	}
	other, err := a.Load(saveFor(t, a, smallSession("bob", time.Now())))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := a.LockRefresh(context.Background(), sess)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// Generous for a loaded machine, and still short of refreshLockTTL: a
	// lock shared with the held one would wait past it.
	ctx, cancel := context.WithTimeout(context.Background(), refreshLockTTL*2/3)
	defer cancel()
	unlock2, err := b.LockRefresh(ctx, other)
	if err != nil {
		t.Errorf("another session's lock waited on this one: %v", err)
	} else {
		unlock2()
	}
}

func TestOnceAcrossReplicas(t *testing.T) {
	r := startRedis(t)
	a, b := newReplica(t, r, replicaOpts{}), newReplica(t, r, replicaOpts{})
	ctx := context.Background()
	if seen, err := b.Seen(ctx, "jti-1"); err != nil || seen {
		t.Fatalf("seen before Once: %v, %v", seen, err)
	}
	if fresh, err := a.Once(ctx, "jti-1", time.Minute); err != nil || !fresh {
		t.Fatalf("first sight: %v, %v", fresh, err)
	}
	for _, s := range []replica{a, b} {
		if seen, err := s.Seen(ctx, "jti-1"); err != nil || !seen {
			t.Errorf("seen after Once: %v, %v", seen, err)
		}
		if fresh, err := s.Once(ctx, "jti-1", time.Minute); err != nil || fresh {
			t.Errorf("second sight: fresh=%v, %v", fresh, err)
		}
	}
	if fresh, _ := b.Once(ctx, "jti-2", time.Minute); !fresh {
		t.Error("another key was not fresh")
	}
}
