package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/authproxy/authproxy/proxy/page"
)

// backchannelEvent is the member of a logout token's events claim that
// OpenID Connect Back-Channel Logout 1.0 defines.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenSkew bounds how far a logout token's iat may be from our clock.
const logoutTokenSkew = 5 * time.Minute

// seenJTIs remembers logout token ids for replay detection, bounded.
type seenJTIs struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (s *seenJTIs) fresh(jti string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	if _, ok := s.seen[jti]; ok {
		return false
	}
	if len(s.seen) >= maxUsedStates {
		for k, at := range s.seen {
			if now.Sub(at) > 2*logoutTokenSkew {
				delete(s.seen, k)
			}
		}
	}
	s.seen[jti] = now
	return true
}

// backchannelLogout ends the sessions a provider's logout token names
// (OpenID Connect Back-Channel Logout 1.0). It needs a server-side store:
// with cookies alone there is nothing to end, so it answers 501.
func (h *Handler) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		page.WriteJSON(w, page.Page{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Detail: "POST a logout_token."})
		return
	}
	if h.cfg.Revoker == nil {
		page.WriteJSON(w, page.Page{Status: http.StatusNotImplemented, Code: "not_implemented",
			Detail: "Back-channel logout needs the Redis session store (AUTHPROXY_SESSION_STORE=redis)."})
		return
	}
	p := h.provider.Load()
	if p == nil {
		page.WriteJSON(w, page.Page{Status: http.StatusServiceUnavailable, Code: "provider_unavailable",
			Detail: "The provider's keys are not known yet."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	raw := r.PostFormValue("logout_token")
	sid, sub, err := h.verifyLogoutToken(r.Context(), p, raw)
	if err != nil {
		h.log.Warn("back-channel logout refused", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "The logout token is invalid."})
		return
	}
	var n int
	switch {
	case sid != "":
		n, err = h.cfg.Revoker.RevokeSID(r.Context(), sid)
	case h.cfg.UserClaim == "sub":
		n, err = h.cfg.Revoker.RevokeUser(r.Context(), sub)
	default:
		h.log.Warn("back-channel logout without sid cannot be matched: sessions are keyed by another claim than sub", "user_claim", h.cfg.UserClaim)
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "invalid_request",
			Detail: "The logout token has no sid, and sessions are not keyed by sub."})
		return
	}
	if err != nil {
		h.log.Error("back-channel logout: revoke sessions", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Detail: "The session store could not be reached."})
		return
	}
	h.log.Info("back-channel logout", "sid", sid != "", "sessions_ended", n)
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken checks a logout token fully: signature against the
// provider's keys, iss, aud (our client id), iat near now, exp if present,
// the back-channel event, no nonce, and a sid or sub. A jti seen before is
// refused.
func (h *Handler) verifyLogoutToken(ctx context.Context, p *provider, raw string) (sid, sub string, err error) {
	if raw == "" {
		return "", "", errors.New("no logout_token")
	}
	// Expiry is checked below: exp is optional in older drafts of the spec.
	v := gooidc.NewVerifier(h.cfg.Issuer, p.keys, &gooidc.Config{ClientID: h.cfg.ClientID, SkipExpiryCheck: true,
		SupportedSigningAlgs: p.algs, Now: h.cfg.Now})
	tok, err := v.Verify(gooidc.ClientContext(ctx, h.cfg.HTTPClient), raw)
	if err != nil {
		return "", "", err
	}
	var c struct {
		Sid    string                    `json:"sid"`
		Jti    string                    `json:"jti"`
		Iat    *float64                  `json:"iat"`
		Exp    *float64                  `json:"exp"`
		Nonce  *string                   `json:"nonce"`
		Events map[string]map[string]any `json:"events"`
	}
	if err := tok.Claims(&c); err != nil {
		return "", "", fmt.Errorf("claims: %w", err)
	}
	now := h.cfg.Now()
	switch {
	case c.Iat == nil:
		return "", "", errors.New("no iat")
	case time.Unix(int64(*c.Iat), 0).Sub(now).Abs() > logoutTokenSkew:
		return "", "", errors.New("iat too far from now")
	case c.Exp != nil && now.After(time.Unix(int64(*c.Exp), 0)):
		return "", "", errors.New("expired")
	case c.Nonce != nil:
		return "", "", errors.New("a logout token must not carry a nonce")
	case c.Events == nil || c.Events[backchannelEvent] == nil:
		return "", "", errors.New("no back-channel logout event")
	case c.Sid == "" && tok.Subject == "":
		return "", "", errors.New("neither sid nor sub")
	case c.Jti != "" && !h.jtis.fresh(c.Jti, now):
		return "", "", errors.New("logout token replayed")
	}
	if h.cfg.Once != nil && c.Jti != "" {
		fresh, err := h.cfg.Once.Once(ctx, "logout-jti:"+c.Jti, 2*logoutTokenSkew)
		if err != nil {
			return "", "", fmt.Errorf("check jti: %w", err)
		}
		if !fresh {
			return "", "", errors.New("logout token replayed (seen by another replica)")
		}
	}
	return c.Sid, tok.Subject, nil
}
