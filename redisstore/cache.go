package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/internal/bounded"
	"github.com/authproxy/authproxy/session"
)

// The local cache of verified sessions (Config.CacheSize) lets Load answer
// most requests without a Redis round trip, while a revocation is still
// refused on every replica within about a second.
//
// # Why pub/sub, not RESP3 client-side caching
//
// Every write of a session goes through this package (login, refresh and
// touch, logout, Revoke, RevokeUser, RevokeSID), so the writer can announce
// it: once the write has completed in Redis, it PUBLISHes the session ids on
// one channel (prefix+"inval"), and every replica drops them. CLIENT
// TRACKING (natively in github.com/redis/rueidis) was the alternative; we
// chose pub/sub with go-redis because:
//   - the store keeps its one go-redis UniversalClient, as configured for a
//     standalone server, Sentinel or Cluster with TLS and passwords; rueidis
//     would be a second client, a second connection configuration to keep
//     equal, and a second library;
//   - what is cached is the opened session (after AES-GCM and JSON), so a
//     hit costs neither; tracking caches reply bytes, which would still be
//     decrypted and decoded on every hit, or need a second cache of opened
//     sessions with the very race this file handles anyway;
//   - the failure handling is ours and explicit (the lease below), where a
//     library's is a default to audit.
//
// What tracking would also catch and this does not: keys changed outside
// authproxy (an operator's DEL). The cache TTL (Config.CacheTTL) bounds
// those. Expiry needs no message: a hit checks the session's own End, and a
// session that looks ended is read from Redis again, which decides.
//
// # Trust: a lease renewed by PINGs on the subscription
//
// A cache is only as good as the invalidations it has received. The
// subscribing connection sends PING every pingEvery, carrying its send time;
// Redis answers in order with the messages published before it, so when the
// answer to a PING sent at T arrives, every invalidation published before T
// has been applied. Hits are allowed until T+lease only. So:
//   - an error on the subscription (connection closed or reset, CLIENT
//     KILL) or on any Redis call of Load ends the lease at once; a server
//     that hangs or a network that drops packets ends it within lease;
//   - a lost lease means no hits: Load reads Redis, so requests get their
//     answer (or 503) from Redis, as without the cache;
//   - every (re)subscription empties the cache: messages published while
//     unsubscribed were missed. go-redis resubscribes by itself, and the
//     confirmation precedes, on the same connection, the answers to the
//     PINGs that restore the lease.
//
// # The race: a revocation while a request fills the cache
//
// A request that read a session from Redis just before its revocation must
// not put it in the cache after the revocation's message has been applied.
// gen counts invalidations, flushes and lease losses; each increments it
// before dropping anything. Load reads gen before its GET; fill puts the
// session only if gen has not moved since, checked and put under fillMu,
// which invalidations and flushes hold too. So either the invalidation
// came first (gen moved: nothing is put) or it comes after the Put and
// removes the entry itself. (Putting first and removing after a check, as
// an earlier version did, let a request that started after the message
// had been applied hit the entry in between: TestCacheConcurrentRevocation.)
// A writer publishes only after its write completed, so a GET sent after
// the message was applied cannot read the old session. Hits take no lock.
//
// # Idle timeout and touches
//
// A hit returns the cached session with its Seen. Policy.Touch asks for a
// save at most every quarter of the idle timeout per session; that save (a
// refresh) rewrites the entry in Redis and announces it, so every replica,
// this one included, reads the new Seen at its next request. Touches thus
// cost a round trip per session per Idle/4, not per request, and no replica
// keeps an older Seen than Redis for longer than an invalidation takes.
//
// # Bounds
//
// At most Config.CacheSize sessions (internal/bounded evicts the one that
// expires first), each for at most Config.CacheTTL, and only entries of at
// most maxCachedEntry bytes in Redis; larger sessions are read each time.
const (
	// DefaultCacheTTL bounds how long a session stays cached: what a lost
	// invalidation could cost at worst.
	DefaultCacheTTL = 10 * time.Second
	// pingEvery renews the lease; lease bounds how stale the cache can be
	// when the subscription silently stops delivering.
	pingEvery = 100 * time.Millisecond
	lease     = time.Second
	// maxCachedEntry bounds the size in Redis of a cached session (a
	// login with a 1 kB ID token and a few claims takes about 1.3 kB).
	maxCachedEntry = 4 << 10
	// retryEvery spaces reconnection attempts while Redis is down.
	retryEvery = 100 * time.Millisecond
	// silentAfter replaces a subscription that has delivered nothing,
	// not even a PONG, for that long.
	silentAfter = 3 * lease
)

