// Package cookie keeps authproxy's state in the browser: Store is the
// session.Store that holds the whole session in the browser, and it alone
// writes the short-lived login cookies that carry state, nonce and PKCE
// verifier across the round trip to the identity provider, whichever store
// keeps the sessions.
//
// Values are encrypted and authenticated with gorilla/securecookie. Several
// secrets may be configured: the first encodes, all decode, so keys can be
// rotated without logging everyone out. The package imports no authproxy
// package but session and the internal ones.
package cookie

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/authproxy/authproxy/internal/ascii"
	"github.com/authproxy/authproxy/session"
)

// ErrTooLarge means a session does not fit in the cookies a browser keeps
// for one site (maxChunks chunks); such a session belongs in a server-side
// store.
var ErrTooLarge = errors.New("session too large for cookies")

// ErrNoLogin means the login cookie for a state is missing or unusable.
var ErrNoLogin = errors.New("no valid login in progress")

const (
	// chunkSize keeps each cookie, name and attributes included, under the
	// ~4096 bytes that browsers accept for one cookie.
	chunkSize = 3800
	// maxChunks bounds how much a session may grow; past it the session
	// belongs in a server-side store.
	maxChunks = 8
	// DefaultName is the session cookie's name when Config.Name is empty.
	DefaultName = "_authproxy"
	// DefaultHostName is the session cookie's default name when the public
	// URL is https and the cookie is host-only: the __Host- prefix makes
	// browsers insist on Secure, Path=/ and no Domain.
	DefaultHostName = "__Host-authproxy"
	// DefaultLoginTTL bounds how long a user may take at the provider's
	// login page.
	DefaultLoginTTL = 10 * time.Minute
	// Login cookies ride along on every request until they expire, and any
	// site can start logins (a page that opens /auth/login again and
	// again): a browser keeps at most maxLogins of them, the newest, at
	// most loginBudget bytes together, so they cannot fill the request
	// headers (431, or nginx's 8 KiB header buffers) and lock the user out.
	maxLogins   = 3
	loginBudget = 4096
	// maxLoginBytes bounds one login cookie (name and value); a larger one
	// is refused with ErrTooLarge.
	maxLoginBytes = 2048
)

// Login is the state of one login in progress. Each login has its own cookie,
// named after its state, so logins started in parallel tabs do not collide.
type Login struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	// ReturnTo is the already validated same-origin path to land on.
	ReturnTo string `json:"r"`
	// RedirectURL is the callback URL sent to the provider; the token
	// request must repeat it exactly. Empty when it is configured, not
	// derived from the request.
	RedirectURL string `json:"c,omitempty"`
	// Expiry is set by SaveLogin. securecookie's own MaxAge check reads the
	// wall clock; this one follows Config.Now.
	Expiry time.Time `json:"x"`
}

// Config configures a Store.
type Config struct {
	// Name of the session cookie; the login cookies and chunks derive from it.
	Name   string
	Domain string
	// Secure reports whether the request reached the proxy over https, which
	// marks cookies Secure. Nil means never.
	Secure func(*http.Request) bool
	// Policy bounds sessions (Lifetime is required); the cookie lives as
	// long as the session's Expiry.
	Policy session.Policy
	// LoginTTL bounds a login in progress (DefaultLoginTTL when zero).
	LoginTTL time.Duration
	// Secrets are 32 or 64 random bytes each. The first encodes; all decode.
	Secrets [][]byte
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// CacheSize bounds the cache of verified sessions (DefaultCacheSize
	// when zero; negative disables it).
	CacheSize int
	// Legacy is an earlier name of the session cookie (a default that
	// changed). A session found under it is still accepted, once: Migrate
	// saves it under Name and expires the legacy cookies. (The Redis
	// store's ticket cookie has its own Legacy and Migrate.)
	Legacy string
}

// Store keeps sessions in cookies and writes the login cookies. It is a
// session.Store, safe for concurrent use.
type Store struct {
	cfg         Config
	keys        atomic.Pointer[keys] // swapped whole by SetSecrets
	loginPrefix string
	// legacy reads and clears sessions under Config.Legacy; nil without.
	legacy *Store
}

