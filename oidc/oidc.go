// Package oidc talks to the OpenID Provider: discovery, the handlers of
// /auth/login, /auth/callback, /auth/logout and /auth/backchannel-logout
// (routed by proxy, which holds the route table), and token verification.
//
// Discovery runs in the background with backoff, so the proxy starts and
// serves logged-in users while the provider is unreachable; only new logins
// wait for it.
package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/bounded"
	"github.com/authproxy/authproxy/session"
)

// Config configures a Handler.
type Config struct {
	// Issuer is the provider's issuer URL, exactly as its discovery document
	// states it (Auth0: "https://TENANT.auth0.com/", trailing slash included).
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is the callback registered at the provider. When empty it
	// is derived from each request's origin (see Origin).
	RedirectURL string
	Scopes      []string
	// UserClaim names the ID-token claim that identifies the user.
	UserClaim string
	// Auth0Domain, when set, makes logout use Auth0's /v2/logout if the
	// provider advertises no end_session_endpoint.
	Auth0Domain string
	// PostLogoutURL is where the provider sends the browser after logout: an
	// absolute URL or a path on the proxy's origin ("/" when empty).
	PostLogoutURL string
	// SessionLifetime bounds a session regardless of the ID token's expiry.
	SessionLifetime time.Duration
	// Origin tells the public scheme and host of a request.
	Origin Origin
	// Returns lists the other hosts (the routes' hosts) that a login may
	// return to and whose pages may sign out; the zero value allows only
	// paths on the proxy's own origin.
	Returns Returns
	// HTTPClient makes every call to the provider; it must have a Timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the clock for token and session expiry; time.Now when nil.
	Now func() time.Time
	// KeepClaims names the ID-token claims kept in the session, for access
	// rules and extra headers.
	KeepClaims []string
	// KeepAccessToken keeps the access token in the session, for upstreams
	// that want it passed on.
	KeepAccessToken bool
	// Audience is the API identifier that bearer access tokens must be
	// issued for (Auth0: the API's identifier). Empty disables bearer
	// tokens. With Auth0Domain set, logins ask Auth0 for it too.
	Audience string
	// Revoker ends sessions named by back-channel logout tokens; nil (the
	// cookie store) answers them 501.
	Revoker session.Revoker
	// Once, when set, makes a logout token's jti good once across replicas;
	// each replica also remembers the jtis it has seen.
	Once session.OnceMarker
	// Observer hears about logins and provider errors; nil means nobody.
	Observer Observer
	// KeyRefetchInterval is the least time between JWKS fetches triggered
	// by unknown key ids (DefaultKeyRefetchInterval when zero).
	KeyRefetchInterval time.Duration
}

// Observer is told about logins and provider failures (for metrics).
type Observer interface {
	LoginStarted()
	LoginCompleted()
	LoginFailed(reason string)
	Logout()
	TokenRefreshed()
	ProviderError(op string)
}

type nopObserver struct{}

func (nopObserver) LoginStarted()        {}
func (nopObserver) LoginCompleted()      {}
func (nopObserver) LoginFailed(string)   {}
func (nopObserver) Logout()              {}
func (nopObserver) TokenRefreshed()      {}
func (nopObserver) ProviderError(string) {}

// loginStore keeps a login in progress in the browser: the cookie store,
// whichever store keeps the sessions.
type loginStore interface {
	SaveLogin(http.ResponseWriter, *http.Request, cookie.Login) error
	LoadLogin(*http.Request, string) (cookie.Login, error)
	ClearLogin(http.ResponseWriter, *http.Request, string)
}

// Handler holds the provider and serves the sign-in flow's routes through
// its Login, Callback, Logout and BackchannelLogout methods.
type Handler struct {
	cfg      Config
	store    session.Store
	logins   loginStore
	log      *slog.Logger
	provider atomic.Pointer[provider]
	// used holds consumed states until their login cookie would have
	// expired, so a replayed callback (same cookie, same state) is refused
	// even though the cookie store itself is stateless.
	used    *bounded.Map[string, struct{}]
	refresh refresher
	// jtis holds the ids of logout tokens that ended sessions here.
	jtis *bounded.Map[string, struct{}]
	// keepClaims is Config.KeepClaims, replaced by SetKeepClaims.
	keepClaims atomic.Pointer[[]string]
	// returns is Config.Returns, replaced by SetReturns.
	returns atomic.Pointer[Returns]
}

