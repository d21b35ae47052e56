package bounded

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// step is one call on a Map of 3 entries. For get and add, want is the
// result; keys lists the live keys after the step (sorted), when not nil.
type step struct {
	op       string // put, add, get, del
	key      string
	exp, now int // seconds after t0
	want     bool
	keys     []string
}

func TestMap(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"get what was put", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "get", key: "a", now: 9, want: true},
			{op: "get", key: "b", now: 0, want: false},
		}},
		{"expired at exp, not after", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "get", key: "a", now: 10, want: false},
			{op: "get", key: "a", now: 11, want: false},
		}},
		{"put replaces value and expiry", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "put", key: "a", exp: 20, now: 1, keys: []string{"a"}},
			{op: "get", key: "a", now: 15, want: true},
		}},
		{"put of an expired entry removes the old one", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "put", key: "a", exp: 5, now: 5, keys: []string{}},
		}},
		{"full: evicts the entry that expires first, not the oldest", []step{
			{op: "put", key: "a", exp: 30, now: 0},
			{op: "put", key: "b", exp: 10, now: 0},
			{op: "put", key: "c", exp: 20, now: 0},
			{op: "put", key: "d", exp: 40, now: 1, keys: []string{"a", "c", "d"}},
		}},
		{"full of the same expiry: evicts one, keeps recording", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "put", key: "b", exp: 10, now: 0},
			{op: "put", key: "c", exp: 10, now: 0},
			{op: "put", key: "d", exp: 10, now: 0},
			{op: "get", key: "d", now: 0, want: true},
		}},
		{"put drops every expired entry", []step{
			{op: "put", key: "a", exp: 5, now: 0},
			{op: "put", key: "b", exp: 6, now: 0},
			{op: "put", key: "c", exp: 30, now: 0},
			{op: "put", key: "d", exp: 30, now: 6, keys: []string{"c", "d"}},
		}},
		{"replacing in a full map evicts nothing", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "put", key: "b", exp: 20, now: 0},
			{op: "put", key: "c", exp: 30, now: 0},
			{op: "put", key: "a", exp: 40, now: 1, keys: []string{"a", "b", "c"}},
			{op: "put", key: "d", exp: 40, now: 1, keys: []string{"a", "c", "d"}},
		}},
		{"add records once", []step{
			{op: "add", key: "a", exp: 10, now: 0, want: true},
			{op: "add", key: "a", exp: 10, now: 1, want: false},
			{op: "get", key: "a", now: 1, want: true},
		}},
		{"add after expiry records again", []step{
			{op: "add", key: "a", exp: 10, now: 0, want: true},
			{op: "add", key: "a", exp: 20, now: 10, want: true},
			{op: "get", key: "a", now: 15, want: true},
		}},
		{"add in a full map of live entries evicts and records", []step{
			{op: "add", key: "a", exp: 10, now: 0, want: true},
			{op: "add", key: "b", exp: 20, now: 0, want: true},
			{op: "add", key: "c", exp: 30, now: 0, want: true},
			{op: "add", key: "d", exp: 40, now: 1, want: true, keys: []string{"b", "c", "d"}},
			{op: "add", key: "d", exp: 40, now: 2, want: false},
		}},
		{"delete", []step{
			{op: "put", key: "a", exp: 10, now: 0},
			{op: "put", key: "b", exp: 20, now: 0},
			{op: "del", key: "a", keys: []string{"b"}},
			{op: "del", key: "zz", keys: []string{"b"}},
			{op: "get", key: "a", now: 0, want: false},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := New[string, int](3)
			for i, s := range tt.steps {
				var got bool
				switch s.op {
				case "put":
					m.Put(s.key, i, at(s.exp), at(s.now))
				case "add":
					got = m.Add(s.key, i, at(s.exp), at(s.now))
				case "get":
					_, got = m.Get(s.key, at(s.now))
				case "del":
					m.Delete(s.key)
				}
				if (s.op == "get" || s.op == "add") && got != s.want {
					t.Errorf("step %d: %s %q = %v, want %v", i, s.op, s.key, got, s.want)
				}
				if s.keys != nil {
					if got := keys(m); !slices.Equal(got, s.keys) {
						t.Errorf("step %d: keys %v, want %v", i, got, s.keys)
					}
				}
				check(t, m)
			}
		})
	}
}

