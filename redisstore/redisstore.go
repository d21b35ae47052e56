// Package redisstore keeps authproxy sessions in Redis, with only an opaque
// ticket in the browser. Store is a session.Store, and also a
// session.Revoker, session.Locker and session.OnceMarker: what replicas
// sharing one Redis can do together.
//
// # Why
//
// The cookie store needs no server, but what it wrote stays valid until it
// expires: a copy of a cookie taken before logout still works. Some
// deployments need sessions that can be ended everywhere and at once (logout,
// OpenID Connect back-channel logout, an administrator revoking a user), or
// carry tokens too large for cookies. Those sessions must live on a server
// that every replica asks. Redis is what operations teams already run, as a
// standalone server, with Sentinel or as a Cluster; go-redis's
// UniversalClient speaks to all three, and this package only uses commands
// that work on each (no transaction or script spans two keys).
//
// # Design
//
// The session cookie carries only a ticket: a random session id (16 bytes)
// and a random per-session key (32 bytes), with the session's expiry. It is
// sealed with securecookie, key rotation and attributes as the cookie
// store's session cookie, and has its name, but keys of its own (see
// cookie.go). It stays under 300 bytes whatever the session holds. The
// ticket is this package's alone: Load hands out only the session id, as
// session.Session.ID.
//
// Redis holds, under prefix+"s:"+id, the session JSON sealed with AES-256-GCM
// under the ticket's key, with the id and a short plaintext header (format
// version, creation and expiry times) as additional data. Redis never sees
// the key, so a dump of Redis reveals no token, e-mail or claim, and an entry
// cannot be moved to another id. The entry's TTL is the session's remaining
// lifetime (session.Policy.End: the sooner of Expiry and Seen+Idle); Load
// also checks it against Config.Now.
//
// Three sorted sets, scored by expiry in Unix milliseconds, index the
// entries: prefix+"u:"+H(user) and prefix+"sid:"+H(sid) for Sessions,
// RevokeUser and RevokeSID, and prefix+"all" for Count. H is SHA-256 in
// base64url: it bounds key lengths and keeps user names and e-mail addresses
// (when the user claim is one) out of key names, although someone holding a
// dump can still test a guessed name. Each index is updated by a one-key Lua
// script that drops expired members, adds the new one and sets the set's TTL
// to its latest member's, so indexes never outlive their sessions and stay
// bounded by the live sessions. Members whose entry was deleted (logout,
// Revoke) are dropped lazily, by Sessions or when they expire.
//
// Without the cache (Config.CacheSize 0), Load costs one GET, so a
// revocation is seen by every replica on its next request. With it, Load
// usually costs no round trip: every write announces the sessions it
// changed on a pub/sub channel and each replica drops them from its cache;
// a replica that cannot be sure it has heard every announcement stops
// using its cache (cache.go). (The ticket cookie's verification is cached
// too, by exact value, as the cookie store caches its sessions.)
//
// Save tells a refresh from a login by the session it is given. Load sets
// Session.ID to the session id, so a session that was loaded, then
// updated (new tokens, a later expiry, the idle timeout's last use) and saved
// again is a refresh: the entry is rewritten under the same id and key, and
// the cookie is left alone unless the expiry moved. The rewrite uses SET XX
// after checking the entry, so a refresh never brings back a session revoked
// while it was in flight; it fails with ErrNoSession instead. A session built
// by a login has no ID: it always gets a new id and key, and the entry of
// the ticket the request carried, if any, is deleted. So a ticket planted in
// a browser before login (session fixation) never receives the victim's
// session, and one browser holds one session.
//
// Every Redis call runs under the request's (or caller's) context bounded by
// Config.Timeout. A Redis that fails or does not answer yields an error
// wrapping session.ErrUnavailable: the proxy answers 503 rather than sending
// the user to log in again, and recovers when Redis returns (go-redis
// reconnects by itself). The cache's subscription is the only goroutine
// started; Close ends it.
//
// # Operating
//
// Redis 4.0 or later (UNLINK), Valkey included. Set maxmemory-policy to
// noeviction: an evicted entry is a logout, and an evicted index a session
// that RevokeUser cannot find. Every key expires by itself, so memory
// follows the number of live sessions (about 1 kB each with an ID token).
// On a Cluster, prefix+"all" is one key on one shard, written at each login,
// refresh and logout; everything else spreads over the slots.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/internal/bounded"
	"github.com/authproxy/authproxy/session"
)