// provider is everything discovery yields, swapped in atomically once ready.
type provider struct {
	oauth2     oauth2.Config
	verifier   *gooidc.IDTokenVerifier
	endSession string
	// issParam: the provider names itself in every authorization response
	// (RFC 9207), so a callback without its iss is refused.
	issParam bool
	// bearer verifies API access tokens; nil without an audience.
	bearer *gooidc.IDTokenVerifier
	// keys and algs verify other provider tokens (logout tokens).
	keys *keySet
	algs []string
}

// New checks cfg and starts discovery in the background. ctx bounds the
// discovery retries and the lifetime of the provider's key set; pass the
// process's long-lived context, not a request's. A completed login is saved
// in sessions; logins in progress are kept by logins.
func New(ctx context.Context, cfg Config, sessions session.Store, logins loginStore) (*Handler, error) {
	var problems []string
	if cfg.Issuer == "" {
		problems = append(problems, "issuer is required")
	}
	if cfg.ClientID == "" {
		problems = append(problems, "client id is required")
	}
	if cfg.HTTPClient == nil || cfg.HTTPClient.Timeout <= 0 {
		problems = append(problems, "HTTP client with a timeout is required")
	}
	if sessions == nil || logins == nil {
		problems = append(problems, "session and login stores are required")
	}
	if cfg.SessionLifetime <= 0 {
		problems = append(problems, "session lifetime must be positive")
	}
	if cfg.Audience != "" && cfg.Audience == cfg.ClientID {
		problems = append(problems, "the bearer audience must be an API identifier, not the client id (ID tokens are not bearer credentials)")
	}
	if cfg.RedirectURL != "" {
		u, err := url.Parse(cfg.RedirectURL)
		if err != nil || !u.IsAbs() {
			problems = append(problems, "redirect URL must be absolute")
		} else if cfg.Origin.Fixed == nil {
			// The registered callback fixes the public origin.
			cfg.Origin.Fixed = u
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("oidc: %s", strings.Join(problems, "; "))
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	h := &Handler{cfg: cfg, store: sessions, logins: logins, log: cfg.Logger,
		used:    bounded.New[string, struct{}](maxUsedStates),
		refresh: refresher{done: bounded.New[[32]byte, refreshOutcome](maxRefreshResults)},
		jtis:    bounded.New[string, struct{}](maxLogoutTokens)}
	h.SetKeepClaims(cfg.KeepClaims)
	h.SetReturns(cfg.Returns)
	go h.discover(ctx)
	return h, nil
}

// SetKeepClaims replaces Config.KeepClaims, for a configuration reload whose
// access rules or headers read other claims: logins from now on keep them.
func (h *Handler) SetKeepClaims(names []string) {
	names = slices.Clone(names)
	h.keepClaims.Store(&names)
}

// SetReturns replaces Config.Returns, for a configuration reload whose
// routes name other hosts: redirects from now on are checked against them.
func (h *Handler) SetReturns(r Returns) {
	r.Hosts, r.Suffixes = slices.Clone(r.Hosts), slices.Clone(r.Suffixes)
	h.returns.Store(&r)
}

// Ready reports whether discovery has succeeded.
func (h *Handler) Ready() bool { return h.provider.Load() != nil }

// discover retries discovery with capped exponential backoff until it
// succeeds or ctx ends.
func (h *Handler) discover(ctx context.Context) {
	ctx = gooidc.ClientContext(ctx, h.cfg.HTTPClient)
	for attempt := 0; ; attempt++ {
		p, err := h.discoverOnce(ctx)
		if err == nil {
			h.provider.Store(p)
			h.log.Info("provider discovery done", "issuer", h.cfg.Issuer, "end_session", p.endSession != "")
			return
		}
		h.cfg.Observer.ProviderError("discovery")
		wait := time.Duration(math.Min(float64(time.Second)*math.Pow(2, float64(attempt)), float64(30*time.Second)))
		h.log.Warn("provider discovery failed; logins wait for it, logged-in users are still served",
			"issuer", h.cfg.Issuer, "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (h *Handler) discoverOnce(ctx context.Context) (*provider, error) {
	p, err := gooidc.NewProvider(withCall(ctx, CallDiscovery), h.cfg.Issuer)
	if err != nil {
		return nil, h.fromProvider(err)
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		JWKS       string   `json:"jwks_uri"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
		IssParam   bool     `json:"authorization_response_iss_parameter_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("read discovery document: %w", h.fromProvider(err))
	}
	if meta.JWKS == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	var algs []string
	for _, a := range meta.Algs {
		if slices.Contains(asymmetricAlgs, jose.SignatureAlgorithm(a)) {
			algs = append(algs, a)
		}
	}
	keys := newKeySet(meta.JWKS, h.cfg.HTTPClient, h.cfg.KeyRefetchInterval, h.cfg.Now)
	keys.onError = func() { h.cfg.Observer.ProviderError("jwks") }
	keys.redact = func(err error) error { return h.fromProvider(err) }
	// Warm the key cache so the first login does not wait for it; a failure
	// here is retried when the first token arrives.
	if err := keys.warm(ctx); err != nil {
		h.log.Warn("fetch provider signing keys", "err", err)
	}
	return &provider{
		oauth2: oauth2.Config{
			ClientID:     h.cfg.ClientID,
			ClientSecret: h.cfg.ClientSecret,
			Endpoint:     p.Endpoint(),
			Scopes:       h.cfg.Scopes,
		},
		verifier: gooidc.NewVerifier(h.cfg.Issuer, keys.trusted(),
			&gooidc.Config{ClientID: h.cfg.ClientID, Now: h.cfg.Now, SupportedSigningAlgs: algs}),
		bearer:     h.bearerVerifier(keys),
		keys:       keys,
		algs:       algs,
		endSession: meta.EndSession,
		issParam:   meta.IssParam,
	}, nil
}

func (h *Handler) bearerVerifier(keys gooidc.KeySet) *gooidc.IDTokenVerifier {
	if h.cfg.Audience == "" {
		return nil
	}
	// Access tokens are signed like ID tokens (Auth0: RS256) but may use an
	// algorithm the discovery document lists only for ID tokens; accept any
	// asymmetric one.
	var algs []string
	for _, a := range asymmetricAlgs {
		algs = append(algs, string(a))
	}
	return gooidc.NewVerifier(h.cfg.Issuer, keys, &gooidc.Config{ClientID: h.cfg.Audience, Now: h.cfg.Now, SupportedSigningAlgs: algs})
}

// ErrInvalidToken wraps every reason a bearer token is refused.
var ErrInvalidToken = errors.New("invalid bearer token")

// ErrNotReady means discovery has not completed, so tokens cannot be
// checked yet. It wraps session.ErrUnavailable, so callers answer 503, not
// 401.
var ErrNotReady = fmt.Errorf("%w: identity provider not discovered yet", session.ErrUnavailable)

// VerifyAccessToken checks a bearer JWT locally: signature against the
// cached JWKS, issuer, audience (Config.Audience), expiry, that it is an
// access token and not an ID token (isIDTokenShaped), and its claims
// (identify). It returns the session the token stands for. No provider call is made unless the token
// names an unknown key (and then at most once per refetch interval).
func (h *Handler) VerifyAccessToken(r *http.Request, raw string) (session.Session, error) {
	p := h.provider.Load()
	if p == nil {
		return session.Session{}, ErrNotReady
	}
	if p.bearer == nil {
		return session.Session{}, fmt.Errorf("%w: bearer tokens are not enabled (set AUTHPROXY_AUDIENCE)", ErrInvalidToken)
	}
	tok, err := p.bearer.Verify(gooidc.ClientContext(r.Context(), h.cfg.HTTPClient), raw)
	if err != nil {
		return session.Session{}, fmt.Errorf("%w: %w", ErrInvalidToken, h.fromProvider(err, raw))
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return session.Session{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	// go-oidc checked the audience (never the client: New refuses that
	// configuration); the shape tells an ID token from an access token.
	if why := h.isIDTokenShaped(headerType(raw), claims); why != "" {
		return session.Session{}, fmt.Errorf("%w: not an access token: %s", ErrInvalidToken, why)
	}
	sess, err := h.identify(claims)
	if err != nil {
		return session.Session{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	sess.Expiry = tok.Expiry
	return sess, nil
}

// keep picks the claims the session keeps.
func (h *Handler) keep(claims map[string]any) map[string]any {
	names := *h.keepClaims.Load()
	if len(names) == 0 {
		return nil
	}
	kept := map[string]any{}
	for _, name := range names {
		if v, ok := claims[name]; ok {
			kept[name] = v
		}
	}
	return kept
}

// randomString returns n random bytes as base64url.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxUsedStates bounds the used login states remembered, under a flood of
// callbacks: past it, the state that expires first makes room, and the new
// one is always recorded.
const maxUsedStates = 100_000

// errProviderDown marks failures to reach the provider (as opposed to the
// provider rejecting what we sent).
var errProviderDown = errors.New("identity provider unreachable")

// classify tells a provider outage from a refusal.
func classify(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", errProviderDown, err)
	}
	return err
}
