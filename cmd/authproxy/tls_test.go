package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// serverCA issues server certificates for the TLS tests.
type serverCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newServerCA(t testing.TB) *serverCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "authproxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &serverCA{cert: cert, key: key, pool: pool}
}

// issue returns PEM certificate and key for 127.0.0.1 and localhost with
// the given serial number.
func (ca *serverCA) issue(t testing.TB, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// replaceFile writes data to a new file and renames it over path, as a
// Kubernetes Secret volume or an ACME client does.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func serialOf(c *tls.Certificate) int64 {
	if c == nil || c.Leaf == nil {
		return -1
	}
	return c.Leaf.SerialNumber.Int64()
}

// TestCertFilesChange: a handshake picks up a changed pair; a half-written
// pair (new certificate, old key) or garbage keeps the certificate in use
// and is logged once, however many handshakes see it.
func TestCertFilesChange(t *testing.T) {
	ca := newServerCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert1, key1 := ca.issue(t, 1)
	replaceFile(t, certFile, cert1)
	replaceFile(t, keyFile, key1)
	logs := &syncBuffer{}
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: newLogger(logConfig{Format: "text"}, logs)}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	cert2, key2 := ca.issue(t, 2)
	cert3, key3 := ca.issue(t, 3)
	const refused = "do not load"
	steps := []struct {
		name       string
		change     func()
		wantSerial int64
		wantErrors int // "do not load" lines so far
	}{
		{"unchanged", func() {}, 1, 0},
		{"new certificate, old key", func() { replaceFile(t, certFile, cert2) }, 1, 1},
		{"still half-written", func() {}, 1, 1},
		{"key written too", func() { replaceFile(t, keyFile, key2) }, 2, 1},
		{"garbage certificate", func() { replaceFile(t, certFile, []byte("-----BEGIN CERT")) }, 2, 2},
		{"garbage again", func() {}, 2, 2},
		{"key file gone", func() { os.Remove(keyFile) }, 2, 3},
		{"new pair in place", func() { replaceFile(t, certFile, cert3); replaceFile(t, keyFile, key3) }, 3, 3},
		{"rewritten in place", func() {
			// Same inode; the size or time changes.
			if err := os.WriteFile(certFile, append(cert1, '\n'), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keyFile, key1, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 1, 3},
	}
	for _, s := range steps {
		s.change()
		for range 3 { // several handshakes
			got, err := c.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if serialOf(got) != s.wantSerial {
				t.Errorf("%s: serving serial %d, want %d", s.name, serialOf(got), s.wantSerial)
			}
		}
		if n := strings.Count(logs.String(), refused); n != s.wantErrors {
			t.Errorf("%s: %d %q lines, want %d:\n%s", s.name, n, refused, s.wantErrors, logs)
		}
	}
	// Reload reports a broken pair and keeps the certificate.
	replaceFile(t, keyFile, []byte("not a key"))
	if err := (&tlsServer{certs: c}).Reload(); err == nil {
		t.Error("Reload of a broken pair: no error")
	}
	if err := (*tlsServer)(nil).Reload(); err != nil {
		t.Errorf("Reload without TLS: %v", err)
	}
	if got, _ := c.GetCertificate(&tls.ClientHelloInfo{}); serialOf(got) != 1 {
		t.Errorf("after a failed Reload: serial %d, want 1", serialOf(got))
	}
}

// TestCertFilesCheckInterval: between looks, handshakes do not touch the
// files.
func TestCertFilesCheckInterval(t *testing.T) {
	ca := newServerCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert1, key1 := ca.issue(t, 1)
	replaceFile(t, certFile, cert1)
	replaceFile(t, keyFile, key1)
	c := &certFiles{certFile: certFile, keyFile: keyFile, every: time.Hour, log: newLogger(logConfig{Format: "text"}, io.Discard)}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	c.GetCertificate(&tls.ClientHelloInfo{}) // the first look, then none for an hour
	cert2, key2 := ca.issue(t, 2)
	replaceFile(t, certFile, cert2)
	replaceFile(t, keyFile, key2)
	if got, _ := c.GetCertificate(&tls.ClientHelloInfo{}); serialOf(got) != 1 {
		t.Errorf("within the interval: serial %d, want 1 (no look)", serialOf(got))
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetCertificate(&tls.ClientHelloInfo{}); serialOf(got) != 2 {
		t.Errorf("after Reload: serial %d, want 2", serialOf(got))
	}
}

func TestHostName(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"app.example.com", "app.example.com", true},
		{"APP.Example.COM", "app.example.com", true},
		{"app.example.com.", "app.example.com", true},
		{"app.example.com:443", "app.example.com", true},
		{"app.example.com:80", "app.example.com", true},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", true},
		{"", "", false},
		{".", "", false},
		{"app..example.com", "", false},
		{"app.example.com@evil.com", "", false},
		{"evil.com/app.example.com", "", false},
		{"app.example.com\\evil.com", "", false},
		{"app example.com", "", false},
		{"app.example.com\r\nX: y", "", false},
		{"bücher.example", "", false},
		{"[::1]:443", "", false},
		{"app.example.com:443:443", "", false},
		{"*.example.com", "", false},
		{"%61pp.example.com", "", false},
		{strings.Repeat("a", 64) + ".example.com", "", false},
	} {
		got, ok := hostName(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("hostName(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	allow := hostSet([]string{"App.Example.com", "*.example.com", "*"})
	for host, want := range map[string]bool{"app.example.com": true, "other.example.com": false, "x": false, "*": false, "*.example.com": false} {
		if allow(host) != want {
			t.Errorf("hostSet(...)(%q) = %v, want %v", host, !want, want)
		}
	}
}

// TestRedirectHandler: the plain-HTTP listener redirects to https on the
// same host and path for allowed hosts only, whatever a hostile client puts
// in Host or the request target, and hands ACME challenges to autocert.
func TestRedirectHandler(t *testing.T) {
	challenges := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "token") })
	allow := hostSet([]string{"app.example.com"})
	for _, tt := range []struct {
		name, method, target, host, port string
		wantStatus                       int
		wantLocation                     string
	}{
		{"GET", "GET", "/some/path?a=1&b=%2F", "app.example.com", "", 301, "https://app.example.com/some/path?a=1&b=%2F"},
		{"HEAD", "HEAD", "/", "app.example.com", "", 301, "https://app.example.com/"},
		{"POST keeps its method", "POST", "/form", "app.example.com", "", 308, "https://app.example.com/form"},
		{"port of the public URL", "GET", "/x", "app.example.com", "8443", 301, "https://app.example.com:8443/x"},
		{"port 443 left out", "GET", "/x", "app.example.com", "443", 301, "https://app.example.com/x"},
		{"host with port and case", "GET", "/x", "APP.example.com:80", "", 301, "https://app.example.com/x"},
		{"escaped path kept", "GET", "/a%2Fb/%2e%2e/c", "app.example.com", "", 301, "https://app.example.com/a%2Fb/%2e%2e/c"},
		{"double slash stays a path", "GET", "//evil.com/x", "app.example.com", "", 301, "https://app.example.com//evil.com/x"},
		{"backslash stays a path", "GET", "/\\evil.com", "app.example.com", "", 301, "https://app.example.com/%5Cevil.com"},
		{"challenge", "GET", "/.well-known/acme-challenge/abc", "app.example.com", "", 200, ""},
		{"challenge for another host", "GET", "/.well-known/acme-challenge/abc", "evil.com", "", 404, ""},
		{"unknown host", "GET", "/", "evil.com", "", 404, ""},
		{"sibling host", "GET", "/", "other.example.com", "", 404, ""},
		{"suffix trick", "GET", "/", "app.example.com.evil.com", "", 404, ""},
		{"userinfo trick", "GET", "/", "app.example.com@evil.com", "", 400, ""},
		{"IP address", "GET", "/", "127.0.0.1", "", 404, ""},
		{"empty host", "GET", "/", "", "", 400, ""},
		{"absolute-form target to another host", "GET", "http://evil.com/x", "app.example.com", "", 404, ""},
		{"absolute-form target to our host", "GET", "http://app.example.com/x", "evil.com", "", 301, "https://app.example.com/x"},
		{"asterisk", "OPTIONS", "*", "app.example.com", "", 400, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			if !strings.HasPrefix(tt.target, "http://") {
				req.Host = tt.host
			}
			rec := httptest.NewRecorder()
			redirectHandler(allow, tt.port, challenges).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || rec.Header().Get("Location") != tt.wantLocation {
				t.Errorf("%d Location %q, want %d %q", rec.Code, rec.Header().Get("Location"), tt.wantStatus, tt.wantLocation)
			}
		})
	}
}

