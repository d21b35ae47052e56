package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestAdminUserExact: the user named in a call is the user whose sessions
// are listed or ended, byte for byte: a "+" is not a space, a body names
// one user, and a call that ends nothing says so (404).
func TestAdminUserExact(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	now := time.Now()
	users := []string{"ann+ops@example.com", "ann ops@example.com", "auth0|5f7c8ec7", "ann"}
	h := s.AdminHandler("admin-token")
	call := func(method, target, body string) (int, map[string]any) {
		var req *http.Request
		if body != "" {
			req = httptest.NewRequest(method, target, strings.NewReader(body))
		} else {
			req = httptest.NewRequest(method, target, nil)
		}
		req.Header.Set("Authorization", "Bearer admin-token")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var got map[string]any
		_ = json.NewDecoder(w.Body).Decode(&got)
		return w.Code, got
	}
	tests := []struct {
		name, method, target, body string
		status                     int
		ended                      string // the one user whose session ends, if any
	}{
		{"plus in the query", "DELETE", "/admin/sessions?user=ann+ops@example.com", "", 200, "ann+ops@example.com"},
		{"encoded plus", "DELETE", "/admin/sessions?user=ann%2Bops%40example.com", "", 200, "ann+ops@example.com"},
		{"encoded space", "DELETE", "/admin/sessions?user=ann%20ops@example.com", "", 200, "ann ops@example.com"},
		{"pipe", "DELETE", "/admin/sessions?user=auth0|5f7c8ec7", "", 200, "auth0|5f7c8ec7"},
		{"JSON body", "DELETE", "/admin/sessions", `{"user":"ann+ops@example.com"}`, 200, "ann+ops@example.com"},
		{"JSON body, space", "DELETE", "/admin/sessions", `{"user":"ann ops@example.com"}`, 200, "ann ops@example.com"},
		{"unknown user", "DELETE", "/admin/sessions?user=nobody", "", 404, ""},
		{"case differs", "DELETE", "/admin/sessions?user=ANN", "", 404, ""},
		{"prefix of a user", "DELETE", "/admin/sessions?user=ann%2B", "", 404, ""},
		{"two users", "DELETE", "/admin/sessions?user=ann&user=auth0|5f7c8ec7", "", 400, ""},
		{"query and body", "DELETE", "/admin/sessions?user=ann", `{"user":"ann+ops@example.com"}`, 400, ""},
		{"empty user", "DELETE", "/admin/sessions?user=", "", 400, ""},
		{"bad escape", "DELETE", "/admin/sessions?user=ann%zz", "", 400, ""},
		{"body not JSON", "DELETE", "/admin/sessions", `user=ann`, 400, ""},
		{"body with another field", "DELETE", "/admin/sessions", `{"usr":"ann"}`, 400, ""},
		{"body user not a string", "DELETE", "/admin/sessions", `{"user":["ann"]}`, 400, ""},
		{"list, plus", "GET", "/admin/sessions?user=ann+ops@example.com", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs := map[string]*http.Request{}
			for _, u := range users {
				reqs[u] = saveFor(t, s, smallSession(u, now))
			}
			t.Cleanup(func() {
				for _, u := range users {
					_, _ = s.RevokeUser(context.Background(), u)
				}
			})
			code, body := call(tt.method, tt.target, tt.body)
			if code != tt.status {
				t.Errorf("status %d %v, want %d", code, body, tt.status)
			}
			if tt.method == "GET" {
				if list, _ := body["sessions"].([]any); body["user"] != "ann+ops@example.com" || len(list) != 1 {
					t.Errorf("listed %v, want the one session of ann+ops@example.com", body)
				}
			}
			for _, u := range users {
				_, err := s.Load(reqs[u])
				if ended := errors.Is(err, session.ErrNoSession); ended != (u == tt.ended) {
					t.Errorf("%q: ended %v (%v), want %v", u, ended, err, u == tt.ended)
				}
			}
		})
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
