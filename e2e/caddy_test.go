package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// caddyConfFile is the example Caddyfile shipped for forward_auth, relative
// to the repository root. The test runs it, not a copy.
const caddyConfFile = "deploy/caddy/Caddyfile"

// caddyConfig is what the shipped example's placeholders become.
type caddyConfig struct {
	Port      int    // serves https://127.0.0.1:Port
	AuthProxy string // host:port of authproxy
	App       string // host:port of the app
	CertFile  string // PEM certificate for 127.0.0.1
	KeyFile   string
}

// startCaddy runs the shipped Caddyfile, its placeholders replaced by cfg,
// imported by a main Caddyfile whose global options keep Caddy on
// 127.0.0.1, off port 80 and the admin port, and its state in a temporary
// directory. It waits until Caddy answers over TLS with p's certificate.
func startCaddy(t *testing.T, p *pki, cfg caddyConfig) *url.URL {
	t.Helper()
	bin := requireTool(t, "caddy")
	dir := t.TempDir()

	data, err := os.ReadFile(filepath.Join(suite.repoRoot, caddyConfFile))
	if err != nil {
		t.Fatalf("read the shipped Caddyfile: %v", err)
	}
	site := string(data)
	// Each placeholder must appear as often as here (the comments name the
	// addresses too), so that a change to the example cannot leave part
	// of it untested.
	for _, r := range []struct {
		placeholder, value string
		times              int
	}{
		{"app.example.com {", fmt.Sprintf("https://127.0.0.1:%d {", cfg.Port), 1},
		{"/etc/caddy/tls/app.example.com.crt", cfg.CertFile, 1},
		{"/etc/caddy/tls/app.example.com.key", cfg.KeyFile, 1},
		{"127.0.0.1:9001", cfg.AuthProxy, 3},
		{"127.0.0.1:8080", cfg.App, 3},
	} {
		if n := strings.Count(site, r.placeholder); n != r.times {
			t.Fatalf("%s: placeholder %q appears %d times, want %d; update startCaddy with the example", caddyConfFile, r.placeholder, n, r.times)
		}
		site = strings.ReplaceAll(site, r.placeholder, r.value)
	}
	siteFile := filepath.Join(dir, "site.Caddyfile")
	if err := os.WriteFile(siteFile, []byte(site), 0o600); err != nil {
		t.Fatalf("write Caddy site: %v", err)
	}
	mainConf := fmt.Sprintf(`# Written by e2e/caddy_test.go around the shipped %[1]s.
{
	admin off
	persist_config off
	auto_https disable_redirects
	default_bind 127.0.0.1
	http_port %[2]d
	https_port %[3]d
	storage file_system %[4]s/storage
}
import %[5]s
`, caddyConfFile, freePort(t), cfg.Port, dir, siteFile)
	mainFile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(mainFile, []byte(mainConf), 0o600); err != nil {
		t.Fatalf("write Caddyfile: %v", err)
	}
	env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir+"/data", "XDG_CONFIG_HOME="+dir+"/config")
	validate := exec.Command(bin, "validate", "--config", mainFile, "--adapter", "caddyfile")
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate rejects the shipped example (templated into %s): %v\n%s", dir, err, out)
	}
	cmd := exec.Command(bin, "run", "--config", mainFile, "--adapter", "caddyfile")
	cmd.Env = env
	proc := startProcess(t, "caddy", cmd)
	u := mustParseURL(t, fmt.Sprintf("https://127.0.0.1:%d", cfg.Port))
	client := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: p.TLSConfig()}}
	t.Cleanup(client.CloseIdleConnections)
	proc.waitFor(t, "an HTTPS answer on "+u.String(), hangTimeout, func() error {
		resp, err := client.Get(u.String() + "/auth/login-probe")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return u
}
