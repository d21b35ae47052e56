// Command authproxy is an authenticating reverse proxy: it logs users in
// with an OpenID Connect provider (Auth0 or any other) and forwards their
// requests to an upstream app with the user's id in X-User.
//
// Usage:
//
//	authproxy            serve, configured by AUTHPROXY_* environment variables
//	authproxy demo       run against an embedded development provider and app
//	authproxy version    print the version
//	authproxy explain    would these claims be allowed on METHOD PATH or URL, by which rule?
//	authproxy healthcheck  probe /healthz of a running proxy (exit 0 or 1)
//	authproxy check-config  validate the settings and the files they name
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
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/tracing"
	"github.com/authproxy/authproxy/metrics"
	"github.com/authproxy/authproxy/oidc"
	"github.com/authproxy/authproxy/proxy"
	"github.com/authproxy/authproxy/proxy/assertion"
	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/redisstore"
	"github.com/authproxy/authproxy/session"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "authproxy:", err)
		os.Exit(1)
	}
}

// run dispatches the subcommands. lookupEnv is the only way in to the
// environment (os.LookupEnv in main), so tests pass a map.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	getenv := func(name string) string { v, _ := lookupEnv(name); return v }
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "":
		load := func() (snapshot, error) { return readSettings(lookupEnv) }
		snap, err := load()
		if err != nil {
			return err
		}
		cfg, err := snap.vars.parse()
		if cfg, err = withTracing(cfg, err, lookupEnv); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Server.Addr)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		// SIGHUP reloads; only the serving process listens for it.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		// closeLog writes what is buffered however serving ends: an
		// error, SIGTERM's shutdown, or a panic on this goroutine.
		log, closeLog := openLog(cfg.Log, stdout)
		defer closeLog()
		return serveWith(ctx, cfg, ln, log, reloads{load: load, files: snap.files, hup: hup})
	case "check-config":
		return checkConfig(lookupEnv, stdout, stderr)
	case "demo":
		return demo(ctx, getenv("AUTHPROXY_ADDR"), stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "authproxy", buildVersion())
		return nil
	case "explain":
		return explain(args[1:], getenv("AUTHPROXY_RULES_FILE"), getenv("AUTHPROXY_RULES_CASE_INSENSITIVE"), stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, getenv("AUTHPROXY_ADDR"), servesTLS(getenv))
	case "help", "-h", "-help", "--help":
		if err := usage(stdout); err != nil {
			return err
		}
		return usageEnv(stdout)
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

func newLogger(cfg logConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(newFlatJSON(w, opts))
}

// serve runs the proxy on ln until ctx ends, then drains and shuts down. It
// does not reload (see serveWith).
func serve(ctx context.Context, cfg config, ln net.Listener, log *slog.Logger) error {
	return serveWith(ctx, cfg, ln, log, reloads{})
}

// serveWith is serve, reloading the configuration as r says.
func serveWith(ctx context.Context, cfg config, ln net.Listener, log *slog.Logger, r reloads) error {
	log.Info("authproxy starting", "version", buildVersion(), "listen", ln.Addr().String(), "config", cfg)
	s, err := newServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.close()
	if r.load != nil {
		if r.files != nil {
			s.running.files, s.seen = r.files, r.files
		}
		watchCtx, stopWatch := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.watch(watchCtx, r) }()
		// Before close: no reload outlives the server, however serve ends.
		defer func() { stopWatch(); <-done }()
	}
	return s.serve(ctx, cfg.Server, ln, log)
}