const (
	// DefaultPrefix starts every key the store writes.
	DefaultPrefix = "authproxy:"
	// DefaultTimeout bounds each Redis call. A GET on a healthy server takes
	// well under a millisecond; past this the server is in trouble.
	DefaultTimeout = time.Second
)

// Config configures a Store.
type Config struct {
	// Client reaches Redis: *redis.Client, a Sentinel failover client or
	// *redis.ClusterClient, as redis.NewUniversalClient returns. Build it
	// with ContextTimeoutEnabled (context_timeout_enabled=true in a URL):
	// without it go-redis ignores context deadlines on socket reads and
	// writes, and a hung server holds a request for ReadTimeout times
	// MaxRetries+1 instead of Timeout.
	Client redis.UniversalClient
	// Policy bounds sessions (Lifetime is required). The ticket cookie
	// lives until the session's Expiry; an entry in Redis until its End.
	Policy session.Policy
	// Name of the ticket cookie (required): the cookie store's session
	// cookie name, so that the proxy, which keeps the cookie store's
	// cookies from the upstream, keeps this one too, and switching stores
	// replaces one cookie by the other.
	Name string
	// Legacy is an earlier name of the ticket cookie (a default that
	// changed): Migrate moves a ticket found under it to Name.
	Legacy string
	Domain string
	// Secure reports whether the request reached the proxy over https, which
	// marks the cookie Secure. Nil means never.
	Secure func(*http.Request) bool
	// Secrets are 32 or 64 random bytes each, the cookie store's: the first
	// seals the ticket cookie, all open it.
	Secrets [][]byte
	// Prefix starts every key (DefaultPrefix when empty), so several
	// deployments can share one Redis.
	Prefix string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Timeout bounds each Redis call (DefaultTimeout when zero).
	Timeout time.Duration
	// CacheSize is how many verified sessions each replica keeps in memory
	// (see cache.go); 0 turns the cache off, and every Load reads Redis.
	CacheSize int
	// CacheTTL bounds how long a session stays cached (DefaultCacheTTL
	// when zero).
	CacheTTL time.Duration
}

// Store keeps sessions in Redis and their tickets in cookies. It is safe for
// concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	policy  session.Policy
	prefix  string
	now     func() time.Time
	timeout time.Duration
	// The ticket cookie.
	name, domain string
	legacyName   string // "" without Config.Legacy
	secure       func(*http.Request) bool
	keys         atomic.Pointer[keys] // swapped whole by SetSecrets
	// cache holds verified sessions; nil when Config.CacheSize is 0.
	cache *cache
}

// keys is what the secrets yield for the ticket cookie. They change
// together, so a cookie opened with a key since removed is never served
// from the cache.
type keys struct {
	codecs []securecookie.Codec
	legacy []securecookie.Codec
	// verified holds the ticket cookies these keys have opened, by exact
	// value, so a user's next request costs a lookup instead of an HMAC, an
	// AES pass, a JSON decode and the ticket's base64. (The sessions
	// themselves are in cache.)
	verified *bounded.Map[string, openTicket]
}

// unavailable reports that Redis could not serve a call: down, unreachable,
// too slow, or answering with an error. The session may well be valid; the
// caller should answer 503, not ask for a new login.
func unavailable(op string, err error) error {
	return fmt.Errorf("redisstore: %s: redis %w: %w", op, session.ErrUnavailable, err)
}

// ErrNotFound means Revoke found no live session with that id.
var ErrNotFound = errors.New("redisstore: no such session")

var (
	errUnknown = fmt.Errorf("%w: unknown, expired or revoked ticket", session.ErrNoSession)
	errExpired = fmt.Errorf("%w: session expired", session.ErrNoSession)
)

