package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The APIs the provider issues JWT access tokens for (RFC 8707 resource
// indicators).
const (
	apiAudience = "https://api.example.test"   // AUTHPROXY_AUDIENCE
	otherAPI    = "https://other.example.test" // another API of the same tenant
	// shortLivedAPI issues tokens for apiAudience that expire within seconds.
	shortLivedAPI = "https://short-lived.example.test"
	shortLivedTTL = 3 // seconds
)

// jwksRefetchInterval is oidc.DefaultKeyRefetchInterval, which the binary
// uses: the proxy fetches the provider's keys for an unknown kid or a bad
// signature at most once per interval.
const jwksRefetchInterval = 10 * time.Second

// bearerRules lets the machine client into /api/machines/, members of
// api-users (a custom claim the provider also puts in access tokens) into
// /api/, and verified example.test addresses into the rest.
const bearerRules = `allow * /api/machines/ claim:client_id=e2e-machine
allow * /api/          group:api-users
allow * /              email-domain:example.test
`

// TestBearerAccessToken calls the proxy as an API client with JWT access
// tokens that oidc-provider issued for AUTHPROXY_AUDIENCE: a machine's
// (client credentials) and a user's (authorization code with a resource
// indicator). Valid ones reach the upstream as their sub, under the same
// rules as sessions, without the proxy calling the provider. Tokens for
// another API, tampered, forged, expired ones and ID tokens get 401 with
// error="invalid_token" and never reach the upstream.
func TestBearerAccessToken(t *testing.T) {
	machine := providerClient{
		ClientID:                "e2e-machine",
		ClientSecret:            newCookieSecret(t),
		GrantTypes:              []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	// An app that logs users in at the provider to call the API for them.
	app := providerClient{
		ClientID:                "e2e-app",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{newRecorder(t).URL.String() + "/callback"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	s := newCustomStack(t, customStackOptions{
		Provider: func(c *providerConfig) {
			c.Clients = append(c.Clients, machine, app)
			c.Features.ClientCredentials = true
			c.ResourceServers = map[string]providerResourceServer{
				apiAudience:   {},
				otherAPI:      {},
				shortLivedAPI: {Audience: apiAudience, AccessTokenTTL: shortLivedTTL},
			}
			c.Accounts = map[string]map[string]any{"uma": {"groups": []string{"api-users"}}}
			c.LogRequests = true
		},
		ProxyEnv: map[string]string{
			"AUTHPROXY_AUDIENCE":      apiAudience,
			"AUTHPROXY_RULES_FILE":    writeTestFile(t, "rules.txt", bearerRules),
			"AUTHPROXY_GROUPS_HEADER": "X-Groups",
		},
	})
	// The proxy fetched the provider's keys before it was ready.
	keysFetched := time.Now()
	tp := newTokenClient(t, s)

	machineToken := tp.clientCredentials(machine, apiAudience)
	claims := mustClaims(t, machineToken)
	// oidc-provider makes the client the sub of a client-credentials token.
	if claims["sub"] != machine.ClientID || claims["client_id"] != machine.ClientID || claims["aud"] != apiAudience || claims["iss"] != s.Provider.Issuer {
		t.Fatalf("machine token claims %v, want sub and client_id %q, aud %q, iss %q", claims, machine.ClientID, apiAudience, s.Provider.Issuer)
	}
	if typ := jwtHeader(t, machineToken)["typ"]; typ != "at+jwt" {
		t.Errorf("machine token typ = %v, want at+jwt (RFC 9068)", typ)
	}
	userToken, appIDToken := tp.authorizationCode(app, "uma", apiAudience)
	if c := mustClaims(t, userToken); c["sub"] != "uma" || c["aud"] != apiAudience || !slices.Equal(stringList(c["groups"]), []string{"api-users"}) {
		t.Fatalf("user access token claims %v, want sub uma, aud %q, groups [api-users]", c, apiAudience)
	}
	vicToken, _ := tp.authorizationCode(app, "vic", apiAudience)

	// The accepted tokens, and where their rules let them go.
	accepted := []struct {
		name   string
		authz  string // Authorization header
		path   string
		status int
		user   string // X-User upstream, when 200
		groups string // X-Groups upstream, when 200
	}{
		{"machine on its path", "Bearer " + machineToken, "/api/machines/jobs", http.StatusOK, machine.ClientID, ""},
		{"machine, lower-case scheme", "bearer " + machineToken, "/api/machines/jobs", http.StatusOK, machine.ClientID, ""},
		{"machine elsewhere in the API", "Bearer " + machineToken, "/api/reports", http.StatusForbidden, "", ""},
		{"machine outside the API", "Bearer " + machineToken, "/", http.StatusForbidden, "", ""},
		{"user in the API group", "Bearer " + userToken, "/api/reports", http.StatusOK, "uma", "api-users"},
		{"user on the machines' path", "Bearer " + userToken, "/api/machines/jobs", http.StatusForbidden, "", ""},
		// Access tokens carry no email, so the email rule refuses them.
		{"user outside the API", "Bearer " + userToken, "/", http.StatusForbidden, "", ""},
		{"user without the group", "Bearer " + vicToken, "/api/reports", http.StatusForbidden, "", ""},
	}
	requests := s.providerRequestsDuring(t, func() {
		for i, c := range accepted {
			t.Run(c.name, func(t *testing.T) {
				pathQuery := fmt.Sprintf("%s?call=%d", c.path, i)
				p := tp.call(t, pathQuery, c.authz, map[string]string{"X-User": "mallory", "X-Groups": "admins"})
				seen := s.Upstream.ByRequestURI(pathQuery)
				if p.Status != c.status {
					t.Fatalf("GET %s: status %d, want %d; body:\n%s", pathQuery, p.Status, c.status, p.Body)
				}
				if c.status != http.StatusOK {
					if len(seen) != 0 {
						t.Errorf("refused, but the upstream saw %s", pathQuery)
					}
					return
				}
				if len(seen) != 1 {
					t.Fatalf("upstream saw %s %d times, want once", pathQuery, len(seen))
				}
				want := map[string][]string{"X-User": {c.user}}
				if c.groups != "" {
					want["X-Groups"] = []string{c.groups}
				}
				got := headersNamed(seen[0].Header, "X-User", "X-Groups")
				if len(got) != len(want) || !slices.Equal(got["X-User"], want["X-User"]) || !slices.Equal(got["X-Groups"], want["X-Groups"]) {
					t.Errorf("upstream identity headers %q, want %q", got, want)
				}
			})
		}
		// A burst on one connection, as an API client makes.
		for i := range 50 {
			pathQuery := fmt.Sprintf("/api/machines/burst?n=%d", i)
			if p := tp.call(t, pathQuery, "Bearer "+machineToken, nil); p.Status != http.StatusOK {
				t.Fatalf("burst request %d: status %d; body:\n%s", i, p.Status, p.Body)
			}
		}
	})
	if len(requests) != 0 {
		t.Errorf("the provider served %d requests while the proxy checked %d bearer requests, want none: %v", len(requests), len(accepted)+50, requests)
	}

	// The refused tokens.
	proxyIDToken := proxyLoginIDToken(t, s, "uma")
	if c := mustClaims(t, proxyIDToken); !audienceIs(c["aud"], s.Client.ClientID) {
		t.Fatalf("the proxy's ID token has aud %v, want %q", c["aud"], s.Client.ClientID)
	}
	// The short-lived token works while fresh. On a loaded machine it may
	// expire between its issue and its use: only a refusal while it was
	// still valid is a failure; an expired one is replaced and tried again.
	var shortToken string
	for attempt := 1; ; attempt++ {
		shortToken = tp.clientCredentials(machine, shortLivedAPI)
		c := mustClaims(t, shortToken)
		if c["aud"] != apiAudience {
			t.Fatalf("short-lived token aud = %v, want %q", c["aud"], apiAudience)
		}
		exp, _ := c["exp"].(float64)
		p := tp.call(t, fmt.Sprintf("/api/machines/short-lived-fresh?attempt=%d", attempt), "Bearer "+shortToken, nil)
		if p.Status == http.StatusOK {
			break
		}
		if time.Now().Before(time.Unix(int64(exp), 0)) || attempt == 5 {
			t.Fatalf("fresh short-lived token (attempt %d): status %d, want 200; body:\n%s", attempt, p.Status, p.Body)
		}
		t.Logf("short-lived token expired before it was used (attempt %d): the machine is slow; trying a new one", attempt)
	}
	otherToken := tp.clientCredentials(machine, otherAPI)
	if c := mustClaims(t, otherToken); c["aud"] != otherAPI {
		t.Fatalf("token for the other API has aud %v, want %q", c["aud"], otherAPI)
	}
	providerKID, _ := jwtHeader(t, machineToken)["kid"].(string)

	refused := []struct {
		name  string
		token string
	}{
		{"token for another API", otherToken},
		{"the proxy's ID token", proxyIDToken},
		{"another client's ID token", appIDToken},
		{"payload changed to another sub", withClaims(t, machineToken, map[string]any{"sub": "admin"})},
		{"payload changed to the other API's aud", withClaims(t, otherToken, map[string]any{"aud": apiAudience})},
		{"signature of another token", splice(machineToken, userToken)},
		{"signed by another key with the provider's kid", signRS256(t, mustClaims(t, machineToken), providerKID)},
		{"alg none", unsignedJWT(t, mustClaims(t, machineToken))},
		{"alg HS256 keyed with the provider's JWKS", hs256JWT(t, mustClaims(t, machineToken), providerKID, tp.jwks())},
		{"not a JWT", "2YotnFZFEjr1zCsicMWpAA"},
		{"expired", shortToken}, // by the time it is sent; see below
	}
	// Wait for the short-lived token to expire, and for the proxy's JWKS
	// refetch interval (oidc.DefaultKeyRefetchInterval, 10 s) to pass, so
	// that the first token failing its signature check may refetch the keys
	// (a rotated key) and the others must not.
	exp, _ := mustClaims(t, shortToken)["exp"].(float64)
	wait := max(time.Until(time.Unix(int64(exp), 0).Add(time.Second)), time.Until(keysFetched.Add(jwksRefetchInterval+500*time.Millisecond)))
	t.Logf("waiting %s for the short-lived token to expire and the JWKS refetch interval to pass", wait.Round(time.Millisecond))
	time.Sleep(wait)

	var refusing time.Duration
	requests = s.providerRequestsDuring(t, func() {
		defer func(start time.Time) { refusing = time.Since(start) }(time.Now())
		for i, c := range refused {
			t.Run(c.name, func(t *testing.T) {
				pathQuery := fmt.Sprintf("/api/machines/refused?case=%d", i)
				p := tp.call(t, pathQuery, "Bearer "+c.token, nil)
				if p.Status != http.StatusUnauthorized {
					t.Errorf("status %d, want 401; body:\n%s", p.Status, p.Body)
				}
				if got := p.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || !strings.Contains(got, `error="invalid_token"`) {
					t.Errorf(`WWW-Authenticate = %q, want Bearer ... error="invalid_token"`, got)
				}
				var body struct{ Error string }
				if err := decodeJSON(p.Body, &body); err != nil || body.Error != "invalid_token" {
					t.Errorf("body %q, want JSON with error invalid_token", p.Body)
				}
				if got := s.Upstream.ByRequestURI(pathQuery); len(got) != 0 {
					t.Errorf("the upstream saw the request")
				}
			})
		}
	})
	for _, r := range requests {
		if r.String("method") != http.MethodGet || r.String("path") != "/.well-known/jwks.json" {
			t.Errorf("while refusing %d bad tokens, the provider served %v, want only JWKS fetches", len(refused), r)
		}
	}
	// One fetch per refetch interval that passed: on a slow machine the
	// refusals may span more than one. A fetch per bad token would still
	// show as about len(refused).
	if allowed := 1 + int(refusing/jwksRefetchInterval); len(requests) > allowed {
		t.Errorf("while refusing %d bad tokens in %s, the proxy fetched the JWKS %d times, want at most %d (one per %s): %v",
			len(refused), refusing.Round(time.Millisecond), len(requests), allowed, jwksRefetchInterval, requests)
	}
	t.Logf("refusing %d bad tokens cost %d provider requests", len(refused), len(requests))
}

// tokenClient talks to the provider's token endpoint as the test's clients
// and to the proxy as an API client.
type tokenClient struct {
	t        *testing.T
	s        *stack
	provider *http.Client
	api      *http.Client
}

func newTokenClient(t *testing.T, s *stack) *tokenClient {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: s.PKI.TLSConfig()}
	api := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(api.CloseIdleConnections)
	return &tokenClient{
		t: t, s: s,
		provider: &http.Client{Transport: tr, Timeout: hangTimeout},
		api: &http.Client{Transport: api, Timeout: hangTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// token posts form to the token endpoint as client and returns the answer.
func (c *tokenClient) token(client providerClient, form url.Values) map[string]any {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.s.Provider.Issuer+"oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatalf("token request: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client.ClientID), url.QueryEscape(client.ClientSecret))
	resp, err := c.provider.Do(req)
	if err != nil {
		c.t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
		c.t.Fatalf("token endpoint (%s, grant %s): %s\n%s", client.ClientID, form.Get("grant_type"), resp.Status, body)
	}
	return out
}

// clientCredentials returns a JWT access token for resource, issued to client.
func (c *tokenClient) clientCredentials(client providerClient, resource string) string {
	c.t.Helper()
	out := c.token(client, url.Values{"grant_type": {"client_credentials"}, "resource": {resource}})
	at, _ := out["access_token"].(string)
	if strings.Count(at, ".") != 2 {
		c.t.Fatalf("client credentials for %s: access_token %q is not a JWT", resource, at)
	}
	return at
}

// authorizationCode logs user in at the provider as client (a browser,
// PKCE, a resource indicator) and returns the JWT access token for resource
// and the ID token.
func (c *tokenClient) authorizationCode(client providerClient, user, resource string) (accessToken, idToken string) {
	c.t.Helper()
	verifier := randomToken(c.t)
	sum := sha256.Sum256([]byte(verifier))
	state := randomToken(c.t)
	q := url.Values{
		"client_id":             {client.ClientID},
		"response_type":         {"code"},
		"scope":                 {"openid email"},
		"redirect_uri":          {client.RedirectURIs[0]},
		"state":                 {state},
		"nonce":                 {randomToken(c.t)},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"resource":              {resource},
	}
	b := newBrowser(c.t, c.s.PKI)
	landed := b.Login(c.s.Provider.Issuer+"authorize?"+q.Encode(), user)
	if got := landed.URL.Scheme + "://" + landed.URL.Host + landed.URL.Path; got != client.RedirectURIs[0] || landed.URL.Query().Get("state") != state {
		c.t.Fatalf("login at the provider as %s landed on %s, want %s with the state; hops:\n%s", client.ClientID, landed.URL, client.RedirectURIs[0], b.HopsString())
	}
	out := c.token(client, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {landed.URL.Query().Get("code")},
		"redirect_uri":  {client.RedirectURIs[0]},
		"code_verifier": {verifier},
		"resource":      {resource},
	})
	accessToken, _ = out["access_token"].(string)
	idToken, _ = out["id_token"].(string)
	if strings.Count(accessToken, ".") != 2 || idToken == "" {
		c.t.Fatalf("authorization code for %s: want a JWT access token and an ID token, got %v", resource, out)
	}
	return accessToken, idToken
}

// jwks returns the provider's JWKS document as served.
func (c *tokenClient) jwks() []byte {
	c.t.Helper()
	resp, err := c.provider.Get(c.s.Provider.Issuer + ".well-known/jwks.json")
	if err != nil {
		c.t.Fatalf("GET jwks: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

// call sends GET pathQuery to the proxy as an API client with the
// Authorization header authz and the extra headers; it fails t (which may
// be a subtest) if there is no answer.
func (c *tokenClient) call(t *testing.T, pathQuery, authz string, extra map[string]string) *page {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.s.ProxyURL(pathQuery), nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header = apiHeaders()
	req.Header.Set("Authorization", authz)
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := c.api.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", pathQuery, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// providerRequestsDuring runs f and returns the requests the provider
// served meanwhile (the provider must log requests). A marker request
// before and after f delimits them: the provider prints each request's
// event before answering, so a proxy call made during f is printed before
// the second marker.
func (s *stack) providerRequestsDuring(t *testing.T, f func()) []providerEvent {
	t.Helper()
	if !s.Provider.Config.LogRequests {
		t.Fatalf("providerRequestsDuring needs a provider started with LogRequests")
	}
	before := s.Provider.Mark(t)
	f()
	after := s.Provider.Mark(t)
	var out []providerEvent
	in := false
	for _, ev := range s.Provider.Events("request") {
		switch ev.String("path") {
		case before:
			in = true
		case after:
			return out
		default:
			if in {
				out = append(out, ev)
			}
		}
	}
	t.Fatalf("provider request log lacks the markers")
	return nil
}

// proxyLoginIDToken logs user in through the proxy and returns the ID token
// the proxy got, as it hands it to the provider at logout (id_token_hint).
func proxyLoginIDToken(t *testing.T, s *stack, user string) string {
	t.Helper()
	b := newBrowser(t, s.PKI)
	if p := b.Login(s.ProxyURL("/id-token"), user); p.URL.String() != s.ProxyURL("/id-token") {
		t.Fatalf("login through the proxy landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	logout := b.Do(http.MethodGet, s.ProxyURL("/auth/logout"), navigationHeaders(), nil)
	loc, err := url.Parse(logout.Header.Get("Location"))
	if err != nil || loc.Query().Get("id_token_hint") == "" {
		t.Fatalf("logout: %d to %q, want the provider's end-session URL with id_token_hint", logout.Status, logout.Header.Get("Location"))
	}
	return loc.Query().Get("id_token_hint")
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32) // 43 characters, as a PKCE verifier needs
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func mustClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	c, err := jwtClaims(token)
	if err != nil {
		t.Fatalf("token %q: %v", token, err)
	}
	return c
}

// jwtHeader decodes a JWT's protected header without verifying anything.
func jwtHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	var out map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		t.Fatalf("JWT header of %q: %v", token, err)
	}
	return out
}

func stringList(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// withClaims returns token with claims changed in its payload and its
// header and signature kept.
func withClaims(t *testing.T, token string, changes map[string]any) string {
	t.Helper()
	claims := mustClaims(t, token)
	for k, v := range changes {
		claims[k] = v
	}
	parts := strings.Split(token, ".")
	return parts[0] + "." + b64JSON(t, claims) + "." + parts[2]
}

// splice returns the header and payload of a with the signature of b.
func splice(a, b string) string {
	return a[:strings.LastIndex(a, ".")] + b[strings.LastIndex(b, "."):]
}

// signRS256 signs claims with a fresh RSA key, naming kid in the header.
func signRS256(t *testing.T, claims map[string]any, kid string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("RSA key: %v", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	raw, _ := json.Marshal(claims)
	jws, err := signer.Sign(raw)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return out
}

// unsignedJWT returns claims as an "alg": "none" JWT.
func unsignedJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	return b64JSON(t, map[string]string{"alg": "none", "typ": "at+jwt"}) + "." + b64JSON(t, claims) + "."
}

// hs256JWT MACs claims with key, the old trick of keying HMAC with a
// public key the verifier holds.
func hs256JWT(t *testing.T, claims map[string]any, kid string, key []byte) string {
	t.Helper()
	signing := b64JSON(t, map[string]string{"alg": "HS256", "typ": "at+jwt", "kid": kid}) + "." + b64JSON(t, claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
