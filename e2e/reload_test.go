package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// reloadRules are the rules before a reload; reloadRulesNext swaps which of
// two paths is denied.
const (
	reloadRules     = "allow * / any\ndeny * /before-only-denied/\n"
	reloadRulesNext = "allow * / any\ndeny * /after-only-denied/\n"
)

// reloadStack is a provider, an upstream that echoes WebSockets and says
// which key signed the identity assertion, and a proxy whose rules, cookie
// secrets and identity keys come from files in dir, with alice logged in.
type reloadStack struct {
	*stack
	dir      string
	upstream string // the echo upstream's URL, the "* /" route's
	metrics  string // http://127.0.0.1:PORT/metrics
	cookies  []*http.Cookie
}

// writeAtomic replaces path with data the way a deploy tool does: a new
// file renamed over the old, so a reader never sees half of either.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func keyFilePEM(t *testing.T, keys ...*ecdsa.PrivateKey) string {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
	}
	return string(out)
}

// echoUpstream answers a WebSocket handshake with 101 and echoes the
// tunnel's bytes; any other request with "user=X-User kid=KID", KID being
// the key id in the identity assertion's header.
func echoUpstream(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	var conns []net.Conn
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			conn, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			defer conn.Close()
			fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			io.Copy(conn, brw)
			return
		}
		kid := ""
		if a := r.Header.Get(assertionHeader); a != "" {
			head, _, _ := strings.Cut(a, ".")
			var h struct{ Kid string }
			if b, err := base64.RawURLEncoding.DecodeString(head); err == nil && json.Unmarshal(b, &h) == nil {
				kid = h.Kid
			}
		}
		fmt.Fprintf(w, "user=%s kid=%s", r.Header.Get("X-User"), kid)
	}))
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		srv.Close()
	})
	return srv
}

// startReloadStack starts the stack with the files in a directory of
// their own; env adds settings (AUTHPROXY_RELOAD_INTERVAL).
func startReloadStack(t *testing.T, signing *ecdsa.PrivateKey, cookieSecret string, env map[string]string) *reloadStack {
	t.Helper()
	requireE2E(t)
	dir := t.TempDir()
	writeAtomic(t, filepath.Join(dir, "rules.txt"), reloadRules)
	writeAtomic(t, filepath.Join(dir, "identity.pem"), keyFilePEM(t, signing))
	writeAtomic(t, filepath.Join(dir, "cookie-secret"), cookieSecret+"\n")
	metricsPort := freePort(t)
	s := &stack{PKI: newPKI(t)}
	proxyPort := freePort(t)
	proxyBase := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	s.Client = providerClient{ClientID: "e2e-proxy", ClientSecret: newCookieSecret(t),
		RedirectURIs: []string{proxyBase + "/auth/callback"}, TokenEndpointAuthMethod: "client_secret_basic"}
	s.Provider = startProvider(t, s.PKI, providerConfig{Clients: []providerClient{s.Client}})
	upstream := echoUpstream(t)
	// The routes file is reloaded too: one route to start with.
	writeAtomic(t, filepath.Join(dir, "routes.txt"), "* / "+upstream.URL+"\n")
	proxyEnv := map[string]string{
		"AUTHPROXY_UPSTREAM":           "",
		"AUTHPROXY_ROUTES_FILE":        filepath.Join(dir, "routes.txt"),
		"AUTHPROXY_RULES_FILE":         filepath.Join(dir, "rules.txt"),
		"AUTHPROXY_IDENTITY_JWT":       "true",
		"AUTHPROXY_IDENTITY_AUDIENCE":  "e2e-apps", // routes may name several upstreams
		"AUTHPROXY_IDENTITY_KEY_FILE":  filepath.Join(dir, "identity.pem"),
		"AUTHPROXY_COOKIE_SECRET":      "",
		"AUTHPROXY_COOKIE_SECRET_FILE": filepath.Join(dir, "cookie-secret"),
		"AUTHPROXY_METRICS_ADDR":       fmt.Sprintf("127.0.0.1:%d", metricsPort),
	}
	for k, v := range env {
		proxyEnv[k] = v
	}
	s.Proxy = startProxy(t, s.PKI, proxyConfig{Port: proxyPort, Upstream: upstream.URL, Issuer: s.Provider.Issuer,
		ClientID: s.Client.ClientID, ClientSecret: s.Client.ClientSecret, PostLogoutURL: "/", Env: proxyEnv})
	b := newBrowser(t, s.PKI)
	if p := b.Login(s.ProxyURL("/hello"), "alice"); p.Status != http.StatusOK || !strings.HasPrefix(p.Body, "user=alice ") {
		t.Fatalf("login: %d %q; hops:\n%s", p.Status, p.Body, b.HopsString())
	}
	return &reloadStack{stack: s, dir: dir, upstream: upstream.URL, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
		cookies: b.Jar.Cookies(s.Proxy.URL)}
}

