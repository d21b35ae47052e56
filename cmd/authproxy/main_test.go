package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=" // 32 bytes

// envFrom is a lookup over kv alone, for run and loadConfig: tests never
// read or change the process environment. It also moves the test to an
// empty working directory, so that no stray .env is read.
func envFrom(t *testing.T, kv map[string]string) func(string) (string, bool) {
	t.Chdir(t.TempDir())
	return func(name string) (string, bool) {
		v, ok := kv[name]
		return v, ok
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(envFrom(t, map[string]string{
		"AUTHPROXY_UPSTREAM": "http://127.0.0.1:8080", "AUTH0_DOMAIN": "tenant.eu.auth0.com",
		"AUTH0_CLIENT_ID": "cid", "AUTH0_CLIENT_SECRET": "csecret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != ":9001" || cfg.OIDC.Issuer != "https://tenant.eu.auth0.com/" || cfg.OIDC.ClientID != "cid" ||
		cfg.OIDC.ClientSecret != "csecret" || cfg.Proxy.UserHeader != "X-User" || cfg.OIDC.UserClaim != "sub" ||
		strings.Join(cfg.OIDC.Scopes, " ") != "openid profile email" || cfg.Cookie.Policy.Lifetime != 12*time.Hour ||
		cfg.OIDC.SessionLifetime != 12*time.Hour || cfg.Server.DrainDelay != 5*time.Second ||
		cfg.Server.ShutdownTimeout != 25*time.Second || cfg.Log.Format != "json" || len(cfg.Cookie.Secrets) != 0 ||
		len(cfg.OIDC.Origin.TrustedProxies) != 0 || cfg.Redis != nil || cfg.Identity != nil {
		t.Errorf("defaults: %+v", cfg)
	}
}

// TestLoadConfigEmptyIsSet: a variable set to "" is set, as envconfig has
// it: its default does not apply.
func TestLoadConfigEmptyIsSet(t *testing.T) {
	_, err := loadConfig(envFrom(t, map[string]string{
		"AUTHPROXY_UPSTREAM": "http://127.0.0.1:8080", "AUTHPROXY_ISSUER": "https://idp.example/",
		"AUTHPROXY_CLIENT_ID": "c", "AUTHPROXY_CLIENT_SECRET": "s", "AUTHPROXY_ADDR": "",
	}))
	if err == nil || !strings.Contains(err.Error(), `AUTHPROXY_ADDR "" is not host:port`) {
		t.Errorf("empty AUTHPROXY_ADDR: %v", err)
	}
}

func TestLoadConfigDotEnv(t *testing.T) {
	lookup := envFrom(t, map[string]string{"AUTHPROXY_CLIENT_ID": "from-env"})
	env := "AUTHPROXY_UPSTREAM=http://127.0.0.1:8080\nAUTHPROXY_ISSUER=https://idp.example/\nAUTHPROXY_CLIENT_ID=from-file\nAUTHPROXY_CLIENT_SECRET=s\n"
	if err := os.WriteFile(filepath.Join(".", ".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OIDC.ClientID != "from-env" || cfg.OIDC.Issuer != "https://idp.example/" {
		t.Errorf("ClientID %q, Issuer %q: .env should fill gaps and real env should win", cfg.OIDC.ClientID, cfg.OIDC.Issuer)
	}
}

// TestLoadConfigListsEveryProblem: one run names every bad variable, and
// never echoes a secret.
func TestLoadConfigListsEveryProblem(t *testing.T) {
	_, err := loadConfig(envFrom(t, map[string]string{
		"AUTHPROXY_UPSTREAM":                  "ftp://x",
		"AUTHPROXY_ISSUER":                    "http://idp.example/",
		"AUTHPROXY_CLIENT_SECRET":             "hunter2-client-secret",
		"AUTH0_CLIENT_SECRET":                 "other-secret-value",
		"AUTHPROXY_REDIRECT_URL":              "https://app.example/callback",
		"AUTHPROXY_COOKIE_SECRET":             "dG9vLXNob3J0LXNlY3JldA==,not base64!",
		"AUTHPROXY_COOKIE_SECURE":             "maybe",
		"AUTHPROXY_USER_HEADER":               "X User",
		"AUTHPROXY_SCOPES":                    "profile",
		"AUTHPROXY_SESSION_LIFETIME":          "forever",
		"AUTHPROXY_PASS_HOST_HEADER":          "yes please",
		"AUTHPROXY_TRUSTED_PROXIES":           "10.0.0.0/8,not-an-ip",
		"AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS":   "-1",
		"AUTHPROXY_LOG_LEVEL":                 "loud",
		"AUTHPROXY_LOG_FORMAT":                "xml",
		"AUTHPROXY_DRAIN_DELAY":               "5",
		"AUTHPROXY_ADDR":                      "9001",
		"AUTHPROXY_RULES_FILE":                "/nonexistent/rules.txt",
		"AUTHPROXY_IDENTITY_KEY_FILE":         "/nonexistent/key.pem",
		"AUTHPROXY_IDENTITY_JWT":              "sure",
		"AUTHPROXY_EMAIL_HEADER":              "X-Email:",
		"AUTHPROXY_UPSTREAM_MAX_CONNS":        "many",
		"AUTHPROXY_METRICS_ADDR":              "9001",
		"AUTHPROXY_RULES_CASE_INSENSITIVE":    "mostly",
		"AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS": "https://ok.example, https://x.example/path",
	}))
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	msg := err.Error()
	for _, name := range []string{
		"AUTHPROXY_UPSTREAM", "AUTHPROXY_ISSUER", "AUTHPROXY_CLIENT_ID", "AUTHPROXY_CLIENT_SECRET", "AUTHPROXY_REDIRECT_URL",
		"AUTHPROXY_COOKIE_SECRET entry 1", "AUTHPROXY_COOKIE_SECRET entry 2", "AUTHPROXY_COOKIE_SECURE", "AUTHPROXY_USER_HEADER",
		"AUTHPROXY_SCOPES", "AUTHPROXY_SESSION_LIFETIME", "AUTHPROXY_PASS_HOST_HEADER", "AUTHPROXY_TRUSTED_PROXIES",
		"AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS", "AUTHPROXY_LOG_LEVEL", "AUTHPROXY_LOG_FORMAT", "AUTHPROXY_DRAIN_DELAY", "AUTHPROXY_ADDR",
		"AUTHPROXY_RULES_FILE", "AUTHPROXY_IDENTITY_KEY_FILE", "AUTHPROXY_IDENTITY_JWT", "AUTHPROXY_EMAIL_HEADER",
		"AUTHPROXY_UPSTREAM_MAX_CONNS", "AUTHPROXY_METRICS_ADDR", "AUTHPROXY_RULES_CASE_INSENSITIVE",
		`AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS entry "https://x.example/path"`,
	} {
		if !strings.Contains(msg, name) {
			t.Errorf("error does not mention %s:\n%s", name, msg)
		}
	}
	for _, secret := range []string{"hunter2-client-secret", "other-secret-value", "dG9vLXNob3J0LXNlY3JldA==", "not base64!"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks a secret value %q", secret)
		}
	}
}

func TestRunExitsNonZeroOnBadConfig(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), nil, envFrom(t, nil), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "AUTHPROXY_UPSTREAM (the app to protect, e.g. http://127.0.0.1:8080) or AUTHPROXY_ROUTES_FILE is required") || !strings.Contains(err.Error(), "AUTHPROXY_ISSUER") {
		t.Errorf("run with empty env: %v", err)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, envFrom(t, nil), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "authproxy ") {
		t.Errorf("version: %q, %v", out.String(), err)
	}
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs the README's first command in-process and logs in through it.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- demo(ctx, "127.0.0.1:0", pw, logs) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "open ")
	if !ok {
		t.Fatalf("demo printed %q, want open URL", line)
	}
	go io.Copy(io.Discard, pr)
	waitStatus(t, base+"/readyz", 200)

	body := loginThrough(t, base+"/hello?x=1", "ada")
	if !strings.Contains(body, "Hello, ada!") || !strings.Contains(body, "/hello?x=1") {
		t.Errorf("demo app page after login:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("demo exited with %v", err)
	}
	if strings.Contains(logs.String(), "demo-secret") {
		t.Error("client secret in the logs")
	}
}

// loginThrough opens target in a fresh browser-like client, signs in at
// the development provider as user, and returns the page it lands on.
func loginThrough(t *testing.T, target, user string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return loginWithJar(t, jar, target, user)
}

// TestGracefulShutdown: on cancel, /readyz turns 503 at once while requests
// are still served for the drain delay, an in-flight request finishes, and
// serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	s := startStack(t, func(e *env) { e.DrainDelay = "300ms" })
	c := &http.Client{Jar: s.jar}
	slow := make(chan string, 1)
	go func() {
		resp, err := c.Get(s.base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-s.started

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	waitStatus(t, s.base+"/readyz", http.StatusServiceUnavailable)
	if resp, err := c.Get(s.base + "/during-drain"); err != nil || resp.StatusCode != 200 {
		t.Errorf("request during drain: %v %v", resp, err)
	}
	close(s.release)
	if got := <-slow; got != "app:alice" {
		t.Errorf("in-flight request got %q", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve returned %v", err)
	}
}

func loginWithJar(t *testing.T, jar http.CookieJar, target, user string) string {
	t.Helper()
	return loginWith(t, &http.Client{Jar: jar, Timeout: time.Minute}, target, user)
}

// loginWith opens target with c, signs in at the development provider as
// user, and returns the page it lands on.
func loginWith(t *testing.T, c *http.Client, target, user string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasSuffix(resp.Request.URL.Path, "/authorize") {
		t.Fatalf("landed on %s, want the provider's login page", resp.Request.URL)
	}
	form := resp.Request.URL.Query()
	form.Set("username", user)
	u := *resp.Request.URL
	u.RawQuery = ""
	resp, err = c.PostForm(u.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitStatus polls u until it answers want; the deadline only bounds a
// hang, generous for a loaded machine.
func waitStatus(t *testing.T, u string, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d", u, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestHealthcheck(t *testing.T) {
	ok := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go ok.Serve(ln)
	defer ok.Close()
	if err := healthcheck(context.Background(), ln.Addr().String(), false); err != nil {
		t.Errorf("healthy proxy: %v", err)
	}
	sick := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go sick.Serve(ln2)
	defer sick.Close()
	if err := healthcheck(context.Background(), ln2.Addr().String(), false); err == nil {
		t.Error("a 503 passed the health check")
	}
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	if err := healthcheck(context.Background(), addr, false); err == nil {
		t.Error("nothing listening passed the health check")
	}
}

func TestIdentityHeadersMustDiffer(t *testing.T) {
	e := defaultEnv()
	e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:8080", "https://idp.example/", "c", "s"
	e.EmailHeader = "x_user" // the same header as X-User to an upstream that merges _ and -
	if _, err := e.parse(); err == nil || !strings.Contains(err.Error(), "same header as AUTHPROXY_USER_HEADER") {
		t.Errorf("parse = %v", err)
	}
}

func TestRedisConfig(t *testing.T) {
	base := func() env {
		e := defaultEnv()
		e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:8080", "https://idp.example/", "c", "s"
		return e
	}
	for _, tt := range []struct {
		name string
		set  func(*env)
		want string // "" = valid
	}{
		{"cookie store by default", func(e *env) {}, ""},
		{"redis URL", func(e *env) { e.SessionStore, e.RedisURL = "redis", "redis://:pw@127.0.0.1:6379/2" }, ""},
		{"rediss URL", func(e *env) { e.SessionStore, e.RedisURL = "redis", "rediss://redis.example:6380" }, ""},
		{"sentinel", func(e *env) { e.SessionStore, e.RedisAddrs, e.RedisMaster = "redis", "s1:26379, s2:26379", "mymaster" }, ""},
		{"redis without address", func(e *env) { e.SessionStore = "redis" }, "needs AUTHPROXY_REDIS_URL or AUTHPROXY_REDIS_ADDRS"},
		{"both", func(e *env) { e.SessionStore, e.RedisURL, e.RedisAddrs = "redis", "redis://x:1", "y:2" }, "not both"},
		{"bad URL keeps its password secret", func(e *env) { e.SessionStore, e.RedisURL = "redis", "http://:hunter2@x" }, "AUTHPROXY_REDIS_URL is not"},
		{"bad addr", func(e *env) { e.SessionStore, e.RedisAddrs = "redis", "nohost" }, "not host:port"},
		{"address with cookie store", func(e *env) { e.RedisURL = "redis://x:1" }, "set it to redis"},
		{"unknown store", func(e *env) { e.SessionStore = "memcached" }, "must be cookie or redis"},
		{"admin token with cookie store", func(e *env) { e.AdminToken, e.MetricsAddr = "0123456789abcdef0123", "127.0.0.1:9090" }, "needs AUTHPROXY_SESSION_STORE=redis"},
		{"admin token without metrics listener", func(e *env) {
			e.SessionStore, e.RedisURL, e.AdminToken = "redis", "redis://x:1", "0123456789abcdef0123"
		}, "needs AUTHPROXY_METRICS_ADDR"},
		{"short admin token", func(e *env) {
			e.SessionStore, e.RedisURL, e.AdminToken, e.MetricsAddr = "redis", "redis://x:1", "short", "127.0.0.1:9090"
		}, "too short"},
		{"cache off", func(e *env) { e.SessionStore, e.RedisURL, e.RedisCacheSize = "redis", "redis://x:1", "0" }, ""},
		{"negative cache size", func(e *env) { e.SessionStore, e.RedisURL, e.RedisCacheSize = "redis", "redis://x:1", "-1" }, "AUTHPROXY_REDIS_CACHE_SIZE"},
		{"cache TTL zero", func(e *env) { e.SessionStore, e.RedisURL, e.RedisCacheTTL = "redis", "redis://x:1", "0s" }, "AUTHPROXY_REDIS_CACHE_TTL"},
		{"cache TTL over an hour", func(e *env) { e.SessionStore, e.RedisURL, e.RedisCacheTTL = "redis", "redis://x:1", "2h" }, "at most 1h"},
	} {
		e := base()
		tt.set(&e)
		cfg, err := e.parse()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("%s: the error shows the password", tt.name)
		case err == nil && cfg.Redis != nil && !cfg.Redis.ContextTimeoutEnabled:
			t.Errorf("%s: context timeouts are off", tt.name)
		}
	}
	// The cache is on by default.
	if cfg, err := base().parse(); err != nil || cfg.RedisStore.CacheSize != 10000 || cfg.RedisStore.CacheTTL != 10*time.Second {
		t.Errorf("defaults: cache size %d, TTL %v, %v; want 10000, 10s", cfg.RedisStore.CacheSize, cfg.RedisStore.CacheTTL, err)
	}
}

func TestRedisUnreachableAtStart(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	e := defaultEnv()
	e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:8080", "https://idp.example/", "c", "s"
	e.SessionStore, e.RedisURL = "redis", "redis://"+addr
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	pln, _ := net.Listen("tcp", "127.0.0.1:0")
	err = serve(context.Background(), cfg, pln, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("serve with Redis down: %v, want a clear error naming %s", err, addr)
	}
}
