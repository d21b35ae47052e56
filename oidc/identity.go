package oidc

import (
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authproxy/authproxy/internal/claim"
	"github.com/authproxy/authproxy/session"
)

// claimError is a verified token whose claims cannot be used: it names the
// claim and the rule it broke, never the value, so it may be logged.
type claimError struct {
	name string
	err  error
}

func (e *claimError) Error() string { return fmt.Sprintf("the %q claim %v", e.name, e.err) }
func (e *claimError) Unwrap() error { return e.err }

var (
	// errNotNumber is a time claim that is not a JSON number.
	errNotNumber = errors.New("is not a JSON number")
	// errUnverified is an email used as the user that the provider does
	// not vouch for: anyone may sign up with someone else's address.
	errUnverified = errors.New("is not verified (email_verified is not true)")
)

// identify reads who verified claims (an ID token's or an access token's)
// stand for. The user claim must pass claim.Check, or the token is refused;
// so must exp, iat and nbf be JSON numbers (go-oidc also takes the string
// "9999999999"). Email and name are kept only when they pass claim.Check,
// and the email only when email_verified says so (an unverified email as
// the user refuses the token): a value that breaks the rules is left out,
// never trimmed into another one.
func (h *Handler) identify(claims map[string]any) (session.Session, error) {
	for _, name := range []string{"exp", "iat", "nbf"} {
		v, ok := claims[name]
		if _, num := v.(float64); (ok || name == "exp") && !num {
			return session.Session{}, &claimError{name, errNotNumber}
		}
	}
	if err := claim.Check(claims[h.cfg.UserClaim]); err != nil {
		return session.Session{}, &claimError{h.cfg.UserClaim, err}
	}
	if h.cfg.UserClaim == "email" && !emailVerified(claims["email_verified"]) {
		return session.Session{}, &claimError{h.cfg.UserClaim, errUnverified}
	}
	sess := session.Session{User: claims[h.cfg.UserClaim].(string), Claims: h.keep(claims)}
	if claim.Check(claims["email"]) == nil && emailVerified(claims["email_verified"]) {
		sess.Email = claims["email"].(string)
	}
	if claim.Check(claims["name"]) == nil {
		sess.Name = claims["name"].(string)
	}
	return sess, nil
}

// emailVerified reports whether an email_verified claim says yes, as the
// access rules read it (Cognito sends the string "true").
func emailVerified(v any) bool { return v == true || v == "true" }

// isIDTokenShaped tells an ID token (or another token for the client) from
// an access token for the API, given the verified claims and the JWT header's
// typ. Returns why the token is not an access token, or "".
//
// What providers send (see README "Bearer tokens"): an RFC 9068 access token
// has the header typ at+jwt (oidc-provider, Auth0's RFC 9068 profile), which
// is positive evidence; Auth0's default profile, Keycloak and Entra ID put
// the requesting client in azp; ID tokens carry nonce, at_hash or c_hash,
// and Keycloak says typ "ID" in a claim.
func (h *Handler) isIDTokenShaped(typ string, claims map[string]any) string {
	for _, c := range []string{"nonce", "at_hash", "c_hash"} {
		if _, ok := claims[c]; ok {
			return "it carries " + c + ", as ID tokens do"
		}
	}
	if _, ok := claims["events"]; ok {
		return "it carries events, as logout tokens do"
	}
	if t, ok := claims["typ"]; ok && !(isString(t) && strings.EqualFold(t.(string), "Bearer")) {
		return `its typ claim is not "Bearer" (Keycloak ID and refresh tokens say "ID", "Refresh")`
	}
	accessTyp := strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
	if !accessTyp && typ != "" && !strings.EqualFold(typ, "JWT") {
		return "its header typ " + fmt.Sprintf("%q", typ) + " names another kind of token"
	}
	if azp, _ := claims["azp"].(string); azp == h.cfg.ClientID && !accessTyp {
		return "it was issued to authproxy's own client (azp) and does not say at+jwt"
	}
	return ""
}

func isString(v any) bool { _, ok := v.(string); return ok }

// headerType is the typ of a JWT's protected header ("" if absent or not a
// JWS). Call it only on a token whose signature was verified.
func headerType(raw string) string {
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return ""
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	return typ
}