// server is the proxy built from a config, not yet listening.
type server struct {
	handler  http.Handler // serves with current
	internal http.Handler // /metrics and the admin API; nil without AUTHPROXY_METRICS_ADDR
	stopping atomic.Bool  // set when shutdown starts: /readyz turns 503
	tls      *tlsServer   // nil: plain HTTP
	closers  []func()     // run by close, last first

	// current is the part a reload replaces; each request reads it once.
	current atomic.Pointer[live]
	// What a reload keeps and rebuilds the handler around.
	log           *slog.Logger
	metrics       *metrics.Metrics
	auth          *oidc.Handler
	cookies       *cookie.Store
	redisSessions *redisstore.Store // nil with the cookie store
	store         session.Store
	locker        session.Locker
	tracer        *tracing.Tracing // nil: tracing off
	// reloaders run at each reload after the new handler is built; an error
	// refuses the reload (e.g. a TLS certificate holder's Reload).
	reloaders []func() error

	// reloadMu serializes reloads with each other and with shutdown; it
	// guards the fields below.
	reloadMu sync.Mutex
	closed   bool     // shutdown has begun: no more reloads
	running  snapshot // the settings in force
	seen     fileHashes
	// generated is the cookie key used while none is configured, kept
	// across reloads.
	generated   [][]byte
	identityKey *ecdsa.PrivateKey // generated while no key file is set
}

// newServer builds the handlers, stores and provider client from cfg. It
// never listens; the caller closes the server after serving.
func newServer(ctx context.Context, cfg config, log *slog.Logger) (_ *server, err error) {
	s := &server{log: log, running: snapshot{vars: cfg.vars, files: hashFiles(cfg.vars)}}
	s.seen = s.running.files
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.current.Load().handler.ServeHTTP(w, r)
	})
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	cfg.Cookie.Secrets = s.cookieSecrets(cfg.Cookie.Secrets)
	m := metrics.New(buildVersion())
	s.metrics = m
	var tr *tracing.Tracing // nil: tracing off, nothing wrapped
	if cfg.Tracing.Enabled {
		if tr, err = tracing.Setup(ctx, cfg.Tracing, buildVersion(), log); err != nil {
			return nil, err
		}
		// First in, so closed last: after the server and the stores, its
		// spans are all ended and can be flushed.
		s.closers = append(s.closers, func() {
			fctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
			defer cancel()
			if err := tr.Shutdown(fctx); err != nil {
				log.Warn("tracing: spans not exported at shutdown", "err", err)
			}
		})
		log.Info("tracing on", "protocol", cfg.Tracing.Protocol, "endpoint", cfg.Tracing.Endpoint.Redacted(),
			"service", cfg.Tracing.ServiceName, "sampler", cfg.Tracing.Sampler.Description())
	}
	s.tracer = tr
	// The cookie store writes the login cookies whichever store keeps the
	// sessions, and its names cover the Redis store's ticket cookie.
	cookies, err := cookie.NewStore(cfg.Cookie)
	if err != nil {
		return nil, err
	}
	// The session store, and what only a store shared by replicas can do.
	var (
		store         session.Store = cookies
		revoker       session.Revoker
		locker        session.Locker
		once          session.OnceMarker
		redisSessions *redisstore.Store
	)
	if cfg.Redis != nil {
		rdb := redis.NewUniversalClient(cfg.Redis)
		s.closers = append(s.closers, func() { _ = rdb.Close() })
		if tr != nil {
			// Command names only: arguments hold session ids and tickets.
			// No dial spans: pool dials belong to no request.
			if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tr.Provider()),
				redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false), redisotel.WithDialFilter(true)); err != nil {
				return nil, err
			}
		}
		rcfg := cfg.RedisStore
		rcfg.Client, rcfg.Policy, rcfg.Secrets = rdb, cfg.Cookie.Policy, cfg.Cookie.Secrets
		rcfg.Name, rcfg.Legacy, rcfg.Domain, rcfg.Secure = cfg.Cookie.Name, cfg.Cookie.Legacy, cfg.Cookie.Domain, cfg.Cookie.Secure
		redisSessions, err = redisstore.New(ctx, rcfg)
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, redisSessions.Close) // before the client: closers run backwards
		store, revoker, locker, once = redisSessions, redisSessions, redisSessions, redisSessions
		m.ActiveSessions(redisSessions.Count)
	}

	// The provider's key set outlives requests; give discovery the
	// process's context, cancelled only after the server is down.
	providerCtx, cancelProvider := context.WithCancel(context.WithoutCancel(ctx))
	s.closers = append(s.closers, cancelProvider)
	ocfg := cfg.OIDC
	ocfg.Logger, ocfg.Observer, ocfg.Revoker, ocfg.Once = log, m, revoker, once
	if tr != nil {
		client := *ocfg.HTTPClient
		client.Transport = tr.Transport(client.Transport, providerSpan)
		ocfg.HTTPClient = &client
	}
	auth, err := oidc.New(providerCtx, ocfg, store, cookies)
	if err != nil {
		return nil, err
	}
	s.auth, s.cookies, s.redisSessions, s.store, s.locker = auth, cookies, redisSessions, store, locker

	l, err := s.build(cfg)
	if err != nil {
		return nil, err
	}
	s.current.Store(l)

	if cfg.Server.MetricsAddr != "" {
		s.internal = internalHandler(m, redisSessions, cfg.Server.AdminToken)
	}
	if cfg.TLS.enabled() {
		// The host names that get certificates and https redirects, as
		// the configuration in force says (a reload may change them).
		allowHost := func(host string) bool { return s.current.Load().allowHost(host) }
		if s.tls, err = newTLS(cfg.TLS, allowHost, log); err != nil {
			return nil, err
		}
		// A reload loads the certificate files again (their paths need a
		// restart); a pair that does not load refuses the reload.
		s.reloaders = append(s.reloaders, s.tls.Reload)
	}
	return s, nil
}