// keys is what the secrets yield: the codecs and the cache of sessions they
// verified. They change together, so a session verified by a key that was
// since removed is never served from the cache.
type keys struct {
	codecs      []securecookie.Codec
	loginCodecs []securecookie.Codec
	cache       *sessionCache
}

// NewStore checks cfg and derives the cookie keys from its secrets.
func NewStore(cfg Config) (*Store, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.LoginTTL <= 0 {
		cfg.LoginTTL = DefaultLoginTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Policy.Check(); err != nil {
		return nil, fmt.Errorf("cookie: %w", err)
	}
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("cookie: invalid cookie name %q", cfg.Name)
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	s := &Store{cfg: cfg, loginPrefix: cfg.Name + "_login_"}
	if err := s.SetSecrets(cfg.Secrets); err != nil {
		return nil, err
	}
	if cfg.Legacy != "" && cfg.Legacy != cfg.Name {
		old := cfg
		old.Name, old.Legacy, old.CacheSize = cfg.Legacy, "", -1
		legacy, err := NewStore(old)
		if err != nil {
			return nil, fmt.Errorf("cookie: legacy name: %w", err)
		}
		if ownedBy(cfg.Name, cfg.Legacy) || ownedBy(cfg.Legacy, cfg.Name) {
			return nil, fmt.Errorf("cookie: the names %q and %q overlap", cfg.Name, cfg.Legacy)
		}
		s.legacy = legacy
	}
	return s, nil
}

// SetSecrets replaces the secrets in place, for a configuration reload: the
// first encodes, all decode. A session sealed with a secret that is kept
// stays valid; one sealed with a removed secret no longer loads
// (session.ErrNoSession: the user logs in again), and neither does a login
// in progress. On error nothing changes.
func (s *Store) SetSecrets(secrets [][]byte) error {
	if len(secrets) == 0 {
		return errors.New("cookie: at least one secret is required")
	}
	k := &keys{cache: newSessionCache(s.cfg.CacheSize)}
	for i, secret := range secrets {
		if n := len(secret); n != 32 && n != 64 {
			return fmt.Errorf("cookie: secret %d is %d bytes, want 32 or 64", i+1, n)
		}
		hashKey, blockKey, err := deriveKeys(secret)
		if err != nil {
			return err
		}
		// No length limit in the codec: Save checks the size itself, to
		// report ErrTooLarge. (Decoding is bounded by what read joins.)
		k.codecs = append(k.codecs, newCodec(hashKey, blockKey, s.cfg.Policy.Lifetime, 0))
		// Likewise for logins (maxLoginBytes, checked by SaveLogin and
		// LoadLogin).
		k.loginCodecs = append(k.loginCodecs, newCodec(hashKey, blockKey, s.cfg.LoginTTL, 0))
	}
	if s.legacy != nil {
		if err := s.legacy.SetSecrets(secrets); err != nil {
			return err
		}
	}
	s.keys.Store(k)
	return nil
}

// deriveKeys splits one configured secret into independent HMAC and AES keys,
// so the operator manages a single value per key generation. (redisstore
// derives its ticket cookie's keys from the same secrets under other
// labels, so neither store's cookie decodes as the other's.)
func deriveKeys(secret []byte) (hashKey, blockKey []byte, err error) {
	hashKey, err = hkdf.Key(sha256.New, secret, nil, "authproxy cookie hmac", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("cookie: derive hmac key: %w", err)
	}
	blockKey, err = hkdf.Key(sha256.New, secret, nil, "authproxy cookie aes", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("cookie: derive aes key: %w", err)
	}
	return hashKey, blockKey, nil
}

func newCodec(hashKey, blockKey []byte, maxAge time.Duration, maxLen int) *securecookie.SecureCookie {
	c := securecookie.New(hashKey, blockKey)
	c.SetSerializer(securecookie.JSONEncoder{})
	c.MaxAge(int(maxAge / time.Second))
	c.MaxLength(maxLen)
	return c
}

// Touch records a use of sess for the idle timeout and reports whether it
// must be saved for it (session.Policy.Touch).
func (s *Store) Touch(sess *session.Session) bool {
	return s.cfg.Policy.Touch(sess, s.cfg.Now)
}

// Name returns the session cookie's name.
func (s *Store) Name() string { return s.cfg.Name }

// IsOwn reports whether a cookie name belongs to authproxy (session, chunk or
// login cookie, under the current or the legacy name), so the proxy can
// keep it from the upstream.
func (s *Store) IsOwn(name string) bool {
	return ownedBy(name, s.cfg.Name) || (s.legacy != nil && ownedBy(name, s.legacy.cfg.Name))
}

func ownedBy(name, base string) bool {
	return strings.HasPrefix(name, base) && (len(name) == len(base) || name[len(base)] == '_')
}

// Migrate moves a session found under the legacy cookie name (Config.Legacy)
// to the current name, before next sees the request: the session is saved
// under the new name, every legacy cookie is expired, and next reads the
// request as if the browser had sent the new cookie. Without a legacy name
// it returns next.
func (s *Store) Migrate(next http.Handler) http.Handler {
	if s.legacy == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, line := range r.Header["Cookie"] {
			if strings.Contains(line, s.legacy.cfg.Name) { // cheap test first; migrate parses
				r = s.migrate(w, r)
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

// migrate expires r's legacy cookies and, if they hold a valid session and
// r carries none under the current name, saves it under the current name
// and returns r with those cookies added.
func (s *Store) migrate(w http.ResponseWriter, r *http.Request) *http.Request {
	sess, err := s.legacy.Load(r)
	expired := map[string]bool{}
	for _, c := range r.Cookies() {
		if ownedBy(c.Name, s.legacy.cfg.Name) && !expired[c.Name] {
			http.SetCookie(w, s.legacy.cookie(r, c.Name, "", -1))
			expired[c.Name] = true
		}
	}
	if err != nil {
		return r
	}
	if _, err := s.read(r); err == nil {
		return r // a session under the current name wins
	}
	cookies, err := s.save(w, r, sess)
	if err != nil {
		return r
	}
	r = r.Clone(r.Context())
	pairs := make([]string, len(cookies))
	for i, c := range cookies {
		pairs[i] = c.Name + "=" + c.Value
	}
	r.Header.Add("Cookie", strings.Join(pairs, "; "))
	return r
}

// Load returns the request's session. Any problem with the cookie yields an
// error wrapping session.ErrNoSession. The session's ID is always empty:
// nothing is kept on a server.
func (s *Store) Load(r *http.Request) (session.Session, error) {
	value, err := s.read(r)
	if err != nil {
		return session.Session{}, err
	}
	now := s.cfg.Now()
	k := s.keys.Load()
	sess, cached := k.cache.get(value, now)
	if !cached {
		if sess, err = decode(s.cfg.Name, value, k.codecs); err != nil {
			return session.Session{}, err
		}
	}
	// No user: a ticket cookie that an earlier version's Redis store sealed
	// with these keys. Not a session.
	if sess.User == "" || s.cfg.Policy.Ended(&sess, now) {
		if cached {
			k.cache.remove(value)
		}
		return session.Session{}, errExpired
	}
	if !cached {
		k.cache.put(value, sess, now)
	}
	return sess, nil
}

var errExpired = fmt.Errorf("%w: session expired", session.ErrNoSession)

// decode verifies and decrypts a session value. (Apart from Load so that a
// cache hit does not pay for the heap-allocated decode target.)
func decode(name, value string, codecs []securecookie.Codec) (session.Session, error) {
	var sess session.Session
	if err := securecookie.DecodeMulti(name, value, &sess, codecs...); err != nil {
		return session.Session{}, fmt.Errorf("%w: %w", session.ErrNoSession, err)
	}
	return sess, nil
}

// read joins the session cookie value, whole or from numbered chunks.
func (s *Store) read(r *http.Request) (string, error) {
	if v, ok := Value(r.Header, s.cfg.Name); ok {
		return v, nil
	}
	var b strings.Builder
	for i := range maxChunks {
		v, ok := Value(r.Header, s.chunkName(i))
		if !ok {
			break
		}
		b.WriteString(v)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("%w: no cookie", session.ErrNoSession)
	}
	return b.String(), nil
}

// Save writes sess, split into chunks when it does not fit one cookie, and
// expires whatever whole or chunked cookie the request still carries from an
// earlier, differently sized session. sess.ID is not stored.
func (s *Store) Save(w http.ResponseWriter, r *http.Request, sess session.Session) error {
	_, err := s.save(w, r, sess)
	return err
}

// save is Save, returning the cookies written, in order.
func (s *Store) save(w http.ResponseWriter, r *http.Request, sess session.Session) ([]*http.Cookie, error) {
	value, err := securecookie.EncodeMulti(s.cfg.Name, sess, s.keys.Load().codecs...)
	if err != nil {
		return nil, fmt.Errorf("cookie: encode session: %w", err)
	}
	if len(value) > chunkSize*maxChunks {
		return nil, fmt.Errorf("%w: %d bytes encoded, at most %d fit", ErrTooLarge, len(value), chunkSize*maxChunks)
	}
	maxAge := int(sess.Expiry.Sub(s.cfg.Now()) / time.Second)
	if maxAge <= 0 {
		return nil, errors.New("cookie: session already expired")
	}
	var cookies []*http.Cookie
	written := map[string]bool{}
	if len(value) <= chunkSize {
		cookies = append(cookies, s.cookie(r, s.cfg.Name, value, maxAge))
	} else {
		for i := 0; len(value) > 0; i++ {
			n := min(chunkSize, len(value))
			cookies = append(cookies, s.cookie(r, s.chunkName(i), value[:n], maxAge))
			value = value[n:]
		}
	}
	for _, c := range cookies {
		http.SetCookie(w, c)
		written[c.Name] = true
	}
	s.expireStale(w, r, written)
	return cookies, nil
}

// Clear expires the session cookie and all of its chunks.
func (s *Store) Clear(w http.ResponseWriter, r *http.Request) {
	s.expireStale(w, r, nil)
}

// expireStale expires every session cookie or chunk in r not in keep. The
// whole cookie is always expired when absent from keep, even if the request
// did not carry it, so a logout clears the browser however it got there.
func (s *Store) expireStale(w http.ResponseWriter, r *http.Request, keep map[string]bool) {
	if !keep[s.cfg.Name] {
		http.SetCookie(w, s.cookie(r, s.cfg.Name, "", -1))
	}
	for _, c := range r.Cookies() {
		if c.Name != s.cfg.Name && s.isChunk(c.Name) && !keep[c.Name] {
			http.SetCookie(w, s.cookie(r, c.Name, "", -1))
		}
	}
}

func (s *Store) chunkName(i int) string { return s.cfg.Name + "_" + strconv.Itoa(i) }

func (s *Store) isChunk(name string) bool {
	rest, ok := strings.CutPrefix(name, s.cfg.Name+"_")
	if !ok {
		return false
	}
	i, err := strconv.Atoi(rest)
	return err == nil && i >= 0 && i < maxChunks
}

// SaveLogin stores a login in progress in a cookie of its own, and expires
// the oldest login cookies of r beyond maxLogins or loginBudget. A login
// too large for maxLoginBytes (a long ReturnTo) is refused with an error
// wrapping ErrTooLarge, and nothing is written.
func (s *Store) SaveLogin(w http.ResponseWriter, r *http.Request, l Login) error {
	name, err := s.loginName(l.State)
	if err != nil {
		return err
	}
	// Whole seconds in UTC: the shortest JSON time, in a cookie sent often.
	l.Expiry = s.cfg.Now().Add(s.cfg.LoginTTL).UTC().Truncate(time.Second)
	value, err := securecookie.EncodeMulti(name, l, s.keys.Load().loginCodecs...)
	if err != nil {
		return fmt.Errorf("cookie: encode login: %w", err)
	}
	size := len(name) + len(value)
	if size > maxLoginBytes {
		return fmt.Errorf("%w: login cookie of %d bytes, at most %d", ErrTooLarge, size, maxLoginBytes)
	}
	for _, old := range s.loginsToExpire(r, name, size) {
		http.SetCookie(w, s.cookie(r, old, "", -1))
	}
	http.SetCookie(w, s.cookie(r, name, value, int(s.cfg.LoginTTL/time.Second)))
	return nil
}

// loginsToExpire lists the login cookies of r that make way for a new one
// of size bytes: beyond the newest maxLogins-1, beyond loginBudget, and any
// that do not decode or have expired.
func (s *Store) loginsToExpire(r *http.Request, newName string, size int) []string {
	type login struct {
		name   string
		size   int
		expiry time.Time
	}
	var logins []login
	var expire []string
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, s.loginPrefix) || c.Name == newName || slices.Contains(expire, c.Name) ||
			slices.ContainsFunc(logins, func(l login) bool { return l.name == c.Name }) {
			continue
		}
		var l Login
		if len(c.Value) > maxLoginBytes || securecookie.DecodeMulti(c.Name, c.Value, &l, s.keys.Load().loginCodecs...) != nil ||
			!s.cfg.Now().Before(l.Expiry) {
			expire = append(expire, c.Name)
			continue
		}
		logins = append(logins, login{c.Name, len(c.Name) + len(c.Value), l.Expiry})
	}
	slices.SortFunc(logins, func(a, b login) int {
		if c := b.expiry.Compare(a.expiry); c != 0 {
			return c // newest first
		}
		return strings.Compare(a.name, b.name)
	})
	kept, total := 1, size
	for _, l := range logins {
		if kept < maxLogins && total+l.size <= loginBudget {
			kept, total = kept+1, total+l.size
			continue
		}
		expire = append(expire, l.name)
	}
	return expire
}

// LoadLogin returns the login started with state. Any problem yields an error
// wrapping ErrNoLogin.
func (s *Store) LoadLogin(r *http.Request, state string) (Login, error) {
	name, err := s.loginName(state)
	if err != nil {
		return Login{}, err
	}
	c, err := r.Cookie(name)
	if err != nil {
		return Login{}, fmt.Errorf("%w: no login cookie for this state", ErrNoLogin)
	}
	if len(c.Value) > maxLoginBytes {
		return Login{}, fmt.Errorf("%w: login cookie too large", ErrNoLogin)
	}
	var l Login
	if err := securecookie.DecodeMulti(name, c.Value, &l, s.keys.Load().loginCodecs...); err != nil {
		return Login{}, fmt.Errorf("%w: %w", ErrNoLogin, err)
	}
	// The cookie name only carries a prefix of the state; the full state is
	// compared here, inside the authenticated value.
	if l.State != state {
		return Login{}, fmt.Errorf("%w: state mismatch", ErrNoLogin)
	}
	if !s.cfg.Now().Before(l.Expiry) {
		return Login{}, fmt.Errorf("%w: login expired", ErrNoLogin)
	}
	return l, nil
}

// ClearLogin expires the login cookie of state.
func (s *Store) ClearLogin(w http.ResponseWriter, r *http.Request, state string) {
	if name, err := s.loginName(state); err == nil {
		http.SetCookie(w, s.cookie(r, name, "", -1))
	}
}

// loginName derives the login cookie's name from the state. States are
// random base64url strings; anything else is rejected before it can shape a
// cookie name.
func (s *Store) loginName(state string) (string, error) {
	const idLen = 16
	if len(state) < idLen || len(state) > 128 || !validName(state) {
		return "", fmt.Errorf("%w: malformed state", ErrNoLogin)
	}
	return s.loginPrefix + state[:idLen], nil
}

func (s *Store) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   s.cfg.Domain,
		MaxAge:   maxAge,
		Secure:   s.cfg.Secure != nil && s.cfg.Secure(r),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// validName accepts the characters of base64url, which is all authproxy ever
// puts into a cookie name.
func validName(s string) bool { return ascii.IsName(s, "") }
