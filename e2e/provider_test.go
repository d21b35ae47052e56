package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// providerConfig is the JSON file that provider/server.mjs reads.
type providerConfig struct {
	Host    string           `json:"host"`
	Port    int              `json:"port"`
	Issuer  string           `json:"issuer"`
	TLS     providerTLS      `json:"tls"`
	Clients []providerClient `json:"clients"`
	// SigningKey is the RS256 key, a private JWK; startProvider makes one.
	SigningKey map[string]string `json:"signing_key,omitempty"`
	// SigningKeys, when set, replace SigningKey: the first signs, all are
	// published in the JWKS (a key rotation in progress).
	SigningKeys []map[string]string `json:"signing_keys,omitempty"`
	// CookieKeys sign oidc-provider's cookies; startProvider makes one.
	CookieKeys []string         `json:"cookie_keys,omitempty"`
	TTL        map[string]int   `json:"ttl,omitempty"` // seconds, by oidc-provider model name: IdToken, AccessToken, Session, ...
	Features   providerFeatures `json:"features"`
	// Accounts adds claims to logins, by login name, over the defaults
	// (email LOGIN@example.test, email_verified true, name the login).
	// Claims other than the standard ones (groups, Auth0-style namespaced
	// roles) go into every ID token whatever the scopes, and into JWT
	// access tokens for a resource server.
	Accounts map[string]map[string]any `json:"accounts,omitempty"`
	// ResourceServers are the APIs (RFC 8707 resource indicators) the token
	// endpoint issues JWT access tokens for, by indicator.
	ResourceServers map[string]providerResourceServer `json:"resource_servers,omitempty"`
	// LogRequests makes the provider print a "request" event for every
	// request it serves, to count what reaches it.
	LogRequests bool `json:"log_requests,omitempty"`
	// RotateRefreshToken makes every refresh_token grant consume the token
	// and issue a new one; a consumed token used again is refused and its
	// grant revoked. (oidc-provider's default rotates only public clients'
	// tokens, or those past 70% of their lifetime.)
	RotateRefreshToken bool `json:"rotate_refresh_token,omitempty"`
	// Admin turns on the test-only POST /e2e/revoke-grants?sub=LOGIN, which
	// revokes every grant of an account, as an admin would.
	Admin bool `json:"admin,omitempty"`
	// MaxHeaderSize is the largest request head the provider accepts, in
	// bytes; Node's 16 KiB when 0. On 127.0.0.1 browsers send the proxy's
	// cookies to the provider too.
	MaxHeaderSize int `json:"max_header_size,omitempty"`
	// ClockTolerance is how many seconds oidc-provider still accepts an
	// expired token; its default (15) when 0.
	ClockTolerance int `json:"clock_tolerance,omitempty"`
	// AllowLoopbackFetch lets the provider's own requests (back-channel
	// logout POSTs) reach 127.0.0.1, which oidc-provider's SSRF protection
	// refuses by default.
	AllowLoopbackFetch bool `json:"allow_loopback_fetch,omitempty"`
}

// providerResourceServer is an API that access tokens are issued for.
type providerResourceServer struct {
	Scope          string `json:"scope,omitempty"`            // scopes it knows, space-separated
	Audience       string `json:"audience,omitempty"`         // aud of its tokens; the indicator when empty
	AccessTokenTTL int    `json:"access_token_ttl,omitempty"` // seconds; the provider's default when 0
}

