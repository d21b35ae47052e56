package redisstore

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/session"
)

// The ticket cookie is sealed by securecookie with keys derived from the
// configured secrets under labels of its own. The cookie store derives its
// keys from the same secrets under other labels, and both cookies share a
// name, so a ticket cookie never decodes as a cookie-store session, nor a
// session cookie as a ticket: switching stores means logging in again,
// never a half-read session.
const (
	hmacLabel = "authproxy redisstore ticket hmac"
	aesLabel  = "authproxy redisstore ticket aes"
)

// ticketCookie is what the browser holds: the ticket and the session's
// expiry (short JSON names: it is sent with every request).
type ticketCookie struct {
	Ticket string    `json:"k"`
	Expiry time.Time `json:"x"`
}

// ticketCodecs derives the ticket cookie's codecs, one per secret: the
// first encodes, all decode, so keys rotate as the cookie store's do.
func ticketCodecs(secrets [][]byte, maxAge time.Duration) ([]securecookie.Codec, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("redisstore: at least one secret is required")
	}
	var codecs []securecookie.Codec
	for i, secret := range secrets {
		if n := len(secret); n != 32 && n != 64 {
			return nil, fmt.Errorf("redisstore: secret %d is %d bytes, want 32 or 64", i+1, n)
		}
		c, err := newCodec(secret, hmacLabel, aesLabel, maxAge)
		if err != nil {
			return nil, err
		}
		codecs = append(codecs, c)
	}
	return codecs, nil
}

func newCodec(secret []byte, hmacLabel, aesLabel string, maxAge time.Duration) (*securecookie.SecureCookie, error) {
	hashKey, err := hkdf.Key(sha256.New, secret, nil, hmacLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("redisstore: derive hmac key: %w", err)
	}
	blockKey, err := hkdf.Key(sha256.New, secret, nil, aesLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("redisstore: derive aes key: %w", err)
	}
	c := securecookie.New(hashKey, blockKey)
	c.SetSerializer(securecookie.JSONEncoder{})
	c.MaxAge(int(maxAge / time.Second))
	c.MaxLength(1024) // a ticket cookie is under 300 bytes
	return c, nil
}

var (
	errNoCookie = fmt.Errorf("%w: no ticket cookie", session.ErrNoSession)
	errNoTicket = fmt.Errorf("%w: cookie carries no ticket", session.ErrNoSession)
)

// openTicket is a ticket cookie opened and checked: its ticket parsed, and
// the session's expiry.
type openTicket struct {
	t      ticket
	expiry time.Time
}

// readCookie opens the request's ticket cookie. Anything but a valid,
// unexpired ticket of ours wraps session.ErrNoSession.
func (s *Store) readCookie(r *http.Request) (openTicket, error) {
	return s.readCookieAt(r, s.now())
}

// readCookieAt is readCookie at now (by Config.Now).
func (s *Store) readCookieAt(r *http.Request, now time.Time) (openTicket, error) {
	value, ok := cookie.Value(r.Header, s.name)
	if !ok {
		return openTicket{}, errNoCookie
	}
	k := s.keys.Load()
	ot, cached := k.verified.Get(value, now)
	if !cached {
		tc, err := k.open(s.name, value)
		if err != nil {
			return openTicket{}, err
		}
		if ot.t, err = parseTicket(tc.Ticket); err != nil {
			return openTicket{}, err
		}
		ot.expiry = tc.Expiry
	}
	if !now.Before(ot.expiry) {
		if cached {
			k.verified.Delete(value)
		}
		return openTicket{}, errExpired
	}
	if !cached {
		// The value may point into the request's header memory; keep a copy.
		k.verified.Put(strings.Clone(value), ot, ot.expiry, now)
	}
	return ot, nil
}

// openCookie verifies and decrypts a ticket cookie's value, sealed under
// name; it does not check the expiry.
func (s *Store) openCookie(name, value string) (ticketCookie, error) {
	return s.keys.Load().open(name, value)
}

// open is openCookie with these keys.
func (k *keys) open(name, value string) (ticketCookie, error) {
	var tc ticketCookie
	if err := securecookie.DecodeMulti(name, value, &tc, k.codecs...); err != nil {
		if tc, err = readLegacy(name, value, k.legacy); err != nil {
			return ticketCookie{}, err
		}
	}
	if tc.Ticket == "" {
		return ticketCookie{}, errNoTicket
	}
	return tc, nil
}

// maxVerified bounds the cache of verified ticket cookies (Store.verified):
// about 400 bytes each with the cookie's value, so a few MiB at most.
const maxVerified = 4096

// writeCookie sets the ticket cookie of t, living until expiry.
func (s *Store) writeCookie(w http.ResponseWriter, r *http.Request, t ticket, expiry time.Time) error {
	maxAge := int(expiry.Sub(s.now()) / time.Second)
	if maxAge <= 0 {
		return fmt.Errorf("redisstore: session already expired")
	}
	value, err := securecookie.EncodeMulti(s.name, ticketCookie{Ticket: t.String(), Expiry: expiry}, s.keys.Load().codecs...)
	if err != nil {
		return fmt.Errorf("redisstore: encode ticket cookie: %w", err)
	}
	http.SetCookie(w, s.cookie(r, s.name, value, maxAge))
	s.expireChunks(w, r)
	return nil
}

// clearCookie expires the ticket cookie, whether or not the request had it.
func (s *Store) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, s.cookie(r, s.name, "", -1))
	s.expireChunks(w, r)
}

// expireChunks expires the numbered cookies (name_0, name_1...) the request
// carries: what the cookie store wrote for a large session before the
// deployment switched stores. Left alone they would ride along every
// request until they expire.
func (s *Store) expireChunks(w http.ResponseWriter, r *http.Request) {
	s.expireChunksOf(w, r, s.name)
}

// expireChunksOf expires the request's cookies named name_0, name_1...
func (s *Store) expireChunksOf(w http.ResponseWriter, r *http.Request, name string) {
	for _, c := range r.Cookies() {
		rest, ok := strings.CutPrefix(c.Name, name+"_")
		if ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			http.SetCookie(w, s.cookie(r, c.Name, "", -1))
		}
	}
}

// cookie has the attributes of every authproxy cookie.
func (s *Store) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   s.domain,
		MaxAge:   maxAge,
		Secure:   s.secure != nil && s.secure(r),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