// get is alice's GET of path.
func (rs *reloadStack) get(c *http.Client, path string) (answer, error) {
	return rawGet(c, rs.ProxyURL(path), rs.cookies, apiHeaders())
}

// metric reads one series from the proxy's /metrics.
func (rs *reloadStack) metric(t *testing.T, series string) string {
	t.Helper()
	a, err := rawGet(rawClient(t), rs.metrics, nil, nil)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for line := range strings.Lines(a.Body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

// waitLog waits until the proxy's output holds want n times in all.
func (rs *reloadStack) waitLog(t *testing.T, want string, n int) {
	t.Helper()
	rs.Proxy.waitFor(t, fmt.Sprintf("%d× %q in the log", n, want), hangTimeout, func() error {
		if got := strings.Count(rs.Proxy.out.String(), want); got < n {
			return fmt.Errorf("%d so far", got)
		}
		return nil
	})
}

// webSocket opens a WebSocket through the proxy as alice.
func (rs *reloadStack) webSocket(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", rs.Proxy.URL.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest(http.MethodGet, rs.ProxyURL("/ws"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for _, c := range rs.cookies {
		req.AddCookie(c)
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("WebSocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket handshake: %d, want 101", resp.StatusCode)
	}
	return conn, br
}

// echo sends msg through the socket and fails t unless it comes back.
func echo(t *testing.T, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(hangTimeout))
	if _, err := fmt.Fprintln(conn, msg); err != nil {
		t.Fatalf("WebSocket write %q: %v", msg, err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("WebSocket echo of %q: %q, %v", msg, got, err)
	}
}

// load is a steady stream of alice's requests from several goroutines,
// each of which must be answered 200 by the upstream as alice.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, rs *reloadStack, workers int) *load {
	l := &load{stop: make(chan struct{})}
	c := rawClient(t)
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				path := fmt.Sprintf("/load/%d/%d", w, i)
				a, err := rs.get(c, path)
				if err == nil && a.Status == http.StatusOK && strings.HasPrefix(a.Body, "user=alice ") {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.failures) < 10 {
					l.failures = append(l.failures, fmt.Sprintf("GET %s: %d %q %v", path, a.Status, a.Body, err))
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// waitServed waits until n more requests have succeeded, so that the load
// demonstrably spans what happens meanwhile.
func (l *load) waitServed(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(hangTimeout)
	for l.ok.Load() < target && l.failed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the load made no progress: %d ok", l.ok.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d requests answered, %d failed", l.ok.Load(), l.failed.Load())
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests under load failed, e.g.:\n%s", n, n+l.ok.Load(), strings.Join(l.failures, "\n"))
	}
}

