package assertion

import (
	"crypto/ecdsa"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/authproxy/authproxy/internal/bounded"
)

// TestCacheBound: a full cache first drops the assertions past their
// refresh point, then the one closest to it, and always keeps the new one.
func TestCacheBound(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{Issuer: "https://proxy.example", Audience: "https://app.example",
		Keys: []*ecdsa.PrivateKey{key}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	s.cache = bounded.New[Identity, string](8)
	id := func(i int) Identity { return Identity{Subject: "u" + strconv.Itoa(i), SessionID: strconv.Itoa(i)} }
	start := now
	add := func(i int) {
		t.Helper()
		if _, err := s.Assertion(id(i)); err != nil {
			t.Fatal(err)
		}
		if n := s.cache.Len(); n > 8 {
			t.Fatalf("after id %d: %d entries, bound 8", i, n)
		}
	}
	cached := func(want ...int) {
		t.Helper()
		for i := range 10 {
			_, ok := s.cache.Get(id(i), now)
			if ok != slices.Contains(want, i) {
				t.Errorf("id %d cached = %v", i, ok)
			}
		}
	}

	for i := range 8 { // signed a second apart: id 0 is the first to refresh
		add(i)
		now = now.Add(time.Second)
	}
	add(8) // full: id 0 makes room
	cached(1, 2, 3, 4, 5, 6, 7, 8)

	now = start.Add(s.ttl/2 + 2*time.Second) // ids 1 and 2 at or past their refresh point
	add(9)
	cached(3, 4, 5, 6, 7, 8, 9)
	if n := s.cache.Len(); n != 7 {
		t.Errorf("%d entries, want 7", n)
	}
}

func TestCacheBoundUnderChurn(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Issuer: "https://proxy.example", Audience: "https://app.example", Keys: []*ecdsa.PrivateKey{key}})
	if err != nil {
		t.Fatal(err)
	}
	s.cache = bounded.New[Identity, string](100)
	for i := range 1000 {
		if _, err := s.Assertion(Identity{Subject: "u", SessionID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if n := s.cache.Len(); n > 100 {
			t.Fatalf("%d entries, bound 100", n)
		}
	}
}
