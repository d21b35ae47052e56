package assertion_test

import (
	"crypto/ecdsa"
	"strconv"
	"testing"
	"time"

	"github.com/authproxy/authproxy/proxy/assertion"
)

// The benchmarks in this file measure the assertion on the proxy's hot path:
// every proxied request of a session calls Assertion, and all but one per
// TTL/2 are cache hits.

var benchID = assertion.Identity{
	Subject:   "auth0|64b7f0c2a1e4d3b2c1a09f8e",
	Email:     "alice@example.com",
	SessionID: "k3Jq9vR2xW8nL5tY7uB4mZ1cA6dF0gHs", // e.g. a base64 hash of the cookie
}

// BenchmarkAssertionCached is the steady state: a cache hit.
func BenchmarkAssertionCached(b *testing.B) {
	s := mustSigner(b, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(b)}})
	want := mustAssert(b, s, benchID)
	b.ReportAllocs()
	for b.Loop() {
		if tok, err := s.Assertion(benchID); err != nil || tok != want {
			b.Fatal("cache miss")
		}
	}
}

// BenchmarkAssertionCachedParallel is the steady state with many sessions
// in concurrent requests.
func BenchmarkAssertionCachedParallel(b *testing.B) {
	s := mustSigner(b, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(b)}})
	ids := make([]assertion.Identity, 1000)
	for i := range ids {
		ids[i] = benchID
		ids[i].SessionID += strconv.Itoa(i)
		mustAssert(b, s, ids[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Assertion(ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkAssertionSign is a cache miss: what a session pays once per
// TTL/2.
func BenchmarkAssertionSign(b *testing.B) {
	clk := newClock(time.Now())
	s := mustSigner(b, assertion.Config{Keys: []*ecdsa.PrivateKey{mustKey(b)}, Now: clk.Now})
	b.ReportAllocs()
	for b.Loop() {
		clk.Add(assertion.DefaultTTL / 2)
		if _, err := s.Assertion(benchID); err != nil {
			b.Fatal(err)
		}
	}
}
