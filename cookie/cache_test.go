package cookie

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/authproxy/authproxy/session"
)

// TestCacheNeverWidensLoad: whatever the cache holds, Load answers as an
// uncached Store would.
func TestCacheNeverWidensLoad(t *testing.T) {
	now := t0
	cached := newStore(t, &now, keyA)
	uncached, err := NewStore(Config{Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: [][]byte{keyA}, Now: func() time.Time { return now }, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	cookies := save(t, cached, nil, session.Session{User: "alice", Expiry: now.Add(time.Hour)})
	for _, s := range []*Store{cached, uncached} {
		if _, err := load(s, cookies); err != nil {
			t.Fatalf("first load: %v", err)
		}
	}
	if _, ok := cached.keys.Load().cache.get(cookies[0].Value, now); !ok {
		t.Fatal("a verified session was not cached")
	}

	// Expiry is checked on every hit, and the expired entry leaves.
	now = t0.Add(time.Hour)
	for name, s := range map[string]*Store{"cached": cached, "uncached": uncached} {
		if _, err := load(s, cookies); !errors.Is(err, session.ErrNoSession) {
			t.Errorf("%s store served an expired session: %v", name, err)
		}
	}
	if _, ok := cached.keys.Load().cache.get(cookies[0].Value, now); ok {
		t.Error("expired session still cached")
	}
	now = t0

	// One changed byte is another key, decoded (and refused) afresh.
	v := []byte(cookies[0].Value)
	v[len(v)/2] ^= 1
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", DefaultName+"="+string(v))
	if _, err := cached.Load(r); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("tampered value accepted: %v", err)
	}
	if _, ok := cached.keys.Load().cache.get(string(v), now); ok {
		t.Error("a refused value was cached")
	}

	// A store without the old key (a restart after rotation) starts empty.
	if _, err := load(newStore(t, &now, keyB), cookies); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("removed key still accepted: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	now := t0
	s, err := NewStore(Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{keyA}, Now: func() time.Time { return now }, CacheSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		cookies := save(t, s, nil, session.Session{User: fmt.Sprint("u", i), Expiry: now.Add(time.Hour)})
		if got, err := load(s, cookies); err != nil || got.User != fmt.Sprint("u", i) {
			t.Fatalf("load %d: %+v %v", i, got, err)
		}
		if n := s.keys.Load().cache.m.Len(); n > 16 {
			t.Fatalf("cache holds %d entries, bound is 16", n)
		}
	}
}

func TestCachedLoadAllocations(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	cookies := save(t, s, nil, session.Session{User: "alice", IDToken: "header.payload.signature", Expiry: now.Add(time.Hour)})
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if _, err := s.Load(r); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Load(r) }); n != 0 {
		t.Errorf("cached Load allocates %v times, want 0", n)
	}
}

func TestCookieValue(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["Cookie"] = []string{`a=1; _authproxy="quoted"; b=2`, "_authproxy_0=zero;_authproxy_1=one"}
	for name, want := range map[string]string{"a": "1", "b": "2", "_authproxy": "quoted", "_authproxy_0": "zero", "_authproxy_1": "one"} {
		if got, ok := Value(r.Header, name); !ok || got != want {
			t.Errorf("Value(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"_auth", "c", "_authproxy_2", ""} {
		if got, ok := Value(r.Header, name); ok {
			t.Errorf("Value(%q) = %q, want none", name, got)
		}
	}
}

func TestPairs(t *testing.T) {
	for _, tt := range []struct {
		lines []string
		want  []string // name, pair, name, pair...
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"a=1"}, []string{"a", "a=1"}},
		{[]string{" a=1 ;; b = 2;", "c"}, []string{"a", "a=1", "b", "b = 2", "c", "c"}},
		{[]string{`q="x;y"`}, []string{"q", `q="x`, `y"`, `y"`}}, // as browsers and net/http split it
		{[]string{"=v; a==b"}, []string{"", "=v", "a", "a==b"}},
	} {
		h := http.Header{"Cookie": tt.lines}
		var got []string
		for name, pair := range Pairs(h) {
			got = append(got, name, pair)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Pairs(%q) = %q, want %q", tt.lines, got, tt.want)
		}
	}
	// Stopping early stops the scan.
	for name := range Pairs(http.Header{"Cookie": {"a=1; b=2"}}) {
		if name != "a" {
			t.Errorf("yielded %q after break", name)
		}
		break
	}
}

// TestIdleTimeout: a session unused for Idle ends, cached or not; Touch
// asks for a save at most every quarter of Idle.
func TestIdleTimeout(t *testing.T) {
	now := t0
	s, err := NewStore(Config{Policy: session.Policy{Lifetime: 12 * time.Hour, Idle: 30 * time.Minute}, Secrets: [][]byte{keyA}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	sess := session.Session{User: "alice", Expiry: now.Add(12 * time.Hour), Seen: now}
	cookies := save(t, s, nil, sess)
	if _, err := load(s, cookies); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(5 * time.Minute)
	if s.Touch(&sess) {
		t.Error("Touch after 5 min of a 30 min idle timeout")
	}
	now = t0.Add(10 * time.Minute)
	if !s.Touch(&sess) || !sess.Seen.Equal(now) {
		t.Error("Touch after 10 min did not record the use")
	}
	touched := save(t, s, cookies, sess)
	now = t0.Add(35 * time.Minute)
	if _, err := load(s, cookies); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("idle session (cached) accepted after 35 min: %v", err)
	}
	if _, err := load(s, touched); err != nil {
		t.Errorf("session used 25 min ago refused: %v", err)
	}
}

// TestOldTicketCookieRefused: a ticket cookie that an earlier version's
// Redis store sealed with the cookie store's keys (only a ticket and an
// expiry) is not a session. (Today's ticket cookies have keys of their own;
// redisstore's tests check that neither store reads the other's cookie.)
func TestOldTicketCookieRefused(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	value, err := securecookie.EncodeMulti(DefaultName, map[string]any{"k": "id.key", "x": now.Add(time.Hour)}, s.keys.Load().codecs...)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := load(s, []*http.Cookie{{Name: DefaultName, Value: value}}); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("cookie store accepted an old ticket cookie: %+v, %v", got, err)
	}
}
