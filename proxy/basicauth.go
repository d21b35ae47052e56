package proxy

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/authproxy/authproxy/internal/claim"
	"github.com/authproxy/authproxy/page"
	"github.com/authproxy/authproxy/session"
)

// basicAllowed refuses, with a 403 page, a user whose id cannot be a
// basic-auth user name: RFC 7617 splits user-pass at the first colon, so
// "a:b" with password p would reach the app as user "a" with password
// "b:p". Refusing is the only honest answer; any encoding would hand the
// app a name that is not the user's. So is an id that breaks the claim
// rules (a session saved before logins checked them): inside the base64
// nothing stops " admin" or "admin\x00x", which an app that trims the name
// or reads it as a C string (PHP, Apache) takes for admin. It reports
// whether r may go on.
func (p *handler) basicAllowed(w http.ResponseWriter, r *http.Request, sess session.Session) bool {
	if p.basicSuffix == "" {
		return true
	}
	why := "contains ':', which HTTP basic authentication cannot carry as a user name (RFC 7617)"
	detail := "it contains a colon"
	switch err := claim.CheckString(sess.User); {
	case err != nil:
		why, detail = "breaks the claim rules: it "+err.Error(), "it holds characters the application could read as another name"
	case !strings.Contains(sess.User, ":"):
		return true
	}
	p.cfg.Logger.Warn("request refused: the user id "+why+"; use another AUTHPROXY_USER_CLAIM or turn off AUTHPROXY_UPSTREAM_BASIC_AUTH",
		"user", sess.User, "path", r.URL.Path)
	w.Header().Set("Cache-Control", "no-store")
	page.Write(w, r, page.Page{Status: http.StatusForbidden, Code: "user_not_representable", Title: "Access denied",
		Detail: fmt.Sprintf("You are signed in as %q, a name the application behind authproxy cannot receive (%s). "+
			"Please tell the application's administrators.", sess.User, detail),
		Links: []page.Link{{Href: "/auth/logout", Text: "Sign out"}}})
	return false
}

// setBasic puts the user's basic-auth credentials into the upstream
// request's headers h, from which rewrite has already removed every
// client spelling of Authorization. Anonymous requests (public paths) get
// none.
func (p *handler) setBasic(h http.Header, info *reqInfo) {
	if p.basicSuffix == "" || info.sess.User == "" {
		return
	}
	// One buffer: "Basic ", the encoding, then the raw user:password it is
	// encoded from (Encode's source and destination must not overlap).
	const scheme = "Basic "
	raw := len(info.sess.User) + len(p.basicSuffix)
	enc := base64.StdEncoding.EncodedLen(raw)
	buf := make([]byte, len(scheme)+enc+raw)
	copy(buf, scheme)
	src := buf[len(scheme)+enc:]
	copy(src[copy(src, info.sess.User):], p.basicSuffix)
	base64.StdEncoding.Encode(buf[len(scheme):len(scheme)+enc], src)
	info.basicValue[0] = string(buf[:len(scheme)+enc])
	clear(src) // the password does not linger in a dead buffer
	h["Authorization"] = info.basicValue[:]
}

// basicRefusedUpstream handles the upstream refusing the proxy's basic
// credentials (a wrong AUTHPROXY_UPSTREAM_BASIC_PASSWORD): it says so in
// the log and drops the upstream's challenge, which would make a browser
// ask its user for a password that the proxy would replace anyway.
func (p *handler) basicRefusedUpstream(resp *http.Response, info *reqInfo) {
	if p.basicSuffix == "" || resp.StatusCode != http.StatusUnauthorized {
		return
	}
	resp.Header.Del("Www-Authenticate")
	if info.sess.User != "" {
		p.cfg.Logger.Warn("the upstream answered 401 to the proxy's basic credentials: does its password match AUTHPROXY_UPSTREAM_BASIC_PASSWORD?",
			"user", info.sess.User, "path", resp.Request.URL.Path)
	}
}
