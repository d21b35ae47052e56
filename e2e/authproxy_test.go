package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
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
const proxyReadyTimeout = hangTimeout

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

	client := &http.Client{Timeout: hangTimeout}
	t.Cleanup(client.CloseIdleConnections)
	probes := 0
	proc.waitFor(t, "200 from GET /readyz", proxyReadyTimeout, func() error {
		req, err := http.NewRequest(http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return err
		}
		// Marked as the suite's own, so that checks of the access log can
		// tell these answers before readiness from the tests' requests.
		probes++
		req.Header.Set("X-Request-Id", fmt.Sprintf("%s%d", readinessProbeID, probes))
		resp, err := client.Do(req)
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

// readinessProbeID prefixes the X-Request-Id of startProxy's polls of
// /readyz. A proxy answers 503 until its first provider discovery is done,
// which on a busy machine may take a while: those answers are the suite
// waiting, not errors.
const readinessProbeID = "e2e-readiness-"

// logSyncID prefixes the X-Request-Id of syncLog's requests.
const logSyncID = "e2e-log-sync-"

// syncLog sends the proxy a probe of its own and waits until the suite has
// read its access-log line. The proxy writes a request's line before it
// finishes the response, on one pipe, so afterwards the output holds the
// line of every request answered before syncLog was called, and anything
// logged before them: a check of the log cannot miss a line that was merely
// slow to arrive. Probes are logged at debug level, startProxy's default.
func (ap *authproxy) syncLog(t *testing.T) {
	t.Helper()
	if !slices.Contains(ap.Env, "AUTHPROXY_LOG_LEVEL=debug") {
		t.Fatalf("syncLog needs the proxy's access log of probes: AUTHPROXY_LOG_LEVEL=debug")
	}
	id := logSyncID + randomToken(t)
	req, err := http.NewRequest(http.MethodGet, ap.URL.String()+"/healthz", nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("X-Request-Id", id)
	client := &http.Client{Timeout: hangTimeout}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz to sync the log: %v", err)
	}
	resp.Body.Close()
	ap.waitFor(t, "the access-log line of request "+id, hangTimeout, func() error {
		if !strings.Contains(ap.out.String(), "request_id="+id) {
			return fmt.Errorf("not logged yet")
		}
		return nil
	})
}

// accessLog returns the proxy's access-log lines (msg=request) so far,
// complete up to now (syncLog), each as its fields, without the suite's own
// readiness and sync probes.
func (ap *authproxy) accessLog(t *testing.T) []map[string]string {
	t.Helper()
	ap.syncLog(t)
	var out []map[string]string
	for line := range strings.Lines(ap.out.String()) {
		f := logFields(line)
		if f["msg"] != "request" || strings.HasPrefix(f["request_id"], readinessProbeID) || strings.HasPrefix(f["request_id"], logSyncID) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// logFields parses a line of slog's text format (key=value, values quoted
// when they need it) into its fields; what it cannot parse, it skips.
func logFields(line string) map[string]string {
	f := map[string]string{}
	rest := strings.TrimSpace(line)
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || strings.ContainsAny(key, " \"") {
			return f
		}
		var val string
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return f
			}
			val, _ = strconv.Unquote(q)
			after = after[len(q):]
		} else {
			val, after, _ = strings.Cut(after, " ")
		}
		f[key] = val
		rest = strings.TrimLeft(after, " ")
	}
	return f
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
