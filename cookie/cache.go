package cookie

import (
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/authproxy/authproxy/internal/bounded"
	"github.com/authproxy/authproxy/session"
)

// DefaultCacheSize bounds the verified-session cache: about 2 kB of key
// and a few hundred bytes of session each, so a few MiB at most.
const DefaultCacheSize = 4096

// sessionCache remembers sessions this Store has already decrypted and
// verified, keyed by the exact cookie value, so a user's second request
// costs a map lookup instead of an HMAC, an AES pass and a JSON decode.
// A nil *sessionCache caches nothing.
//
// It cannot serve what Load would refuse: only values that decoded and
// verified are added; the key is the whole value, so a changed byte misses;
// an entry expires with its session, and Load checks the session on every
// hit; and each cache belongs to one set of keys (SetSecrets starts an
// empty one, so a removed key's sessions are not served from it). Logout with the cookie
// store clears the browser's cookie but revokes nothing, with or without
// the cache: a replayed copy was valid either way until its expiry. When
// full, the session that expires first makes room; a dropped session only
// costs one decode.
type sessionCache struct {
	m *bounded.Map[string, session.Session]
}

func newSessionCache(max int) *sessionCache {
	if max <= 0 {
		return nil
	}
	return &sessionCache{m: bounded.New[string, session.Session](max)}
}

func (c *sessionCache) get(value string, now time.Time) (session.Session, bool) {
	if c == nil {
		return session.Session{}, false
	}
	return c.m.Get(value, now)
}

func (c *sessionCache) put(value string, sess session.Session, now time.Time) {
	if c == nil {
		return
	}
	// The value may point into the request's header memory; keep a copy.
	c.m.Put(strings.Clone(value), sess, sess.Expiry, now)
}

func (c *sessionCache) remove(value string) {
	if c == nil {
		return
	}
	c.m.Delete(value)
}

// Pairs yields the cookie-pairs of h's Cookie lines as the client wrote
// them (trimmed of SP and HTAB, empty ones skipped), each with its name: the
// part before "=", trimmed. It allocates nothing, unlike parsing the header
// into http.Cookie values, and it is the one scanner of Cookie headers: Load
// reads the session cookie with it, the proxy strips authproxy's cookies
// from every request with it.
//
// Only SP and HTAB are trimmed, as browsers trim a cookie's name and
// net/http reads it: a name with other (Unicode) white space, such as
// " __Host-authproxy", is a cookie of its own in the browser, one a
// sibling subdomain may set, and must not read as the session cookie.
func Pairs(h http.Header) iter.Seq2[string, string] {
	return func(yield func(name, pair string) bool) {
		for _, line := range h["Cookie"] {
			for line != "" {
				var pair string
				pair, line, _ = strings.Cut(line, ";")
				if pair = trimOWS(pair); pair == "" {
					continue
				}
				name, _, _ := strings.Cut(pair, "=")
				if !yield(trimOWS(name), pair) {
					return
				}
			}
		}
	}
}

// Value returns the value of the first cookie called name in h (without
// the quotes of a quoted value), read as Pairs reads them: the session
// stores take their cookies with it, so that they and the proxy's
// stripping agree on which cookie is which.
func Value(h http.Header, name string) (string, bool) {
	for n, pair := range Pairs(h) {
		if n != name {
			continue
		}
		_, v, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// trimOWS trims SP and HTAB (RFC 9110 OWS) from both ends of s.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
