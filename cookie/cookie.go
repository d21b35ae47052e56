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
	"strconv"
	"strings"
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
	// DefaultLoginTTL bounds how long a user may take at the provider's
	// login page.
	DefaultLoginTTL = 10 * time.Minute
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
	// request must repeat it exactly.
	RedirectURL string `json:"c"`
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
}

// Store keeps sessions in cookies and writes the login cookies. It is a
// session.Store, safe for concurrent use.
type Store struct {
	cfg         Config
	codecs      []securecookie.Codec
	loginCodecs []securecookie.Codec
	loginPrefix string
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
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("cookie: at least one secret is required")
	}
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("cookie: invalid cookie name %q", cfg.Name)
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	s := &Store{cfg: cfg, loginPrefix: cfg.Name + "_login_", cache: newSessionCache(cfg.CacheSize)}
	for i, secret := range cfg.Secrets {
		if n := len(secret); n != 32 && n != 64 {
			return nil, fmt.Errorf("cookie: secret %d is %d bytes, want 32 or 64", i+1, n)
		}
		hashKey, blockKey, err := deriveKeys(secret)
		if err != nil {
			return nil, err
		}
		// No length limit in the codec: Save checks the size itself, to
		// report ErrTooLarge. (Decoding is bounded by what read joins.)
		s.codecs = append(s.codecs, newCodec(hashKey, blockKey, cfg.Policy.Lifetime, 0))
		s.loginCodecs = append(s.loginCodecs, newCodec(hashKey, blockKey, cfg.LoginTTL, chunkSize))
	}
	return s, nil
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
	return s.cfg.Policy.Touch(sess, s.cfg.Now())
}

// Name returns the session cookie's name.
func (s *Store) Name() string { return s.cfg.Name }

// IsOwn reports whether a cookie name belongs to authproxy (session, chunk or
// login cookie), so the proxy can keep it from the upstream.
func (s *Store) IsOwn(name string) bool {
	return strings.HasPrefix(name, s.cfg.Name) &&
		(len(name) == len(s.cfg.Name) || name[len(s.cfg.Name)] == '_')
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
	sess, cached := s.cache.get(value, now)
	if !cached {
		if sess, err = s.decode(value); err != nil {
			return session.Session{}, err
		}
	}
	// No user: a ticket cookie that an earlier version's Redis store sealed
	// with these keys. Not a session.
	if sess.User == "" || s.cfg.Policy.Ended(&sess, now) {
		if cached {
			s.cache.remove(value)
		}
		return session.Session{}, errExpired
	}
	if !cached {
		s.cache.put(value, sess, now)
	}
	return sess, nil
}

var errExpired = fmt.Errorf("%w: session expired", session.ErrNoSession)

// decode verifies and decrypts a session value. (Apart from Load so that a
// cache hit does not pay for the heap-allocated decode target.)
func (s *Store) decode(value string) (session.Session, error) {
	var sess session.Session
	if err := securecookie.DecodeMulti(s.cfg.Name, value, &sess, s.codecs...); err != nil {
		return session.Session{}, fmt.Errorf("%w: %w", session.ErrNoSession, err)
	}
	return sess, nil
}

// read joins the session cookie value, whole or from numbered chunks.
func (s *Store) read(r *http.Request) (string, error) {
	if v, ok := cookieValue(r, s.cfg.Name); ok {
		return v, nil
	}
	var b strings.Builder
	for i := range maxChunks {
		v, ok := cookieValue(r, s.chunkName(i))
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
	value, err := securecookie.EncodeMulti(s.cfg.Name, sess, s.codecs...)
	if err != nil {
		return fmt.Errorf("cookie: encode session: %w", err)
	}
	if len(value) > chunkSize*maxChunks {
		return fmt.Errorf("%w: %d bytes encoded, at most %d fit", ErrTooLarge, len(value), chunkSize*maxChunks)
	}
	maxAge := int(sess.Expiry.Sub(s.cfg.Now()) / time.Second)
	if maxAge <= 0 {
		return errors.New("cookie: session already expired")
	}
	written := map[string]bool{}
	if len(value) <= chunkSize {
		http.SetCookie(w, s.cookie(r, s.cfg.Name, value, maxAge))
		written[s.cfg.Name] = true
	} else {
		for i := 0; len(value) > 0; i++ {
			n := min(chunkSize, len(value))
			name := s.chunkName(i)
			http.SetCookie(w, s.cookie(r, name, value[:n], maxAge))
			written[name] = true
			value = value[n:]
		}
	}
	s.expireStale(w, r, written)
	return nil
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

// SaveLogin stores a login in progress in a cookie of its own.
func (s *Store) SaveLogin(w http.ResponseWriter, r *http.Request, l Login) error {
	name, err := s.loginName(l.State)
	if err != nil {
		return err
	}
	l.Expiry = s.cfg.Now().Add(s.cfg.LoginTTL)
	value, err := securecookie.EncodeMulti(name, l, s.loginCodecs...)
	if err != nil {
		return fmt.Errorf("cookie: encode login: %w", err)
	}
	http.SetCookie(w, s.cookie(r, name, value, int(s.cfg.LoginTTL/time.Second)))
	return nil
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
	var l Login
	if err := securecookie.DecodeMulti(name, c.Value, &l, s.loginCodecs...); err != nil {
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
