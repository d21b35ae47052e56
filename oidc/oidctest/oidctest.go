// Package oidctest is a development OpenID Provider: NOT FOR PRODUCTION.
//
// It signs in anyone who types a name at its login page, accepts any
// http(s) redirect_uri, and keeps keys, codes and tokens in memory. It exists
// so that `authproxy demo` runs without an Auth0 account and so that tests of
// the oidc package can drive the real authorization code flow (with PKCE),
// refresh, key rotation and logout, and inject faults.
//
// Endpoints, relative to the issuer: /.well-known/openid-configuration,
// /authorize, /token, /jwks, /userinfo and /end_session.
package oidctest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Limits that keep memory bounded whatever clients send.
const (
	codeTTL          = 60 * time.Second
	maxCodes         = 10_000
	maxRefreshTokens = 10_000
	maxEndSessions   = 1_000
	maxCountedPaths  = 1_000
	maxUsernameLen   = 64
	maxBodyBytes     = 64 << 10
	rsaBits          = 2048
)

// Options configure a Provider. Zero values give sensible dev defaults.
type Options struct {
	ClientID     string // default "authproxy-demo"
	ClientSecret string // default "demo-secret"; client auth accepted via HTTP Basic (client_secret_basic) and form (client_secret_post)

	IDTokenTTL      time.Duration // default 1h
	AccessTokenTTL  time.Duration // default 1h
	RefreshTokenTTL time.Duration // default 24h

	// Claims, when set, returns extra claims for a user name typed at the
	// login page (e.g. email, name, groups). Merged into ID token + userinfo.
	// Protocol claims (iss, sub, aud, exp, iat, auth_time, nonce, sid, azp,
	// at_hash) cannot be overridden; name can.
	Claims func(user string) map[string]any

	// Now is the clock (tests move time); default time.Now.
	Now func() time.Time

	// RotateRefreshTokens: a refresh token is invalid once used (new one
	// returned). Default false: the same refresh token stays valid and the
	// refresh response carries none, as with Auth0 without rotation.
	RotateRefreshTokens bool

	// NoIssParameter turns off RFC 9207: discovery then does not advertise
	// authorization_response_iss_parameter_supported and authorization
	// responses carry no iss. Default: advertised and sent, as oidc-provider
	// does.
	NoIssParameter bool
	// TokenClaims, when set, may change the claims of each token the token
	// endpoint issues, kind "id_token" or "access_token", right before it is
	// signed. Unlike Claims it may change anything (sub, exp, nonce): tests
	// use it for the odd claims a provider might send.
	TokenClaims func(kind string, claims map[string]any)
}

func (o Options) withDefaults() Options {
	if o.ClientID == "" {
		o.ClientID = "authproxy-demo"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "demo-secret"
	}
	if o.IDTokenTTL <= 0 {
		o.IDTokenTTL = time.Hour
	}
	if o.AccessTokenTTL <= 0 {
		o.AccessTokenTTL = time.Hour
	}
	if o.RefreshTokenTTL <= 0 {
		o.RefreshTokenTTL = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Provider is a development OpenID Provider. It implements http.Handler and
// is safe for concurrent use.
type Provider struct {
	issuer   string // exactly as given; the iss claim and discovery issuer
	base     string // issuer without a trailing slash; endpoint URLs hang off it
	basePath string // path part of base, stripped from request paths
	opts     Options
	pages    *template.Template

	closeOnce sync.Once
	srv       *http.Server // set by Start only

	mu          sync.Mutex
	keys        []signingKey // keys[0] signs; the rest are only published
	codes       map[string]*authCode
	refresh     map[string]*grant
	requests    map[string]int
	fault       func(http.ResponseWriter, *http.Request) bool
	endSessions []url.Values
	echo        bool   // error answers echo the request
	refuse      string // OAuth error code for every token request
}

type signingKey struct {
	priv *rsa.PrivateKey
	id   string
}

// grant is what a code or refresh token stands for.
type grant struct {
	user     string
	clientID string
	scope    string
	audience string
	sid      string
	authTime time.Time
	expires  time.Time
}

type authCode struct {
	grant
	redirectURI   string
	codeChallenge string
	nonce         string
	used          bool
	refreshToken  string // issued from this code; revoked if the code is replayed
}

// New returns a Provider for issuer, which may have a path and a trailing
// slash. It generates an RSA-2048 signing key. The caller serves it.
func New(issuer string, opts Options) (*Provider, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("oidctest: parse issuer: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oidctest: issuer %q must be an absolute http(s) URL without query or fragment", issuer)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(issuer, "/")
	return &Provider{
		issuer:   issuer,
		base:     base,
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		opts:     opts.withDefaults(),
		pages:    pages,
		keys:     []signingKey{key},
		codes:    make(map[string]*authCode),
		refresh:  make(map[string]*grant),
		requests: make(map[string]int),
	}, nil
}

// Start returns a Provider serving in the background on 127.0.0.1 at a free
// port, with issuer "http://127.0.0.1:PORT". Close stops it.
func Start(opts Options) (*Provider, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oidctest: listen: %w", err)
	}
	p, err := New("http://"+ln.Addr().String(), opts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed after Close
	return p, nil
}

// Issuer returns the issuer exactly as given to New (Start: no trailing slash).
func (p *Provider) Issuer() string { return p.issuer }

// Close stops the server started by Start, cutting open connections (so a
// hanging fault does not block it). It is a no-op for a Provider from New.
func (p *Provider) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if p.srv != nil {
			err = p.srv.Close()
		}
	})
	return err
}

