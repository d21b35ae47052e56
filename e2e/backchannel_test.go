package e2e

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// backchannelEvent is the member of a logout token's events claim that
// OpenID Connect Back-Channel Logout 1.0 defines.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// TestBackchannelLogout ends a provider session and checks that the proxy's
// sessions it opened end on every replica, through oidc-provider's own
// back-channel logout (OpenID Connect Back-Channel Logout 1.0).
//
// The client registers replica B's /auth/backchannel-logout (plain http on
// 127.0.0.1, which oidc-provider accepts for backchannel_logout_uri) with
// backchannel_logout_session_required, so ID tokens and logout tokens carry
// sid. Browser 1 logs in through A, then, in the same provider session,
// through B: two proxy sessions with one sid. Browser 2 logs in as the same
// user: a third, with another sid. Browser 1 then logs out at the provider's
// end_session endpoint directly (as when leaving another app of the same
// tenant), so the proxy's own /auth/logout plays no part: oidc-provider POSTs
// a logout token to B, and both of browser 1's sessions are refused on A and
// on B, while browser 2's stays.
//
// Before that, logout tokens with one defect each, most of them signed with
// the provider's own key and naming the user by sub (which, with the default
// AUTHPROXY_USER_CLAIM=sub, would end all three sessions), get 400 and end
// nothing. Afterwards, the same token without defect ends browser 2's
// session, and replayed it gets 400. A replica with the cookie store answers
// 501.
func TestBackchannelLogout(t *testing.T) {
	signing := newSigningJWK(t)
	rs := newReplicaSet(t, replicaOptions{
		Replicas: []replicaSpec{{Name: "a"}, {Name: "b"}, {Name: "cookie", CookieStore: true}},
		Provider: func(c *providerConfig, base map[string]string) {
			c.SigningKey = signing
			c.Features.BackchannelLogout = true
			// oidc-provider's SSRF guard refuses to POST to 127.0.0.1 otherwise.
			c.AllowLoopbackFetch = true
			c.Clients[0].BackchannelLogoutURI = base["b"] + "/auth/backchannel-logout"
			c.Clients[0].BackchannelLogoutSessionRequired = true
		},
	})
	c := rawClient(t)
	const user = "bcl-user"
	mint := newLogoutTokenMinter(t, rs, signing)

	// Browser 1: through A, then through B in the same provider session.
	b1 := newBrowser(t, rs.PKI)
	if p := b1.Login(rs.URL("a", "/b1?via=a"), user); p.Status != http.StatusOK || p.URL.String() != rs.URL("a", "/b1?via=a") {
		t.Fatalf("browser 1, login through A: landed on %d %s; hops:\n%s", p.Status, p.URL, b1.HopsString())
	}
	b1a := sessionCookie(t, b1, rs)
	dropSessionCookie(b1, rs)
	if p := b1.Login(rs.URL("b", "/b1?via=b"), user); p.Status != http.StatusOK || p.URL.String() != rs.URL("b", "/b1?via=b") {
		t.Fatalf("browser 1, login through B: landed on %d %s; hops:\n%s", p.Status, p.URL, b1.HopsString())
	}
	if _, ok := findForm(b1.Navigate(rs.URL("b", "/b1?check=silent")), providerForm("login")); ok {
		t.Fatalf("browser 1's second login asked for the password again: not the same provider session")
	}
	b1b := sessionCookie(t, b1, rs)
	if b1b.Value == b1a.Value {
		t.Fatalf("browser 1's logins through A and B gave the same cookie, want two proxy sessions")
	}
	// Browser 2: the same user, another provider session.
	b2 := newBrowser(t, rs.PKI)
	if p := b2.Login(rs.URL("a", "/b2?via=a"), user); p.Status != http.StatusOK {
		t.Fatalf("browser 2, login through A: landed on %d %s; hops:\n%s", p.Status, p.URL, b2.HopsString())
	}
	b2a := sessionCookie(t, b2, rs)

	sessions := map[string]*http.Cookie{"browser 1 via A": b1a, "browser 1 via B": b1b, "browser 2": b2a}
	checkAll := func(step string, alive map[string]bool) {
		t.Helper()
		for what, ck := range sessions {
			for _, replica := range []string{"a", "b"} {
				pq := "/" + strings.ReplaceAll(what, " ", "-") + "?step=" + step + "&on=" + replica
				if alive[what] {
					checkServed(t, rs, c, replica, pq, ck, user)
				} else {
					awaitRevoked(t, rs, c, replica, ck)
					checkLoggedOut(t, rs, c, replica, pq, ck)
				}
			}
		}
	}
	everyone := map[string]bool{"browser 1 via A": true, "browser 1 via B": true, "browser 2": true}
	checkAll("logged-in", everyone)

	rc := rs.Redis.Client(t)
	dump := rc.Dump(t)
	if n := len(keysWithPrefix(dump, "authproxy:s:")); n != 3 {
		t.Fatalf("Redis holds %d sessions, want 3; keys:\n%s", n, describeDump(dump))
	}
	if n := len(keysWithPrefix(dump, "authproxy:sid:")); n != 2 {
		t.Fatalf("Redis holds %d sid indexes, want 2 (two provider sessions; is sid in the ID token?); keys:\n%s", n, describeDump(dump))
	}

	// Invalid logout tokens: 400, and nothing ends.
	valid := func() map[string]any { return mint.claims(user) }
	without := func(name string) map[string]any { c := valid(); delete(c, name); return c }
	with := func(name string, v any) map[string]any { c := valid(); c[name] = v; return c }
	now := time.Now().Unix()
	invalid := []struct {
		name  string
		token string // "-" sends no logout_token at all
	}{
		{"no logout_token", "-"},
		{"empty", ""},
		{"not a JWT", "not-a-jwt"},
		{"signed by another key with the provider's kid", signRS256(t, valid(), signing["kid"])},
		{"alg none", unsignedJWT(t, valid())},
		{"payload changed after signing", withClaims(t, mint.sign(with("sub", "someone-else")), map[string]any{"sub": user})},
		{"wrong issuer", mint.sign(with("iss", "https://evil.example/"))},
		{"wrong audience", mint.sign(with("aud", "another-client"))},
		{"no events", mint.sign(without("events"))},
		{"another event", mint.sign(with("events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}))},
		{"events not an object", mint.sign(with("events", "backchannel-logout"))},
		{"with a nonce", mint.sign(with("nonce", "n-0S6_WzA2Mj"))},
		{"no iat", mint.sign(without("iat"))},
		{"iat an hour ago", mint.sign(with("iat", now-3600))},
		{"iat an hour ahead", mint.sign(with("iat", now+3600))},
		{"expired", mint.sign(with("exp", now-60))},
		{"neither sid nor sub", mint.sign(without("sub"))},
	}
	for _, tc := range invalid {
		for _, replica := range []string{"a", "b"} {
			form := url.Values{"logout_token": {tc.token}}
			if tc.token == "-" {
				form = url.Values{"other": {"x"}}
			}
			a := postForm(t, c, rs.URL(replica, "/auth/backchannel-logout"), form)
			if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, `"invalid_request"`) {
				t.Errorf("logout token %s, to replica %s: status %d, want 400 invalid_request; body:\n%s", tc.name, replica, a.Status, a.Body)
			}
		}
	}
	checkAll("after-invalid-tokens", everyone)

	// Browser 1 ends its provider session at the provider, not through the
	// proxy: end_session, then "Yes, sign me out".
	confirm := b1.Navigate(rs.Provider.Issuer + "oidc/logout")
	f, ok := findForm(confirm, func(f form) bool { return f.ID == "op.logoutForm" })
	if !ok {
		t.Fatalf("no logout confirmation at %s (status %d):\n%s", confirm.URL, confirm.Status, confirm.Body)
	}
	fields := cloneValues(f.Fields)
	fields.Set("logout", "yes")
	if p := b1.Submit(confirm, f, fields); p.Status != http.StatusOK {
		t.Errorf("after signing out at the provider: landed on %d %s", p.Status, p.URL)
	}
	// oidc-provider answers the browser only after the POST to B.
	ev := rs.Provider.WaitEvent(t, "backchannel.success", nil)
	if ev.String("client_id") != rs.Client.ClientID || ev.String("sub") != user || ev.String("sid") == "" {
		t.Errorf("provider's back-channel logout: %v, want client %s, sub %s and a sid", ev, rs.Client.ClientID, user)
	}
	if errs := rs.Provider.Events("backchannel.error"); len(errs) != 0 {
		t.Errorf("provider's back-channel logout failed: %v", errs)
	}
	checkAll("after-provider-logout", map[string]bool{"browser 2": true})
	if n := len(keysWithPrefix(rc.Dump(t), "authproxy:s:")); n != 1 {
		t.Errorf("after the back-channel logout Redis holds %d sessions, want 1 (browser 2's)", n)
	}
	rs.Proxy["b"].syncLog(t) // B logged it before answering the provider
	if !strings.Contains(rs.Proxy["b"].out.String(), "sessions_ended=2") {
		t.Errorf("replica B did not log a back-channel logout that ended 2 sessions")
	}

	// The same kind of token as the invalid ones, without a defect: it names
	// the user by sub, so it ends every session of the user, browser 2's too.
	// The minter makes tokens the proxy accepts, so the 400s above were each
	// for their defect.
	good := mint.sign(valid())
	if a := postForm(t, c, rs.URL("a", "/auth/backchannel-logout"), url.Values{"logout_token": {good}}); a.Status != http.StatusOK {
		t.Fatalf("valid logout token for sub %s: status %d, want 200; body:\n%s", user, a.Status, a.Body)
	}
	checkAll("after-sub-logout", nil)
	if a := postForm(t, c, rs.URL("a", "/auth/backchannel-logout"), url.Values{"logout_token": {good}}); a.Status != http.StatusBadRequest {
		t.Errorf("the same logout token again, to the same replica: status %d, want 400 (replayed jti); body:\n%s", a.Status, a.Body)
	}
	replayB := postForm(t, c, rs.URL("b", "/auth/backchannel-logout"), url.Values{"logout_token": {good}})
	t.Logf("the same logout token replayed to the other replica: status %d", replayB.Status)

	// The cookie store has nothing to end.
	for _, tok := range []string{mint.sign(valid()), "not-a-jwt"} {
		a := postForm(t, c, rs.URL("cookie", "/auth/backchannel-logout"), url.Values{"logout_token": {tok}})
		if a.Status != http.StatusNotImplemented || !strings.Contains(a.Body, `"not_implemented"`) {
			t.Errorf("POST /auth/backchannel-logout with the cookie store: status %d, want 501 not_implemented; body:\n%s", a.Status, a.Body)
		}
	}
	checkServedNoError(t, rs)
}

// logoutTokenMinter signs logout tokens with the provider's own key, as
// oidc-provider would, so that a test can give them one defect at a time.
type logoutTokenMinter struct {
	t      *testing.T
	rs     *replicaSet
	signer jose.Signer
}

func newLogoutTokenMinter(t *testing.T, rs *replicaSet, jwk map[string]string) *logoutTokenMinter {
	t.Helper()
	key := rsaKeyFromJWK(t, jwk)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: jwk["kid"]}},
		(&jose.SignerOptions{}).WithType("logout+jwt"))
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	return &logoutTokenMinter{t: t, rs: rs, signer: signer}
}

