package proxy

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// lateList finds the responses for logged-in users still running
// WatchAfter after they were forwarded, or at their session's expiry if
// that comes first, and starts watching them (handler.watch).
//
// A forwarded request is listed, and unlisted when its response is over; a
// sweep, every tick while anything is listed, takes out those due and
// watches them. A timer per request did this before: its Reset and Stop
// cost more than the session check itself (1.3 µs a request under the
// load script), where listing costs two short critical sections. The
// price is precision: a response is watched up to a tick late. The sweep
// is a timer that re-arms only while requests are listed, so an idle
// proxy, or the handler a reload replaced, holds none.
type lateList struct {
	after  time.Duration // WatchAfter
	tick   time.Duration
	watch  func(*reqInfo)
	shards [lateShards]lateShard
	// armed is set while a sweep is pending. Listing arms the sweep if it
	// is not; the sweep re-arms while anything is listed (see sweep for the
	// order that keeps them consistent). No shared count: two atomic adds
	// a request on one cache line, which both cores write, cost more than
	// the sweep's look at every shard.
	armed atomic.Bool
	timer *time.Timer
}

// lateShards spreads listing over locks, so that the cores do not queue
// on one.
const lateShards = 8

type lateShard struct {
	mu   sync.Mutex
	head lateLink // sentinel of a circular list
	n    int      // requests listed
	_    [64]byte // keeps neighbouring shards' locks off one cache line
}

// lateLink is a request's place in a lateShard's list (in reqInfo).
type lateLink struct {
	prev, next *lateLink
	info       *reqInfo
	due        time.Time
	shard      uint8
	listed     bool // under the shard's mu
}

func newLateList(after time.Duration, watch func(*reqInfo)) *lateList {
	l := &lateList{after: after, tick: min(max(after/10, time.Millisecond), time.Second), watch: watch}
	for i := range l.shards {
		h := &l.shards[i].head
		h.prev, h.next = h, h
	}
	l.timer = time.AfterFunc(time.Hour, l.sweep)
	l.timer.Stop()
	return l
}

// add lists info's response, forwarded now: due after l.after, or at the
// session's expiry if that comes first.
func (l *lateList) add(info *reqInfo, now time.Time) {
	k := &info.late
	k.info, k.due = info, now.Add(l.after)
	if exp := info.sess.Expiry; !exp.IsZero() && exp.Before(k.due) {
		k.due = exp
	}
	k.shard = uint8(rand.Uint32() % lateShards)
	s := &l.shards[k.shard]
	s.mu.Lock()
	k.prev, k.next = s.head.prev, &s.head
	s.head.prev.next = k
	s.head.prev = k
	k.listed = true
	s.n++
	s.mu.Unlock()
	if !l.armed.Load() && l.armed.CompareAndSwap(false, true) {
		l.timer.Reset(l.tick)
	}
}

// remove unlists info's response, which is over, and reports whether it
// was listed. One the sweep has taken is being watched already; the watch
// ends itself when the request's context does.
func (l *lateList) remove(info *reqInfo) bool {
	k := &info.late
	s := &l.shards[k.shard]
	s.mu.Lock()
	listed := k.listed
	if listed {
		unlink(k)
		s.n--
	}
	s.mu.Unlock()
	return listed
}

// unlink takes k out of its list, under its shard's mu.
func unlink(k *lateLink) {
	k.prev.next, k.next.prev = k.next, k.prev
	k.prev, k.next, k.listed = nil, nil, false
}

// sweep (in the timer's goroutine) watches every listed response that is
// due, then re-arms while any is listed.
func (l *lateList) sweep() {
	now := time.Now()
	var due []*reqInfo
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k := s.head.next; k != &s.head; {
			next := k.next
			if !now.Before(k.due) {
				unlink(k)
				s.n--
				due = append(due, k.info)
			}
			k = next
		}
		s.mu.Unlock()
	}
	for _, info := range due {
		go l.watch(info) // its first check may wait on the store, as a timer's did
	}
	// Disarmed first, then the shards read: an add that finds armed set
	// has linked itself before, under a lock read here, so one of the two
	// re-arms.
	l.armed.Store(false)
	if l.len() > 0 && l.armed.CompareAndSwap(false, true) {
		l.timer.Reset(l.tick)
	}
}

// len counts the listed requests.
func (l *lateList) len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}
