package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// pebble is Let's Encrypt's test ACME server, with pebble-challtestsrv as
// its DNS server answering every name with 127.0.0.1. It validates
// challenges for real, on the ports its configuration names.
type pebble struct {
	*process
	Directory string // https://127.0.0.1:PORT/dir
	mgmt      string // https://127.0.0.1:PORT, the management API
	client    *http.Client
}

// startPebble starts Pebble serving its API with ca's certificate, and
// validating HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort of whatever
// the names resolve to (127.0.0.1).
func startPebble(t *testing.T, ca *pki, httpPort, tlsPort int) *pebble {
	t.Helper()
	requireE2E(t)
	pebbleBin, ctsBin := requireTool(t, "pebble"), requireTool(t, "pebble-challtestsrv")

	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctsMgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cts := startProcess(t, "pebble-challtestsrv", exec.Command(ctsBin,
		"-dnsserver", dnsAddr, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-management", ctsMgmt, "-doh", "", "-http01", "", "-https01", "", "-tlsalpn01", ""))
	// Its management server starts after the DNS server.
	cts.waitFor(t, "pebble-challtestsrv's management listener", hangTimeout, func() error {
		c, err := net.Dial("tcp", ctsMgmt)
		if err == nil {
			c.Close()
		}
		return err
	})

	listen, mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": ca.CertFile, "privateKey": ca.KeyFile,
		"httpPort": httpPort, "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter":   map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm": "ecdsa",
		"profiles":     map[string]any{"default": map[string]any{"description": "e2e", "validityPeriod": 7776000}},
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := writeTestFile(t, "pebble.json", string(data))
	cmd := exec.Command(pebbleBin, "-config", cfgFile, "-dnsserver", dnsAddr)
	// No PEBBLE_VA_ALWAYS_VALID: every challenge is validated for real.
	// No sleeps before validation, no random bad nonces, no reuse of
	// valid authorizations (each order proves its challenge).
	cmd.Env = append(pebbleFreeEnv(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	pb := &pebble{process: startProcess(t, "pebble", cmd), Directory: "https://" + listen + "/dir", mgmt: "https://" + mgmt,
		client: &http.Client{Timeout: hangTimeout, Transport: &http.Transport{TLSClientConfig: ca.TLSConfig()}}}
	t.Cleanup(pb.client.CloseIdleConnections)
	pb.waitFor(t, "Pebble's directory", hangTimeout, func() error {
		resp, err := pb.client.Get(pb.Directory)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", pb.Directory, resp.Status)
		}
		return nil
	})
	return pb
}

// pebbleFreeEnv is the suite's environment without PEBBLE_* variables,
// which change how Pebble validates.
func pebbleFreeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Root returns the root Pebble issues under (made at each start), from its
// management API.
func (pb *pebble) Root(t *testing.T) *x509.Certificate {
	t.Helper()
	resp, err := pb.client.Get(pb.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("Pebble root: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	block, _ := pem.Decode(data)
	if resp.StatusCode != http.StatusOK || block == nil {
		t.Fatalf("Pebble root: %s %q", resp.Status, data)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("Pebble root: %v", err)
	}
	return root
}

// Orders counts the orders Pebble has taken.
func (pb *pebble) Orders() int { return strings.Count(pb.out.String(), "Added order") }

// acmeSite is a proxy that gets its certificate from Pebble for the name
// host, resolved to 127.0.0.1 by its clients, with a provider and an app.
type acmeSite struct {
	host              string // app.test
	tlsPort, httpPort int
	pki               *pki // the provider's certificate
	pebble            *pebble
	pebbleCA          string // PEM roots of Pebble's API, for AUTHPROXY_ACME_CA_FILE
	provider          *provider
	client            providerClient
	upstream          *recorder
	cookieSecret      string
	roots             *x509.CertPool // the suite's CA and Pebble's issuing root
}

// newACMESite starts the provider and app; pebbleHTTP and pebbleTLS are
// the ports Pebble validates on, the proxy's or closed ones.
func newACMESite(t *testing.T, host string, pebbleHTTP, pebbleTLS func(site *acmeSite) int) *acmeSite {
	t.Helper()
	requireE2E(t)
	s := &acmeSite{host: host, tlsPort: freePort(t), httpPort: freePort(t), pki: newPKI(t), upstream: newRecorder(t),
		cookieSecret: newCookieSecret(t)}
	pebblePKI := newPKI(t) // Pebble's API: trusted through AUTHPROXY_ACME_CA_FILE only
	s.pebbleCA = pebblePKI.CAFile
	s.pebble = startPebble(t, pebblePKI, pebbleHTTP(s), pebbleTLS(s))
	s.roots = s.pki.Pool.Clone()
	s.roots.AddCert(s.pebble.Root(t))
	s.client = providerClient{ClientID: "e2e-acme", ClientSecret: newCookieSecret(t),
		RedirectURIs: []string{s.origin() + "/auth/callback"}, TokenEndpointAuthMethod: "client_secret_basic"}
	s.provider = startProvider(t, s.pki, providerConfig{Clients: []providerClient{s.client}})
	return s
}

func (s *acmeSite) origin() string { return fmt.Sprintf("https://%s:%d", s.host, s.tlsPort) }

// startProxy starts authproxy with ACME and cacheDir and waits until
// /readyz answers over HTTPS, which takes the certificate.
func (s *acmeSite) startProxy(t *testing.T, cacheDir string) *process {
	t.Helper()
	env := []string{
		"AUTHPROXY_ADDR=" + fmt.Sprintf("127.0.0.1:%d", s.tlsPort),
		"AUTHPROXY_HTTP_ADDR=" + fmt.Sprintf("127.0.0.1:%d", s.httpPort),
		"AUTHPROXY_ACME=true",
		"AUTHPROXY_ACME_EMAIL=ops@example.com",
		"AUTHPROXY_ACME_DIRECTORY=" + s.pebble.Directory,
		"AUTHPROXY_ACME_CACHE_DIR=" + cacheDir,
		"AUTHPROXY_ACME_CA_FILE=" + s.pebbleCA,
		"AUTHPROXY_UPSTREAM=" + s.upstream.URL.String(),
		"AUTHPROXY_ISSUER=" + s.provider.Issuer,
		"AUTHPROXY_CLIENT_ID=" + s.client.ClientID,
		"AUTHPROXY_CLIENT_SECRET=" + s.client.ClientSecret,
		"AUTHPROXY_REDIRECT_URL=" + s.origin() + "/auth/callback",
		"AUTHPROXY_COOKIE_SECRET=" + s.cookieSecret,
		"AUTHPROXY_LOG_FORMAT=text",
		"AUTHPROXY_LOG_LEVEL=debug",
		"AUTHPROXY_DRAIN_DELAY=0s",
		"AUTHPROXY_SHUTDOWN_TIMEOUT=5s",
		// The provider's certificate, as startProxy does; Pebble's API
		// is not under this CA.
		"SSL_CERT_FILE=" + s.pki.CAFile,
	}
	sort.Strings(env)
	cmd := exec.Command(suite.bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(inheritedEnv(), env...)
	proc := startProcess(t, "authproxy", cmd)
	c := s.httpClient(nil)
	proc.waitFor(t, "200 from GET /readyz over HTTPS", proxyReadyTimeout, func() error {
		req, _ := http.NewRequest(http.MethodGet, s.origin()+"/readyz", nil)
		req.Header.Set("X-Request-Id", readinessProbeID+"acme")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		return nil
	})
	return proc
}

// httpClient trusts the suite's CA and Pebble's root, speaks HTTP/2 where
// offered and resolves *.test to 127.0.0.1. It follows no redirects.
func (s *acmeSite) httpClient(jar http.CookieJar) *http.Client {
	var d net.Dialer
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, ".test") {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Jar: jar, Timeout: hangTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// loginOverHTTP2 logs user in through the proxy at its ACME host name and
// then fetches a page with the session: it must come from the upstream,
// over HTTP/2, on a certificate for the name that chains to Pebble's root.
// It returns the certificate's serial number.
func (s *acmeSite) loginOverHTTP2(t *testing.T, user string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t, Jar: jar, client: s.httpClient(jar), setCookie: map[string]map[string]bool{}}
	if p := b.Login(s.origin()+"/start", user); p.Status != http.StatusOK || !strings.Contains(p.Body, ">"+user+"<") {
		t.Fatalf("login: landed on %d %s:\n%s\nhops:\n%s", p.Status, p.URL, p.Body, b.HopsString())
	}
	req, _ := http.NewRequest(http.MethodGet, s.origin()+"/page-over-h2", nil)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("GET over HTTPS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" || !strings.Contains(string(body), ">"+user+"<") {
		t.Fatalf("GET /page-over-h2: %d %s, want 200 HTTP/2.0 from the upstream:\n%s", resp.StatusCode, resp.Proto, body)
	}
	if got := s.upstream.ByPath("/page-over-h2"); len(got) == 0 || got[len(got)-1].Header.Get("X-User") != user ||
		got[len(got)-1].Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("upstream saw %+v, want X-User %s and X-Forwarded-Proto https", got, user)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname(s.host); err != nil {
		t.Errorf("certificate: %v", err)
	}
	return leaf.SerialNumber.String()
}

// closedPort is a port nothing listens on: Pebble's validation there
// fails, as when a firewall lets the CA reach only one of the proxy's
// ports.
func closedPort(t *testing.T) int { return freePort(t) }

// TestACMETLSALPN01: the proxy gets a certificate from Pebble by
// TLS-ALPN-01 on its HTTPS port (Pebble's HTTP-01 port is closed), serves a
// logged-in user's page over HTTP/2 with it, and after a restart with the
// same cache directory serves the same certificate without a new order.
func TestACMETLSALPN01(t *testing.T) {
	requireE2E(t)
	s := newACMESite(t, "app.test", func(*acmeSite) int { return closedPort(t) }, func(s *acmeSite) int { return s.tlsPort })
	cache := filepath.Join(t.TempDir(), "acme")
	proxy := s.startProxy(t, cache)
	serial := s.loginOverHTTP2(t, "alice")
	if n := s.pebble.Orders(); n != 1 {
		t.Errorf("Pebble took %d orders, want 1 (TLS-ALPN-01 is tried first and works)", n)
	}
	if !strings.Contains(proxy.out.String(), "ACME certificate issued and cached") {
		t.Errorf("the proxy did not log the new certificate:\n%s", proxy.out)
	}
	if err := proxy.stop(stopTimeout); err != nil {
		t.Fatalf("authproxy: want exit status 0 after SIGTERM, got %v", err)
	}

	orders := s.pebble.Orders()
	again := s.startProxy(t, cache)
	if got := s.loginOverHTTP2(t, "bob"); got != serial {
		t.Errorf("after the restart: certificate serial %s, want the cached %s", got, serial)
	}
	if n := s.pebble.Orders(); n != orders {
		t.Errorf("after the restart Pebble took %d orders, want none (the cached certificate)", n-orders)
	}
	if out := again.out.String(); !strings.Contains(out, "ACME certificate read from the cache") || strings.Contains(out, "ACME certificate issued") {
		t.Errorf("after the restart the proxy did not log reading the cached certificate, or logged a new one:\n%s", out)
	}
}

// TestACMEHTTP01: with Pebble's TLS-ALPN-01 port closed, the proxy falls
// back to HTTP-01 on AUTHPROXY_HTTP_ADDR in a new order, gets its
// certificate and serves over HTTP/2; that listener redirects other
// requests for its host to https and refuses other hosts.
func TestACMEHTTP01(t *testing.T) {
	requireE2E(t)
	s := newACMESite(t, "wiki.test", func(s *acmeSite) int { return s.httpPort }, func(*acmeSite) int { return closedPort(t) })
	s.startProxy(t, filepath.Join(t.TempDir(), "acme"))
	s.loginOverHTTP2(t, "carol")
	out := s.pebble.out.String()
	if !strings.Contains(out, fmt.Sprintf("Attempting to validate w/ HTTP: http://%s:%d/.well-known/acme-challenge/", s.host, s.httpPort)) {
		t.Errorf("Pebble never validated HTTP-01 on the proxy's HTTP port:\n%s", out)
	}

	c := s.httpClient(nil)
	for _, tt := range []struct {
		host         string
		path         string
		wantStatus   int
		wantLocation string
	}{
		{s.host, "/some/page?x=1", http.StatusMovedPermanently, s.origin() + "/some/page?x=1"},
		{"evil.test", "/some/page", http.StatusNotFound, ""},
		{s.host + ".evil.test", "/", http.StatusNotFound, ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d%s", tt.host, s.httpPort, tt.path), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET http://%s%s: %v", tt.host, tt.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
			t.Errorf("GET http://%s%s: %d Location %q, want %d %q", tt.host, tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
		}
	}
}