// New checks cfg and PINGs Redis, so that a Redis unreachable at start is a
// clear error naming its address rather than a 503 on the first request.
// ctx bounds the PING.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("redisstore: Config.Client is required")
	}
	if err := cfg.Policy.Check(); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	if cfg.Name == "" {
		return nil, errors.New("redisstore: Config.Name is required")
	}
	if cfg.Legacy == cfg.Name {
		cfg.Legacy = ""
	}
	if cfg.Legacy != "" && (strings.HasPrefix(cfg.Name, cfg.Legacy+"_") || strings.HasPrefix(cfg.Legacy, cfg.Name+"_")) {
		return nil, fmt.Errorf("redisstore: the names %q and %q overlap", cfg.Name, cfg.Legacy)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheSize < 0 {
		return nil, errors.New("redisstore: Config.CacheSize must not be negative")
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cc, ok := cfg.Client.(*redis.ClusterClient); ok && cfg.CacheSize > 0 {
		if o := cc.Options(); o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			// Those subscribe on a replica, where announcements arrive over
			// the cluster bus after PUBLISH has answered: the PING lease
			// would not cover them (cache.go).
			return nil, errors.New("redisstore: with Config.CacheSize, a Cluster client must not read from replicas (ReadOnly, RouteByLatency, RouteRandomly)")
		}
	}
	s := &Store{rdb: cfg.Client, policy: cfg.Policy, prefix: cfg.Prefix, now: cfg.Now, timeout: cfg.Timeout,
		name: cfg.Name, legacyName: cfg.Legacy, domain: cfg.Domain, secure: cfg.Secure}
	if err := s.SetSecrets(cfg.Secrets); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, max(cfg.Timeout, 5*time.Second))
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redisstore: redis at %s unreachable: %w", addrOf(cfg.Client), err)
	}
	if cfg.CacheSize > 0 {
		s.cache = newCache(cfg.CacheSize, cfg.CacheTTL)
		s.startCache()
	}
	return s, nil
}

// SetSecrets replaces the secrets that seal the ticket cookie, in place, for
// a configuration reload: the first seals, all open. A ticket cookie sealed
// with a removed secret no longer opens (session.ErrNoSession: the user logs
// in again); the sessions in Redis are untouched. On error nothing changes.
func (s *Store) SetSecrets(secrets [][]byte) error {
	codecs, err := ticketCodecs(secrets, s.policy.Lifetime)
	if err != nil {
		return err
	}
	legacy, err := legacyCodecs(secrets, s.policy.Lifetime)
	if err != nil {
		return err
	}
	s.keys.Store(&keys{codecs: codecs, legacy: legacy, verified: bounded.New[string, openTicket](maxVerified)})
	return nil
}

// addrOf names where a client connects, for error messages.
func addrOf(c redis.UniversalClient) string {
	switch c := c.(type) {
	case *redis.Client:
		if a := c.Options().Addr; a != "FailoverClient" {
			return a
		}
		return "(Sentinel master)"
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	}
	return "(configured address)"
}

// callCtx bounds one Redis call.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) sessionKey(id string) string { return s.prefix + "s:" + id }

// Load returns the request's session, with ID set to the session id (the ID
// of Info and Revoke; never the key). A missing, tampered, foreign,
// unknown, expired or revoked ticket yields an error wrapping
// session.ErrNoSession; a Redis failure, one wrapping session.ErrUnavailable.
func (s *Store) Load(r *http.Request) (session.Session, error) {
	now := s.now()
	ot, err := s.readCookieAt(r, now)
	if err != nil {
		return session.Session{}, err
	}
	t := ot.t
	c := s.cache
	var gen0 uint64
	if c != nil {
		// A session that looks ended is read again: Redis decides.
		if e := c.get(t); e != nil && !s.policy.Ended(&e.sess, now) {
			return e.sess, nil
		}
		gen0 = c.gen.Load() // before the GET: see "The race" in cache.go
	}
	return s.loadStored(r, t, gen0)
}

// loadStored is Load past the cache: it reads t's session from Redis and
// caches it if gen has stayed at gen0. (A function of its own, so that the
// cache hit runs on a small stack frame.)
func (s *Store) loadStored(r *http.Request, t ticket, gen0 uint64) (session.Session, error) {
	c := s.cache
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	e, err := s.get(ctx, t)
	if err != nil {
		if c != nil && errors.Is(err, session.ErrUnavailable) && r.Context().Err() == nil {
			c.distrust() // Redis is in trouble: so may be the subscription
		}
		return session.Session{}, err
	}
	now := s.now()
	if s.policy.Ended(&e.sess, now) {
		return session.Session{}, errExpired
	}
	e.sess.ID = t.id
	if c != nil && e.size <= maxCachedEntry {
		c.fill(gen0, t, e.sess, s.policy.End(&e.sess), now)
	}
	return e.sess, nil
}

// ticket reads and parses the ticket cookie of r.
func (s *Store) ticket(r *http.Request) (ticket, error) {
	ot, err := s.readCookie(r)
	return ot.t, err
}

