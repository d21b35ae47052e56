// Package session defines what authproxy means by a session, apart from
// where it is kept: the Session value, the errors every store reports, the
// lifetime and idle-timeout Policy both stores enforce, the Store interface
// the proxy and the login handlers use, and the optional capabilities of a
// store shared by replicas (Revoker, Locker, OnceMarker), each declared
// once here.
//
// Two packages implement Store: cookie keeps the whole session in the
// browser; redisstore keeps it in Redis and only a ticket in the browser.
// This package imports no other authproxy package.
package session

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Session is what a completed login leaves behind. It is a plain value.
//
// The JSON names are short because the cookie store puts the encoded value
// in the browser; they are part of the stored format, so they never change.
type Session struct {
	// User is the value of the configured ID-token claim (sub by default).
	User  string `json:"u,omitempty"`
	Email string `json:"e,omitempty"`
	Name  string `json:"n,omitempty"`
	// IDToken is the raw ID token, kept as id_token_hint for logout.
	IDToken string `json:"t,omitempty"`
	// Expiry ends the session whatever the ID token's own expiry says.
	Expiry time.Time `json:"x"`
	// Claims keeps the ID-token claims that access rules or extra headers
	// read (groups, roles, email_verified), and only those: the cookie
	// should stay small.
	Claims map[string]any `json:"c,omitempty"`
	// AccessToken is kept only when it is passed to the upstream (opt-in).
	AccessToken string `json:"a,omitempty"`
	// SID is the provider's session id (the ID token's sid claim), which
	// back-channel logout names.
	SID string `json:"s,omitempty"`
	// RefreshToken renews the tokens at the provider before TokenExpiry;
	// present only with the offline_access scope.
	RefreshToken string    `json:"r,omitempty"`
	TokenExpiry  time.Time `json:"y,omitzero"`
	// Seen is when the session was last used, for the idle timeout; it is
	// rewritten at most every quarter of that timeout (Policy.Touch).
	Seen time.Time `json:"l,omitzero"`
	// ID is set only by a server-side store's Load: the id under which the
	// store keeps the session, which it can revoke. Empty for the cookie
	// store, bearer tokens and a session just built by a login; so a
	// non-empty ID means "a server-side session", and saving a session with
	// an ID updates that session rather than starting a new one. It is
	// never written into the session's own encoding.
	ID string `json:"-"`
}

// ErrNoSession means the request carries no usable session: missing,
// tampered with, expired, idle too long, revoked, or sealed with a key no
// longer configured. Callers treat it as "log in again"; it is never a
// server error. Stores wrap it; check with errors.Is.
var ErrNoSession = errors.New("no valid session")

// ErrUnavailable means something authproxy depends on could not be asked
// (session store down, identity provider not discovered yet or
// unreachable), so nothing is known about the session: callers answer 503
// and keep it, rather than ask for a new login. Every such condition wraps
// it; check with errors.Is.
var ErrUnavailable = errors.New("temporarily unavailable")

// Store keeps sessions. Implemented by *cookie.Store and *redisstore.Store.
type Store interface {
	// Load returns the request's session. No usable session is an error
	// wrapping ErrNoSession; a store that cannot be reached, one wrapping
	// ErrUnavailable.
	Load(*http.Request) (Session, error)
	// Save stores sess for the browser of the request. A session with an
	// ID (from Load) is an update of that session; one without is a new
	// login, which replaces whatever session the browser had.
	Save(http.ResponseWriter, *http.Request, Session) error
	// Clear ends the request's session, in the browser and, for a
	// server-side store, on the server.
	Clear(http.ResponseWriter, *http.Request)
	// Touch records a use of sess for the idle timeout (Policy.Touch under
	// the store's clock) and reports whether sess must be saved for it.
	Touch(*Session) bool
}

// Revoker ends sessions on every replica at their next request: a
// server-side store. Back-channel logout uses it.
type Revoker interface {
	// RevokeSID ends every session that the provider session sid opened,
	// and returns how many were alive.
	RevokeSID(ctx context.Context, sid string) (int, error)
	// RevokeUser ends every session of user, and returns how many were
	// alive.
	RevokeUser(ctx context.Context, user string) (int, error)
}

// Locker serialises the token refreshes of one server-side session across
// replicas, so the provider sees one refresh, not one per replica.
type Locker interface {
	// LockRefresh waits for and takes the lock of sess (which has an ID).
	// Failing to take it is an error wrapping ErrUnavailable.
	LockRefresh(ctx context.Context, sess Session) (unlock func(), err error)
}

// OnceMarker remembers keys across replicas, so that a logout token's jti
// ends sessions once, not once per replica.
type OnceMarker interface {
	// Seen reports whether any replica remembers key.
	Seen(ctx context.Context, key string) (bool, error)
	// Once reports whether key is new to every replica, and remembers it
	// for ttl.
	Once(ctx context.Context, key string, ttl time.Duration) (bool, error)
}
