package oidc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/authproxy/authproxy/internal/bounded"
	"github.com/authproxy/authproxy/session"
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

// maxRefreshResults bounds the remembered outcomes: past it, the oldest go
// first.
const maxRefreshResults = 10_000

// NeedsRefresh reports whether sess carries a refresh token and its tokens
// expire within RefreshMargin.
func (h *Handler) NeedsRefresh(sess session.Session) bool {
	return sess.RefreshToken != "" && h.cfg.Now().Add(RefreshMargin).After(sess.TokenExpiry)
}

// refresher makes sure each refresh token is used once: concurrent
// requests carrying the same token wait for one call (flights), and later
// requests that still carry it get that call's outcome (done).
type refresher struct {
	flights singleflight.Group
	done    *bounded.Map[[32]byte, refreshOutcome]
}

type refreshOutcome struct {
	sess session.Session
	err  error
}

// Refresh renews sess's tokens at the provider, without the user. Requests
// of the same session share one call to the provider; the refresh token is
// never sent twice. A refused token yields ErrRefreshRejected; a provider
// that cannot be reached, an error wrapping session.ErrUnavailable, and the
// caller may keep serving the still-valid session.
func (h *Handler) Refresh(ctx context.Context, sess session.Session) (session.Session, error) {
	key := sha256.Sum256([]byte(sess.RefreshToken))
	r := &h.refresh
	if out, ok := r.done.Get(key, h.cfg.Now()); ok {
		return out.sess, out.err
	}
	ch := r.flights.DoChan(string(key[:]), func() (any, error) {
		// A flight that ended between the lookup above and this one
		// recorded its outcome before it ended: look again, or the
		// rotated-away token would be sent a second time.
		if out, ok := r.done.Get(key, h.cfg.Now()); ok {
			return out, nil
		}
		// The call outlives the request that started it: others wait on it.
		callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.HTTPClient.Timeout)
		defer cancel()
		var out refreshOutcome
		out.sess, out.err = h.refreshOnce(callCtx, sess)
		if out.err == nil {
			h.cfg.Observer.TokenRefreshed()
		}
		if !errors.Is(out.err, session.ErrUnavailable) { // a temporary failure may be retried with the same token
			now := h.cfg.Now()
			r.done.Put(key, out, now.Add(lateGrace), now)
		}
		return out, nil
	})
	select {
	case res := <-ch:
		out := res.Val.(refreshOutcome)
		return out.sess, out.err
	case <-ctx.Done():
		return session.Session{}, fmt.Errorf("%w: waiting for a refresh: %w", session.ErrUnavailable, ctx.Err())
	}
}

func (h *Handler) refreshOnce(ctx context.Context, sess session.Session) (session.Session, error) {
	p := h.provider.Load()
	if p == nil {
		return session.Session{}, ErrNotReady
	}
	ctx = gooidc.ClientContext(withCall(ctx, CallRefresh), h.cfg.HTTPClient)
	// An expired token forces the token source to refresh now.
	src := p.oauth2.TokenSource(ctx, &oauth2.Token{RefreshToken: sess.RefreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err = h.fromProvider(err, sess.RefreshToken); err != nil {
		if err := classify(err); errors.Is(err, errProviderDown) {
			h.cfg.Observer.ProviderError("refresh")
			return session.Session{}, fmt.Errorf("%w: %w", session.ErrUnavailable, err)
		}
		return session.Session{}, fmt.Errorf("%w: %w", ErrRefreshRejected, err)
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
			return session.Session{}, fmt.Errorf("%w: new ID token: %w", ErrRefreshRejected, err)
		}
		var claims map[string]any
		if err := idt.Claims(&claims); err != nil {
			return session.Session{}, fmt.Errorf("%w: new ID token: %w", ErrRefreshRejected, err)
		}
		id, err := h.identify(claims)
		if err != nil {
			return session.Session{}, fmt.Errorf("%w: new ID token: %w", ErrRefreshRejected, err)
		}
		if id.User != sess.User {
			return session.Session{}, fmt.Errorf("%w: the refreshed ID token names another user", ErrRefreshRejected)
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