// cached is a session opened with the ticket key, ready for a hit.
type cached struct {
	sess session.Session // ID set
	key  [32]byte
}

// cache is the local cache and the state of the subscription.
type cache struct {
	size int
	ttl  time.Duration
	m    atomic.Pointer[bounded.Map[string, *cached]]
	// gen moves at every invalidation, flush and lease loss, under fillMu.
	gen    atomic.Uint64
	fillMu sync.Mutex
	// applied counts the announcements received and applied, and
	// lastApplied holds the newest one's ids, for tests.
	applied     atomic.Uint64
	lastApplied atomic.Pointer[string]

	// The lease, in nanoseconds of base's monotonic clock.
	base  time.Time
	until atomic.Int64
	// mu orders lease renewals after losses (a late PONG never renews a
	// lease lost after its PING was sent).
	mu   sync.Mutex
	lost int64

	stop context.CancelFunc
	done chan struct{}
}

func newCache(size int, ttl time.Duration) *cache {
	c := &cache{size: size, ttl: ttl, base: time.Now()}
	c.m.Store(bounded.New[string, *cached](size))
	return c
}

// mono is the time on the lease's clock: monotonic, whatever Config.Now.
func (c *cache) mono() int64 { return int64(time.Since(c.base)) }

// trusted reports whether hits are allowed now.
func (c *cache) trusted() bool { return c.mono() < c.until.Load() }

// renew extends the lease after the answer to a PING sent at sent.
func (c *cache) renew(sent int64) {
	c.mu.Lock()
	if sent > c.lost && sent+int64(lease) > c.until.Load() {
		c.until.Store(sent + int64(lease))
	}
	c.mu.Unlock()
}

// distrust ends the lease at once and empties the cache.
func (c *cache) distrust() {
	c.mu.Lock()
	c.lost = c.mono()
	c.until.Store(0)
	c.mu.Unlock()
	c.flush()
}

// flush empties the cache.
func (c *cache) flush() {
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	c.gen.Add(1)
	c.m.Store(bounded.New[string, *cached](c.size))
}

// invalidate drops sessions from the cache.
func (c *cache) invalidate(ids ...string) {
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	c.gen.Add(1)
	m := c.m.Load()
	for _, id := range ids {
		m.Delete(id)
	}
}

// clock is the time on the lease's monotonic clock, for the entries'
// expiries: Config.Now (the wall clock) may jump, and an entry filled
// before it jumped back an hour would otherwise outlive CacheTTL by an hour.
func (c *cache) clock() time.Time { return c.base.Add(time.Duration(c.mono())) }

// get returns the cached session of t, if the lease holds.
// The entry is shared: read it, never change it.
func (c *cache) get(t ticket) *cached {
	m := c.mono() // one clock read for both (time.Now is 60 ns in a VM)
	if m >= c.until.Load() {
		return nil
	}
	e, ok := c.m.Load().Get(t.id, c.base.Add(time.Duration(m)))
	if !ok || e.key != t.key {
		return nil
	}
	return e
}

// fill caches sess, read from Redis after gen was at gen0, unless gen has
// moved since (see "The race" above). end is the session's end and now the
// time, by Config.Now; the entry lives until the sooner of end and CacheTTL,
// on the monotonic clock.
func (c *cache) fill(gen0 uint64, t ticket, sess session.Session, end, now time.Time) {
	mnow := c.clock()
	exp := mnow.Add(min(c.ttl, end.Sub(now)))
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	if c.gen.Load() != gen0 {
		return
	}
	c.m.Load().Put(t.id, &cached{sess: sess, key: t.key}, exp, mnow)
}

// channel is where writers announce the sessions they changed.
func (s *Store) channel() string { return s.prefix + "inval" }

// announce drops ids from this replica's cache and tells the others. It is
// called after the write completed, never before (see "The race").
func (s *Store) announce(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if s.cache != nil {
		s.cache.invalidate(ids...)
	}
	var pub redis.Cmdable = s.rdb
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// PUBLISH is cluster-wide whichever node gets it, but the node
		// owning the channel's slot, where subscribers connect, delivers it
		// before it answers, so the PING lease holds there too.
		if node, err := cc.MasterForKey(ctx, s.channel()); err == nil {
			pub = node
		}
	}
	return pub.Publish(ctx, s.channel(), strings.Join(ids, " ")).Err()
}

