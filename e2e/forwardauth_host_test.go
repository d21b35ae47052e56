package e2e

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestNginxForwardAuthJudgesItsOwnHost runs the shipped nginx example in
// front of one app, with authproxy (trusting nginx) routing that app's host
// and, as a catch-all, every other host, and rules that close the app's
// /admin/ (a rule scoped to its host) while the rest is public. nginx hands
// a request whose Host matches no server_name to its default server, which
// the example's is when it is the only one: were the check to name the
// client's Host, authproxy would judge the app's /admin/ by another host's
// rules and let it through. Every spelling of the Host must get the app's
// own verdict.
func TestNginxForwardAuthJudgesItsOwnHost(t *testing.T) {
	requireE2E(t)
	requireNginx(t)
	p := newPKI(t)
	app := newRecorder(t)
	port := freePort(t)
	const serverName = "app.example.com" // the example's server_name
	client := providerClient{
		ClientID:                "e2e-nginx-own-host",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            []string{"https://" + serverName + "/auth/callback"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	prov := startProvider(t, p, providerConfig{Clients: []providerClient{client}})
	// The upstreams are unused (nginx proxies to the app itself); the *
	// route's is another, as a host-scoped rule requires.
	routes := writeTestFile(t, "routes.txt", fmt.Sprintf("%s / %s\n* / http://127.0.0.1:9\n", serverName, app.URL))
	rules := writeTestFile(t, "rules.txt", "deny * "+serverName+"/admin/\npublic * /\n")
	ap := startProxy(t, p, proxyConfig{
		Issuer:        prov.Issuer,
		ClientID:      client.ClientID,
		ClientSecret:  client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: "/",
		Env: map[string]string{
			"AUTHPROXY_UPSTREAM":        "",
			"AUTHPROXY_ROUTES_FILE":     routes,
			"AUTHPROXY_RULES_FILE":      rules,
			"AUTHPROXY_REDIRECT_URL":    "https://" + serverName + "/auth/callback",
			"AUTHPROXY_COOKIE_DOMAIN":   ".example.com",
			"AUTHPROXY_TRUSTED_PROXIES": "127.0.0.1/32",
		},
	})
	ngx := startNginx(t, p, nginxConfig{Port: port, AuthProxy: ap.URL.Host, App: app.URL.Host, CertFile: p.CertFile, KeyFile: p.KeyFile})
	c := rawClient(t)
	c.Transport.(*http.Transport).TLSClientConfig = p.TLSConfig()

	get := func(host, path string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, ngx.URL.String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header = apiHeaders()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s on %s: %v", path, host, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// The public part of the app passes on its own name.
	if got := get(serverName, "/hello"); got != http.StatusOK {
		t.Fatalf("GET /hello on %s: status %d, want 200", serverName, got)
	}
	for i, host := range []string{
		serverName,
		"APP.example.com",
		serverName + ".",
		serverName + ":443",
		"other.example.com", // routed by * at authproxy, unknown to nginx
		"127.0.0.1",
		"[::1]",
		"x.example.com:8443",
		"localhost",
	} {
		path := fmt.Sprintf("/admin/%d", i)
		got := get(host, path)
		if got == http.StatusOK || len(app.ByPath(path)) != 0 {
			t.Errorf("GET %s with Host %q: status %d, app saw %d requests; want it refused as %s's /admin/",
				path, host, got, len(app.ByPath(path)), serverName)
		}
	}
}