type providerTLS struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// providerClient is oidc-provider client metadata (RFC 7591 names).
type providerClient struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	RedirectURIs            []string `json:"redirect_uris"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	BackchannelLogoutURI    string   `json:"backchannel_logout_uri,omitempty"`
	// BackchannelLogoutSessionRequired puts sid in the client's ID tokens
	// and logout tokens; without it a logout token names only sub.
	BackchannelLogoutSessionRequired bool `json:"backchannel_logout_session_required,omitempty"`
	// GrantTypes defaults to ["authorization_code"]. A client with neither
	// authorization_code nor implicit (say ["client_credentials"]) needs no
	// RedirectURIs.
	GrantTypes []string `json:"grant_types,omitempty"`
}

type providerFeatures struct {
	RPInitiatedLogout bool `json:"rpInitiatedLogout"`
	BackchannelLogout bool `json:"backchannelLogout"`
	ClientCredentials bool `json:"clientCredentials,omitempty"`
}

// provider is a running oidc-provider.
type provider struct {
	*process
	Issuer string   // https://127.0.0.1:PORT/ (trailing slash, like Auth0)
	URL    *url.URL // the issuer, parsed
	Config providerConfig
	client *http.Client // trusts the suite's CA; for Mark
}

// providerReadyTimeout bounds Node's start and the first discovery answer.
const providerReadyTimeout = hangTimeout

// startProvider writes cfg (with host, port, issuer and TLS files filled in
// when empty) and starts provider/server.mjs on it, waiting until discovery
// answers over HTTPS with a certificate from p.
func startProvider(t *testing.T, p *pki, cfg providerConfig) *provider {
	t.Helper()
	node, dir := requireNode(t)
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = freePort(t)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = fmt.Sprintf("https://%s:%d/", cfg.Host, cfg.Port)
	}
	if cfg.TLS == (providerTLS{}) {
		cfg.TLS = providerTLS{Cert: p.CertFile, Key: p.KeyFile}
	}
	if cfg.SigningKey == nil {
		cfg.SigningKey = newSigningJWK(t)
	}
	if cfg.CookieKeys == nil {
		cfg.CookieKeys = []string{newCookieSecret(t)}
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatalf("encode provider config: %v", err)
	}
	cfgFile := filepath.Join(t.TempDir(), "provider.json")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatalf("write provider config: %v", err)
	}
	issuer, err := url.Parse(cfg.Issuer)
	if err != nil {
		t.Fatalf("parse issuer %q: %v", cfg.Issuer, err)
	}

	cmd := exec.Command(node, filepath.Join(dir, "server.mjs"), cfgFile)
	cmd.Dir = dir
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: p.TLSConfig()}}
	t.Cleanup(client.CloseIdleConnections)
	prov := &provider{process: startProcess(t, "oidc-provider", cmd), Issuer: cfg.Issuer, URL: issuer, Config: cfg, client: client}

	discovery := strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration"
	prov.waitFor(t, "discovery at "+discovery, providerReadyTimeout, func() error {
		resp, err := client.Get(discovery)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var doc struct {
			Issuer string `json:"issuer"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return fmt.Errorf("status %d: %w", resp.StatusCode, err)
		}
		if doc.Issuer != cfg.Issuer {
			return fmt.Errorf("discovery says issuer %q, want %q", doc.Issuer, cfg.Issuer)
		}
		return nil
	})
	return prov
}

// providerEvent is one JSON line the provider printed, such as
// {"event":"end_session","id_token_hint":true,...}.
type providerEvent map[string]any

// Events returns the events named name printed so far, oldest first.
func (p *provider) Events(name string) []providerEvent {
	var events []providerEvent
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue // oidc-provider's own warnings
		}
		var ev providerEvent
		if json.Unmarshal([]byte(line), &ev) == nil && ev["event"] == name {
			events = append(events, ev)
		}
	}
	return events
}

// WaitEvent waits for an event named name for which match returns true
// (match may be nil), and fails t if none is printed within hangTimeout.
// Use it for events that are certain to come; to assert that something did
// not happen, or to count, read Events after Mark.
func (p *provider) WaitEvent(t *testing.T, name string, match func(providerEvent) bool) providerEvent {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for {
		for _, ev := range p.Events(name) {
			if match == nil || match(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider printed no matching %q event within %s; it printed:\n%s", name, hangTimeout, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Mark sends the provider a request of its own and waits until the suite
// has read its "request" event; it returns the request's path. The provider
// prints each event before it answers the request that caused it, on one
// pipe, so once the mark is read, so is every event of a request that was
// answered before Mark was called: Events is then complete, without waiting
// an arbitrary while for stragglers. Needs a provider started with
// LogRequests.
func (p *provider) Mark(t *testing.T) string {
	t.Helper()
	if !p.Config.LogRequests {
		t.Fatalf("provider.Mark needs a provider started with LogRequests")
	}
	path := "/e2e-marker/" + randomToken(t)
	resp, err := p.client.Get(strings.TrimSuffix(p.Issuer, "/") + path)
	if err != nil {
		t.Fatalf("marker request: %v", err)
	}
	resp.Body.Close()
	p.WaitEvent(t, "request", func(ev providerEvent) bool { return ev.String("path") == path })
	return path
}

// String returns the field as a string ("" when absent or not a string).
func (e providerEvent) String(field string) string {
	s, _ := e[field].(string)
	return s
}

// newSigningJWK returns a fresh RSA 2048 private key as a JWK for RS256.
func newSigningJWK(t *testing.T) map[string]string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate RSA key: %v", err)
	}
	k.Precompute()
	b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }
	kid := make([]byte, 6)
	if _, err := rand.Read(kid); err != nil {
		t.Fatalf("key id: %v", err)
	}
	return map[string]string{
		"kty": "RSA",
		"kid": "e2e-" + base64.RawURLEncoding.EncodeToString(kid),
		"alg": "RS256",
		"use": "sig",
		"n":   b64(k.N),
		"e":   b64(big.NewInt(int64(k.E))),
		"d":   b64(k.D),
		"p":   b64(k.Primes[0]),
		"q":   b64(k.Primes[1]),
		"dp":  b64(k.Precomputed.Dp),
		"dq":  b64(k.Precomputed.Dq),
		"qi":  b64(k.Precomputed.Qinv),
	}
}