// entry is a stored session, opened.
type entry struct {
	sess    session.Session
	created time.Time
	size    int // bytes in Redis
}

// get fetches and opens t's entry. A missing entry, or one t's key does not
// open, is ErrNoSession.
func (s *Store) get(ctx context.Context, t ticket) (entry, error) {
	raw, err := s.rdb.Get(ctx, s.sessionKey(t.id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return entry{}, errUnknown
	}
	if err != nil {
		return entry{}, unavailable("load session", err)
	}
	h, plain, err := open(t, raw)
	if err != nil {
		return entry{}, err
	}
	var sess session.Session
	if err := json.Unmarshal(plain, &sess); err != nil {
		return entry{}, fmt.Errorf("%w: stored session: %w", session.ErrNoSession, err)
	}
	return entry{sess: sess, created: h.created, size: len(raw)}, nil
}

// Save stores sess and writes its ticket cookie.
//
// A session that came from Load (its ID set) is a refresh: the entry of
// that id is rewritten and the ticket kept, provided the request still
// carries that ticket and the entry is alive; otherwise (revoked or expired
// meanwhile) Save fails with an error wrapping session.ErrNoSession and
// writes nothing. A refresh cannot change User or SID. Any other session
// (no ID) is a new login: it gets a new id and key, and the entry of the
// ticket the request carried, if any, is deleted.
func (s *Store) Save(w http.ResponseWriter, r *http.Request, sess session.Session) error {
	now := s.now()
	end := s.policy.End(&sess)
	ttl := end.Sub(now)
	if ttl < time.Second {
		return errors.New("redisstore: session already expired")
	}
	if sess.User == "" {
		return errors.New("redisstore: session has no user")
	}
	refreshOf := sess.ID
	plain, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("redisstore: encode session: %w", err)
	}
	ctx := r.Context()

	cur, curErr := s.readCookie(r)
	current, cookieExpiry := cur.t, cur.expiry
	var t ticket
	created, mode := now, "NX"
	if refreshOf != "" {
		if curErr != nil || current.id != refreshOf {
			return fmt.Errorf("%w: refresh of a session whose ticket the request does not carry", session.ErrNoSession)
		}
		cctx, cancel := s.callCtx(ctx)
		e, err := s.get(cctx, current)
		cancel()
		if err != nil {
			return err // gone: revoked or expired since Load
		}
		if e.sess.User != sess.User || e.sess.SID != sess.SID {
			return errors.New("redisstore: a refresh cannot change the session's user or sid")
		}
		t, created, mode = current, e.created, "XX"
	} else {
		t = newTicket()
	}

	val, err := seal(t, header{created: created, expiry: end}, plain)
	if err != nil {
		return err
	}
	nowMS, expMS := now.UnixMilli(), end.UnixMilli()
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	// The pipeline is not atomic. A revocation that runs between the user
	// index and the count index of a new login leaves a count member
	// without a session, which only inflates authproxy_active_sessions
	// until that member's expiry passes; it never leaves a session alive.
	set := pipe.SetArgs(cctx, s.sessionKey(t.id), val, redis.SetArgs{Mode: mode, TTL: ttl})
	s.index(cctx, pipe, s.userKey(sess.User), nowMS, expMS, t.id, mode)
	if sess.SID != "" {
		s.index(cctx, pipe, s.sidKey(sess.SID), nowMS, expMS, t.id, mode)
	}
	s.index(cctx, pipe, s.allKey(), nowMS, expMS, t.id, mode)
	if mode == "NX" && curErr == nil {
		// A login replaces whatever session this browser had.
		pipe.Unlink(cctx, s.sessionKey(current.id))
		pipe.ZRem(cctx, s.allKey(), current.id)
	}
	_, err = pipe.Exec(cctx)
	if errors.Is(set.Err(), redis.Nil) {
		if mode == "XX" {
			// Revoked or expired between the GET above and the SET.
			return errUnknown
		}
		return errors.New("redisstore: session id collision") // 2^-128
	}
	if err != nil {
		if mode == "NX" && curErr == nil {
			// The replaced session may be gone although the reply was
			// lost: announce it anyway (see deleteCount).
			actx, cancel := s.callCtx(context.WithoutCancel(ctx))
			_ = s.announce(actx, current.id)
			cancel()
		}
		return unavailable("save session", err)
	}
	// Every replica's cache drops the session rewritten, or the one this
	// login replaced. A failed announcement leaves other replicas' copies
	// until the cache TTL. A refresh reports it (the session is saved); a
	// login does not fail for it: the replaced session is gone from Redis,
	// and its ticket from this browser.
	var announceErr error
	if mode == "XX" {
		if err := s.announce(ctx, t.id); err != nil {
			announceErr = unavailable("announce saved session", err)
		}
	} else if curErr == nil {
		_ = s.announce(ctx, current.id)
	}

	// A refresh that keeps the expiry leaves the cookie as it is.
	exp := ceilSecond(sess.Expiry)
	if mode == "XX" && cookieExpiry.Equal(exp) {
		return announceErr
	}
	if err := s.writeCookie(w, r, t, exp); err != nil {
		return err
	}
	return announceErr
}

