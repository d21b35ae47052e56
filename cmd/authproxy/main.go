// Command authproxy is an authenticating reverse proxy: it logs users in
// with an OpenID Connect provider (Auth0 or any other) and forwards their
// requests to an upstream app with the user's id in X-User.
//
// Usage:
//
//	authproxy            serve, configured by AUTHPROXY_* environment variables
//	authproxy demo       run against an embedded development provider and app
//	authproxy version    print the version
//	authproxy explain    would these claims be allowed on METHOD PATH, by which rule?
//	authproxy healthcheck  probe /healthz of a running proxy (exit 0 or 1)
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/metrics"
	"github.com/authproxy/authproxy/oidc"
	"github.com/authproxy/authproxy/proxy"
	"github.com/authproxy/authproxy/proxy/assertion"
	"github.com/authproxy/authproxy/redisstore"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "authproxy:", err)
		os.Exit(1)
	}
}

// run dispatches the subcommands.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "":
		cfg, err := loadConfig()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		return serve(ctx, cfg, ln, newLogger(cfg, stdout))
	case "demo":
		return demo(ctx, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "authproxy", buildVersion())
		return nil
	case "explain":
		return explain(args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, os.Getenv("AUTHPROXY_ADDR"))
	case "help", "-h", "-help", "--help":
		return usage(stdout)
	default:
		_ = usage(stderr)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs the proxy on ln until ctx ends, then drains and shuts down.
