package oidc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authproxy/authproxy/cookie"
)

// RefreshMargin is how long before the tokens expire that a request
// triggers their renewal.
const RefreshMargin = time.Minute

// ErrRefreshRejected means the provider refused the refresh token (revoked,
// expired, reused): the session is over and the user must log in again.
var ErrRefreshRejected = errors.New("the provider refused the refresh token")

// lateGrace is how long the outcome of a refresh is remembered for requests
// that still carry the cookie from before it: a provider that rotates
// refresh tokens revokes the whole family when an old one is used again.
const lateGrace = 2 * time.Minute

// maxRefreshResults bounds the remembered outcomes.
const maxRefreshResults = 10_000

// NeedsRefresh reports whether sess carries a refresh token and its tokens
// expire within RefreshMargin.
func (h *Handler) NeedsRefresh(sess cookie.Session) bool {
	return sess.RefreshToken != "" && h.cfg.Now().Add(RefreshMargin).After(sess.TokenExpiry)
}

// refresher makes sure each refresh token is used once: concurrent
// requests carrying the same token wait for one call, and later requests
// that still carry it get that call's outcome.
type refresher struct {
	mu       sync.Mutex
	inflight map[[32]byte]*refreshCall
	done     map[[32]byte]refreshOutcome
}

type refreshCall struct {
	wait chan struct{}
	refreshOutcome
}

type refreshOutcome struct {
	sess cookie.Session
	err  error
	at   time.Time
}

// Refresh renews sess's tokens at the provider, without the user. Requests
// of the same session share one call to the provider; the refresh token is
// never sent twice. A refused token yields ErrRefreshRejected; a provider
// that cannot be reached yields a Temporary error, and the caller may keep
// serving the still-valid session.
func (h *Handler) Refresh(ctx context.Context, sess cookie.Session) (cookie.Session, error) {
	key := sha256.Sum256([]byte(sess.RefreshToken))
	now := h.cfg.Now()
	r := &h.refresh
	r.mu.Lock()
	if out, ok := r.done[key]; ok && now.Sub(out.at) < lateGrace {
		r.mu.Unlock()
		return out.sess, out.err
	}
	if c, ok := r.inflight[key]; ok {
		r.mu.Unlock()
		select {
		case <-c.wait:
			return c.sess, c.err
		case <-ctx.Done():
			return cookie.Session{}, temporary{ctx.Err()}
		}
	}
	c := &refreshCall{wait: make(chan struct{})}
	if r.inflight == nil {
		r.inflight, r.done = map[[32]byte]*refreshCall{}, map[[32]byte]refreshOutcome{}
	}
	r.inflight[key] = c
	r.mu.Unlock()

	// The call outlives the request that started it: others wait on it.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.HTTPClient.Timeout)
	c.sess, c.err = h.refreshOnce(callCtx, sess)
	cancel()
	c.at = h.cfg.Now()
	if c.err == nil {
		h.cfg.Observer.TokenRefreshed()
	}

	r.mu.Lock()
	delete(r.inflight, key)
	if !isTemporary(c.err) { // a temporary failure may be retried with the same token
		if len(r.done) >= maxRefreshResults {
			for k, out := range r.done {
				if now.Sub(out.at) >= lateGrace || len(r.done) >= maxRefreshResults {
					delete(r.done, k)
				}
			}
		}
		r.done[key] = c.refreshOutcome
	}
	r.mu.Unlock()
	close(c.wait)
	return c.sess, c.err
}

func (h *Handler) refreshOnce(ctx context.Context, sess cookie.Session) (cookie.Session, error) {
	p := h.provider.Load()
	if p == nil {
		return cookie.Session{}, temporary{ErrNotReady}
	}
	ctx = gooidc.ClientContext(ctx, h.cfg.HTTPClient)
	// An expired token forces the token source to refresh now.
	src := p.oauth2.TokenSource(ctx, &oauth2.Token{RefreshToken: sess.RefreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err = h.fromProvider(err, sess.RefreshToken); err != nil {
		if err := classify(err); errors.Is(err, errProviderDown) {
			h.cfg.Observer.ProviderError("refresh")
			return cookie.Session{}, temporary{err}
		}
		return cookie.Session{}, fmt.Errorf("%w: %w", ErrRefreshRejected, err)
	}
	next := sess
	next.AccessToken = ""
	if h.cfg.KeepAccessToken {
		next.AccessToken = tok.AccessToken
	}
	if tok.RefreshToken != "" {
		next.RefreshToken = tok.RefreshToken // rotated
	}
	next.TokenExpiry = tok.Expiry
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verifier.Verify(ctx, raw)
		if err = h.fromProvider(err, sess.RefreshToken); err != nil {
			return cookie.Session{}, fmt.Errorf("%w: new ID token: %w", ErrRefreshRejected, err)
		}
		var claims map[string]any
		if err := idt.Claims(&claims); err != nil {
			return cookie.Session{}, fmt.Errorf("%w: new ID token: %w", ErrRefreshRejected, err)
		}
		id, err := h.identify(claims)
		if err != nil {
			return cookie.Session{}, fmt.Errorf("%w: new ID token: %w", ErrRefreshRejected, err)
		}
		if id.User != sess.User {
			return cookie.Session{}, fmt.Errorf("%w: the refreshed ID token names another user", ErrRefreshRejected)
		}
		// What the provider says now, not what it said at login: a changed
		// or no longer verified email, a renamed user, other groups.
		next.Email, next.Name = id.Email, id.Name
		next.IDToken = raw
		// Renew before the first of the two tokens expires: an access
		// token passed to the upstream may live shorter than the ID token.
		if tok.Expiry.IsZero() || idt.Expiry.Before(tok.Expiry) {
			next.TokenExpiry = idt.Expiry
		}
		if id.Claims != nil {
			next.Claims = id.Claims
		}
	}
	if next.TokenExpiry.IsZero() {
		next.TokenExpiry = h.cfg.Now().Add(5 * time.Minute) // no expiry given: check again soon
	}
	return next, nil
}

// temporary marks a failure that says nothing about the session: the
// provider could not be asked.
type temporary struct{ err error }

func (t temporary) Error() string   { return t.err.Error() }
func (t temporary) Unwrap() error   { return t.err }
func (t temporary) Temporary() bool { return true }

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
