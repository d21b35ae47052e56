package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/proxy/route"
)

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const cmdRoutes = `app.example.com    /       http://127.0.0.1:8080
app.example.com    /api/   http://127.0.0.1:9000   strip-prefix timeout=5s max-conns=3
wiki.example.com   /       http://127.0.0.1:8081   pass-host
*.apps.example.com /       http://127.0.0.1:8082
`

// routesEnv is a valid configuration with the routes file and one login
// for every host under .example.com.
func routesEnv(routes string) map[string]string {
	return map[string]string{
		"AUTHPROXY_ROUTES_FILE": routes, "AUTHPROXY_ISSUER": "https://idp.example/", "AUTHPROXY_CLIENT_ID": "c",
		"AUTHPROXY_CLIENT_SECRET": "s", "AUTHPROXY_REDIRECT_URL": "https://auth.example.com/auth/callback",
		"AUTHPROXY_COOKIE_DOMAIN": ".example.com",
	}
}

func TestRoutesConfig(t *testing.T) {
	routes := writeTemp(t, "routes.txt", cmdRoutes)
	cfg, err := loadConfig(envFrom(t, routesEnv(routes)))
	if err != nil {
		t.Fatal(err)
	}
	rs := cfg.Proxy.Routes.Routes()
	if len(rs) != 4 {
		t.Fatalf("%d routes", len(rs))
	}
	// Each route its own transport: the settings, with the route's options.
	for _, tt := range []struct {
		i        int
		maxConns int
		timeout  time.Duration
	}{{0, 0, 60 * time.Second}, {1, 3, 5 * time.Second}, {2, 0, 60 * time.Second}} {
		tr, ok := cfg.Proxy.Transport(rs[tt.i]).(*http.Transport)
		if !ok || tr.MaxConnsPerHost != tt.maxConns || tr.ResponseHeaderTimeout != tt.timeout || tr.MaxIdleConnsPerHost != 128 {
			t.Errorf("route %d: transport %+v", tt.i, tr)
		}
	}
	if cfg.Proxy.Transport(rs[0]) == cfg.Proxy.Transport(rs[2]) {
		t.Error("two routes share a transport")
	}
	r := cfg.OIDC.Returns
	if r.Scheme != "https" || r.Port != "" || !slices.Equal(r.Hosts, []string{"app.example.com", "wiki.example.com"}) ||
		!slices.Equal(r.Suffixes, []string{".apps.example.com"}) {
		t.Errorf("returns: %+v", r)
	}
	// Certificates and https redirects for the exact names only.
	if got, want := cfg.TLS.Hosts, []string{"auth.example.com", "app.example.com", "wiki.example.com"}; !slices.Equal(got, want) {
		t.Errorf("TLS hosts %q, want %q", got, want)
	}
	if cfg.Cookie.Domain != ".example.com" || cfg.Cookie.Name != "_authproxy" {
		t.Errorf("cookie %q %q", cfg.Cookie.Domain, cfg.Cookie.Name)
	}

	// AUTHPROXY_UPSTREAM is * / URL, with AUTHPROXY_PASS_HOST_HEADER.
	single := routesEnv("")
	delete(single, "AUTHPROXY_ROUTES_FILE")
	single["AUTHPROXY_UPSTREAM"], single["AUTHPROXY_PASS_HOST_HEADER"] = "http://127.0.0.1:8080", "true"
	cfg, err = loadConfig(envFrom(t, single))
	if err != nil {
		t.Fatal(err)
	}
	if rs := cfg.Proxy.Routes.Routes(); len(rs) != 1 || rs[0].Host != route.Any || rs[0].Path != "/" ||
		rs[0].Upstream.String() != "http://127.0.0.1:8080" || !rs[0].PassHost {
		t.Errorf("AUTHPROXY_UPSTREAM: %v", cfg.Proxy.Routes)
	}
	if len(cfg.OIDC.Returns.Hosts) != 0 || len(cfg.OIDC.Returns.Suffixes) != 0 {
		t.Errorf("AUTHPROXY_UPSTREAM gives return hosts: %+v", cfg.OIDC.Returns)
	}
}

