package main

import (
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"github.com/kelseyhightower/envconfig"
	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/proxy"
	"github.com/authproxy/authproxy/proxy/assertion"
)

// env is the process environment as envconfig reads it. Values that need
// parsing stay strings here so that parse can report every bad one at once;
// envconfig alone stops at the first. Tags carry full names (no prefix), so
// envconfig's unprefixed fallback cannot pick up stray variables like ADDR.
type env struct {
	Addr                 string `envconfig:"AUTHPROXY_ADDR" default:":9001" desc:"listen address"`
	Upstream             string `envconfig:"AUTHPROXY_UPSTREAM" desc:"upstream URL, e.g. http://127.0.0.1:8080 (required)"`
	Issuer               string `envconfig:"AUTHPROXY_ISSUER" desc:"OIDC issuer URL (default https://$AUTH0_DOMAIN/)"`
	Auth0Domain          string `envconfig:"AUTH0_DOMAIN" desc:"Auth0 tenant domain; sets the issuer and Auth0 logout"`
	ClientID             string `envconfig:"AUTHPROXY_CLIENT_ID" desc:"OAuth client id (required; alias AUTH0_CLIENT_ID)"`
	Auth0ClientID        string `envconfig:"AUTH0_CLIENT_ID" desc:"alias of AUTHPROXY_CLIENT_ID"`
	ClientSecret         string `envconfig:"AUTHPROXY_CLIENT_SECRET" desc:"OAuth client secret (required; alias AUTH0_CLIENT_SECRET)"`
	Auth0ClientSecret    string `envconfig:"AUTH0_CLIENT_SECRET" desc:"alias of AUTHPROXY_CLIENT_SECRET"`
	RedirectURL          string `envconfig:"AUTHPROXY_REDIRECT_URL" desc:"absolute callback URL registered at the provider"`
	PostLogoutURL        string `envconfig:"AUTHPROXY_POST_LOGOUT_URL" default:"/" desc:"where the provider sends the browser after logout (URL or path)"`
	CookieSecret         string `envconfig:"AUTHPROXY_COOKIE_SECRET" desc:"base64 of 32 or 64 random bytes; comma-separated list rotates keys"`
	CookieName           string `envconfig:"AUTHPROXY_COOKIE_NAME" default:"_authproxy" desc:"session cookie name"`
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
	RedisURL             string `envconfig:"AUTHPROXY_REDIS_URL" desc:"redis:// or rediss:// URL of a standalone Redis"`
	RedisAddrs           string `envconfig:"AUTHPROXY_REDIS_ADDRS" desc:"comma-separated host:port of a Redis Cluster or of Sentinels"`
	RedisMaster          string `envconfig:"AUTHPROXY_REDIS_MASTER" desc:"Sentinel master name (with AUTHPROXY_REDIS_ADDRS)"`
	RedisPassword        string `envconfig:"AUTHPROXY_REDIS_PASSWORD" desc:"password for AUTHPROXY_REDIS_ADDRS (a URL carries its own)"`
	AdminToken           string `envconfig:"AUTHPROXY_ADMIN_TOKEN" desc:"bearer token of the session admin API on the metrics listener (off when empty)"`
	MetricsAddr          string `envconfig:"AUTHPROXY_METRICS_ADDR" desc:"listen address of the internal /metrics endpoint (off when empty)"`
	LogLevel             string `envconfig:"AUTHPROXY_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat            string `envconfig:"AUTHPROXY_LOG_FORMAT" default:"json" desc:"json or text"`
	DrainDelay           string `envconfig:"AUTHPROXY_DRAIN_DELAY" default:"5s" desc:"on SIGTERM, how long /readyz says 503 while still serving"`
	ShutdownTimeout      string `envconfig:"AUTHPROXY_SHUTDOWN_TIMEOUT" default:"25s" desc:"on SIGTERM, bound for in-flight requests"`
}

// config is the checked configuration that run uses.
type config struct {
	Addr             string
	Upstream         *url.URL
	Issuer           string
	Auth0Domain      string
	ClientID         string
	ClientSecret     string
	RedirectURL      *url.URL // nil: derived per request
	PostLogoutURL    string
	CookieSecrets    [][]byte // empty: generated at start
	CookieName       string
	CookieDomain     string
	CookieSecure     string // auto, true or false
	UserHeader       string
	UserClaim        string
	Scopes           []string
	SessionLifetime  time.Duration
	SessionIdle      time.Duration
	PassHostHeader   bool
	TrustedProxies   []netip.Prefix
	UpstreamTimeout  time.Duration
	UpstreamMaxIdle  int
	UpstreamMaxConns int
	ProviderTimeout  time.Duration
	MetricsAddr      string
	SessionStore     string // cookie or redis
	Redis            *redis.UniversalOptions
	AdminToken       string
	RulesFile        string
	RulesCaseFold    bool
	Access           access   // loaded from RulesFile
	WebSocketOrigins []string // scheme://host[:port]
	Audience         string
	Headers          proxy.Headers
	IdentityJWT      bool
	IdentityAud      string
	IdentityKeyFile  string
	IdentityKeys     []*ecdsa.PrivateKey // loaded from IdentityKeyFile
	LogLevel         slog.Level
	LogFormat        string
	DrainDelay       time.Duration
	ShutdownTimeout  time.Duration
}

// loadConfig reads .env (if present; real environment variables win) and
// the environment, and returns every problem found, not just the first.
func loadConfig() (config, error) {
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return config{}, fmt.Errorf("read .env: %w", err)
	}
	var e env
	if err := envconfig.Process("", &e); err != nil {
		return config{}, fmt.Errorf("read environment: %w", err)
	}
	return e.parse()
}

// defaultEnv is env with every default of its tags applied, as envconfig
// would with an empty environment; the demo and tests start from it.
func defaultEnv() env {
	var e env
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		if d, ok := v.Type().Field(i).Tag.Lookup("default"); ok {
			v.Field(i).SetString(d)
		}
	}
	return e
}

// configError lists every problem of a configuration.
type configError []string

func (c configError) Error() string {
	return "invalid configuration:\n  - " + strings.Join(c, "\n  - ")
}

// parse checks e and converts it.
func (e env) parse() (config, error) {
	var p configError
	problem := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	c := config{
		Addr: e.Addr, Auth0Domain: strings.TrimSpace(e.Auth0Domain), PostLogoutURL: e.PostLogoutURL,
		CookieName: e.CookieName, CookieDomain: e.CookieDomain, UserClaim: e.UserClaim,
		Scopes: strings.Fields(e.Scopes),
	}

	if _, _, err := net.SplitHostPort(e.Addr); err != nil {
		problem("AUTHPROXY_ADDR %q is not host:port", e.Addr)
	}
	if e.Upstream == "" {
		problem("AUTHPROXY_UPSTREAM is required (the app to protect, e.g. http://127.0.0.1:8080)")
	} else if u, err := url.Parse(e.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problem("AUTHPROXY_UPSTREAM %q must be an http:// or https:// URL with a host", e.Upstream)
	} else {
		c.Upstream = u
	}

	if strings.Contains(c.Auth0Domain, "/") {
		problem("AUTH0_DOMAIN %q must be a bare domain like example.eu.auth0.com, without scheme or path", c.Auth0Domain)
	}
	c.Issuer = e.Issuer
	if c.Issuer == "" && c.Auth0Domain != "" {
		c.Issuer = "https://" + c.Auth0Domain + "/"
	}
	if c.Issuer == "" {
		problem("AUTHPROXY_ISSUER (or AUTH0_DOMAIN) is required")
	} else if u, err := url.Parse(c.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		problem("AUTHPROXY_ISSUER %q must be an https:// URL (http:// only for 127.0.0.1 or localhost)", c.Issuer)
	}

	c.ClientID = alias(problem, "AUTHPROXY_CLIENT_ID", e.ClientID, "AUTH0_CLIENT_ID", e.Auth0ClientID, false)
	c.ClientSecret = alias(problem, "AUTHPROXY_CLIENT_SECRET", e.ClientSecret, "AUTH0_CLIENT_SECRET", e.Auth0ClientSecret, true)

	if e.RedirectURL != "" {
		u, err := url.Parse(e.RedirectURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			problem("AUTHPROXY_REDIRECT_URL %q must be an absolute http(s) URL", e.RedirectURL)
		case u.Path != "/auth/callback":
			problem("AUTHPROXY_REDIRECT_URL %q must end in /auth/callback, the path authproxy serves", e.RedirectURL)
		default:
			c.RedirectURL = u
		}
	}
	if u, err := url.Parse(e.PostLogoutURL); err != nil || (!u.IsAbs() && !strings.HasPrefix(e.PostLogoutURL, "/")) {
		problem("AUTHPROXY_POST_LOGOUT_URL %q must be an absolute URL or a path starting with /", e.PostLogoutURL)
	}

	for i, s := range strings.Split(e.CookieSecret, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			if e.CookieSecret != "" {
				problem("AUTHPROXY_COOKIE_SECRET has an empty entry at position %d", i+1)
			}
			continue
		}
		key, err := decodeSecret(s)
		if err != nil {
			// Never echo the value: it is a secret.
			problem("AUTHPROXY_COOKIE_SECRET entry %d: %v (generate one with: openssl rand -base64 32)", i+1, err)
			continue
		}
		c.CookieSecrets = append(c.CookieSecrets, key)
	}
	if !cookieNameOK(e.CookieName) {
		problem("AUTHPROXY_COOKIE_NAME %q may contain only letters, digits, - and _", e.CookieName)
	}
	switch e.CookieSecure {
	case "auto", "true", "false":
		c.CookieSecure = e.CookieSecure
	default:
		problem("AUTHPROXY_COOKIE_SECURE %q must be auto, true or false", e.CookieSecure)
	}

	c.UserHeader = e.UserHeader
	if !headerNameOK(e.UserHeader) {
		problem("AUTHPROXY_USER_HEADER %q is not a usable header name", e.UserHeader)
	}
	if e.UserClaim == "" {
		problem("AUTHPROXY_USER_CLAIM must not be empty")
	}
	if !slices.Contains(c.Scopes, "openid") {
		problem("AUTHPROXY_SCOPES %q must include openid", e.Scopes)
	}

	c.SessionLifetime = duration(problem, "AUTHPROXY_SESSION_LIFETIME", e.SessionLifetime, true)
	c.SessionIdle = duration(problem, "AUTHPROXY_SESSION_IDLE", e.SessionIdle, false)
	c.UpstreamTimeout = duration(problem, "AUTHPROXY_UPSTREAM_TIMEOUT", e.UpstreamTimeout, true)
	c.ProviderTimeout = duration(problem, "AUTHPROXY_PROVIDER_TIMEOUT", e.ProviderTimeout, true)
	c.DrainDelay = duration(problem, "AUTHPROXY_DRAIN_DELAY", e.DrainDelay, false)
	c.ShutdownTimeout = duration(problem, "AUTHPROXY_SHUTDOWN_TIMEOUT", e.ShutdownTimeout, true)

	if b, err := strconv.ParseBool(e.PassHostHeader); err != nil {
		problem("AUTHPROXY_PASS_HOST_HEADER %q must be true or false", e.PassHostHeader)
	} else {
		c.PassHostHeader = b
	}
	if n, err := strconv.Atoi(e.UpstreamMaxIdleConns); err != nil || n < 0 {
		problem("AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS %q must be a whole number ≥ 0", e.UpstreamMaxIdleConns)
	} else {
		c.UpstreamMaxIdle = n
	}
	if n, err := strconv.Atoi(e.UpstreamMaxConns); err != nil || n < 0 {
		problem("AUTHPROXY_UPSTREAM_MAX_CONNS %q must be a whole number ≥ 0", e.UpstreamMaxConns)
	} else {
		c.UpstreamMaxConns = n
	}
	for s := range strings.SplitSeq(e.TrustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if pfx, err := parsePrefix(s); err != nil {
			problem("AUTHPROXY_TRUSTED_PROXIES entry %q is not an IP address or CIDR", s)
		} else {
			c.TrustedProxies = append(c.TrustedProxies, pfx)
		}
	}

	c.RulesFile, c.Audience, c.IdentityKeyFile = e.RulesFile, e.Audience, e.IdentityKeyFile
	if b, err := strconv.ParseBool(e.RulesCaseInsensitive); err != nil {
		problem("AUTHPROXY_RULES_CASE_INSENSITIVE %q must be true or false", e.RulesCaseInsensitive)
	} else {
		c.RulesCaseFold = b
	}
	for s := range strings.SplitSeq(e.WebSocketOrigins, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			problem("AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS entry %q is not an origin like https://app.example.com", s)
		} else {
			c.WebSocketOrigins = append(c.WebSocketOrigins, u.Scheme+"://"+u.Host)
		}
	}
	if a, err := loadRules(e.RulesFile, c.RulesCaseFold); err != nil {
		problem("%v", err)
	} else {
		c.Access = a
	}
	if e.IdentityKeyFile != "" {
		if pemData, err := os.ReadFile(e.IdentityKeyFile); err != nil {
			problem("AUTHPROXY_IDENTITY_KEY_FILE: %v", err)
		} else if c.IdentityKeys, err = assertion.LoadKeys(pemData); err != nil {
			problem("AUTHPROXY_IDENTITY_KEY_FILE %s: %v", e.IdentityKeyFile, err)
		}
	}
	if c.Audience != "" && c.Audience == c.ClientID {
		problem("AUTHPROXY_AUDIENCE must be an API identifier, not the client id: ID tokens are not bearer credentials")
	}
	c.Headers = proxy.Headers{Email: e.EmailHeader, Name: e.NameHeader, Groups: e.GroupsHeader,
		GroupsClaim: e.GroupsClaim, AccessToken: e.AccessTokenHeader}
	seen := map[string]string{normalizeHeader(e.UserHeader): "AUTHPROXY_USER_HEADER"}
	for _, h := range []struct{ name, v string }{
		{"AUTHPROXY_EMAIL_HEADER", e.EmailHeader}, {"AUTHPROXY_NAME_HEADER", e.NameHeader},
		{"AUTHPROXY_GROUPS_HEADER", e.GroupsHeader}, {"AUTHPROXY_ACCESS_TOKEN_HEADER", e.AccessTokenHeader},
	} {
		if h.v == "" {
			continue
		}
		if !headerNameOK(h.v) {
			problem("%s %q is not a usable header name", h.name, h.v)
		} else if other, dup := seen[normalizeHeader(h.v)]; dup {
			problem("%s %q is the same header as %s", h.name, h.v, other)
		}
		seen[normalizeHeader(h.v)] = h.name
	}
	if b, err := strconv.ParseBool(e.IdentityJWT); err != nil {
		problem("AUTHPROXY_IDENTITY_JWT %q must be true or false", e.IdentityJWT)
	} else {
		c.IdentityJWT = b
	}
	c.IdentityAud = e.IdentityAudience
	if c.IdentityAud == "" && c.Upstream != nil {
		c.IdentityAud = c.Upstream.Scheme + "://" + c.Upstream.Host
	}
	c.SessionStore, c.AdminToken = e.SessionStore, e.AdminToken
	switch e.SessionStore {
	case "cookie":
		if e.RedisURL != "" || e.RedisAddrs != "" {
			problem("AUTHPROXY_REDIS_URL/ADDRS are set but AUTHPROXY_SESSION_STORE is cookie; set it to redis")
		}
		if e.AdminToken != "" {
			problem("AUTHPROXY_ADMIN_TOKEN needs AUTHPROXY_SESSION_STORE=redis: the cookie store has no sessions to list or revoke")
		}
	case "redis":
		c.Redis = redisOptions(problem, e)
	default:
		problem("AUTHPROXY_SESSION_STORE %q must be cookie or redis", e.SessionStore)
	}
	if e.AdminToken != "" && e.MetricsAddr == "" {
		problem("AUTHPROXY_ADMIN_TOKEN needs AUTHPROXY_METRICS_ADDR: the admin API is served on the internal listener only")
	}
	if e.AdminToken != "" && len(e.AdminToken) < 16 {
		problem("AUTHPROXY_ADMIN_TOKEN is too short: use at least 16 random characters (openssl rand -base64 24)")
	}
	c.MetricsAddr = e.MetricsAddr
	if e.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(e.MetricsAddr); err != nil {
			problem("AUTHPROXY_METRICS_ADDR %q is not host:port", e.MetricsAddr)
		} else if e.MetricsAddr == e.Addr {
			problem("AUTHPROXY_METRICS_ADDR must differ from AUTHPROXY_ADDR: metrics stay off the public listener")
		}
	}
	if err := c.LogLevel.UnmarshalText([]byte(e.LogLevel)); err != nil {
		problem("AUTHPROXY_LOG_LEVEL %q must be debug, info, warn or error", e.LogLevel)
	}
	if e.LogFormat != "json" && e.LogFormat != "text" {
		problem("AUTHPROXY_LOG_FORMAT %q must be json or text", e.LogFormat)
	}
	c.LogFormat = e.LogFormat

	if len(p) > 0 {
		return config{}, p
	}
	return c, nil
}

// redisOptions reads the Redis settings: a URL for a standalone server, or
// addresses of a Cluster (or, with a master name, of Sentinels). Context
// timeouts are always on: without them go-redis ignores request deadlines.
func redisOptions(problem func(string, ...any), e env) *redis.UniversalOptions {
	switch {
	case e.RedisURL != "" && e.RedisAddrs != "":
		problem("set AUTHPROXY_REDIS_URL or AUTHPROXY_REDIS_ADDRS, not both")
	case e.RedisURL != "":
		o, err := redis.ParseURL(e.RedisURL)
		if err != nil {
			// Never echo the URL: it may carry the password.
			problem("AUTHPROXY_REDIS_URL is not a redis:// or rediss:// URL")
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
				problem("AUTHPROXY_REDIS_ADDRS entry %q is not host:port", a)
			}
			addrs = append(addrs, a)
		}
		return &redis.UniversalOptions{Addrs: addrs, MasterName: e.RedisMaster, Password: e.RedisPassword, ContextTimeoutEnabled: true}
	default:
		problem("AUTHPROXY_SESSION_STORE=redis needs AUTHPROXY_REDIS_URL or AUTHPROXY_REDIS_ADDRS")
	}
	return nil
}

// alias merges a variable with its Auth0-named alias.
func alias(problem func(string, ...any), name, v, aliasName, aliasV string, secret bool) string {
	switch {
	case v == "" && aliasV == "":
		problem("%s (or %s) is required", name, aliasName)
	case v != "" && aliasV != "" && v != aliasV:
		if secret {
			problem("%s and %s are both set and differ; set one", name, aliasName)
		} else {
			problem("%s %q and %s %q differ; set one", name, v, aliasName, aliasV)
		}
	case v == "":
		return aliasV
	}
	return v
}

func duration(problem func(string, ...any), name, v string, positive bool) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (positive && d == 0) {
		problem("%s %q must be a duration like 30s, 5m or 12h", name, v)
	}
	return d
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
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// normalizeHeader is how upstream stacks compare header names: any case,
// "_" and "." as "-".
func normalizeHeader(h string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(h))
}

func cookieNameOK(s string) bool { return s != "" && headerNameOK(s) }

// LogValue is the effective configuration for the startup log line, with
// every secret left out.
func (c config) LogValue() slog.Value {
	redirect := "derived from each request"
	if c.RedirectURL != nil {
		redirect = c.RedirectURL.String()
	}
	secrets := "generated (sessions end at restart)"
	if len(c.CookieSecrets) > 0 {
		secrets = fmt.Sprintf("%d configured", len(c.CookieSecrets))
	}
	var trusted []string
	for _, p := range c.TrustedProxies {
		trusted = append(trusted, p.String())
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("upstream", c.Upstream.Redacted()),
		slog.String("issuer", c.Issuer),
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", "[redacted]"),
		slog.String("redirect_url", redirect),
		slog.String("post_logout_url", c.PostLogoutURL),
		slog.String("cookie_secrets", secrets),
		slog.String("cookie_name", c.CookieName),
		slog.String("cookie_secure", c.CookieSecure),
		slog.String("user_header", c.UserHeader),
		slog.String("user_claim", c.UserClaim),
		slog.String("scopes", strings.Join(c.Scopes, " ")),
		slog.Duration("session_lifetime", c.SessionLifetime),
		slog.Duration("session_idle", c.SessionIdle),
		slog.Bool("pass_host_header", c.PassHostHeader),
		slog.String("trusted_proxies", strings.Join(trusted, ",")),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.String("session_store", c.SessionStore),
		slog.Bool("admin_api", c.AdminToken != ""),
		slog.String("rules_file", c.RulesFile),
		slog.Bool("rules_case_insensitive", c.RulesCaseFold),
		slog.String("websocket_allowed_origins", strings.Join(c.WebSocketOrigins, ",")),
		slog.String("audience", c.Audience),
		slog.Bool("identity_jwt", c.IdentityJWT),
	)
}
