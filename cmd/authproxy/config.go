package main

import (
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/ascii"
	"github.com/authproxy/authproxy/internal/tracing"
	"github.com/authproxy/authproxy/oidc"
	"github.com/authproxy/authproxy/proxy"
	"github.com/authproxy/authproxy/proxy/assertion"
	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/redisstore"
	"github.com/authproxy/authproxy/session"
)

// env declares every setting, once: its variable (envconfig tag, full name,
// no prefix), default, meaning (desc) and whether it is a secret. Everything
// else is derived from these tags: readEnv, the startup log line
// (LogValue), `authproxy help` (envconfig's Usage), the tests that hold the
// README table to this list, and deploy/repo_test.go, which reads the tags
// from this file to check the manifests. To add a setting, add a field here,
// read it in the section parser of its package below, and add a README row.
//
// Values stay strings so that parse can report every bad one at once.
type env struct {
	Addr                 string `envconfig:"AUTHPROXY_ADDR" default:":9001" desc:"listen address"`
	Upstream             string `envconfig:"AUTHPROXY_UPSTREAM" desc:"upstream URL, e.g. http://127.0.0.1:8080 (this or AUTHPROXY_ROUTES_FILE is required)"`
	RoutesFile           string `envconfig:"AUTHPROXY_ROUTES_FILE" desc:"routes file: upstreams by host and path (see README); instead of AUTHPROXY_UPSTREAM"`
	Issuer               string `envconfig:"AUTHPROXY_ISSUER" desc:"OIDC issuer URL (default https://$AUTH0_DOMAIN/)"`
	Auth0Domain          string `envconfig:"AUTH0_DOMAIN" desc:"Auth0 tenant domain; sets the issuer and Auth0 logout"`
	ClientID             string `envconfig:"AUTHPROXY_CLIENT_ID" desc:"OAuth client id (required; alias AUTH0_CLIENT_ID)"`
	Auth0ClientID        string `envconfig:"AUTH0_CLIENT_ID" desc:"alias of AUTHPROXY_CLIENT_ID"`
	ClientSecret         string `envconfig:"AUTHPROXY_CLIENT_SECRET" secret:"true" desc:"OAuth client secret (required; alias AUTH0_CLIENT_SECRET)"`
	Auth0ClientSecret    string `envconfig:"AUTH0_CLIENT_SECRET" secret:"true" desc:"alias of AUTHPROXY_CLIENT_SECRET"`
	RedirectURL          string `envconfig:"AUTHPROXY_REDIRECT_URL" desc:"absolute callback URL registered at the provider"`
	PostLogoutURL        string `envconfig:"AUTHPROXY_POST_LOGOUT_URL" default:"/" desc:"where the provider sends the browser after logout (URL or path)"`
	CookieSecret         string `envconfig:"AUTHPROXY_COOKIE_SECRET" secret:"true" desc:"base64 of 32 or 64 random bytes; comma-separated list rotates keys"`
	CookieName           string `envconfig:"AUTHPROXY_COOKIE_NAME" desc:"session cookie name (default: __Host-authproxy on https without a cookie domain, else _authproxy)"`
	CookieDomain         string `envconfig:"AUTHPROXY_COOKIE_DOMAIN" desc:"session cookie domain (default: host only)"`
	CookieSecure         string `envconfig:"AUTHPROXY_COOKIE_SECURE" default:"auto" desc:"auto, true or false"`
	UserHeader           string `envconfig:"AUTHPROXY_USER_HEADER" default:"X-User" desc:"header carrying the user to the upstream"`
	UserClaim            string `envconfig:"AUTHPROXY_USER_CLAIM" default:"sub" desc:"ID-token claim used as the user"`
	Scopes               string `envconfig:"AUTHPROXY_SCOPES" default:"openid profile email" desc:"space-separated scopes"`
	SessionLifetime      string `envconfig:"AUTHPROXY_SESSION_LIFETIME" default:"12h" desc:"how long a login lasts"`
	SessionIdle          string `envconfig:"AUTHPROXY_SESSION_IDLE" default:"0s" desc:"end a session unused for this long (0s: off)"`
	PassHostHeader       string `envconfig:"AUTHPROXY_PASS_HOST_HEADER" default:"false" desc:"send the client's Host header upstream"`
	TrustedProxies       string `envconfig:"AUTHPROXY_TRUSTED_PROXIES" desc:"comma-separated CIDRs whose X-Forwarded-* headers are trusted"`
	UpstreamTimeout      string `envconfig:"AUTHPROXY_UPSTREAM_TIMEOUT" default:"60s" desc:"wait for the upstream's response headers"`
	UpstreamMaxIdleConns string `envconfig:"AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS" default:"128" desc:"idle keep-alive connections kept to the upstream"`
	UpstreamMaxConns     string `envconfig:"AUTHPROXY_UPSTREAM_MAX_CONNS" default:"0" desc:"cap on connections to the upstream; requests beyond it wait (0: no cap)"`
	ProviderTimeout      string `envconfig:"AUTHPROXY_PROVIDER_TIMEOUT" default:"10s" desc:"bound on each call to the identity provider"`
	RulesFile            string `envconfig:"AUTHPROXY_RULES_FILE" desc:"access rules file (see README); unset lets every logged-in user through"`
	RulesCaseInsensitive string `envconfig:"AUTHPROXY_RULES_CASE_INSENSITIVE" default:"false" desc:"match rule paths ignoring case, for upstreams that serve /ADMIN as /admin"`
	WebSocketOrigins     string `envconfig:"AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS" desc:"comma-separated origins, besides the proxy's own, whose pages may open WebSockets"`
	Audience             string `envconfig:"AUTHPROXY_AUDIENCE" desc:"API identifier that bearer access tokens must carry; unset disables bearer tokens"`
	EmailHeader          string `envconfig:"AUTHPROXY_EMAIL_HEADER" desc:"header carrying the user's email (off when empty)"`
	NameHeader           string `envconfig:"AUTHPROXY_NAME_HEADER" desc:"header carrying the user's name (off when empty)"`
	GroupsHeader         string `envconfig:"AUTHPROXY_GROUPS_HEADER" desc:"header carrying the user's groups, comma-separated (off when empty)"`
	GroupsClaim          string `envconfig:"AUTHPROXY_GROUPS_CLAIM" default:"groups" desc:"claim read for the groups header"`
	AccessTokenHeader    string `envconfig:"AUTHPROXY_ACCESS_TOKEN_HEADER" desc:"header carrying the user's access token (opt-in; off when empty)"`
	IdentityJWT          string `envconfig:"AUTHPROXY_IDENTITY_JWT" default:"false" desc:"send X-Authproxy-Jwt-Assertion, a signed identity for the upstream"`
	IdentityAudience     string `envconfig:"AUTHPROXY_IDENTITY_AUDIENCE" desc:"aud of the identity assertion (default: the upstream's origin)"`
	IdentityKeyFile      string `envconfig:"AUTHPROXY_IDENTITY_KEY_FILE" desc:"PEM file of P-256 private keys; the first signs, all are published"`
	SessionStore         string `envconfig:"AUTHPROXY_SESSION_STORE" default:"cookie" desc:"cookie or redis"`
	RedisURL             string `envconfig:"AUTHPROXY_REDIS_URL" secret:"true" desc:"redis:// or rediss:// URL of a standalone Redis"`
	RedisAddrs           string `envconfig:"AUTHPROXY_REDIS_ADDRS" desc:"comma-separated host:port of a Redis Cluster or of Sentinels"`
	RedisMaster          string `envconfig:"AUTHPROXY_REDIS_MASTER" desc:"Sentinel master name (with AUTHPROXY_REDIS_ADDRS)"`
	RedisPassword        string `envconfig:"AUTHPROXY_REDIS_PASSWORD" secret:"true" desc:"password for AUTHPROXY_REDIS_ADDRS (a URL carries its own)"`
	RedisCacheSize       string `envconfig:"AUTHPROXY_REDIS_CACHE_SIZE" default:"10000" desc:"sessions each replica keeps in memory, dropped when Redis announces a change (0: off, one Redis GET per request)"`
	RedisCacheTTL        string `envconfig:"AUTHPROXY_REDIS_CACHE_TTL" default:"10s" desc:"longest a session stays in that cache without being read from Redis again"`
	AdminToken           string `envconfig:"AUTHPROXY_ADMIN_TOKEN" secret:"true" desc:"bearer token of the session admin API on the metrics listener (off when empty)"`
	MetricsAddr          string `envconfig:"AUTHPROXY_METRICS_ADDR" desc:"listen address of the internal /metrics endpoint (off when empty)"`
	LogLevel             string `envconfig:"AUTHPROXY_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat            string `envconfig:"AUTHPROXY_LOG_FORMAT" default:"json" desc:"json or text"`
	LogBuffer            string `envconfig:"AUTHPROXY_LOG_BUFFER" default:"true" desc:"write log lines in batches, at most 100ms late (warnings and errors at once); false: a write per line"`
	DrainDelay           string `envconfig:"AUTHPROXY_DRAIN_DELAY" default:"5s" desc:"on SIGTERM, how long /readyz says 503 while still serving"`
	ShutdownTimeout      string `envconfig:"AUTHPROXY_SHUTDOWN_TIMEOUT" default:"25s" desc:"on SIGTERM, bound for in-flight requests"`
	// For the app behind the proxy: legacy basic auth, and TLS to it.
	UpstreamBasicAuth      string `envconfig:"AUTHPROXY_UPSTREAM_BASIC_AUTH" default:"false" desc:"send the upstream Authorization: Basic with the user as the name and AUTHPROXY_UPSTREAM_BASIC_PASSWORD, replacing the client's"`
	UpstreamBasicPassword  string `envconfig:"AUTHPROXY_UPSTREAM_BASIC_PASSWORD" secret:"true" desc:"the password of AUTHPROXY_UPSTREAM_BASIC_AUTH (from a Secret)"`
	UpstreamCAFile         string `envconfig:"AUTHPROXY_UPSTREAM_CA_FILE" desc:"PEM CA certificates the https upstream's certificate must chain to, instead of the system roots"`
	UpstreamClientCertFile string `envconfig:"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE" desc:"PEM client certificate (chain) the proxy shows the https upstream"`
	UpstreamClientKeyFile  string `envconfig:"AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE" desc:"PEM private key of AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE"`
	CookieSecretFile       string `envconfig:"AUTHPROXY_COOKIE_SECRET_FILE" desc:"file holding AUTHPROXY_COOKIE_SECRET's value (e.g. a mounted Secret); reloaded on change"`
	ReloadInterval         string `envconfig:"AUTHPROXY_RELOAD_INTERVAL" default:"10s" desc:"how often the files named by settings (and .env) are checked for changes to reload (0s: only on SIGHUP)"`
	TLSCertFile            string `envconfig:"AUTHPROXY_TLS_CERT_FILE" desc:"PEM certificate chain: serve HTTPS on AUTHPROXY_ADDR; reloaded when it changes"`
	TLSKeyFile             string `envconfig:"AUTHPROXY_TLS_KEY_FILE" desc:"PEM private key of AUTHPROXY_TLS_CERT_FILE"`
	ACME                   string `envconfig:"AUTHPROXY_ACME" default:"false" desc:"serve HTTPS with certificates from an ACME CA (accepts its terms of service)"`
	ACMEEmail              string `envconfig:"AUTHPROXY_ACME_EMAIL" desc:"contact address of the ACME account (required with AUTHPROXY_ACME)"`
	ACMEDirectory          string `envconfig:"AUTHPROXY_ACME_DIRECTORY" default:"https://acme-v02.api.letsencrypt.org/directory" desc:"ACME directory URL"`
	ACMECacheDir           string `envconfig:"AUTHPROXY_ACME_CACHE_DIR" desc:"directory keeping the ACME account and certificates across restarts (required with AUTHPROXY_ACME)"`
	ACMECAFile             string `envconfig:"AUTHPROXY_ACME_CA_FILE" desc:"PEM roots trusted for a private ACME server's HTTPS (default: system roots)"`
	HTTPAddr               string `envconfig:"AUTHPROXY_HTTP_ADDR" desc:"plain-HTTP listen address, e.g. :80: ACME HTTP-01 and redirects to https (off when empty)"`
	// Tracing: only whether spans may name the user; OTEL_* configure the rest.
	TraceUser string `envconfig:"AUTHPROXY_TRACE_USER" default:"false" desc:"record the user id on trace spans (tracing itself is set by the standard OTEL_* variables)"`
}

// setting is one field of env as its tags declare it.
type setting struct {
	name, def string
	secret    bool
	value     *string // the field in the env it was listed from
}

// settings lists e's fields in declaration order.
func (e *env) settings() []setting {
	v := reflect.ValueOf(e).Elem()
	out := make([]setting, v.NumField())
	for i := range out {
		f := v.Type().Field(i)
		out[i] = setting{name: f.Tag.Get("envconfig"), def: f.Tag.Get("default"),
			secret: f.Tag.Get("secret") == "true", value: v.Field(i).Addr().Interface().(*string)}
	}
	return out
}

// readEnv fills env from lookup (os.LookupEnv in main) as envconfig.Process
// would: a variable that is set wins, even when empty; otherwise its
// default. envconfig v1.4 can only read the process environment (its
// package var lookupEnv), so run would need the real environment; reading
// the same tags here lets tests pass a map instead.
func readEnv(lookup func(string) (string, bool)) env {
	var e env
	for _, s := range e.settings() {
		v, ok := lookup(s.name)
		if !ok {
			v = s.def
		}
		*s.value = v
	}
	return e
}

// defaultEnv is env with nothing set: every default applied. The demo and
// tests start from it.
func defaultEnv() env { return readEnv(func(string) (string, bool) { return "", false }) }

// LogValue lists every non-empty setting for the startup line. A secret
// shows only that it is set; a URL loses its password.
func (e env) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, s := range e.settings() {
		v := *s.value
		switch {
		case v == "":
			continue
		case s.secret:
			v = "[redacted]"
		default:
			v = withoutPassword(v)
		}
		attrs = append(attrs, slog.String(s.name, v))
	}
	return slog.GroupValue(attrs...)
}

// withoutPassword returns v with the password of a URL in it redacted, and
// for a value that does not parse as a URL, whatever could be its userinfo.
func withoutPassword(v string) string {
	if u, err := url.Parse(v); err == nil {
		if u.User != nil {
			return u.Redacted()
		}
		return v
	}
	if i := strings.Index(v, "://"); i >= 0 {
		if j := strings.LastIndex(v[i+3:], "@"); j >= 0 {
			return v[:i+3] + "[redacted]@" + v[i+3+j+1:]
		}
	}
	return v
}

// loadConfig reads the settings from lookup and from .env in the working
// directory, if present (lookup wins, as godotenv.Load would have it), and
// returns every problem found, not just the first. .env only feeds these
// settings: it is not copied into the process environment.
func loadConfig(lookup func(string) (string, bool)) (config, error) {
	snap, err := readSettings(lookup)
	if err != nil {
		return config{}, err
	}
	c, err := snap.vars.parse()
	return withTracing(c, err, lookup)
}

// withTracing adds to c (parsed from our settings, with err) what the
// OTEL_* variables say about tracing, and lists their problems with ours.
// They are OpenTelemetry's variables, not settings of ours: tracing reads
// them through lookup, from the environment, once at start (a reload does
// not change tracing).
func withTracing(c config, err error, lookup func(string) (string, bool)) (config, error) {
	trace, traceProblems := tracing.FromEnv(lookup)
	if len(traceProblems) > 0 {
		var p problems
		if err != nil && !errors.As(err, &p) {
			return config{}, err
		}
		return config{}, append(p, traceProblems...)
	}
	if err != nil {
		return config{}, err
	}
	trace.User = c.Tracing.User
	c.Tracing = trace
	return c, nil
}

// config is the checked configuration, one section per consumer. The
// package sections hold what the environment decides; newServer adds the
// live parts (stores, provider, logger, metrics).
type config struct {
	Server serverConfig
	Log    logConfig
	OIDC   oidc.Config
	Cookie cookie.Config // Secrets empty: generated at start
	// Redis is nil for the cookie store.
	Redis *redis.UniversalOptions
	// RedisStore holds the Redis store's cache settings; newServer adds the
	// rest.
	RedisStore redisstore.Config
	Proxy      proxy.Config
	// Identity is nil without AUTHPROXY_IDENTITY_JWT; with no Keys, one is
	// generated at start.
	Identity *assertion.Config
	TLS      tlsConfig // zero: plain HTTP
	// Tracing is off unless the OTEL_* variables turn it on (loadConfig).
	Tracing tracing.Config
	vars    env // what it was parsed from, for the startup line
}

// serverConfig is what the listeners and the shutdown need.
type serverConfig struct {
	Addr            string
	MetricsAddr     string // "": no internal listener
	AdminToken      string // "": no admin API
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	ReloadInterval  time.Duration // 0: reload on SIGHUP only
}

type logConfig struct {
	Level  slog.Level
	Format string // json or text
	Buffer bool   // batch the output (openLog)
}

// LogValue is the startup line's view of c: its settings, secrets left out.
func (c config) LogValue() slog.Value { return c.vars.LogValue() }

// problems lists every problem of a configuration.
type problems []string

// add records a problem once: a setting read for several routes is
// reported once.
func (p *problems) add(format string, a ...any) {
	if s := fmt.Sprintf(format, a...); !slices.Contains(*p, s) {
		*p = append(*p, s)
	}
}

func (p problems) Error() string {
	return "invalid configuration:\n  - " + strings.Join(p, "\n  - ")
}

// parse checks e and converts it, section by section.
func (e env) parse() (config, error) {
	var p problems
	access, err := loadRules(e.RulesFile, p.boolean("AUTHPROXY_RULES_CASE_INSENSITIVE", e.RulesCaseInsensitive))
	if err != nil {
		p.add("%v", err)
	}
	origin := e.origin(&p)
	routes := e.routes(&p)
	c := config{
		Server: e.server(&p),
		Log:    e.logging(&p),
		Proxy:  e.proxyConfig(&p, origin, access, routes),
		OIDC:   e.oidcConfig(&p, origin, access),
		Cookie: e.cookieConfig(&p, origin),
		Redis:  e.redisOptions(&p),
		RedisStore: redisstore.Config{
			CacheSize: p.count("AUTHPROXY_REDIS_CACHE_SIZE", e.RedisCacheSize),
			CacheTTL:  e.redisCacheTTL(&p),
		},
		// Only whether spans may name the user: withTracing adds the rest.
		Tracing: tracing.Config{User: p.boolean("AUTHPROXY_TRACE_USER", e.TraceUser)},
		vars:    e,
	}
	c.OIDC.SessionLifetime = c.Cookie.Policy.Lifetime // one setting, two packages
	c.OIDC.Returns = e.returns(&p, origin, routes, access)
	c.Identity = e.assertionConfig(&p, origin, routes)
	c.TLS = e.tlsSettings(&p, origin)
	c.TLS.Hosts = withRouteHosts(c.TLS.Hosts, routes)
	if len(p) > 0 {
		return config{}, p
	}
	return c, nil
}

// origin reads how the proxy knows its public scheme and host: from the
// fixed redirect URL, or from each request (and trusted proxies' headers).
func (e env) origin(p *problems) oidc.Origin {
	var o oidc.Origin
	if e.RedirectURL != "" {
		u, err := url.Parse(e.RedirectURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			p.add("AUTHPROXY_REDIRECT_URL %q must be an absolute http(s) URL", withoutPassword(e.RedirectURL))
		case u.Path != "/auth/callback":
			p.add("AUTHPROXY_REDIRECT_URL %q must end in /auth/callback, the path authproxy serves", withoutPassword(e.RedirectURL))
		default:
			o.Fixed = u
		}
	}
	for s := range strings.SplitSeq(e.TrustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if pfx, err := parsePrefix(s); err != nil {
			p.add("AUTHPROXY_TRUSTED_PROXIES entry %q is not an IP address or CIDR", s)
		} else {
			o.TrustedProxies = append(o.TrustedProxies, pfx)
		}
	}
	return o
}

func (e env) server(p *problems) serverConfig {
	s := serverConfig{Addr: e.Addr, MetricsAddr: e.MetricsAddr, AdminToken: e.AdminToken,
		DrainDelay:      p.duration("AUTHPROXY_DRAIN_DELAY", e.DrainDelay, false),
		ShutdownTimeout: p.duration("AUTHPROXY_SHUTDOWN_TIMEOUT", e.ShutdownTimeout, true),
		ReloadInterval:  p.duration("AUTHPROXY_RELOAD_INTERVAL", e.ReloadInterval, false),
	}
	if _, _, err := net.SplitHostPort(e.Addr); err != nil {
		p.add("AUTHPROXY_ADDR %q is not host:port", e.Addr)
	}
	if e.AdminToken != "" && e.MetricsAddr == "" {
		p.add("AUTHPROXY_ADMIN_TOKEN needs AUTHPROXY_METRICS_ADDR: the admin API is served on the internal listener only")
	}
	if e.AdminToken != "" && len(e.AdminToken) < 16 {
		p.add("AUTHPROXY_ADMIN_TOKEN is too short: use at least 16 random characters (openssl rand -base64 24)")
	}
	if e.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(e.MetricsAddr); err != nil {
			p.add("AUTHPROXY_METRICS_ADDR %q is not host:port", e.MetricsAddr)
		} else if e.MetricsAddr == e.Addr {
			p.add("AUTHPROXY_METRICS_ADDR must differ from AUTHPROXY_ADDR: metrics stay off the public listener")
		}
	}
	return s
}

func (e env) logging(p *problems) logConfig {
	l := logConfig{Format: e.LogFormat}
	if err := l.Level.UnmarshalText([]byte(e.LogLevel)); err != nil {
		p.add("AUTHPROXY_LOG_LEVEL %q must be debug, info, warn or error", e.LogLevel)
	}
	if e.LogFormat != "json" && e.LogFormat != "text" {
		p.add("AUTHPROXY_LOG_FORMAT %q must be json or text", e.LogFormat)
	}
	l.Buffer = p.boolean("AUTHPROXY_LOG_BUFFER", e.LogBuffer)
	return l
}

// proxyConfig reads what is sent to the upstreams, and gives each route
// its transport.
func (e env) proxyConfig(p *problems, origin oidc.Origin, a access, routes *route.Table) proxy.Config {
	c := proxy.Config{UserHeader: e.UserHeader, Trusted: origin.Trusted, Routes: routes,
		UserClaim: e.UserClaim, BasicPassword: e.upstreamBasic(p),
		Headers: proxy.Headers{Email: e.EmailHeader, Name: e.NameHeader, Groups: e.GroupsHeader,
			GroupsClaim: e.GroupsClaim, AccessToken: e.AccessTokenHeader},
	}
	// Read once whatever the routes, so that every bad setting is reported.
	e.upstreamTransport(p, route.Options{MaxConns: -1})
	if routes != nil {
		transports := make([]http.RoundTripper, len(routes.Routes()))
		for _, rt := range routes.Routes() {
			transports[rt.Index] = e.upstreamTransport(p, rt.Options)
		}
		c.Transport = func(rt *route.Route) http.RoundTripper { return transports[rt.Index] }
	}
	if a.rules != nil { // a nil *rules.Rules must not become a non-nil interface
		c.Rules = a.rules
	}
	if origin.Fixed != nil {
		c.PublicHost = origin.Fixed.Host
	}
	for s := range strings.SplitSeq(e.WebSocketOrigins, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			p.add("AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS entry %q is not an origin like https://app.example.com", withoutPassword(s))
		} else {
			c.WebSocketOrigins = append(c.WebSocketOrigins, u.Scheme+"://"+u.Host)
		}
	}
	if !headerNameOK(e.UserHeader) {
		p.add("AUTHPROXY_USER_HEADER %q is not a usable header name", e.UserHeader)
	}
	seen := map[string]string{proxy.NormalizeHeader(e.UserHeader): "AUTHPROXY_USER_HEADER"}
	for _, h := range []struct{ name, v string }{
		{"AUTHPROXY_EMAIL_HEADER", e.EmailHeader}, {"AUTHPROXY_NAME_HEADER", e.NameHeader},
		{"AUTHPROXY_GROUPS_HEADER", e.GroupsHeader}, {"AUTHPROXY_ACCESS_TOKEN_HEADER", e.AccessTokenHeader},
	} {
		if h.v == "" {
			continue
		}
		if !headerNameOK(h.v) {
			p.add("%s %q is not a usable header name", h.name, h.v)
		} else if other, dup := seen[proxy.NormalizeHeader(h.v)]; dup {
			p.add("%s %q is the same header as %s", h.name, h.v, other)
		}
		seen[proxy.NormalizeHeader(h.v)] = h.name
	}
	return c
}

// upstreamTransport builds the transport of one route's upstream from the
// settings and the route's options (o overrides the timeout and the
// connection cap); it is the one place that does. It keeps enough idle
// connections for the proxy's own concurrency: the default of 2 per host
// would open a new connection to the upstream for most requests under
// load. Called once per route, it reports a bad setting once (problems.add).
func (e env) upstreamTransport(p *problems, o route.Options) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = p.count("AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS", e.UpstreamMaxIdleConns)
	t.MaxIdleConnsPerHost = t.MaxIdleConns
	t.MaxConnsPerHost = p.count("AUTHPROXY_UPSTREAM_MAX_CONNS", e.UpstreamMaxConns)
	t.ResponseHeaderTimeout = p.duration("AUTHPROXY_UPSTREAM_TIMEOUT", e.UpstreamTimeout, true)
	if o.MaxConns >= 0 {
		t.MaxConnsPerHost = o.MaxConns
	}
	if o.Timeout > 0 {
		t.ResponseHeaderTimeout = o.Timeout
	}
	if tc := e.upstreamTLS(p); tc != nil {
		t.TLSClientConfig = tc
	}
	return t
}

// oidcConfig reads the provider, the client and what a login keeps.
func (e env) oidcConfig(p *problems, origin oidc.Origin, a access) oidc.Config {
	c := oidc.Config{
		Issuer: e.Issuer, Auth0Domain: strings.TrimSpace(e.Auth0Domain), PostLogoutURL: e.PostLogoutURL,
		Scopes: strings.Fields(e.Scopes), UserClaim: e.UserClaim, Audience: e.Audience, Origin: origin,
		KeepClaims: a.claimNames(), KeepAccessToken: e.AccessTokenHeader != "",
		HTTPClient: &http.Client{Timeout: p.duration("AUTHPROXY_PROVIDER_TIMEOUT", e.ProviderTimeout, true),
			Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
	if e.GroupsHeader != "" {
		c.KeepClaims = append(c.KeepClaims, e.GroupsClaim)
	}
	if e.UserClaim != "sub" { // for /auth/userinfo's sub
		c.KeepClaims = append(c.KeepClaims, "sub")
	}
	if origin.Fixed != nil {
		c.RedirectURL = origin.Fixed.String()
	}
	if strings.Contains(c.Auth0Domain, "/") {
		p.add("AUTH0_DOMAIN %q must be a bare domain like example.eu.auth0.com, without scheme or path", c.Auth0Domain)
	}
	if c.Issuer == "" && c.Auth0Domain != "" {
		c.Issuer = "https://" + c.Auth0Domain + "/"
	}
	if c.Issuer == "" {
		p.add("AUTHPROXY_ISSUER (or AUTH0_DOMAIN) is required")
	} else if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		p.add("AUTHPROXY_ISSUER %q must be an https:// URL (http:// only for 127.0.0.1 or localhost)", withoutPassword(c.Issuer))
	}
	c.ClientID = p.alias("AUTHPROXY_CLIENT_ID", e.ClientID, "AUTH0_CLIENT_ID", e.Auth0ClientID, false)
	c.ClientSecret = p.alias("AUTHPROXY_CLIENT_SECRET", e.ClientSecret, "AUTH0_CLIENT_SECRET", e.Auth0ClientSecret, true)
	if u, err := url.Parse(e.PostLogoutURL); err != nil || (!u.IsAbs() && !strings.HasPrefix(e.PostLogoutURL, "/")) {
		p.add("AUTHPROXY_POST_LOGOUT_URL %q must be an absolute URL or a path starting with /", e.PostLogoutURL)
	}
	if e.UserClaim == "" {
		p.add("AUTHPROXY_USER_CLAIM must not be empty")
	}
	if !slices.Contains(c.Scopes, "openid") {
		p.add("AUTHPROXY_SCOPES %q must include openid", e.Scopes)
	}
	if c.Audience != "" && c.Audience == c.ClientID {
		p.add("AUTHPROXY_AUDIENCE must be an API identifier, not the client id: ID tokens are not bearer credentials")
	}
	return c
}

// cookieConfig reads the session cookie. Its Secure follows the origin
// unless AUTHPROXY_COOKIE_SECURE fixes it.
func (e env) cookieConfig(p *problems, origin oidc.Origin) cookie.Config {
	c := cookie.Config{Name: e.CookieName, Domain: e.CookieDomain, Policy: session.Policy{
		Lifetime: p.duration("AUTHPROXY_SESSION_LIFETIME", e.SessionLifetime, true),
		Idle:     p.duration("AUTHPROXY_SESSION_IDLE", e.SessionIdle, false),
	}}
	c.Secrets = p.secrets("AUTHPROXY_COOKIE_SECRET", e.CookieSecret)
	if e.CookieSecretFile != "" {
		if e.CookieSecret != "" {
			p.add("set AUTHPROXY_COOKIE_SECRET or AUTHPROXY_COOKIE_SECRET_FILE, not both")
		}
		c.Secrets = secretsFile(p, e.CookieSecretFile)
	}
	if e.CookieName == "" {
		c.Name = cookie.DefaultName
		// The __Host- prefix makes browsers refuse the cookie unless it is
		// Secure, host-only and Path=/, so no sibling subdomain can set or
		// shadow the session. Sessions under the old default move over
		// (Legacy; the Redis store reads the same two names).
		if origin.Fixed != nil && origin.Fixed.Scheme == "https" && e.CookieDomain == "" && e.CookieSecure != "false" {
			c.Name, c.Legacy = cookie.DefaultHostName, cookie.DefaultName
		}
	} else if !cookieNameOK(e.CookieName) {
		p.add("AUTHPROXY_COOKIE_NAME %q may contain only letters, digits, - and _", e.CookieName)
	}
	switch e.CookieSecure {
	case "auto":
		c.Secure = origin.IsHTTPS
	case "true", "false":
		always := e.CookieSecure == "true"
		c.Secure = func(*http.Request) bool { return always }
	default:
		p.add("AUTHPROXY_COOKIE_SECURE %q must be auto, true or false", e.CookieSecure)
	}
	return c
}

// secrets decodes a comma-separated list of cookie secrets.
func (p *problems) secrets(name, v string) [][]byte {
	var keys [][]byte
	for i, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			if v != "" {
				p.add("%s has an empty entry at position %d", name, i+1)
			}
			continue
		}
		key, err := decodeSecret(s)
		if err != nil {
			// Never echo the value: it is a secret.
			p.add("%s entry %d: %v (generate one with: openssl rand -base64 32)", name, i+1, err)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

// secretsFile reads AUTHPROXY_COOKIE_SECRET_FILE: the variable's format,
// entries separated by commas or line breaks (a mounted Kubernetes Secret
// ends in one).
func secretsFile(p *problems, path string) [][]byte {
	const name = "AUTHPROXY_COOKIE_SECRET_FILE"
	b, err := os.ReadFile(path)
	if err != nil {
		p.add("%s: %v", name, err)
		return nil
	}
	list := strings.Join(strings.Fields(strings.ReplaceAll(string(b), ",", " ")), ",")
	if list == "" {
		p.add("%s %s holds no secret (generate one with: openssl rand -base64 32)", name, path)
		return nil
	}
	return p.secrets(name+" "+path, list)
}

// redisOptions reads the session store: nil for the cookie store; for
// Redis, a URL for a standalone server, or addresses of a Cluster (or, with
// a master name, of Sentinels). Context timeouts are always on: without
// them go-redis ignores request deadlines.
func (e env) redisOptions(p *problems) *redis.UniversalOptions {
	switch e.SessionStore {
	case "cookie":
		if e.RedisURL != "" || e.RedisAddrs != "" {
			p.add("AUTHPROXY_REDIS_URL/ADDRS are set but AUTHPROXY_SESSION_STORE is cookie; set it to redis")
		}
		if e.AdminToken != "" {
			p.add("AUTHPROXY_ADMIN_TOKEN needs AUTHPROXY_SESSION_STORE=redis: the cookie store has no sessions to list or revoke")
		}
		return nil
	case "redis":
	default:
		p.add("AUTHPROXY_SESSION_STORE %q must be cookie or redis", e.SessionStore)
		return nil
	}
	switch {
	case e.RedisURL != "" && e.RedisAddrs != "":
		p.add("set AUTHPROXY_REDIS_URL or AUTHPROXY_REDIS_ADDRS, not both")
	case e.RedisURL != "":
		o, err := redis.ParseURL(e.RedisURL)
		if err != nil {
			// Never echo the URL: it may carry the password.
			p.add("AUTHPROXY_REDIS_URL is not a redis:// or rediss:// URL")
			return nil
		}
		return &redis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password,
			DB: o.DB, TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true}
	case e.RedisAddrs != "":
		var addrs []string
		for a := range strings.SplitSeq(e.RedisAddrs, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				p.add("AUTHPROXY_REDIS_ADDRS entry %q is not host:port", a)
			}
			addrs = append(addrs, a)
		}
		return &redis.UniversalOptions{Addrs: addrs, MasterName: e.RedisMaster, Password: e.RedisPassword, ContextTimeoutEnabled: true}
	default:
		p.add("AUTHPROXY_SESSION_STORE=redis needs AUTHPROXY_REDIS_URL or AUTHPROXY_REDIS_ADDRS")
	}
	return nil
}

// redisCacheTTL reads how long the Redis store may keep a session in memory:
// what an announcement lost despite the subscription's checks could cost.
func (e env) redisCacheTTL(p *problems) time.Duration {
	d := p.duration("AUTHPROXY_REDIS_CACHE_TTL", e.RedisCacheTTL, true)
	if d > time.Hour {
		p.add("AUTHPROXY_REDIS_CACHE_TTL %q must be at most 1h: it bounds how long a revoked session could be served if an invalidation were lost", e.RedisCacheTTL)
	}
	return d
}

// assertionConfig reads the signed identity header: nil when off. Its
// issuer is the fixed public origin, its audience by default the
// upstream's origin when there is one upstream.
func (e env) assertionConfig(p *problems, origin oidc.Origin, routes *route.Table) *assertion.Config {
	var keys []*ecdsa.PrivateKey
	if e.IdentityKeyFile != "" {
		if pemData, err := os.ReadFile(e.IdentityKeyFile); err != nil {
			p.add("AUTHPROXY_IDENTITY_KEY_FILE: %v", err)
		} else if keys, err = assertion.LoadKeys(pemData); err != nil {
			p.add("AUTHPROXY_IDENTITY_KEY_FILE %s: %v", e.IdentityKeyFile, err)
		}
	}
	if !p.boolean("AUTHPROXY_IDENTITY_JWT", e.IdentityJWT) {
		return nil
	}
	c := &assertion.Config{Issuer: "authproxy", Audience: e.IdentityAudience, Keys: keys}
	if origin.Fixed != nil {
		c.Issuer = origin.Fixed.Scheme + "://" + origin.Fixed.Host
	}
	if c.Audience == "" && routes != nil {
		if rs := routes.Routes(); len(rs) == 1 {
			c.Audience = rs[0].Upstream.Scheme + "://" + rs[0].Upstream.Host
		} else {
			p.add("AUTHPROXY_IDENTITY_JWT with several routes needs AUTHPROXY_IDENTITY_AUDIENCE: " +
				"one audience for every upstream, which each of them checks")
		}
	}
	return c
}

// alias merges a variable with its Auth0-named alias.
func (p *problems) alias(name, v, aliasName, aliasV string, secret bool) string {
	switch {
	case v == "" && aliasV == "":
		p.add("%s (or %s) is required", name, aliasName)
	case v != "" && aliasV != "" && v != aliasV:
		if secret {
			p.add("%s and %s are both set and differ; set one", name, aliasName)
		} else {
			p.add("%s %q and %s %q differ; set one", name, v, aliasName, aliasV)
		}
	case v == "":
		return aliasV
	}
	return v
}

func (p *problems) duration(name, v string, positive bool) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (positive && d == 0) {
		p.add("%s %q must be a duration like 30s, 5m or 12h", name, v)
	}
	return d
}

func (p *problems) boolean(name, v string) bool {
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.add("%s %q must be true or false", name, v)
	}
	return b
}

func (p *problems) count(name, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.add("%s %q must be a whole number ≥ 0", name, v)
		return 0
	}
	return n
}

// decodeSecret accepts standard or URL-safe base64, padded or not, of 32 or
// 64 bytes. The error never contains the value.
func decodeSecret(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 && len(b) != 64 {
				return nil, fmt.Errorf("decodes to %d bytes, want 32 or 64", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("is not base64")
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// headerNameOK accepts RFC 9110 token characters and refuses names that
// carry routing or credentials.
func headerNameOK(h string) bool {
	switch strings.ToLower(h) {
	case "", "host", "cookie", "authorization", "connection", "content-length", "transfer-encoding", "upgrade":
		return false
	}
	return ascii.IsName(h, "")
}

func cookieNameOK(s string) bool { return s != "" && headerNameOK(s) }