// SignIDToken signs claims, used exactly as given, with the current key
// (RS256, kid set). Tests use it to forge tokens with wrong iss, aud or exp.
func (p *Provider) SignIDToken(claims map[string]any) (string, error) {
	return p.sign("JWT", claims)
}

// PublicKey returns the public part of the current signing key.
func (p *Provider) PublicKey() *rsa.PublicKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &p.keys[0].priv.PublicKey
}

// KeyID returns the kid of the current signing key.
func (p *Provider) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[0].id
}

// RotateKey makes a new signing key current. With keepOld the previous keys
// stay in the JWKS (tokens they signed still verify); without, only the new
// key is published.
func (p *Provider) RotateKey(keepOld bool) error {
	key, err := newSigningKey()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if keepOld {
		p.keys = append([]signingKey{key}, p.keys...)
	} else {
		p.keys = []signingKey{key}
	}
	return nil
}

// Requests reports how many requests hit path, relative to the issuer (e.g.
// "/.well-known/openid-configuration", "/jwks", "/token"). Requests answered
// by a fault count too.
func (p *Provider) Requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[path]
}

// SetFault installs f, which sees every request first; if f returns true it
// has handled the request (inject 500s, garbage, hangs). A hanging f should
// watch r.Context(). nil clears it.
func (p *Provider) SetFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// SetEcho makes every error answer of the token and userinfo endpoints
// echo the whole request back, as some providers do: method, URL with query,
// headers (Authorization included) and the form body, in the
// error_description and again as JSON fields. Tests use it to check that
// nothing of it reaches a log.
func (p *Provider) SetEcho(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.echo = on
}

// RefuseTokens makes the token endpoint refuse every request, after
// reading it, with the OAuth error code (e.g. "invalid_grant",
// "server_error" answers 500); "" ends that.
func (p *Provider) RefuseTokens(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = code
}

// SignJWT signs claims, used exactly as given, with the current key, with
// the header typ (e.g. "at+jwt" for an RFC 9068 access token).
func (p *Provider) SignJWT(typ string, claims map[string]any) (string, error) {
	return p.sign(jose.ContentType(typ), claims)
}

// RevokeRefreshTokens invalidates every refresh token issued to user.
func (p *Provider) RevokeRefreshTokens(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tok, g := range p.refresh {
		if g.user == user {
			delete(p.refresh, tok)
		}
	}
}

// EndSessions returns the parameters of each end-session request received,
// oldest first (the last 1000 are kept).
func (p *Provider) EndSessions() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]url.Values, len(p.endSessions))
	for i, v := range p.endSessions {
		out[i] = cloneValues(v)
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func newSigningKey() (signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return signingKey{}, fmt.Errorf("oidctest: generate key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &priv.PublicKey}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKey{}, fmt.Errorf("oidctest: key thumbprint: %w", err)
	}
	// RFC 7638 thumbprint: stable, unique per key, nothing to keep in sync.
	return signingKey{priv: priv, id: base64.RawURLEncoding.EncodeToString(thumb)}, nil
}

// sign serializes claims and signs them compactly with the current key.
func (p *Provider) sign(typ jose.ContentType, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("oidctest: marshal claims: %w", err)
	}
	p.mu.Lock()
	key := p.keys[0]
	p.mu.Unlock()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key.priv, KeyID: key.id}},
		(&jose.SignerOptions{}).WithType(typ),
	)
	if err != nil {
		return "", fmt.Errorf("oidctest: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oidctest: sign: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("oidctest: serialize: %w", err)
	}
	return s, nil
}

// jwks returns the published keys, current first.
func (p *Provider) jwks() jose.JSONWebKeySet {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(p.keys))}
	for _, k := range p.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.priv.PublicKey,
			KeyID:     k.id,
			Algorithm: string(jose.RS256),
			Use:       "sig",
		})
	}
	return set
}