// build makes the part of the server that a reload replaces: the proxy
// handler, with its rules, headers, identity signer and upstream transports,
// around the long-lived provider and stores.
func (s *server) build(cfg config) (*live, error) {
	signer, err := s.identitySigner(cfg.Identity)
	if err != nil {
		return nil, err
	}
	auth, cookies := s.auth, s.cookies
	pcfg := cfg.Proxy
	pcfg.Auth, pcfg.Sessions, pcfg.IsOwnCookie, pcfg.Refresher, pcfg.Locker = auth, s.store, cookies.IsOwn, auth, s.locker
	pcfg.Ready = func() bool { return !s.stopping.Load() && auth.Ready() }
	pcfg.Observer, pcfg.Logger = s.metrics, s.log
	if s.tracer != nil {
		// Each route's upstream transport gets a client span around it.
		pcfg.Tracer = s.tracer
		base := pcfg.Transport
		pcfg.Transport = func(rt *route.Route) http.RoundTripper {
			t := http.DefaultTransport // as proxy does without a Transport
			if base != nil {
				t = base(rt)
			}
			return s.tracer.Transport(t, func(*http.Request) string { return "upstream" })
		}
	}
	if cfg.OIDC.Audience != "" {
		pcfg.Bearer = auth.VerifyAccessToken
	}
	if signer != nil {
		pcfg.Assertion, pcfg.JWKS = signer, signer.JWKS()
	}
	h, err := proxy.New(pcfg)
	if err != nil {
		return nil, err
	}
	// A session under the earlier default cookie name moves to the current
	// one; each store opens only its own cookie.
	if s.redisSessions != nil {
		h = s.redisSessions.Migrate(h)
	} else {
		h = cookies.Migrate(h)
	}
	return &live{handler: h, transports: transports(cfg), allowHost: hostSet(cfg.TLS.Hosts)}, nil
}

// cookieSecrets returns the configured secrets or, when there are none, a
// random key (the same one for the life of the process, with a warning the
// first time).
func (s *server) cookieSecrets(configured [][]byte) [][]byte {
	if len(configured) > 0 {
		return configured
	}
	if s.generated == nil {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		s.generated = [][]byte{key}
		s.log.Warn("AUTHPROXY_COOKIE_SECRET is not set: using a random key. Sessions will NOT survive a restart " +
			"and will NOT work across replicas. Set it to the output of: openssl rand -base64 32")
	}
	return s.generated
}

// traceFlushTimeout bounds the export of the last spans at shutdown.
const traceFlushTimeout = 5 * time.Second

// providerSpan names the span of a call to the provider after what oidc
// says it is: "oidc token", "oidc jwks", ...
func providerSpan(r *http.Request) string {
	if c := oidc.Call(r); c != "" {
		return "oidc " + c
	}
	return "oidc"
}

// internalHandler serves /metrics and, with the Redis store and a token,
// the admin API.
func internalHandler(m *metrics.Metrics, sessions *redisstore.Store, adminToken string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if sessions != nil && adminToken != "" {
		mux.Handle("/admin/", sessions.AdminHandler(adminToken))
	}
	return mux
}