// subscribing marks the context of the subscription's calls, so that
// dialWatch knows a dial is the subscription's.
type subscribing struct{}

// dialWatch ends the lease as soon as the subscription dials again: go-redis
// reconnects a subscription inside the call that met the broken
// connection, retrying the dial with backoff (DialerRetries), and returns
// the error only then, 100 ms or more after the connection was lost.
type dialWatch struct{ c *cache }

func (h dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if ctx.Value(subscribing{}) == h.c {
			h.c.distrust()
		}
		return next(ctx, network, addr)
	}
}

func (dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// startCache subscribes to the invalidation channel and keeps the lease,
// in one goroutine that Close ends.
func (s *Store) startCache() {
	ctx, stop := context.WithCancel(context.WithValue(context.Background(), subscribing{}, s.cache))
	watch := dialWatch{s.cache}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		// A Cluster's subscription dials through a node's client, which
		// does not run the Cluster client's hooks. (Should listing the
		// nodes fail, a lost subscription is noticed when go-redis
		// reports it, as described above.)
		cc.OnNewNode(func(n *redis.Client) { n.AddHook(watch) })
		cctx, cancel := s.callCtx(ctx)
		_ = cc.ForEachShard(cctx, func(_ context.Context, n *redis.Client) error {
			n.AddHook(watch)
			return nil
		})
		cancel()
	} else {
		s.rdb.AddHook(watch)
	}
	s.cache.stop, s.cache.done = stop, make(chan struct{})
	go func() {
		defer close(s.cache.done)
		s.listen(ctx)
	}()
}

// listen keeps a subscription until ctx ends, replacing it whenever it
// must be (see subscription).
func (s *Store) listen(ctx context.Context) {
	for ctx.Err() == nil {
		s.subscription(ctx)
	}
}

// subscription applies invalidations and PING answers on one subscription
// until ctx ends or the subscription goes silent for silentAfter (a dead
// peer that TCP has not noticed), then closes it.
//
// PINGs go out from their own goroutine, and the reads have no timeout
// shorter than silentAfter: go-redis keeps a connection after a read
// timeout, even one that struck inside a reply (a TCP segment lost in the
// middle of a message, retransmitted an RTO later), and the next read then
// starts mid-reply. The rest of the message parses as bare strings, which
// go-redis hands out as PONGs: the invalidation would be lost without an
// error while the lease went on being renewed. So any read timeout ends
// this subscription: its stream can no longer be trusted to be in step.
func (s *Store) subscription(ctx context.Context) {
	c := s.cache
	ps := s.rdb.Subscribe(ctx, s.channel())
	// Close unblocks a read waiting for a reply when ctx ends.
	unblock := context.AfterFunc(ctx, func() { _ = ps.Close() })
	pctx, stopPing := context.WithCancel(ctx)
	pinging := make(chan struct{})
	go func() {
		defer close(pinging)
		tick := time.NewTicker(pingEvery)
		defer tick.Stop()
		for {
			cctx, cancel := s.callCtx(pctx)
			err := ps.Ping(cctx, strconv.FormatInt(c.mono(), 10))
			cancel()
			if err != nil && pctx.Err() == nil {
				c.distrust()
			}
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() {
		stopPing()
		<-pinging
		unblock()
		_ = ps.Close()
	}()
	for {
		msg, err := ps.ReceiveTimeout(ctx, silentAfter)
		if ctx.Err() != nil {
			return
		}
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			c.distrust() // silent, or stalled inside a reply: replace it
			return
		}
		if err != nil {
			c.distrust()
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryEvery):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				c.flush() // (re)subscribed: what was published meanwhile is lost
			}
		case *redis.Message:
			c.invalidate(strings.Fields(m.Payload)...)
			c.lastApplied.Store(&m.Payload)
			c.applied.Add(1)
		case *redis.Pong:
			if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				c.renew(sent)
			}
		}
	}
}

// Close stops the cache's subscription (if any). It does not close the
// Redis client, which the caller owns.
func (s *Store) Close() {
	if s.cache == nil || s.cache.stop == nil {
		return
	}
	s.cache.stop()
	<-s.cache.done
	s.cache.distrust()
}