// TestMapAgainstModel drives a Map and a plain map with random operations
// and distinct expiries (so the entry evicted is never a tie).
func TestMapAgainstModel(t *testing.T) {
	const max = 8
	m := New[int, int](max)
	model := map[int]time.Time{}
	rng := rand.New(rand.NewPCG(1, 2))
	now := 0
	for i := range 20_000 {
		now += rng.IntN(2)
		key := rng.IntN(20)
		exp := at(now).Add(time.Duration(1+rng.IntN(30))*time.Second + time.Duration(i)) // distinct
		switch rng.IntN(4) {
		case 0, 1:
			m.Put(key, i, exp, at(now))
			modelPut(model, max, key, exp, at(now))
		case 2:
			live := model[key].After(at(now))
			if got := m.Add(key, i, exp, at(now)); got == live {
				t.Fatalf("op %d: Add(%d) = %v with a live entry %v", i, key, got, live)
			}
			if !live {
				modelPut(model, max, key, exp, at(now))
			}
		case 3:
			m.Delete(key)
			delete(model, key)
		}
		if len(model) != m.Len() {
			t.Fatalf("op %d: %d entries, model %d", i, m.Len(), len(model))
		}
		for k, e := range model {
			if _, ok := m.Get(k, at(now)); ok != e.After(at(now)) {
				t.Fatalf("op %d: Get(%d) = %v, model expires %v at %v", i, k, ok, e, at(now))
			}
		}
		check(t, m)
	}
}

// modelPut is Put's rule written plainly.
func modelPut(model map[int]time.Time, max, key int, exp, now time.Time) {
	if !exp.After(now) {
		delete(model, key)
		return
	}
	for k, e := range model {
		if !e.After(now) {
			delete(model, k)
		}
	}
	if _, ok := model[key]; !ok && len(model) >= max {
		first := 0
		for k, e := range model {
			if _, ok := model[first]; !ok || e.Before(model[first]) {
				first = k
			}
		}
		delete(model, first)
	}
	model[key] = exp
}

// TestMapConcurrent is for the race detector: readers and writers at once
// on a small Map, which evicts all the time.
func TestMapConcurrent(t *testing.T) {
	m := New[string, int](16)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				key := strconv.Itoa((g*7 + i) % 40)
				now := at(i / 100)
				switch i % 4 {
				case 0:
					m.Put(key, i, now.Add(time.Duration(1+i%5)*time.Second), now)
				case 1:
					m.Add(key, i, now.Add(time.Second), now)
				case 2:
					m.Delete(key)
				default:
					m.Get(key, now)
				}
			}
		})
	}
	wg.Wait()
	if n := m.Len(); n > 16 {
		t.Errorf("%d entries, bound 16", n)
	}
	check(t, m)
}

func TestGetAllocations(t *testing.T) {
	m := New[string, [4]string](4)
	key := "a long cookie value, as long as it gets"
	m.Put(key, [4]string{"x"}, at(10), at(0))
	probe := string([]byte(key)) // equal, but not the stored string
	if n := testing.AllocsPerRun(100, func() { m.Get(probe, at(1)) }); n != 0 {
		t.Errorf("Get: %v allocs, want 0", n)
	}
}

func BenchmarkGet(b *testing.B) {
	m := New[string, [8]string](4096)
	for i := range 4096 {
		m.Put(strconv.Itoa(i)+"-some-cookie-value-of-some-length", [8]string{}, at(3600), at(0))
	}
	key := "17-some-cookie-value-of-some-length"
	b.ReportAllocs()
	for b.Loop() {
		m.Get(key, at(1))
	}
}

func keys[K interface{ ~string }, V any](m *Map[K, V]) []K {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ks := make([]K, 0, len(m.items))
	for k := range m.items {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// check verifies the invariants: bound, map and heap agree, heap order.
func check[K comparable, V any](t *testing.T, m *Map[K, V]) {
	t.Helper()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.items) > m.max || len(m.items) != len(m.heap) {
		t.Fatalf("%d items, %d in heap, bound %d", len(m.items), len(m.heap), m.max)
	}
	for i, it := range m.heap {
		if it.idx != i || m.items[it.key] != it {
			t.Fatalf("heap[%d] out of place (idx %d)", i, it.idx)
		}
		if i > 0 && it.exp.Before(m.heap[(i-1)/2].exp) {
			t.Fatalf("heap[%d] expires before its parent", i)
		}
	}
}