// TestTLSSettings: every TLS and ACME problem is listed at once; a good
// setting is read as meant.
func TestTLSSettings(t *testing.T) {
	ca := newServerCA(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, 1)
	certFile, keyFile, caFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(dir, "ca.pem")
	replaceFile(t, certFile, certPEM)
	replaceFile(t, keyFile, keyPEM)
	replaceFile(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	base := func() env {
		e := defaultEnv()
		e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:8080", "https://idp.example/", "id", "secret"
		e.RedirectURL = "https://app.example.com/auth/callback"
		return e
	}
	acmeOK := func(e *env) { e.ACME, e.ACMEEmail, e.ACMECacheDir = "true", "ops@example.com", dir }
	for _, tt := range []struct {
		name string
		set  func(*env)
		want []string // problems, each a substring of the error; none: valid
	}{
		{"files", func(e *env) { e.TLSCertFile, e.TLSKeyFile, e.HTTPAddr = certFile, keyFile, ":8080" }, nil},
		{"ACME", func(e *env) { acmeOK(e); e.HTTPAddr, e.ACMECAFile = ":80", caFile }, nil},
		{"certificate without key", func(e *env) { e.TLSCertFile = certFile }, []string{"go together"}},
		{"key without certificate", func(e *env) { e.TLSKeyFile = keyFile }, []string{"go together"}},
		{"pair that does not match", func(e *env) { e.TLSCertFile, e.TLSKeyFile = certFile, caFile }, []string{"AUTHPROXY_TLS_CERT_FILE/AUTHPROXY_TLS_KEY_FILE"}},
		{"missing files", func(e *env) { e.TLSCertFile, e.TLSKeyFile = "/nonexistent/c", "/nonexistent/k" }, []string{"no such file"}},
		{"ACME and files", func(e *env) { acmeOK(e); e.TLSCertFile, e.TLSKeyFile = certFile, keyFile }, []string{"exclude each other"}},
		{"ACME with nothing else", func(e *env) { e.ACME = "true" }, []string{"AUTHPROXY_ACME_EMAIL", "AUTHPROXY_ACME_CACHE_DIR"}},
		{"ACME, every problem", func(e *env) {
			e.ACME, e.ACMEEmail, e.ACMEDirectory, e.ACMECAFile = "true", "not an address", "http://acme.example/dir", "/nonexistent/ca.pem"
			e.RedirectURL, e.HTTPAddr = "http://app.example.com/auth/callback", e.Addr
		}, []string{"AUTHPROXY_ACME_EMAIL \"not an address\"", "AUTHPROXY_ACME_CACHE_DIR", "AUTHPROXY_ACME_DIRECTORY", "AUTHPROXY_ACME_CA_FILE",
			"must be https://", "AUTHPROXY_HTTP_ADDR must differ"}},
		{"ACME without a public URL", func(e *env) { acmeOK(e); e.RedirectURL = "" }, []string{"needs AUTHPROXY_REDIRECT_URL"}},
		{"ACME for an IP address", func(e *env) { acmeOK(e); e.RedirectURL = "https://127.0.0.1:8443/auth/callback" }, []string{"public DNS name"}},
		{"ACME not a boolean", func(e *env) { e.ACME = "yes" }, []string{"AUTHPROXY_ACME \"yes\""}},
		{"ACME settings without ACME", func(e *env) { e.ACMEEmail = "ops@example.com" }, []string{"AUTHPROXY_ACME is not true"}},
		{"CA file without certificates", func(e *env) { acmeOK(e); e.ACMECAFile = keyFile }, []string{"holds no PEM certificate"}},
		{"HTTP listener without TLS", func(e *env) { e.HTTPAddr = ":80" }, []string{"AUTHPROXY_HTTP_ADDR needs TLS"}},
		{"HTTP listener without a public URL", func(e *env) {
			e.TLSCertFile, e.TLSKeyFile, e.HTTPAddr, e.RedirectURL = certFile, keyFile, ":80", ""
		}, []string{"AUTHPROXY_HTTP_ADDR needs AUTHPROXY_REDIRECT_URL"}},
		{"HTTP listener not host:port", func(e *env) { acmeOK(e); e.HTTPAddr = "80" }, []string{"AUTHPROXY_HTTP_ADDR \"80\""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := base()
			tt.set(&e)
			cfg, err := e.parse()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("valid settings refused: %v", err)
				}
				if !cfg.TLS.enabled() || !slices.Equal(cfg.TLS.Hosts, []string{"app.example.com"}) || cfg.TLS.HTTPSPort != "" {
					t.Errorf("TLS section %+v", cfg.TLS)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// tlsStack is the proxy serving HTTPS from certificate files, in front of
// an upstream that echoes what it saw, with the development provider.
type tlsStack struct {
	base              string // https://127.0.0.1:PORT
	addr              string
	certFile, keyFile string
	ca                *serverCA
	logs              *syncBuffer
	mu                sync.Mutex
	seen              []string // upstream: method path body
}

func startTLSStack(t *testing.T) *tlsStack {
	t.Helper()
	idp, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	s := &tlsStack{ca: newServerCA(t), logs: &syncBuffer{}}
	dir := t.TempDir()
	s.certFile, s.keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certPEM, keyPEM := s.ca.issue(t, 1)
	replaceFile(t, s.certFile, certPEM)
	replaceFile(t, s.keyFile, keyPEM)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.seen = append(s.seen, r.Method+" "+r.URL.Path+" "+string(body))
		s.mu.Unlock()
		fmt.Fprintf(w, "app:%s proto:%s", r.Header.Get("X-User"), r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(app.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.base = "https://" + s.addr
	e := defaultEnv()
	e.Addr, e.Upstream, e.Issuer = s.addr, app.URL, idp.Issuer()
	e.ClientID, e.ClientSecret = "authproxy-demo", "demo-secret"
	e.RedirectURL, e.CookieSecret = s.base+"/auth/callback", testSecret
	e.Scopes, e.LogLevel, e.LogFormat, e.DrainDelay, e.ShutdownTimeout = "openid", "info", "text", "0s", "5s"
	e.TLSCertFile, e.TLSKeyFile = s.certFile, s.keyFile
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, newLogger(cfg.Log, s.logs)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c := s.client(true, nil)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := c.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz never answered 200: %v", s.base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// client trusts the test CA and speaks HTTP/2 when h2, else HTTP/1.1 only.
func (s *tlsStack) client(h2 bool, jar http.CookieJar) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Jar: jar, Timeout: time.Minute}
}

func (s *tlsStack) upstream() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// TestTLSFromFiles: over HTTPS from certificate files, a user logs in and
// reaches the app with HTTP/2 and with HTTP/1.1 (whose requests the
// framing check reads decrypted), the app learns the scheme was https, the
// session cookie is the __Host- one; TLS 1.1 is refused.
func TestTLSFromFiles(t *testing.T) {
	s := startTLSStack(t)
	for _, tt := range []struct {
		name      string
		h2        bool
		wantProto string
	}{
		{"HTTP/2", true, "HTTP/2.0"},
		{"HTTP/1.1", false, "HTTP/1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jar, _ := cookiejar.New(nil)
			c := s.client(tt.h2, jar)
			if body := loginWith(t, c, s.base+"/page", "alice"); body != "app:alice proto:https" {
				t.Fatalf("login landed on %q", body)
			}
			resp, err := c.Get(s.base + "/again")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Proto != tt.wantProto || string(body) != "app:alice proto:https" {
				t.Errorf("%s %q, want %s %q", resp.Proto, body, tt.wantProto, "app:alice proto:https")
			}
			var names []string
			for _, ck := range jar.Cookies(mustURL(s.base)) {
				names = append(names, ck.Name)
			}
			if !slices.Contains(names, "__Host-authproxy") {
				t.Errorf("cookies %v, want the __Host- session cookie on https", names)
			}
		})
	}
	_, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.ca.pool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Error("TLS 1.1 handshake accepted")
	}
	// `authproxy healthcheck` speaks HTTPS when the settings say TLS.
	getenv := func(v map[string]string) func(string) string { return func(k string) string { return v[k] } }
	if err := healthcheck(context.Background(), s.addr, servesTLS(getenv(map[string]string{"AUTHPROXY_TLS_CERT_FILE": s.certFile}))); err != nil {
		t.Errorf("healthcheck over HTTPS: %v", err)
	}
	if err := healthcheck(context.Background(), s.addr, servesTLS(getenv(nil))); err == nil {
		t.Error("healthcheck over plain HTTP passed on the HTTPS port")
	}
	if !servesTLS(getenv(map[string]string{"AUTHPROXY_ACME": "true"})) {
		t.Error("servesTLS: AUTHPROXY_ACME=true is TLS")
	}
}

// TestTLSSmuggling: HTTP/1.1 over TLS gets the same framing check as plain
// HTTP: both framing fields are refused with 400 and nothing hidden in a
// body reaches the upstream; HTTP/2 on the same listener is unaffected.
func TestTLSSmuggling(t *testing.T) {
	s := startTLSStack(t)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, tt := range []struct {
		name    string
		alpn    []string
		payload string
		want    []int
	}{
		{"CL and TE", []string{"http/1.1"}, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE and CL", []string{"http/1.1"}, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"CL and TE without ALPN", nil, "POST /a HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{400}},
		{"TE in HTTP/1.0", []string{"http/1.1"}, "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled, []int{400}},
		{"CL and TE after a request", []string{"http/1.1"}, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, []int{200, 400}},
		{"plain request", []string{"http/1.1"}, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", []int{200}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.ca.pool, NextProtos: tt.alpn})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if p := conn.ConnectionState().NegotiatedProtocol; len(tt.alpn) > 0 && p != tt.alpn[0] {
				t.Fatalf("negotiated %q", p)
			}
			conn.SetDeadline(time.Now().Add(time.Minute))
			if _, err := io.WriteString(conn, tt.payload); err != nil {
				t.Fatal(err)
			}
			var got []int
			br := bufio.NewReader(conn)
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got = append(got, resp.StatusCode)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("answers %v, want %v", got, tt.want)
			}
		})
	}
	if got := s.upstream(); len(got) != 0 {
		t.Errorf("upstream saw %q", got)
	}
	resp, err := s.client(true, nil).Get(s.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 {
		t.Errorf("h2 after the smuggling attempts: %s %d", resp.Proto, resp.StatusCode)
	}
}

// TestTLSFilesReload: new certificate files are served to new connections
// within a few handshakes, while connections opened before (HTTP/2 and
// HTTP/1.1 keep-alive) go on, on the certificate they started with.
func TestTLSFilesReload(t *testing.T) {
	s := startTLSStack(t)
	h2 := s.client(true, nil)
	h1 := s.client(false, nil)
	get := func(c *http.Client) *http.Response {
		t.Helper()
		resp, err := c.Get(s.base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	serial := func(resp *http.Response) int64 { return resp.TLS.PeerCertificates[0].SerialNumber.Int64() }
	// Open connection: each client keeps one.
	for _, c := range []*http.Client{h2, h1} {
		if resp := get(c); serial(resp) != 1 {
			t.Fatalf("serial %d before the change", serial(resp))
		}
	}
	certPEM, keyPEM := s.ca.issue(t, 2)
	replaceFile(t, s.certFile, certPEM)
	replaceFile(t, s.keyFile, keyPEM)

	// New connections get the new certificate once a handshake looked
	// (at most every certCheckInterval).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c := s.client(true, nil)
		resp := get(c)
		c.CloseIdleConnections()
		if serial(resp) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still get serial %d", serial(resp))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The open connections were not dropped: same connection, old
	// certificate, still answering.
	for name, c := range map[string]*http.Client{"HTTP/2": h2, "HTTP/1.1": h1} {
		if resp := get(c); serial(resp) != 1 || resp.StatusCode != 200 {
			t.Errorf("%s connection opened before the change: serial %d status %d, want 1 200 (the same connection)", name, serial(resp), resp.StatusCode)
		}
	}
	if !strings.Contains(s.logs.String(), "TLS certificate loaded") {
		t.Errorf("no log line of the reload:\n%s", s.logs)
	}
}

// TestTLSListener: a client that connects and never finishes its
// handshake stalls nobody; connections come out with the handshake done
// (h2 and HTTP/1.1 alike), a TLS-ALPN-01 validation never reaches the
// server, and Close ends Accept.
func TestTLSListener(t *testing.T) {
	ca := newServerCA(t)
	certPEM, keyPEM := ca.issue(t, 1)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1", "acme-tls/1"}}
	l := newTLSListener(raw, cfg, time.Hour, newLogger(logConfig{Format: "text"}, io.Discard))

	// Silent clients: connected, no ClientHello, ever.
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	dial := func(proto string) {
		go func() {
			c, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{proto}})
			if err == nil {
				io.Copy(io.Discard, c) // until the server closes
				c.Close()
			}
		}()
	}
	dial("acme-tls/1") // closed after its handshake, never accepted
	for _, proto := range []string{"h2", "http/1.1"} {
		dial(proto)
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		tc, ok := c.(*tls.Conn)
		if !ok {
			t.Fatalf("Accept gave a %T", c)
		}
		if st := tc.ConnectionState(); !st.HandshakeComplete || st.NegotiatedProtocol != proto {
			t.Errorf("accepted a connection with handshake done %v, protocol %q; want true, %q", st.HandshakeComplete, st.NegotiatedProtocol, proto)
		}
		c.Close()
	}
	l.Close()
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after Close: no error")
	}
}

// FuzzRedirectHandler: whatever the Host header and request target, the
// plain-HTTP listener redirects only to https on the allowed host, or
// refuses.
func FuzzRedirectHandler(f *testing.F) {
	for _, s := range [][2]string{
		{"app.example.com", "/x?y=1"}, {"evil.com", "/"}, {"app.example.com@evil.com", "/"}, {"app.example.com", "//evil.com/"},
		{"APP.EXAMPLE.COM.:80", "/a%2F..%2Fb"}, {"app.example.com", "http://evil.com/"}, {"", "*"}, {"app.example.com", "/\\\\evil.com"},
	} {
		f.Add(s[0], s[1])
	}
	h := redirectHandler(hostSet([]string{"app.example.com"}), "8443", nil)
	f.Fuzz(func(t *testing.T, host, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := &http.Request{Method: http.MethodGet, Host: host, URL: u, Header: http.Header{}, RequestURI: target}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusBadRequest, http.StatusNotFound:
		case http.StatusMovedPermanently:
			loc, err := url.Parse(rec.Header().Get("Location"))
			if err != nil || loc.Scheme != "https" || loc.Host != "app.example.com:8443" || loc.User != nil {
				t.Fatalf("Host %q target %q: Location %q", host, target, rec.Header().Get("Location"))
			}
		default:
			t.Fatalf("Host %q target %q: status %d", host, target, rec.Code)
		}
	})
}

// TestReloadTLSFiles: a configuration reload (SIGHUP, a watched file)
// loads the certificate files again; a pair that does not load refuses
// the reload and the certificate in use stays.
func TestReloadTLSFiles(t *testing.T) {
	idp, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	ca := newServerCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert1, key1 := ca.issue(t, 1)
	replaceFile(t, certFile, cert1)
	replaceFile(t, keyFile, key1)
	e := defaultEnv()
	e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:1", idp.Issuer(), "authproxy-demo", "demo-secret"
	e.RedirectURL, e.CookieSecret, e.Scopes, e.LogFormat = "https://127.0.0.1:8443/auth/callback", testSecret, "openid", "text"
	e.TLSCertFile, e.TLSKeyFile = certFile, keyFile
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s, err := newServer(context.Background(), cfg, newLogger(cfg.Log, logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.tls.certs.every = time.Hour // only reloads look at the files here
	load := func() (snapshot, error) { return snapshot{vars: e, files: hashFiles(e)}, nil }
	serving := func() int64 { c, _ := s.tls.config.GetCertificate(&tls.ClientHelloInfo{}); return serialOf(c) }
	serving() // the first look

	cert2, key2 := ca.issue(t, 2)
	replaceFile(t, certFile, cert2)
	replaceFile(t, keyFile, key2)
	if err := s.reload(load, "SIGHUP"); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := serving(); got != 2 {
		t.Errorf("after the reload: serial %d, want 2", got)
	}
	replaceFile(t, certFile, cert1) // key2 stays: a pair that does not match
	if err := s.reload(load, "SIGHUP"); err == nil {
		t.Error("a reload with a mismatched pair went through")
	}
	if got := serving(); got != 2 {
		t.Errorf("after the refused reload: serial %d, want 2", got)
	}
	if !strings.Contains(logs.String(), "configuration reload refused") {
		t.Errorf("no refused-reload line:\n%s", logs)
	}
}
