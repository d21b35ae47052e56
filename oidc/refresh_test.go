package oidc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
	"github.com/authproxy/authproxy/session"
)

// loginSession runs a full login and returns the session it made.
func (f *fixture) loginSession(t *testing.T, user string) session.Session {
	t.Helper()
	b := &browser{}
	cb := f.authorize(t, f.startLogin(t, b, "/"), user)
	if resp := b.do(f.h, callbackPath(cb)); resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	sess, err := f.store.Load(requestWith(b))
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// TestRefresh: tokens are renewed once however many requests ask at once,
// a rotated refresh token is never sent twice (late requests with the old
// cookie get the same outcome), and a revoked one ends the session.
func TestRefresh(t *testing.T) {
	var skew atomic.Int64 // seconds added to the proxy's clock
	f := newFixtureIDP(t, oidctest.Options{RotateRefreshTokens: true}, func(c *Config) {
		c.Scopes = []string{"openid", "email", "offline_access"}
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load()) * time.Second) }
	})
	authz := f.startLogin(t, &browser{}, "/")
	if authz.Query().Get("prompt") != "consent" {
		t.Errorf("offline_access without prompt=consent: %s", authz)
	}
	sess := f.loginSession(t, "alice")
	if sess.RefreshToken == "" || sess.TokenExpiry.IsZero() {
		t.Fatalf("no refresh token in the session: %+v", sess)
	}
	if f.h.NeedsRefresh(sess) {
		t.Fatal("fresh tokens need a refresh")
	}
	skew.Store(int64(time.Until(sess.TokenExpiry)/time.Second) - 30) // 30 s before the tokens expire
	if !f.h.NeedsRefresh(sess) {
		t.Fatal("tokens about to expire do not need a refresh")
	}

	before := f.idp.Requests("/token")
	var wg sync.WaitGroup
	results := make([]session.Session, 20)
	errs := make([]error, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.h.Refresh(context.Background(), sess)
		}()
	}
	wg.Wait()
	if n := f.idp.Requests("/token") - before; n != 1 {
		t.Errorf("20 concurrent requests made %d token requests, want 1", n)
	}
	next := results[0]
	for i := range results {
		if errs[i] != nil || results[i].RefreshToken != next.RefreshToken {
			t.Fatalf("request %d: %v, refresh token %q vs %q", i, errs[i], results[i].RefreshToken, next.RefreshToken)
		}
	}
	if next.RefreshToken == sess.RefreshToken || next.User != "alice" || next.TokenExpiry.Before(sess.TokenExpiry) || next.IDToken == sess.IDToken {
		t.Errorf("refreshed session = %+v", next)
	}

	// A late request with the pre-refresh cookie: same outcome, token not reused.
	late, err := f.h.Refresh(context.Background(), sess)
	if err != nil || late.RefreshToken != next.RefreshToken {
		t.Errorf("late request: %v, %q", err, late.RefreshToken)
	}
	if n := f.idp.Requests("/token") - before; n != 1 {
		t.Errorf("the late request reached the provider (%d token requests)", n)
	}

	// Revoked at the provider: the session is over.
	f.idp.RevokeRefreshTokens("alice")
	if _, err := f.h.Refresh(context.Background(), next); !errors.Is(err, ErrRefreshRejected) {
		t.Errorf("revoked refresh token: %v, want ErrRefreshRejected", err)
	}
}

func TestRefreshProviderDown(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Scopes = []string{"openid", "offline_access"} })
	sess := f.loginSession(t, "alice")
	atTokenEndpoint(f.idp, func(w http.ResponseWriter, _ *http.Request) {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	})
	_, err := f.h.Refresh(context.Background(), sess)
	if !errors.Is(err, session.ErrUnavailable) || errors.Is(err, ErrRefreshRejected) {
		t.Fatalf("provider down: %v, want a temporary error", err)
	}
	// The failure is not remembered: once the provider is back, it works.
	f.idp.SetFault(nil)
	if _, err := f.h.Refresh(context.Background(), sess); err != nil {
		t.Errorf("after the provider came back: %v", err)
	}
}

func TestNoRefreshWithoutOfflineAccess(t *testing.T) {
	f := newFixture(t)
	authz := f.startLogin(t, &browser{}, "/")
	if authz.Query().Get("prompt") != "" {
		t.Errorf("prompt sent without offline_access: %s", authz)
	}
	sess := f.loginSession(t, "alice")
	if sess.RefreshToken != "" || f.h.NeedsRefresh(sess) {
		t.Errorf("session without offline_access has a refresh token: %+v", sess)
	}
}

// TestOversizedSession: a session too large for cookies first drops the
// raw ID token it keeps for logout; if it is still too large, the login
// fails with a page that names the cause, not a bare 500.
func TestOversizedSession(t *testing.T) {
	groups := func(n, size int) []any {
		g := make([]any, n)
		for i := range g {
			g[i] = fmt.Sprintf("%0*d", size, i)
		}
		return g
	}
	for _, tt := range []struct {
		name     string
		groups   []any
		status   int
		idToken  bool
		pageCode string
	}{
		{"fits", groups(20, 10), http.StatusFound, true, ""},
		{"fits without the ID token", groups(300, 40), http.StatusFound, false, ""},
		{"does not fit at all", groups(800, 40), http.StatusInternalServerError, false, "session_too_large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureIDP(t, oidctest.Options{Claims: func(string) map[string]any { return map[string]any{"groups": tt.groups} }},
				func(c *Config) { c.KeepClaims = []string{"groups"} })
			b := &browser{}
			cb := f.authorize(t, f.startLogin(t, b, "/"), "alice")
			resp := b.do(f.h, callbackPath(cb))
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.pageCode != "" && !strings.Contains(string(body), tt.pageCode) {
				t.Errorf("page does not name %s: %s", tt.pageCode, body)
			}
			if tt.status != http.StatusFound {
				return
			}
			sess, err := f.store.Load(requestWith(b))
			if err != nil || len(sess.Claims["groups"].([]any)) != len(tt.groups) || (sess.IDToken != "") != tt.idToken {
				t.Errorf("session: groups %d, ID token kept %v, err %v", len(sess.Claims["groups"].([]any)), sess.IDToken != "", err)
			}
		})
	}
}