// Touch records a use of sess for the idle timeout and reports whether it
// must be saved for it (session.Policy.Touch). The entry's TTL and index
// scores follow the session's End, so an idle session leaves Redis by
// itself; the ticket cookie keeps the Expiry, so recording a use (Touch,
// then Save) does not rewrite it.
func (s *Store) Touch(sess *session.Session) bool {
	return s.policy.Touch(sess, s.now)
}

// ceilSecond rounds t up to a whole second in UTC: the ticket cookie's
// expiry, short to encode and never before the session's.
func ceilSecond(t time.Time) time.Time {
	c := t.Truncate(time.Second)
	if c.Before(t) {
		c = c.Add(time.Second)
	}
	return c.UTC()
}

// Clear expires the ticket cookie and deletes the session it names, so the
// cookie replayed later is refused. Errors are dropped (session.Store's
// Clear reports none); use Logout to learn of them.
func (s *Store) Clear(w http.ResponseWriter, r *http.Request) {
	_ = s.Logout(w, r)
}

// Logout is Clear that reports whether the server-side session is gone. The
// cookie is expired in any case. An error wrapping session.ErrUnavailable
// means the session may still be alive in Redis until its expiry.
func (s *Store) Logout(w http.ResponseWriter, r *http.Request) error {
	s.clearCookie(w, r)
	t, err := s.ticket(r)
	if err != nil {
		return nil // no ticket of ours: nothing to delete
	}
	ctx, cancel := s.callCtx(r.Context())
	defer cancel()
	if _, err := s.deleteCount(ctx, []string{t.id}, nil); err != nil {
		return unavailable("delete session", err)
	}
	return nil
}

// ticket is what the cookie carries: a session id, public within authproxy
// (Redis key, admin API), and the key that opens the session, which only the
// browser holds.
type ticket struct {
	id  string // base64url of 16 random bytes
	key [32]byte
}

const (
	idLen     = 22 // base64url of 16 bytes
	keyLen    = 43 // base64url of 32 bytes
	ticketLen = idLen + keyLen
)

func newTicket() ticket {
	var id [16]byte
	var t ticket
	// crypto/rand.Read never returns an error; it crashes the program
	// rather than return predictable bytes.
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(t.key[:])
	t.id = base64.RawURLEncoding.EncodeToString(id[:])
	return t
}

func (t ticket) String() string { return t.id + base64.RawURLEncoding.EncodeToString(t.key[:]) }

var errBadTicket = fmt.Errorf("%w: malformed ticket", session.ErrNoSession)

// parseTicket accepts only what newTicket makes. (The cookie is
// authenticated, so anything else is a bug or an old format.)
func parseTicket(s string) (ticket, error) {
	if len(s) != ticketLen || !validID(s[:idLen]) {
		return ticket{}, errBadTicket
	}
	var t ticket
	// Strict: the last character's two unused bits must be zero, so that a
	// key has one spelling, as validID requires of the id.
	if n, err := base64.RawURLEncoding.Strict().Decode(t.key[:], []byte(s[idLen:])); err != nil || n != len(t.key) {
		return ticket{}, errBadTicket
	}
	t.id = s[:idLen]
	return t, nil
}

// validID reports whether id is the canonical base64url of 16 bytes (the
// last character carries 4 unused bits, which must be zero).
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	var b [16]byte
	var again [idLen]byte
	n, err := base64.RawURLEncoding.Decode(b[:], []byte(id))
	base64.RawURLEncoding.Encode(again[:], b[:])
	return err == nil && n == len(b) && string(again[:]) == id
}