// TestReloadUnderLoad sends SIGHUP to a proxy serving a steady stream of
// requests from several goroutines and an open WebSocket, with changed
// routes (a new app at /v2/), changed rules, a new identity key and a cookie secret file with a new first key:
// no request fails, the socket stays open and still echoes, the next
// request after the reload meets the new rules and carries an assertion
// signed with the new key, and the log line names what changed. Then a
// broken rules file on SIGHUP is refused: the problem is logged once, the
// error counted, and the old rules stay, still under load.
func TestReloadUnderLoad(t *testing.T) {
	oldKey, newKey := newKey(t), newKey(t)
	oldSecret := newCookieSecret(t)
	rs := startReloadStack(t, oldKey, oldSecret, map[string]string{"AUTHPROXY_RELOAD_INTERVAL": "0s"})
	c := rawClient(t)
	status := func(path string) int {
		t.Helper()
		a, err := rs.get(c, path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return a.Status
	}
	if s1, s2 := status("/before-only-denied/x"), status("/after-only-denied/x"); s1 != 403 || s2 != 200 {
		t.Fatalf("before the reload: %d, %d; want 403, 200", s1, s2)
	}
	a, _ := rs.get(c, "/kid")
	if want := "kid=" + thumbprint(t, &oldKey.PublicKey); !strings.HasSuffix(a.Body, want) {
		t.Fatalf("before the reload: %q, want %s", a.Body, want)
	}

	// A second app, routed at /v2/ only after the reload.
	v2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "v2 app: %s user=%s", r.URL.Path, r.Header.Get("X-User"))
	}))
	t.Cleanup(v2.Close)
	if a, _ := rs.get(c, "/v2/x"); !strings.HasPrefix(a.Body, "user=alice ") {
		t.Fatalf("before the reload, /v2/x: %d %q; want the first app", a.Status, a.Body)
	}

	conn, br := rs.webSocket(t)
	echo(t, conn, br, "before")
	l := startLoad(t, rs, 4)
	l.waitServed(t, 50)

	writeAtomic(t, filepath.Join(rs.dir, "routes.txt"), "* / "+rs.upstream+"\n* /v2/ "+v2.URL+" strip-prefix\n")
	writeAtomic(t, filepath.Join(rs.dir, "rules.txt"), reloadRulesNext)
	writeAtomic(t, filepath.Join(rs.dir, "identity.pem"), keyFilePEM(t, newKey))
	writeAtomic(t, filepath.Join(rs.dir, "cookie-secret"), newCookieSecret(t)+"\n"+oldSecret+"\n")
	if err := syscall.Kill(rs.Proxy.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rs.waitLog(t, `msg="configuration reloaded" trigger=SIGHUP changed="[rules cookie secrets identity keys routes]"`, 1)
	if s1, s2 := status("/before-only-denied/x"), status("/after-only-denied/x"); s1 != 200 || s2 != 403 {
		t.Errorf("the next requests after the reload: %d, %d; want 200, 403 (new rules)", s1, s2)
	}
	if a, _ := rs.get(c, "/v2/x"); a.Status != http.StatusOK || a.Body != "v2 app: /x user=alice" {
		t.Errorf("after the reload, /v2/x: %d %q; want the new route's app, prefix stripped", a.Status, a.Body)
	}
	a, _ = rs.get(c, "/kid")
	if want := "kid=" + thumbprint(t, &newKey.PublicKey); !strings.HasSuffix(a.Body, want) {
		t.Errorf("after the reload: %q, want %s", a.Body, want)
	}
	if got := rs.metric(t, `authproxy_config_reloads_total{result="ok"}`); got != "1" {
		t.Errorf(`reloads_total{result="ok"} = %q, want 1`, got)
	}
	l.waitServed(t, 50)
	echo(t, conn, br, "after the reload")

	// A broken rules file: refused whole, logged once, counted; the rules
	// in force stay.
	writeAtomic(t, filepath.Join(rs.dir, "rules.txt"), "allow * / any\npermit GET /x any\n")
	if err := syscall.Kill(rs.Proxy.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rs.waitLog(t, `msg="configuration reload refused; the running configuration stays"`, 1)
	rs.Proxy.syncLog(t)
	out := rs.Proxy.out.String()
	if n := strings.Count(out, `rules.txt:2: unknown kind \"permit\"`); n != 1 {
		t.Errorf("the broken line is in the log %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "configuration reload refused"); n != 1 {
		t.Errorf("the refusal is in the log %d times, want once", n)
	}
	if got := rs.metric(t, `authproxy_config_reloads_total{result="error"}`); got != "1" {
		t.Errorf(`reloads_total{result="error"} = %q, want 1`, got)
	}
	if s1, s2 := status("/before-only-denied/x"), status("/after-only-denied/x"); s1 != 200 || s2 != 403 {
		t.Errorf("after a refused reload: %d, %d; want 200, 403 (rules kept)", s1, s2)
	}
	l.waitServed(t, 50)
	echo(t, conn, br, "after the refused reload")
	l.finish(t)
	if strings.Contains(out, oldSecret) {
		t.Error("a cookie secret is in the log")
	}
}

// TestReloadOnFileChange: with no signal, a rules file updated the way
// Kubernetes updates a mounted ConfigMap (a new directory, then the ..data
// symlink swapped) is picked up, and the log names the change.
func TestReloadOnFileChange(t *testing.T) {
	mount := t.TempDir()
	version := func(name, rules string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(mount, name), 0o700); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, filepath.Join(mount, name, "rules.txt"), rules)
		link := filepath.Join(mount, "..data.tmp")
		if err := os.Symlink(name, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", reloadRules)
	if err := os.Symlink("..data/rules.txt", filepath.Join(mount, "rules.txt")); err != nil {
		t.Fatal(err)
	}
	rs := startReloadStack(t, newKey(t), newCookieSecret(t), map[string]string{
		"AUTHPROXY_RELOAD_INTERVAL": "200ms", "AUTHPROXY_RULES_FILE": filepath.Join(mount, "rules.txt")})
	c := rawClient(t)
	if a, err := rs.get(c, "/after-only-denied/x"); err != nil || a.Status != 200 {
		t.Fatalf("before the update: %d %v", a.Status, err)
	}
	version("..v2", reloadRulesNext)
	rs.Proxy.waitFor(t, "the updated ConfigMap in force", hangTimeout, func() error {
		if a, err := rs.get(c, "/after-only-denied/x"); err != nil || a.Status != 403 {
			return fmt.Errorf("%d %v", a.Status, err)
		}
		return nil
	})
	rs.waitLog(t, `msg="configuration reloaded" trigger="file change" changed=[rules]`, 1)
	if got := rs.metric(t, `authproxy_config_reloads_total{result="ok"}`); got != "1" {
		t.Errorf(`reloads_total{result="ok"} = %q, want 1`, got)
	}
}

// TestReloadCookieSecretsRedis rotates the cookie secret file of a proxy
// with the Redis store: after a reload that adds a first key, alice's
// ticket cookie (sealed with the old key) still opens; after one that
// removes the old key, her requests are "log in again" (401 to an API
// client), never a 500, and a new login works.
func TestReloadCookieSecretsRedis(t *testing.T) {
	redis := startRedis(t)
	oldSecret, newSecret := newCookieSecret(t), newCookieSecret(t)
	rs := startReloadStack(t, newKey(t), oldSecret, map[string]string{
		"AUTHPROXY_RELOAD_INTERVAL": "0s", "AUTHPROXY_SESSION_STORE": "redis", "AUTHPROXY_REDIS_URL": redis.URL()})
	c := rawClient(t)
	status := func() int {
		t.Helper()
		a, err := rs.get(c, "/x")
		if err != nil {
			t.Fatalf("GET /x: %v", err)
		}
		return a.Status
	}
	hup := func(n int) {
		t.Helper()
		if err := syscall.Kill(rs.Proxy.cmd.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		rs.waitLog(t, `msg="configuration reloaded" trigger=SIGHUP changed="[cookie secrets]"`, n)
	}
	if got := status(); got != 200 {
		t.Fatalf("before: %d", got)
	}
	writeAtomic(t, filepath.Join(rs.dir, "cookie-secret"), newSecret+"\n"+oldSecret+"\n")
	hup(1)
	if got := status(); got != 200 {
		t.Errorf("after adding a key: %d, want 200 (the old key still opens)", got)
	}
	writeAtomic(t, filepath.Join(rs.dir, "cookie-secret"), newSecret+"\n")
	hup(2)
	if got := status(); got != http.StatusUnauthorized {
		t.Errorf("after removing the session's key: %d, want 401 (log in again)", got)
	}
	b := newBrowser(t, rs.PKI)
	if p := b.Login(rs.ProxyURL("/again"), "alice"); p.Status != http.StatusOK || !strings.HasPrefix(p.Body, "user=alice ") {
		t.Errorf("login under the new key: %d %q", p.Status, p.Body)
	}
}
