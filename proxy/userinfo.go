package proxy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/authproxy/authproxy/internal/claim"
	"github.com/authproxy/authproxy/page"
)

// UserInfo is the body of GET /auth/userinfo: who the caller is, for a
// single-page app that wants to show it. It never carries a token.
type UserInfo struct {
	// User is the value of the configured user claim: what the upstream
	// receives in the user header.
	User string `json:"user"`
	// Sub is the subject, when the session knows it (the user claim is
	// sub, or the session kept the sub claim).
	Sub string `json:"sub,omitempty"`
	// Email is present only when the provider marked it verified.
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	Groups []string `json:"groups"`
	// ExpiresAt is when the session (or the bearer token) ends, RFC 3339.
	ExpiresAt string `json:"expires_at,omitempty"`
	// Auth says how the caller authenticated: "session" or "bearer".
	Auth string `json:"auth"`
}

// userinfo answers GET /auth/userinfo with the caller's UserInfo: a session
// cookie or, when bearer tokens are on, an access token. Without either it
// gives the 401 JSON of any API call (never the login redirect: a script
// asks). The access rules are not consulted: they guard the upstream's
// paths, and every logged-in user may learn who they are.
func (p *handler) userinfo(w http.ResponseWriter, r *http.Request) {
	info := infoOf(r)
	w.Header().Set("Cache-Control", "no-store")
	// The login URL of the 401 returns to the site's root, not to this
	// JSON document.
	if refused := p.authenticate(w, r, target{method: r.Method, url: &url.URL{Path: "/"}}, &info.sess); refused != "" {
		info.outcome = refused
		return
	}
	sess := &info.sess
	u := UserInfo{User: sess.User, Email: sess.Email, Name: sess.Name, Groups: groupList(sess.Claims[p.groupsClaim()]), Auth: "session"}
	if claim.CheckString(u.Email) != nil {
		u.Email = ""
	}
	if claim.CheckString(u.Name) != nil {
		u.Name = ""
	}
	if u.Groups == nil {
		u.Groups = []string{}
	}
	if p.cfg.UserClaim == "" || p.cfg.UserClaim == "sub" {
		u.Sub = sess.User
	} else if s, ok := sess.Claims["sub"].(string); ok && claim.CheckString(s) == nil {
		u.Sub = s
	}
	if !sess.Expiry.IsZero() {
		u.ExpiresAt = sess.Expiry.UTC().Format(time.RFC3339)
	}
	if info.bearer {
		u.Auth = "bearer"
	}
	body, err := json.Marshal(u)
	if err != nil { // strings only: cannot happen
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	page.SecurityHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
}

// groupsClaim is the claim the groups come from.
func (p *handler) groupsClaim() string {
	if p.cfg.Headers.GroupsClaim != "" {
		return p.cfg.Headers.GroupsClaim
	}
	return "groups"
}