// close releases what newServer opened: the Redis client and the
// provider's context.
func (s *server) close() {
	for _, c := range slices.Backward(s.closers) {
		c()
	}
}

// serve listens on ln (and on the internal address) until ctx ends, then
// drains and shuts down within cfg's bounds.
func (s *server) serve(ctx context.Context, cfg serverConfig, ln net.Listener, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections are closed after this; request
		// bodies are bounded where nobody is logged in (proxy.BodyTimeout).
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// WriteTimeout stays 0: it would cut server-sent events and downloads.
	}
	errc := make(chan error, 3)
	if s.tls != nil {
		// Handshakes first, so that the framing check reads decrypted
		// HTTP/1.1 and lets HTTP/2 (ALPN h2) through to the server. Only
		// then does a request need its connection's TLS state put back.
		ln = newTLSListener(ln, s.tls.config, srv.ReadHeaderTimeout, log)
		srv.Handler, srv.ConnContext = withTLSState(s.handler), connTLSState
	}
	go func() { errc <- srv.Serve(proxy.RefuseAmbiguousFraming(ln)) }()
	if s.internal != nil {
		msrv, err := serveMetrics(cfg.MetricsAddr, s.internal, log, errc)
		if err != nil {
			_ = srv.Close()
			return err
		}
		defer msrv.Close()
	}
	if s.tls != nil {
		hsrv, err := s.tls.serveHTTP(log, errc)
		if err != nil {
			_ = srv.Close()
			return err
		}
		if hsrv != nil {
			defer hsrv.Close()
		}
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.reloadMu.Lock() // waits for a reload under way; none starts after
	s.closed = true
	s.reloadMu.Unlock()
	s.stopping.Store(true)
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
// on (cfg not nil), with the configured keys or, loudly, a generated one,
// kept for the life of the process.
func (s *server) identitySigner(cfg *assertion.Config) (*assertion.Signer, error) {
	if cfg == nil {
		return nil, nil
	}
	c := *cfg
	if len(c.Keys) == 0 && s.identityKey == nil {
		key, err := assertion.GenerateKey()
		if err != nil {
			return nil, err
		}
		s.identityKey = key
		s.log.Warn("AUTHPROXY_IDENTITY_KEY_FILE is not set: signing identity assertions with a generated key. " +
			"Upstreams must refetch /auth/jwks.json after every restart, and replicas publish different keys. " +
			"Create one with: openssl ecparam -name prime256v1 -genkey -noout")
	}
	if len(c.Keys) == 0 {
		c.Keys = []*ecdsa.PrivateKey{s.identityKey}
	}
	return assertion.New(c)
}

// serveMetrics starts the internal listener with h (/metrics, and the
// admin API when configured).
func serveMetrics(addr string, h http.Handler, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics: %w", err)
		}
	}()
	return srv, nil
}

// healthcheck probes a running proxy's /healthz, for images without curl;
// over HTTPS when the proxy serves TLS.
func healthcheck(ctx context.Context, addr string, useTLS bool) error {
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
	scheme, client := "http", http.DefaultClient
	if useTLS {
		scheme, client = "https", healthcheckTLSClient()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
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
  authproxy explain [-rules FILE] [-case-insensitive] [-claims JSON|@FILE] METHOD PATH|URL
                          which access rule decides the request, without starting the proxy;
                          a URL (https://wiki.example.com/admin) applies the rules scoped to its host
  authproxy check-config  check the settings and every file they name, without starting; exit 0 if usable
                          (for CI and pre-deploy hooks). A running proxy reloads on SIGHUP and on file changes
  authproxy version       print the version
  authproxy healthcheck   exit 0 if /healthz of the proxy at AUTHPROXY_ADDR answers 200
`)
	return err
}

// usageEnv lists every setting with its default and meaning, from env's
// tags.
func usageEnv(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	const format = "\nEnvironment variables:\n{{range .}}  {{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("", &env{}, tw, format); err != nil {
		return err
	}
	return tw.Flush()
}