func serve(ctx context.Context, cfg config, ln net.Listener, log *slog.Logger) error {
	log.Info("authproxy starting", "version", buildVersion(), "listen", ln.Addr().String(), "config", cfg)
	secrets := cfg.CookieSecrets
	if len(secrets) == 0 {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		secrets = [][]byte{key}
		log.Warn("AUTHPROXY_COOKIE_SECRET is not set: using a random key. Sessions will NOT survive a restart " +
			"and will NOT work across replicas. Set it to the output of: openssl rand -base64 32")
	}
	m := metrics.New(buildVersion())
	origin := oidc.Origin{Fixed: cfg.RedirectURL, TrustedProxies: cfg.TrustedProxies}
	secure := origin.IsHTTPS
	if cfg.CookieSecure != "auto" {
		always := cfg.CookieSecure == "true"
		secure = func(*http.Request) bool { return always }
	}
	cookies, err := cookie.NewStore(cookie.Config{
		Name: cfg.CookieName, Domain: cfg.CookieDomain, Secure: secure,
		Lifetime: cfg.SessionLifetime, Idle: cfg.SessionIdle, Secrets: secrets,
		Tickets: cfg.SessionStore == "redis",
	})
	if err != nil {
		return err
	}
	var store sessionStore = cookies
	var redisSessions *redisstore.Store
	if cfg.SessionStore == "redis" {
		rdb := redis.NewUniversalClient(cfg.Redis)
		defer rdb.Close()
		redisSessions, err = redisstore.New(ctx, redisstore.Config{Client: rdb, Cookies: cookies, Idle: cfg.SessionIdle})
		if err != nil {
			return err
		}
		store = redisSessions
		m.ActiveSessions(redisSessions.Count)
	}

	// The provider's key set outlives requests; give discovery the
	// process's context, cancelled only after the server is down.
	providerCtx, cancelProvider := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProvider()
	redirect := ""
	if cfg.RedirectURL != nil {
		redirect = cfg.RedirectURL.String()
	}
	keep := cfg.Access.claimNames()
	if cfg.Headers.Groups != "" {
		keep = append(keep, cfg.Headers.GroupsClaim)
	}
	auth, err := oidc.New(providerCtx, oidc.Config{
		Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		RedirectURL: redirect, Scopes: cfg.Scopes, UserClaim: cfg.UserClaim,
		Auth0Domain: cfg.Auth0Domain, PostLogoutURL: cfg.PostLogoutURL,
		Audience: cfg.Audience, KeepClaims: keep, KeepAccessToken: cfg.Headers.AccessToken != "",
		SessionLifetime: cfg.SessionLifetime, Origin: origin,
		HTTPClient: &http.Client{Timeout: cfg.ProviderTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()},
		Logger:     log, Observer: m, Revoker: revoker(redisSessions),
	}, store)
	if err != nil {
		return err
	}

	signer, err := identitySigner(cfg, log)
	if err != nil {
		return err
	}
	var stopping atomic.Bool
	pcfg := proxy.Config{
		Upstream: cfg.Upstream, UserHeader: cfg.UserHeader, PassHost: cfg.PassHostHeader,
		Transport: upstreamTransport(cfg),
		Auth:      auth, Sessions: store, Refresher: auth,
		Ready:    func() bool { return !stopping.Load() && auth.Ready() },
		Trusted:  origin.Trusted,
		Headers:  cfg.Headers,
		Observer: m,
		Logger:   log,
		// WebSocket pages of these origins, besides the proxy's own.
		WebSocketOrigins: cfg.WebSocketOrigins,
	}
	if cfg.RedirectURL != nil {
		pcfg.PublicHost = cfg.RedirectURL.Host
	}
	if cfg.Access.rules != nil {
		pcfg.Rules = cfg.Access.rules
	}
	if cfg.Audience != "" {
		pcfg.Bearer = auth.VerifyAccessToken
	}
	if signer != nil {
		pcfg.Assertion, pcfg.JWKS = signer, signer.JWKS()
	}
	handler, err := proxy.New(pcfg)
	if err != nil {
		return err
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections are closed after this; request
		// bodies are bounded where nobody is logged in (proxy.BodyTimeout).
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// WriteTimeout stays 0: it would cut server-sent events and downloads.
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(proxy.RefuseAmbiguousFraming(ln)) }()
	if cfg.MetricsAddr != "" {
		var admin http.Handler
		if redisSessions != nil && cfg.AdminToken != "" {
			admin = redisSessions.AdminHandler(cfg.AdminToken)
		}
		msrv, err := serveMetrics(cfg.MetricsAddr, m, admin, log, errc)
		if err != nil {
			_ = srv.Close()
			return err
		}
		defer msrv.Close()
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stopping.Store(true)
	log.Info("shutting down: /readyz now reports 503, still serving", "drain_delay", cfg.DrainDelay.String())
	time.Sleep(cfg.DrainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("in-flight requests cut at the shutdown timeout", "timeout", cfg.ShutdownTimeout.String())
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// identitySigner builds the assertion signer when AUTHPROXY_IDENTITY_JWT is
// on, with the configured keys or, loudly, a generated one.
func identitySigner(cfg config, log *slog.Logger) (*assertion.Signer, error) {
	if !cfg.IdentityJWT {
		return nil, nil
	}
	keys := cfg.IdentityKeys
	if len(keys) == 0 {
		key, err := assertion.GenerateKey()
		if err != nil {
			return nil, err
		}
		keys = []*ecdsa.PrivateKey{key}
		log.Warn("AUTHPROXY_IDENTITY_KEY_FILE is not set: signing identity assertions with a generated key. " +
			"Upstreams must refetch /auth/jwks.json after every restart, and replicas publish different keys. " +
			"Create one with: openssl ecparam -name prime256v1 -genkey -noout")
	}
	issuer := "authproxy"
	if cfg.RedirectURL != nil {
		issuer = cfg.RedirectURL.Scheme + "://" + cfg.RedirectURL.Host
	}
	return assertion.New(assertion.Config{Issuer: issuer, Audience: cfg.IdentityAud, Keys: keys})
}

// sessionStore is what both the login handlers and the proxy need: the
// cookie store or the Redis store.
type sessionStore interface {
	Load(*http.Request) (cookie.Session, error)
	Save(http.ResponseWriter, *http.Request, cookie.Session) error
	Clear(http.ResponseWriter, *http.Request)
	Touch(*cookie.Session) bool
	IsOwn(string) bool
	SaveLogin(http.ResponseWriter, *http.Request, cookie.Login) error
	LoadLogin(*http.Request, string) (cookie.Login, error)
	ClearLogin(http.ResponseWriter, *http.Request, string)
}

// revoker is the Redis store as the back-channel logout's Revoker, or nil
// (a nil *redisstore.Store must not become a non-nil interface).
func revoker(s *redisstore.Store) oidc.Revoker {
	if s == nil {
		return nil
	}
	return s
}

// serveMetrics starts the internal listener: /metrics, and the admin API
// when admin is set.
func serveMetrics(addr string, m *metrics.Metrics, admin http.Handler, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if admin != nil {
		mux.Handle("/admin/", admin)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics: %w", err)
		}
	}()
	return srv, nil
}

// upstreamTransport keeps enough idle connections for the proxy's own
// concurrency: the default of 2 per host would open a new connection to the
// upstream for most requests under load.
func upstreamTransport(cfg config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = cfg.UpstreamMaxIdle
	t.MaxIdleConnsPerHost = cfg.UpstreamMaxIdle
	t.MaxConnsPerHost = cfg.UpstreamMaxConns
	t.ResponseHeaderTimeout = cfg.UpstreamTimeout
	return t
}

// healthcheck probes a running proxy's /healthz, for images without curl.
func healthcheck(ctx context.Context, addr string) error {
	if addr == "" {
		addr = ":9001"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("AUTHPROXY_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}

func usage(w io.Writer) error {
	_, err := fmt.Fprint(w, `authproxy: an authenticating reverse proxy for OpenID Connect (Auth0 and others)

Usage:
  authproxy               serve; configured by AUTHPROXY_* environment variables (see README)
  authproxy demo          run with an embedded development provider and sample app on 127.0.0.1
  authproxy explain [-rules FILE] [-case-insensitive] [-claims JSON|@FILE] METHOD PATH
                          which access rule decides the request, without starting the proxy
  authproxy version       print the version
  authproxy healthcheck   exit 0 if /healthz of the proxy at AUTHPROXY_ADDR answers 200
`)
	return err
}
