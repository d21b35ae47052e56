package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// proxyConfig is how a test configures one authproxy process. Only the
// contract's environment variables are used; Env adds or overrides any
// (AUTHPROXY_SESSION_LIFETIME, a Redis URL, ...).
type proxyConfig struct {
	Port          int    // 0: a free port
	Upstream      string // http://127.0.0.1:PORT
	Issuer        string
	ClientID      string
	ClientSecret  string
	CookieSecret  string // base64 of 32 bytes; replicas share one
	PostLogoutURL string
	Env           map[string]string
}

// authproxy is a running authproxy binary.
type authproxy struct {
	*process
	URL *url.URL // http://127.0.0.1:PORT
	Env []string // the AUTHPROXY_* environment it was started with
}

// proxyReadyTimeout bounds the start and the first successful discovery.
const proxyReadyTimeout = 30 * time.Second

// newCookieSecret returns base64 of 32 random bytes.
func newCookieSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("cookie secret: %v", err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// startProxy starts the binary built by TestMain with cfg, trusting p's CA
// through SSL_CERT_FILE, and waits until GET /readyz answers 200. When t
// ends, it sends SIGTERM and fails t unless the proxy exits 0 in time.
func startProxy(t *testing.T, p *pki, cfg proxyConfig) *authproxy {
	t.Helper()
	requireE2E(t)
	if cfg.Port == 0 {
		cfg.Port = freePort(t)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", cfg.Port)
	env := map[string]string{
		"AUTHPROXY_ADDR":             fmt.Sprintf("127.0.0.1:%d", cfg.Port),
		"AUTHPROXY_UPSTREAM":         cfg.Upstream,
		"AUTHPROXY_ISSUER":           cfg.Issuer,
		"AUTHPROXY_CLIENT_ID":        cfg.ClientID,
		"AUTHPROXY_CLIENT_SECRET":    cfg.ClientSecret,
		"AUTHPROXY_REDIRECT_URL":     base + "/auth/callback",
		"AUTHPROXY_COOKIE_SECRET":    cfg.CookieSecret,
		"AUTHPROXY_POST_LOGOUT_URL":  cfg.PostLogoutURL,
		"AUTHPROXY_LOG_FORMAT":       "text",
		"AUTHPROXY_LOG_LEVEL":        "debug",
		"AUTHPROXY_DRAIN_DELAY":      "0s", // tests stop proxies often; TestShutdown sets its own
		"AUTHPROXY_SHUTDOWN_TIMEOUT": "5s",
		// The proxy verifies the provider's certificate against the suite's
		// CA, as it would a real tenant's against the system roots.
		"SSL_CERT_FILE": p.CAFile,
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	var proxyEnv []string
	for k, v := range env {
		proxyEnv = append(proxyEnv, k+"="+v)
	}
	sort.Strings(proxyEnv)

	cmd := exec.Command(suite.bin)
	// Its own empty working dir, so that a developer's .env is not read.
	cmd.Dir = t.TempDir()
	cmd.Env = append(inheritedEnv(), proxyEnv...)
	proc := startProcess(t, "authproxy", cmd)
	ap := &authproxy{process: proc, URL: mustParseURL(t, base), Env: proxyEnv}
	t.Cleanup(func() {
		if err := proc.stop(stopTimeout); err != nil {
			t.Errorf("authproxy on %s: want exit status 0 after SIGTERM, got %v", base, err)
		}
	})

	client := &http.Client{Timeout: 2 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	proc.waitFor(t, "200 from GET /readyz", proxyReadyTimeout, func() error {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		return nil
	})
	return ap
}

// inheritedEnv is the suite's environment without any AUTHPROXY_* or AUTH0_*
// variable a developer may have set, which would change what is tested.
func inheritedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AUTHPROXY_") || strings.HasPrefix(kv, "AUTH0_") || strings.HasPrefix(kv, "SSL_CERT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func mustParseURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse URL %q: %v", raw, err)
	}
	return u
}
