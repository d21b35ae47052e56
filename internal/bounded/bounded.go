// Package bounded provides Map, a map bounded in entries whose entries
// expire. It exists because five caches of authproxy need the same thing
// (verified cookie sessions in cookie, used login states, logout-token ids
// and refresh outcomes in oidc, signed assertions in proxy/assertion), and
// none of those packages may import another for it; each hand-written copy
// had its own eviction rule, and one stopped recording when full.
//
// A library LRU does not fit: hashicorp/golang-lru/v2/expirable starts a
// goroutine per cache that runs until Close, has one TTL per cache, reads
// the wall clock itself, and locks exclusively on every Get.
package bounded

import (
	"sync"
	"time"
)

// Map is a map of at most a fixed number of entries, each with its own
// expiry. An expired entry is never returned. When the Map is full, a new
// entry evicts the one that expires first (an expired one if any), so
// recording never stops. Get takes only a read lock and does not allocate.
// It is safe for concurrent use. Callers pass the time, so each follows its
// own (test) clock.
type Map[K comparable, V any] struct {
	mu    sync.RWMutex
	max   int
	items map[K]*item[K, V]
	heap  []*item[K, V] // min-heap by exp: heap[0] expires first
}

type item[K comparable, V any] struct {
	key K
	val V
	exp time.Time
	idx int // position in heap
}

// New returns an empty Map that holds at most max entries. max must be
// positive.
func New[K comparable, V any](max int) *Map[K, V] {
	if max <= 0 {
		panic("bounded: max must be positive")
	}
	return &Map[K, V]{max: max, items: make(map[K]*item[K, V])}
}

// Get returns the value stored under key if it has not expired at now.
func (m *Map[K, V]) Get(key K, now time.Time) (V, bool) {
	m.mu.RLock()
	it, ok := m.items[key]
	var val V
	if ok && now.Before(it.exp) {
		val = it.val
	} else {
		ok = false
	}
	m.mu.RUnlock()
	return val, ok
}

// Put stores val under key until exp, replacing any entry of key. It first
// drops the entries expired at now, then, if the Map is still full, the
// entry that expires first. A val that expires at or before now is not
// stored (and removes the old entry of key).
func (m *Map[K, V]) Put(key K, val V, exp, now time.Time) {
	m.mu.Lock()
	m.putLocked(key, val, exp, now)
	m.mu.Unlock()
}

// Add stores val under key until exp unless key holds an entry that has not
// expired at now, and reports whether it stored it: a check and a record in
// one step, for values that must be used once.
func (m *Map[K, V]) Add(key K, val V, exp, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if it, ok := m.items[key]; ok && now.Before(it.exp) {
		return false
	}
	m.putLocked(key, val, exp, now)
	return true
}

// Delete removes the entry of key, if any.
func (m *Map[K, V]) Delete(key K) {
	m.mu.Lock()
	if it, ok := m.items[key]; ok {
		m.remove(it)
	}
	m.mu.Unlock()
}

// Len returns the number of entries, expired ones included until a Put
// drops them.
func (m *Map[K, V]) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.items)
}

func (m *Map[K, V]) putLocked(key K, val V, exp, now time.Time) {
	it, found := m.items[key]
	switch {
	case !now.Before(exp): // expired already: nothing to keep
		if found {
			m.remove(it)
		}
		return
	case found:
		it.val, it.exp = val, exp
		m.fix(it.idx)
	}
	for len(m.heap) > 0 && !now.Before(m.heap[0].exp) {
		m.remove(m.heap[0])
	}
	if found {
		return
	}
	if len(m.items) >= m.max {
		m.remove(m.heap[0])
	}
	it = &item[K, V]{key: key, val: val, exp: exp, idx: len(m.heap)}
	m.items[key] = it
	m.heap = append(m.heap, it)
	m.up(it.idx)
}

// remove takes it out of the map and the heap.
func (m *Map[K, V]) remove(it *item[K, V]) {
	delete(m.items, it.key)
	last := len(m.heap) - 1
	i := it.idx
	if i != last {
		m.swap(i, last)
	}
	m.heap[last] = nil // let the entry be collected
	m.heap = m.heap[:last]
	if i != last {
		m.fix(i)
	}
}

// fix restores the heap order after heap[i]'s expiry changed.
func (m *Map[K, V]) fix(i int) {
	if !m.down(i) {
		m.up(i)
	}
}

func (m *Map[K, V]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !m.heap[i].exp.Before(m.heap[parent].exp) {
			return
		}
		m.swap(i, parent)
		i = parent
	}
}

// down moves heap[i] towards the leaves and reports whether it moved.
func (m *Map[K, V]) down(i int) bool {
	start, n := i, len(m.heap)
	for {
		least := 2*i + 1
		if least >= n {
			break
		}
		if r := least + 1; r < n && m.heap[r].exp.Before(m.heap[least].exp) {
			least = r
		}
		if !m.heap[least].exp.Before(m.heap[i].exp) {
			break
		}
		m.swap(i, least)
		i = least
	}
	return i > start
}

func (m *Map[K, V]) swap(i, j int) {
	m.heap[i], m.heap[j] = m.heap[j], m.heap[i]
	m.heap[i].idx, m.heap[j].idx = i, j
}
