package assertion

import (
	"crypto/ecdsa"
	"strconv"
	"testing"
	"time"
)

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
	s.maxEntries = 8
	id := func(i int) Identity { return Identity{Subject: "u" + strconv.Itoa(i), SessionID: strconv.Itoa(i)} }
	add := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := s.Assertion(id(i)); err != nil {
				t.Fatal(err)
			}
			if n := len(s.cache); n > s.maxEntries {
				t.Fatalf("after id %d: %d entries, bound %d", i, n, s.maxEntries)
			}
		}
	}
	cached := func(i int) bool { _, ok := s.cache[id(i)]; return ok }

	add(0, 4)
	now = now.Add(s.ttl / 2) // 0-3 are past their refresh point
	add(4, 8)
	if len(s.cache) != 8 {
		t.Fatalf("%d entries, want 8", len(s.cache))
	}
	add(8, 9) // full: the stale entries go, and only they
	for i := range 9 {
		if want := i >= 4; cached(i) != want {
			t.Errorf("id %d cached = %v, want %v", i, cached(i), want)
		}
	}
	add(9, 12) // full again, nothing stale: arbitrary entries make room
	add(12, 13)
	if n := len(s.cache); n != 8 {
		t.Errorf("%d entries, want 8 (7/8 of the bound, then the new one)", n)
	}
	if !cached(12) {
		t.Error("the newest entry is not cached")
	}

	// Refreshing a cached identity in a full cache evicts nothing.
	now = now.Add(s.ttl / 2)
	before := len(s.cache)
	add(12, 13)
	if len(s.cache) != before {
		t.Errorf("refresh changed the size from %d to %d", before, len(s.cache))
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
	s.maxEntries = 100
	for i := range 1000 {
		if _, err := s.Assertion(Identity{Subject: "u", SessionID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		if n := len(s.cache); n > s.maxEntries {
			t.Fatalf("%d entries, bound %d", n, s.maxEntries)
		}
	}
}