func TestRoutesConfigProblems(t *testing.T) {
	routes := writeTemp(t, "routes.txt", cmdRoutes)
	bad := writeTemp(t, "bad.txt", "* / ftp://x\napp.example.com / http://a preserve-host\n")
	outside := writeTemp(t, "outside.txt", "app.example.com / http://a\nwiki.other.org / http://b\n*.other.org / http://c\n")
	rules := writeTemp(t, "rules.txt", "allow * ci.example.com/ any\nallow * wiki.example.com/ any\n")
	for _, tt := range []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"both", map[string]string{"AUTHPROXY_UPSTREAM": "http://127.0.0.1:1"}, []string{"set AUTHPROXY_UPSTREAM or AUTHPROXY_ROUTES_FILE, not both"}},
		{"neither", map[string]string{"AUTHPROXY_ROUTES_FILE": ""}, []string{"AUTHPROXY_UPSTREAM (the app to protect, e.g. http://127.0.0.1:8080) or AUTHPROXY_ROUTES_FILE is required"}},
		{"pass-host setting with a routes file", map[string]string{"AUTHPROXY_PASS_HOST_HEADER": "true"}, []string{"give the routes the pass-host option"}},
		{"every problem of the file", map[string]string{"AUTHPROXY_ROUTES_FILE": bad}, []string{bad + ":1: upstream", bad + `:2: unknown option "preserve-host": write pass-host`}},
		{"missing file", map[string]string{"AUTHPROXY_ROUTES_FILE": "/nonexistent/routes.txt"}, []string{"/nonexistent/routes.txt"}},
		{"hosts outside the cookie domain", map[string]string{"AUTHPROXY_ROUTES_FILE": outside}, []string{
			"route host wiki.other.org is not inside AUTHPROXY_COOKIE_DOMAIN", "route host *.other.org is not inside"}},
		{"no cookie domain", map[string]string{"AUTHPROXY_COOKIE_DOMAIN": ""}, []string{"route host app.example.com is not inside AUTHPROXY_COOKIE_DOMAIN"}},
		{"rules for an unrouted host", map[string]string{"AUTHPROXY_RULES_FILE": rules}, []string{"rules for host ci.example.com, which no route serves"}},
		{"identity audience", map[string]string{"AUTHPROXY_IDENTITY_JWT": "true"}, []string{"needs AUTHPROXY_IDENTITY_AUDIENCE"}},
		{"bad setting reported once", map[string]string{"AUTHPROXY_UPSTREAM_TIMEOUT": "soon"}, []string{`AUTHPROXY_UPSTREAM_TIMEOUT "soon"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kv := routesEnv(routes)
			for k, v := range tt.set {
				kv[k] = v
			}
			_, err := loadConfig(envFrom(t, kv))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if strings.Count(err.Error(), w) != 1 {
					t.Errorf("error mentions %q %d times:\n%v", w, strings.Count(err.Error(), w), err)
				}
			}
		})
	}
	// The callback's own host needs no cookie domain; rules for a host
	// that the routes serve (or a * route that tells the upstream the host:
	// see TestRoutesRefuseUpstreamAliases) are fine.
	kv := routesEnv(writeTemp(t, "r.txt", "auth.example.com / http://a\n* / http://b pass-host\n"))
	kv["AUTHPROXY_COOKIE_DOMAIN"], kv["AUTHPROXY_RULES_FILE"] = "", rules
	if _, err := loadConfig(envFrom(t, kv)); err != nil {
		t.Errorf("callback host routed, no cookie domain: %v", err)
	}
}

// TestReloadRoutes: a changed routes file comes into force at a reload
// (named "routes" in its log line); a broken one is refused whole, the
// running routes stay.
func TestReloadRoutes(t *testing.T) {
	upstream := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Path", r.URL.Path)
			io.WriteString(w, name+":"+r.Header.Get("X-User"))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	app, other := upstream("app"), upstream("other")
	routes := writeTemp(t, "routes.txt", "* / "+app+"\n")
	rs := startReloadStack(t, map[string]string{"AUTHPROXY_UPSTREAM": "", "AUTHPROXY_ROUTES_FILE": routes, "AUTHPROXY_IDENTITY_AUDIENCE": "apps"}, nil)
	get := func(path string) string {
		t.Helper()
		resp, err := rs.client.Get(rs.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) + ":" + resp.Header.Get("X-Path")
	}
	if got := get("/b/x"); got != "app:alice:/b/x" {
		t.Fatalf("before reload: %q", got)
	}
	writeFile(t, routes, "* / "+app+"\n* /b/ "+other+" strip-prefix\n")
	if err := rs.srv.reload(rs.load, "test"); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := get("/b/x"); got != "other:alice:/x" {
		t.Errorf("after reload: %q, want the new route", got)
	}
	if !strings.Contains(rs.logs.String(), `changed=[routes]`) {
		t.Errorf("reload log line does not name the routes:\n%s", rs.logs.String())
	}
	writeFile(t, routes, "* / "+app+"\n* /c/ "+other+" preserve-host\n")
	if err := rs.srv.reload(rs.load, "test"); err == nil || !strings.Contains(err.Error(), routes+":2:") {
		t.Fatalf("reload of a broken routes file: %v", err)
	}
	if got := get("/b/x"); got != "other:alice:/x" {
		t.Errorf("after a refused reload: %q, want the running routes", got)
	}
}
