package cookie

import (
	"net/http"
	"strings"
	"sync"

	"github.com/authproxy/authproxy/session"
)

// DefaultCacheSize bounds the verified-session cache: about 2 kB of key
// and a few hundred bytes of session each, so a few MiB at most.
const DefaultCacheSize = 4096

// sessionCache remembers sessions this Store has already decrypted and
// verified, keyed by the exact cookie value, so a user's second request
// costs a map lookup instead of an HMAC, an AES pass and a JSON decode.
//
// It cannot serve what Load would refuse: only values that decoded and
// verified are added; the key is the whole value, so a changed byte misses;
// the session's expiry is checked on every hit; and the keys that verified a
// value are fixed for the Store's life (a removed key means a restart, so an
// empty cache). Logout with the cookie store clears the browser's cookie but
// revokes nothing, with or without the cache: a replayed copy was valid
// either way until its expiry.
type sessionCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]session.Session
}

func newSessionCache(max int) *sessionCache {
	if max <= 0 {
		return nil
	}
	return &sessionCache{max: max, m: make(map[string]session.Session, max)}
}

func (c *sessionCache) get(value string) (session.Session, bool) {
	if c == nil {
		return session.Session{}, false
	}
	c.mu.RLock()
	sess, ok := c.m[value]
	c.mu.RUnlock()
	return sess, ok
}

// put adds a verified session. When full, it drops an arbitrary eighth of
// the entries (Go's map iteration order is random): cheaper than an LRU's
// bookkeeping on every hit, and a dropped session only costs one decode.
func (c *sessionCache) put(value string, sess session.Session) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		n := c.max / 8
		for k := range c.m {
			if n <= 0 {
				break
			}
			delete(c.m, k)
			n--
		}
	}
	// The value may point into the request's header memory; keep a copy.
	c.m[strings.Clone(value)] = sess
}

func (c *sessionCache) remove(value string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, value)
	c.mu.Unlock()
}

// cookieValue finds a cookie in the request's Cookie headers without
// parsing all of them into http.Cookie values, which allocates on every
// request.
func cookieValue(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
