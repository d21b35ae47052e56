package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// reloadStack is a proxy with its files in a directory of their own (also
// the working directory, for .env), a logged-in user, and the server, so a
// test can reload it.
type reloadStack struct {
	srv    *server
	base   string
	dir    string
	logs   *syncBuffer
	load   loader
	client *http.Client // alice's browser
	jar    http.CookieJar
	stop   func()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	// Write then rename, as an editor or a ConfigMap update would: a
	// reader sees the old file or the new one, never half of one.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func keyPEM(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

const rulesV1 = "allow * / any\ndeny * /secret/\n"

// startReloadStack starts a proxy whose rules, cookie secrets and identity
// keys come from files in its directory, and logs alice in. The settings
// are kv over these; with serveWith's watcher when r is set (its load is
// filled in).
func startReloadStack(t *testing.T, kv map[string]string, watch *reloads, idpOpts ...oidctest.Options) *reloadStack {
	t.Helper()
	idp, err := oidctest.Start(append(idpOpts, oidctest.Options{})[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app:"+r.Header.Get("X-User"))
	})}
	appLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go app.Serve(appLn)
	t.Cleanup(func() { app.Close() })

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	rs := &reloadStack{base: "http://" + ln.Addr().String(), logs: &syncBuffer{}}
	vars := map[string]string{
		"AUTHPROXY_ADDR": ln.Addr().String(), "AUTHPROXY_UPSTREAM": "http://" + appLn.Addr().String(),
		"AUTHPROXY_ISSUER": idp.Issuer(), "AUTHPROXY_CLIENT_ID": "authproxy-demo", "AUTHPROXY_CLIENT_SECRET": "demo-secret",
		"AUTHPROXY_REDIRECT_URL": rs.base + "/auth/callback", "AUTHPROXY_SCOPES": "openid",
		"AUTHPROXY_LOG_FORMAT": "text", "AUTHPROXY_DRAIN_DELAY": "0s", "AUTHPROXY_SHUTDOWN_TIMEOUT": "5s",
		"AUTHPROXY_RULES_FILE": "rules.txt", "AUTHPROXY_COOKIE_SECRET_FILE": "secrets/cookie",
		"AUTHPROXY_IDENTITY_JWT": "true", "AUTHPROXY_IDENTITY_KEY_FILE": "identity.pem",
		"AUTHPROXY_RELOAD_INTERVAL": "0s",
	}
	for k, v := range kv {
		vars[k] = v
	}
	lookup := envFrom(t, vars) // moves to an empty directory of its own
	rs.dir, _ = os.Getwd()
	os.Mkdir("secrets", 0o700)
	writeFile(t, "rules.txt", rulesV1)
	writeFile(t, "secrets/cookie", newSecret(t)+"\n")
	_, k := keyPEM(t)
	writeFile(t, "identity.pem", k)

	rs.load = func() (snapshot, error) { return readSettings(lookup) }
	snap, err := rs.load()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := snap.vars.parse()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := newLogger(cfg.Log, rs.logs)
	done := make(chan error, 1)
	if watch != nil {
		watch.load, watch.files = rs.load, snap.files
		go func() { done <- serveWith(ctx, cfg, ln, log, *watch) }()
	} else {
		srv, err := newServer(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		rs.srv = srv
		go func() { done <- srv.serve(ctx, cfg.Server, ln, log); srv.close() }()
	}
	var once sync.Once
	rs.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(rs.stop)
	waitStatus(t, rs.base+"/readyz", 200)
	rs.jar, _ = cookiejar.New(nil)
	rs.client = &http.Client{Jar: rs.jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if body := loginWithJar(t, rs.jar, rs.base+"/", "alice"); body != "app:alice" {
		t.Fatalf("login: %q", body)
	}
	return rs
}

// status is alice's GET of path.
func (rs *reloadStack) status(t *testing.T, path string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", rs.base+path, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := rs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (rs *reloadStack) path(name string) string { return filepath.Join(rs.dir, name) }

// metric returns the value of one series of the server's /metrics.
func (rs *reloadStack) metric(t *testing.T, series string) string {
	t.Helper()
	w := httptest.NewRecorder()
	rs.srv.metrics.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(w.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

func (rs *reloadStack) jwksKids(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get(rs.base + "/auth/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []struct{ Kid string } }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// TestReload: changed rules, cookie secrets and identity keys come into
// force at a reload, named in its log line without values; alice's session
// survives a rotation that keeps her key; a broken file is refused whole
// with each problem logged once, the old configuration stays and the error
// is counted; removing the key of her session sends her to log in again,
// never a 500.
func TestReload(t *testing.T) {
	rs := startReloadStack(t, nil, nil)
	if got := rs.status(t, "/secret/x"); got != 403 {
		t.Fatalf("before reload /secret/x: %d, want 403", got)
	}
	if got := rs.status(t, "/open/x"); got != 200 {
		t.Fatalf("before reload /open/x: %d", got)
	}
	kidsBefore := rs.jwksKids(t)
	oldSecret, _ := os.ReadFile(rs.path("secrets/cookie"))

	writeFile(t, rs.path("rules.txt"), "allow * / any\ndeny * /open/\n")
	writeFile(t, rs.path("secrets/cookie"), newSecret(t)+"\n"+string(oldSecret))
	_, k2 := keyPEM(t)
	writeFile(t, rs.path("identity.pem"), k2)
	if err := rs.srv.reload(rs.load, "test"); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := rs.status(t, "/secret/x"); got != 200 {
		t.Errorf("after reload /secret/x: %d, want 200 (new rules)", got)
	}
	if got := rs.status(t, "/open/x"); got != 403 {
		t.Errorf("after reload /open/x: %d, want 403 (new rules)", got)
	}
	if kids := rs.jwksKids(t); len(kids) != 1 || slices.Contains(kidsBefore, kids[0]) {
		t.Errorf("JWKS after reload %v, before %v: want the new key only", kids, kidsBefore)
	}
	if !strings.Contains(rs.logs.String(), `msg="configuration reloaded" trigger=test changed="[rules cookie secrets identity keys]"`) {
		t.Errorf("reload log line missing or wrong:\n%s", rs.logs.String())
	}
	if got := rs.metric(t, `authproxy_config_reloads_total{result="ok"}`); got != "1" {
		t.Errorf("reloads ok = %q, want 1", got)
	}

	// A broken rules file and a broken key file: refused as a whole.
	writeFile(t, rs.path("rules.txt"), "allow * / any\npermit GET /x any\nallow * /y nonsense:1\n")
	writeFile(t, rs.path("identity.pem"), "not a key\n")
	before := len(rs.logs.String())
	if err := rs.srv.reload(rs.load, "test"); err == nil {
		t.Fatal("reload with broken files succeeded")
	}
	logged := rs.logs.String()[before:]
	if n := strings.Count(logged, "configuration reload refused"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, logged)
	}
	for _, problem := range []string{"rules.txt:2", "rules.txt:3", "AUTHPROXY_IDENTITY_KEY_FILE"} {
		if n := strings.Count(logged, problem); n != 1 {
			t.Errorf("problem %q logged %d times, want once:\n%s", problem, n, logged)
		}
	}
	if got := rs.status(t, "/secret/x"); got != 200 {
		t.Errorf("after a refused reload /secret/x: %d, want 200 (rules kept)", got)
	}
	if got := rs.status(t, "/open/x"); got != 403 {
		t.Errorf("after a refused reload /open/x: %d, want 403 (rules kept)", got)
	}
	if got := rs.metric(t, `authproxy_config_reloads_total{result="error"}`); got != "1" {
		t.Errorf("reloads error = %q, want 1", got)
	}
	if got := rs.metric(t, `authproxy_config_reloads_total{result="ok"}`); got != "1" {
		t.Errorf("reloads ok after a refusal = %q, want still 1", got)
	}

	// Retire the key alice's session was sealed with: she logs in again.
	writeFile(t, rs.path("rules.txt"), rulesV1)
	writeFile(t, rs.path("identity.pem"), k2)
	writeFile(t, rs.path("secrets/cookie"), newSecret(t))
	if err := rs.srv.reload(rs.load, "test"); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := rs.status(t, "/open/x"); got != http.StatusFound {
		t.Errorf("session under a removed key: %d, want 302 to the login", got)
	}
	if body := loginWithJar(t, rs.jar, rs.base+"/", "alice"); body != "app:alice" {
		t.Errorf("login after the key change: %q", body)
	}
}

// TestReloadRestartOnly: a .env that changes settings a reload cannot apply
// gets a warning naming them; their running values stay and the other
// changes still apply.
func TestReloadRestartOnly(t *testing.T) {
	rs := startReloadStack(t, nil, nil)
	writeFile(t, rs.path(".env"), "AUTHPROXY_USER_CLAIM=email\nAUTHPROXY_METRICS_ADDR=127.0.0.1:1\nAUTHPROXY_EMAIL_HEADER=X-Email\n")
	if err := rs.srv.reload(rs.load, "test"); err != nil {
		t.Fatalf("reload: %v", err)
	}
	logs := rs.logs.String()
	if !strings.Contains(logs, `settings="[AUTHPROXY_USER_CLAIM AUTHPROXY_METRICS_ADDR]"`) {
		t.Errorf("no warning naming the restart-only settings:\n%s", logs)
	}
	if !strings.Contains(logs, `changed=[headers]`) {
		t.Errorf("the reloadable change was not applied:\n%s", logs)
	}
	if e := rs.srv.running.vars; e.UserClaim != "sub" || e.MetricsAddr != "" || e.EmailHeader != "X-Email" {
		t.Errorf("running settings: user claim %q, metrics %q, email header %q", e.UserClaim, e.MetricsAddr, e.EmailHeader)
	}
	if got := rs.status(t, "/x"); got != 200 {
		t.Errorf("after reload: %d", got)
	}
}

// TestReloadKeepsNewClaims: rules that a reload brings in and that read a
// claim the old rules did not make logins from then on keep that claim;
// a session from before lacks it until its next login.
func TestReloadKeepsNewClaims(t *testing.T) {
	rs := startReloadStack(t, nil, nil, oidctest.Options{Claims: func(string) map[string]any {
		return map[string]any{"groups": []string{"admins"}}
	}})
	writeFile(t, rs.path("rules.txt"), "allow * / any\nallow * /admin/ group:admins\n")
	if err := rs.srv.reload(rs.load, "test"); err != nil {
		t.Fatal(err)
	}
	if got := rs.status(t, "/admin/x"); got != 403 {
		t.Errorf("session from before the reload on /admin/: %d, want 403 (no groups kept)", got)
	}
	rs.jar, _ = cookiejar.New(nil)
	rs.client.Jar = rs.jar
	if body := loginWithJar(t, rs.jar, rs.base+"/", "alice"); body != "app:alice" {
		t.Fatalf("login: %q", body)
	}
	if got := rs.status(t, "/admin/x"); got != 200 {
		t.Errorf("login after the reload on /admin/: %d, want 200 (groups kept)", got)
	}
}

// TestReloadWatch: with the watcher on, a changed file reloads without a
// signal, SIGHUP reloads, and a reload during shutdown never happens.
func TestReloadWatch(t *testing.T) {
	hup := make(chan os.Signal, 1)
	rs := startReloadStack(t, map[string]string{"AUTHPROXY_RELOAD_INTERVAL": "20ms"}, &reloads{hup: hup})
	writeFile(t, rs.path("rules.txt"), "allow * / any\ndeny * /open/\n")
	waitFor(t, "the changed rules file in force", func() bool { return rs.status(t, "/open/x") == 403 })
	if !strings.Contains(rs.logs.String(), `msg="configuration reloaded" trigger="file change" changed=[rules]`) {
		t.Errorf("no reload line for the file change:\n%s", rs.logs.String())
	}
	// Content, not identity: the same bytes in a new file are no change.
	writeFile(t, rs.path("rules.txt"), "allow * / any\ndeny * /open/\n")
	hup <- syscall.SIGHUP
	waitFor(t, "the SIGHUP reload", func() bool {
		return strings.Contains(rs.logs.String(), `msg="configuration reloaded" trigger=SIGHUP changed=[]`)
	})
	if n := strings.Count(rs.logs.String(), "configuration reloaded"); n != 2 {
		t.Errorf("%d reloads, want 2:\n%s", n, rs.logs.String())
	}
	// SIGHUPs while shutting down: serve returns cleanly (stop checks).
	hup <- syscall.SIGHUP
	rs.stop()
}

// TestReloadSerialized: reloads from several goroutines, and a shutdown
// among them, neither overlap nor outlive the server (the race detector
// watches); a reload after shutdown began is refused.
func TestReloadSerialized(t *testing.T) {
	rs := startReloadStack(t, nil, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				_ = rs.srv.reload(rs.load, "test")
			}
		})
	}
	wg.Go(rs.stop)
	wg.Wait()
	if err := rs.srv.reload(rs.load, "test"); err == nil {
		t.Error("reload after shutdown succeeded")
	}
	ok := regexp.MustCompile(`msg="configuration reloaded"`).FindAllString(rs.logs.String(), -1)
	if len(ok) > 20 {
		t.Errorf("%d reloads logged, at most 20 ran", len(ok))
	}
}

// TestCheckConfig: check-config lists every problem of the environment and
// of each file and fails, or says OK with a summary, without starting
// anything.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.txt")
	os.WriteFile(rules, []byte("allow * / any\npermit GET /x any\n"), 0o600)
	badKey := filepath.Join(dir, "key.pem")
	os.WriteFile(badKey, []byte("garbage"), 0o600)
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("dG9vLXNob3J0\n"), 0o600)
	bad := map[string]string{
		"AUTHPROXY_UPSTREAM": "ftp://x", "AUTHPROXY_ISSUER": "https://idp.example/",
		"AUTHPROXY_CLIENT_ID": "c", "AUTHPROXY_CLIENT_SECRET": "s",
		"AUTHPROXY_RULES_FILE": rules, "AUTHPROXY_IDENTITY_JWT": "true", "AUTHPROXY_IDENTITY_KEY_FILE": badKey,
		"AUTHPROXY_COOKIE_SECRET": newSecret(t), "AUTHPROXY_COOKIE_SECRET_FILE": secretFile,
		"AUTHPROXY_RELOAD_INTERVAL": "often",
	}
	var out strings.Builder
	err := run(t.Context(), []string{"check-config"}, envFrom(t, bad), &out, &out)
	if err == nil {
		t.Fatal("check-config accepted a broken configuration")
	}
	for _, want := range []string{"AUTHPROXY_UPSTREAM", "rules.txt:2", "AUTHPROXY_IDENTITY_KEY_FILE", "not both",
		"AUTHPROXY_COOKIE_SECRET_FILE " + secretFile + " entry 1", "AUTHPROXY_RELOAD_INTERVAL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check-config error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "dG9vLXNob3J0") {
		t.Error("check-config printed a secret")
	}

	os.WriteFile(rules, []byte("allow * / any\ndeny * /x/\n"), 0o600)
	_, k := keyPEM(t)
	os.WriteFile(badKey, []byte(k), 0o600)
	os.WriteFile(secretFile, []byte(newSecret(t)+"\n"+newSecret(t)+"\n"), 0o600)
	good := bad
	good["AUTHPROXY_UPSTREAM"], good["AUTHPROXY_RELOAD_INTERVAL"] = "http://127.0.0.1:8080", "30s"
	delete(good, "AUTHPROXY_COOKIE_SECRET")
	out.Reset()
	if err := run(t.Context(), []string{"check-config"}, envFrom(t, good), &out, &out); err != nil {
		t.Fatalf("check-config: %v", err)
	}
	for _, want := range []string{"configuration OK", "2 from " + rules, "2 from " + secretFile, "1 keys from " + badKey, "every 30s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestCookieSecretFile: the file takes the variable's format, one key per
// line or comma-separated; an empty file, a bad entry, or both settings at
// once are problems that never show the value.
func TestCookieSecretFile(t *testing.T) {
	a, b := newSecret(t), newSecret(t)
	for _, tt := range []struct {
		name, content, env string
		keys               int
		problem            string
	}{
		{"one line", a + "\n", "", 1, ""},
		{"lines", a + "\n" + b + "\n", "", 2, ""},
		{"commas", a + ", " + b, "", 2, ""},
		{"empty", "\n", "", 0, "holds no secret"},
		{"bad entry", a + "\nbm9wZQ==\n", "", 0, "entry 2"},
		{"both set", a, b, 0, "not both"},
		{"CRLF and tabs", "\t" + a + "\r\n" + b + "\r\n", "", 2, ""},
		{"only white space", " \r\n\t\n", "", 0, "holds no secret"},
		{"empty entry between commas", a + ",,", "", 1, ""},
		{"48 bytes", base64.StdEncoding.EncodeToString(make([]byte, 48)), "", 0, "decodes to 48 bytes"},
		{"not base64", "p@ssw0rd!", "", 0, "is not base64"},
		{"a directory", "<dir>", "", 0, "AUTHPROXY_COOKIE_SECRET_FILE"},
		{"missing", "<missing>", "", 0, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "secret")
			switch tt.content {
			case "<dir>":
				os.Mkdir(f, 0o700)
			case "<missing>":
			default:
				os.WriteFile(f, []byte(tt.content), 0o600)
			}
			e := defaultEnv()
			e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:1", "https://idp.example/", "c", "s"
			e.CookieSecretFile, e.CookieSecret = f, tt.env
			cfg, err := e.parse()
			if tt.problem == "" {
				if err != nil || len(cfg.Cookie.Secrets) != tt.keys {
					t.Errorf("%d keys, %v; want %d", len(cfg.Cookie.Secrets), err, tt.keys)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("error %v, want %q", err, tt.problem)
			}
			if err != nil && (strings.Contains(err.Error(), a) || strings.Contains(err.Error(), "bm9wZQ") || strings.Contains(err.Error(), "p@ss")) {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

// waitFor polls cond; the deadline only bounds a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadKeepsConfiguredKeys: a reload whose settings lost the cookie
// keys (a deleted .env, say) is refused; it must not log everyone out by
// switching to a random key.
func TestReloadKeepsConfiguredKeys(t *testing.T) {
	rs := startReloadStack(t, nil, nil)
	lost := func() (snapshot, error) {
		snap, err := rs.load()
		snap.vars.CookieSecretFile = ""
		return snap, err
	}
	err := rs.srv.reload(lost, "test")
	if err == nil || !strings.Contains(err.Error(), "no longer set") {
		t.Fatalf("reload without the configured keys: err = %v, want a refusal", err)
	}
	if err := rs.srv.reload(rs.load, "test"); err != nil {
		t.Fatalf("reload with the keys back: %v", err)
	}
}
