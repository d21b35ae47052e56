package redisstore

import (
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
)

// Migrate moves a ticket cookie found under the legacy cookie name
// (Config.Legacy) to the current name, before next sees the request: the
// same ticket is sealed under the new name, the legacy cookie (and any
// chunks of a cookie-store session under that name) is expired, and next
// reads the request as if the browser had sent the new cookie. The session
// in Redis is untouched. Without a legacy name it returns next.
//
// It is this store's counterpart of cookie.Store.Migrate: each store opens
// only its own cookie, so a deployment runs the Migrate of the store that
// keeps its sessions.
func (s *Store) Migrate(next http.Handler) http.Handler {
	if s.legacyName == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, line := range r.Header["Cookie"] {
			if strings.Contains(line, s.legacyName) { // cheap test first; migrate parses
				r = s.migrate(w, r)
				break
			}
		}
		next.ServeHTTP(w, r)
	})
}

// migrate expires r's legacy cookies and, if the legacy ticket cookie is
// valid and r carries none under the current name, sets it under the
// current name and returns r with that cookie added.
func (s *Store) migrate(w http.ResponseWriter, r *http.Request) *http.Request {
	c, err := r.Cookie(s.legacyName)
	s.expireChunksOf(w, r, s.legacyName)
	if err != nil {
		return r // chunks alone, or only a longer name sharing the prefix
	}
	http.SetCookie(w, s.cookie(r, s.legacyName, "", -1))
	tc, err := s.openCookie(s.legacyName, c.Value)
	if err != nil || !s.now().Before(tc.Expiry) {
		return r
	}
	if _, err := s.readCookie(r); err == nil {
		return r // a ticket under the current name wins
	}
	maxAge := int(tc.Expiry.Sub(s.now()) / time.Second)
	if maxAge <= 0 {
		return r
	}
	value, err := securecookie.EncodeMulti(s.name, tc, s.keys.Load().codecs...)
	if err != nil {
		return r
	}
	http.SetCookie(w, s.cookie(r, s.name, value, maxAge))
	r = r.Clone(r.Context())
	r.Header.Add("Cookie", s.name+"="+value)
	return r
}
