package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/authproxy/authproxy/page"
)

// backchannelEvent is the member of a logout token's events claim that
// OpenID Connect Back-Channel Logout 1.0 defines.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenSkew bounds how far a logout token's iat may be from our clock.
const logoutTokenSkew = 5 * time.Minute

// jtiTTL is how long a logout token's jti is remembered: the token is
// accepted only while its iat is within logoutTokenSkew of now, so at most
// 2*logoutTokenSkew after it was first accepted.
const jtiTTL = 2 * logoutTokenSkew

// maxLogoutTokens bounds the jtis remembered in process: past it, the one
// that expires first makes room.
const maxLogoutTokens = 100_000

// logoutToken is what a verified logout token names.
type logoutToken struct {
	sid, sub, jti string
}

// BackchannelLogout ends the sessions a provider's logout token names
// (OpenID Connect Back-Channel Logout 1.0). It needs a server-side store:
// with cookies alone there is nothing to end, so it answers 501. The proxy
// routes only POST here.
func (h *Handler) BackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
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
	tok, err := h.verifyLogoutToken(r.Context(), p, r.PostFormValue("logout_token"))
	if err != nil {
		h.log.Warn("back-channel logout refused", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "The logout token is invalid."})
		return
	}
	// The jti is checked now and recorded only once the sessions are
	// ended: a provider that got a 503 may retry with the same token.
	switch replayed, err := h.logoutSeen(r.Context(), tok.jti); {
	case err != nil:
		h.log.Error("back-channel logout: check jti", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Detail: "The session store could not be reached."})
		return
	case replayed:
		h.log.Warn("back-channel logout refused", "err", "logout token replayed")
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "The logout token is invalid."})
		return
	}
	var n int
	switch {
	case tok.sid != "":
		n, err = h.cfg.Revoker.RevokeSID(r.Context(), tok.sid)
	case h.cfg.UserClaim == "sub":
		n, err = h.cfg.Revoker.RevokeUser(r.Context(), tok.sub)
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
	h.logoutDone(r.Context(), tok.jti)
	h.log.Info("back-channel logout", "sid", tok.sid != "", "sessions_ended", n)
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken checks a logout token as OpenID Connect Back-Channel
// Logout 1.0 §2.6 asks. go-oidc's VerifyLogout does most of it: signature
// against the provider's keys and algorithms, iss, aud (our client id), exp
// (required, and not past), jti and the back-channel event present, no
// nonce, and a sid or sub. Two checks it leaves out are ours: iat is
// required and near now (§2.6 step 3 validates iat as for an ID token,
// which lets us bound replays), and the event's value is a JSON object
// (§2.4; go-oidc accepts any value). Replays are checked by the caller.
func (h *Handler) verifyLogoutToken(ctx context.Context, p *provider, raw string) (logoutToken, error) {
	if raw == "" {
		return logoutToken{}, errors.New("no logout_token")
	}
	v := gooidc.NewVerifier(h.cfg.Issuer, p.keys, &gooidc.Config{ClientID: h.cfg.ClientID,
		SupportedSigningAlgs: p.algs, Now: h.cfg.Now})
	tok, err := v.VerifyLogout(gooidc.ClientContext(ctx, h.cfg.HTTPClient), raw)
	if err != nil {
		return logoutToken{}, fmt.Errorf("verify: %w", err)
	}
	var c struct {
		Iat    *float64                   `json:"iat"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := tok.Claims(&c); err != nil {
		return logoutToken{}, fmt.Errorf("claims: %w", err)
	}
	switch {
	case c.Iat == nil:
		return logoutToken{}, errors.New("no iat")
	case time.Unix(int64(*c.Iat), 0).Sub(h.cfg.Now()).Abs() > logoutTokenSkew:
		return logoutToken{}, errors.New("iat too far from now")
	case !isJSONObject(c.Events[backchannelEvent]):
		return logoutToken{}, errors.New("the back-channel logout event is not a JSON object")
	}
	return logoutToken{sid: tok.SessionID, sub: tok.Subject, jti: tok.TokenID}, nil
}

func isJSONObject(raw json.RawMessage) bool {
	var obj map[string]json.RawMessage
	return json.Unmarshal(raw, &obj) == nil && obj != nil
}

// logoutSeen reports whether a logout token with this jti already ended
// sessions, here or (with Config.Once) on another replica.
func (h *Handler) logoutSeen(ctx context.Context, jti string) (bool, error) {
	if _, ok := h.jtis.Get(jti, h.cfg.Now()); ok {
		return true, nil
	}
	if m := h.cfg.Once; m != nil {
		seen, err := m.Seen(ctx, "logout-jti:"+jti)
		if err != nil {
			return false, fmt.Errorf("check jti: %w", err)
		}
		return seen, nil
	}
	return false, nil
}

// logoutDone records that the logout token with this jti ended its
// sessions. Two deliveries at once may both get here; ending the same
// sessions twice is harmless.
func (h *Handler) logoutDone(ctx context.Context, jti string) {
	now := h.cfg.Now()
	h.jtis.Put(jti, struct{}{}, now.Add(jtiTTL), now)
	if m := h.cfg.Once; m != nil {
		if _, err := m.Once(ctx, "logout-jti:"+jti, jtiTTL); err != nil {
			// The sessions are ended; only a replay on another replica
			// within jtiTTL would end them (or newer ones of sub) again.
			h.log.Warn("back-channel logout: record jti for other replicas", "err", err)
		}
	}
}