// claims are those of a valid logout token for sub, without sid.
func (m *logoutTokenMinter) claims(sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss":    m.rs.Provider.Issuer,
		"aud":    m.rs.Client.ClientID,
		"iat":    now,
		"exp":    now + 120,
		"jti":    randomToken(m.t),
		"sub":    sub,
		"events": map[string]any{backchannelEvent: map[string]any{}},
	}
}

func (m *logoutTokenMinter) sign(claims map[string]any) string {
	m.t.Helper()
	raw, err := json.Marshal(claims)
	if err != nil {
		m.t.Fatalf("encode claims: %v", err)
	}
	jws, err := m.signer.Sign(raw)
	if err != nil {
		m.t.Fatalf("sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		m.t.Fatalf("serialize: %v", err)
	}
	return out
}

// rsaKeyFromJWK reads back the private JWK that newSigningJWK made.
func rsaKeyFromJWK(t *testing.T, jwk map[string]string) *rsa.PrivateKey {
	t.Helper()
	num := func(name string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(jwk[name])
		if err != nil {
			t.Fatalf("JWK %s: %v", name, err)
		}
		return new(big.Int).SetBytes(b)
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: num("n"), E: int(num("e").Int64())},
		D:         num("d"),
		Primes:    []*big.Int{num("p"), num("q")},
	}
	if err := k.Validate(); err != nil {
		t.Fatalf("JWK: %v", err)
	}
	k.Precompute()
	return k
}

// postForm POSTs form, urlencoded, as the provider's back-channel does.
func postForm(t *testing.T, c *http.Client, rawURL string, form url.Values) answer {
	t.Helper()
	resp, err := c.PostForm(rawURL, form)
	if err != nil {
		t.Fatalf("POST %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("POST %s: read body: %v", rawURL, err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}
