package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pythonPath is Debian's python3, whose http.server normalizes request
// paths the way many upstreams do: it decodes %XX (%2F included), removes
// dot segments and collapses slashes, so it serves //admin/x,
// /%61dmin/x and /public/..%2fadmin/x as /admin/x.
const pythonPath = "/usr/bin/python3"

// secretMarker is the content of the app's admin page.
const secretMarker = "SECRET-ADMIN-PAGE-7f3a"

// normalizeRules guard /admin/ for the admins group.
const normalizeRules = `public  GET  /public/
allow   *    /admin/  group:admins
allow   *    /        any
`

// hostileAdminTargets ask a normalizing upstream for /admin/secret.html in
// spellings a naive path check would not see as /admin/. Every one is sent
// as written, byte for byte.
var hostileAdminTargets = []string{
	"/admin/secret.html", "//admin/secret.html", "///admin/secret.html", "/admin//secret.html",
	"/./admin/secret.html", "/admin/./secret.html", "/admin./secret.html", "/admin%2e/secret.html",
	"/%61dmin/secret.html", "/%2561dmin/secret.html", "/admin/%73ecret.html", "/admin%2fsecret.html",
	"/%2fadmin/secret.html", "/%2Fadmin%2Fsecret.html", "/public/../admin/secret.html",
	"/public/..%2fadmin/secret.html", "/public/..%2Fadmin/secret.html", "/public/%2e%2e/admin/secret.html",
	"/public/%2e%2e%2fadmin/secret.html", "/public%2f..%2fadmin%2fsecret.html", "/public/x/..%2f..%2fadmin/secret.html",
	"/public/..;/admin/secret.html", "/public;/../admin/secret.html", "/public/%2e%2e%5cadmin/secret.html",
	"/admin/secret.html?x=/public/", "/admin/secret.html#/public/", "/public/?/../admin/secret.html",
	"/ADMIN/secret.html", "/%c0%ae%c0%ae/admin/secret.html", "/public/%c0%ae%c0%ae/admin/secret.html",
}

// startPythonApp serves a directory with admin/secret.html (the marker),
// public/index.html and welcome.html with python3 -m http.server on
// 127.0.0.1 and returns its address (host:port).
func startPythonApp(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(pythonPath); err != nil {
		t.Fatalf("e2e: %s not found: apt-get install python3 (`make test` does it when run as root): %v", pythonPath, err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"admin/secret.html": secretMarker + "\n",
		"public/index.html": "public\n",
		"welcome.html":      "welcome\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProcess(t, "python3 http.server", exec.Command(pythonPath, "-m", "http.server",
		"--bind", "127.0.0.1", fmt.Sprint(port), "--directory", dir))
	client := &http.Client{Timeout: 2 * time.Second}
	p.waitFor(t, "python3 http.server on "+addr, 15*time.Second, func() error {
		resp, err := client.Get("http://" + addr + "/public/index.html")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	// The premise: the app itself serves the hostile spellings as the
	// admin page (at least the best known of them).
	for _, target := range []string{"//admin/secret.html", "/%61dmin/secret.html", "/public/..%2fadmin/secret.html"} {
		if body := rawRequest(t, addr, nil, target, ""); !strings.Contains(body, secretMarker) {
			t.Fatalf("python3 http.server does not serve %s as the admin page; the test's premise fails:\n%s", target, body)
		}
	}
	return addr
}

// rawRequest writes "GET target HTTP/1.1" and the headers on a new connection
// to addr (TLS with tlsConfig when set), byte for byte, and returns the
// whole answer, head and body.
func rawRequest(t *testing.T, addr string, tlsConfig *tls.Config, target, cookieHeader string) string {
	t.Helper()
	var conn net.Conn
	var err error
	if tlsConfig != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsConfig)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/html\r\n"
	if cookieHeader != "" {
		req += "Cookie: " + cookieHeader + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"Connection: close\r\n\r\n"); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	out, _ := io.ReadAll(conn) // what arrived before the close is the answer
	return string(out)
}

// cookieHeader is the Cookie header the browser sends to u.
func cookieHeader(b *browser, u *url.URL) string {
	var parts []string
	for _, c := range b.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// normalizeAccounts: root is an admin, nina is not.
func normalizeAccounts(c *providerConfig) {
	c.Accounts = map[string]map[string]any{
		"root": {"groups": []string{"admins"}},
		"nina": {"groups": []string{"staff"}},
	}
}

// checkAdminPage sends every hostile target as both users; only root may
// ever see the admin page, and root does see it at its plain address.
func checkAdminPage(t *testing.T, addr string, tlsConfig *tls.Config, cookies map[string]string) {
	t.Helper()
	for _, target := range hostileAdminTargets {
		if body := rawRequest(t, addr, tlsConfig, target, cookies["nina"]); strings.Contains(body, secretMarker) {
			t.Errorf("nina (not an admin) got the admin page with GET %s:\n%s", target, body)
		}
		if body := rawRequest(t, addr, tlsConfig, target, ""); strings.Contains(body, secretMarker) {
			t.Errorf("a visitor got the admin page with GET %s:\n%s", target, body)
		}
	}
	if body := rawRequest(t, addr, tlsConfig, "/admin/secret.html", cookies["root"]); !strings.Contains(body, secretMarker) {
		t.Errorf("root (an admin) did not get the admin page:\n%s", body)
	}
}

// TestNormalizingUpstreamBehindTheProxy: in proxy mode, in front of an app
// that normalizes request paths, no spelling of /admin/ reaches the admin
// page for a user who is not an admin.
func TestNormalizingUpstreamBehindTheProxy(t *testing.T) {
	requireE2E(t)
	app := startPythonApp(t)
	s := newCustomStack(t, customStackOptions{
		Provider: normalizeAccounts,
		ProxyEnv: map[string]string{
			"AUTHPROXY_UPSTREAM":   "http://" + app,
			"AUTHPROXY_RULES_FILE": writeTestFile(t, "rules.txt", normalizeRules),
		},
	})
	cookies := map[string]string{}
	for _, user := range []string{"root", "nina"} {
		b := newBrowser(t, s.PKI)
		if landed := b.Login(s.ProxyURL("/welcome.html"), user); landed.Status != http.StatusOK || !strings.Contains(landed.Body, "welcome") {
			t.Fatalf("%s: login landed on %d %s; hops:\n%s", user, landed.Status, landed.URL, b.HopsString())
		}
		cookies[user] = cookieHeader(b, s.Proxy.URL)
	}
	checkAdminPage(t, s.Proxy.URL.Host, nil, cookies)
}
