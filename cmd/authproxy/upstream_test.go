package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and PKCS #8 key for cn, signed by ca.
func (ca *testCA) issue(t *testing.T, cn string, usage []x509.ExtKeyUsage, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func tempFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var clientAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}

// tlsUpstream is an https app on 127.0.0.1 that requires a client
// certificate from clientCA (tls.RequireAndVerifyClientCert) and answers
// with the user and the certificate's common name.
func tlsUpstream(t *testing.T, serverCA, clientCA *testCA) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := serverCA.issue(t, "127.0.0.1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, time.Now().Add(time.Hour))
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s cn=%s", r.Header.Get("X-User"), r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what the test provokes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// startProxyTo runs the whole proxy (serve) in front of upstream with the
// development provider, configured by mutate, and returns its base URL and
// a client logged in as alice, with the page the login landed on.
func startProxyTo(t *testing.T, upstream string, mutate func(*env)) (base string, c *http.Client, landed string, logs *syncBuffer) {
	t.Helper()
	idp, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	base = "http://" + ln.Addr().String()
	e := defaultEnv()
	e.Addr, e.Upstream, e.Issuer = ln.Addr().String(), upstream, idp.Issuer()
	e.ClientID, e.ClientSecret = "authproxy-demo", "demo-secret"
	e.RedirectURL, e.CookieSecret = base+"/auth/callback", testSecret
	e.Scopes, e.LogLevel, e.DrainDelay, e.ShutdownTimeout = "openid", "warn", "0s", "5s"
	e.UpstreamTimeout = "2m" // only a hang reaches it
	mutate(&e)
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, newLogger(cfg.Log, logs)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitStatus(t, base+"/readyz", 200)
	jar, _ := cookiejar.New(nil)
	c = &http.Client{Jar: jar, Timeout: 2 * time.Minute}
	return base, c, loginWith(t, c, base+"/", "alice"), logs
}

// TestUpstreamTLS runs the proxy in front of a TLS upstream that requires a
// client certificate: with the private CA and the client certificate, the
// logged-in user's requests arrive with the certificate; with the wrong CA,
// without a certificate or with one the upstream does not trust, the user
// gets authproxy's 502 page (never a 500, never a hang) and the log says
// why.
func TestUpstreamTLS(t *testing.T) {
	serverCA, clientCA, otherCA := newTestCA(t, "upstream CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	app := tlsUpstream(t, serverCA, clientCA)
	caFile := tempFile(t, "ca.pem", serverCA.pem)
	certPEM, keyPEM := clientCA.issue(t, "authproxy-client", clientAuth, time.Now().Add(time.Hour))
	certFile, keyFile := tempFile(t, "client.pem", certPEM), tempFile(t, "client.key", keyPEM)
	strangerCert, strangerKey := otherCA.issue(t, "stranger", clientAuth, time.Now().Add(time.Hour))

	t.Run("private CA and client certificate", func(t *testing.T) {
		base, c, landed, _ := startProxyTo(t, app.URL, func(e *env) {
			e.UpstreamCAFile, e.UpstreamClientCertFile, e.UpstreamClientKeyFile = caFile, certFile, keyFile
		})
		if landed != "app:alice cn=authproxy-client" {
			t.Fatalf("after login: %q", landed)
		}
		resp, err := c.Get(base + "/again")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "app:alice cn=authproxy-client" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
	})

	for _, tt := range []struct {
		name   string
		mutate func(*env)
		log    string // in the upstream error's log line
	}{
		{"system roots only", func(e *env) {
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = certFile, keyFile
		}, "certificate signed by unknown authority"},
		{"wrong CA", func(e *env) {
			e.UpstreamCAFile = tempFile(t, "other.pem", otherCA.pem)
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = certFile, keyFile
		}, "certificate signed by unknown authority"},
		{"no client certificate", func(e *env) { e.UpstreamCAFile = caFile }, "certificate required"},
		{"client certificate from a CA the upstream does not trust", func(e *env) {
			e.UpstreamCAFile = caFile
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = tempFile(t, "s.pem", strangerCert), tempFile(t, "s.key", strangerKey)
		}, "tls: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base, c, _, logs := startProxyTo(t, app.URL, tt.mutate)
			for _, accept := range []string{"text/html", "application/json"} {
				req, _ := http.NewRequest("GET", base+"/page", nil)
				req.Header.Set("Accept", accept)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("no answer (a hang?): %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream_unavailable") {
					t.Errorf("%s: %d %s, want authproxy's 502", accept, resp.StatusCode, body)
				}
			}
			if !strings.Contains(logs.String(), "upstream error") || !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log does not say %q:\n%s", tt.log, logs.String())
			}
		})
	}
}

// TestUpstreamTLSConfigProblems: every bad TLS or basic-auth setting is a
// problem of its own, listed at once, naming the file and what is wrong
// with it, never quoting a key or the password.
func TestUpstreamTLSConfigProblems(t *testing.T) {
	ca := newTestCA(t, "CA")
	certPEM, keyPEM := ca.issue(t, "client", clientAuth, time.Now().Add(time.Hour))
	_, otherKey := ca.issue(t, "other", clientAuth, time.Now().Add(time.Hour))
	serverCert, serverKey := ca.issue(t, "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, time.Now().Add(time.Hour))
	expiredCert, expiredKey := ca.issue(t, "old", clientAuth, time.Now().Add(-time.Hour))
	certFile, keyFile := tempFile(t, "c.pem", certPEM), tempFile(t, "c.key", keyPEM)
	keyBody := strings.Split(string(keyPEM), "\n")[1] // a line of the key's base64
	garbledDER := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})

	tests := []struct {
		name string
		set  func(*env)
		want []string // each a problem's text
	}{
		{"CA file missing", func(e *env) { e.UpstreamCAFile = "/nonexistent/ca.pem" },
			[]string{"AUTHPROXY_UPSTREAM_CA_FILE /nonexistent/ca.pem: cannot be read: open: no such file or directory"}},
		{"CA file is a directory", func(e *env) { e.UpstreamCAFile = t.TempDir() }, []string{"cannot be read: read: is a directory"}},
		{"CA file empty", func(e *env) { e.UpstreamCAFile = tempFile(t, "e.pem", nil) }, []string{"holds no PEM certificate"}},
		{"CA file without PEM", func(e *env) { e.UpstreamCAFile = tempFile(t, "d.der", ca.cert.Raw) }, []string{"holds no PEM certificate"}},
		{"key in the CA file, among certificates", func(e *env) {
			e.UpstreamCAFile = tempFile(t, "k.pem", slices.Concat(ca.pem, keyPEM, garbledDER))
		}, []string{`block 2 is a "PRIVATE KEY", not a CERTIFICATE`, "block 3: x509: "}},
		{"malformed PEM", func(e *env) {
			e.UpstreamCAFile = tempFile(t, "m.pem", slices.Concat(ca.pem, []byte("-----BEGIN CERTIFICATE-----\nMIIB!!\n")))
		}, []string{"a PEM block after block 1 is malformed"}},
		{"certificate without key", func(e *env) { e.UpstreamClientCertFile = certFile },
			[]string{"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE and AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE go together"}},
		{"key without certificate", func(e *env) { e.UpstreamClientKeyFile = keyFile },
			[]string{"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE and AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE go together"}},
		{"both unreadable", func(e *env) {
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = "/nonexistent/c.pem", t.TempDir()
		}, []string{"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE /nonexistent/c.pem cannot be read: open: no such file or directory",
			"AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE " + os.TempDir()}},
		{"key of another certificate", func(e *env) {
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = certFile, tempFile(t, "o.key", otherKey)
		},
			[]string{"private key does not match public key"}},
		{"certificate and key swapped", func(e *env) { e.UpstreamClientCertFile, e.UpstreamClientKeyFile = keyFile, certFile },
			[]string{"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE " + keyFile + " with AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE " + certFile + ": tls: "}},
		{"server-only certificate", func(e *env) {
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = tempFile(t, "s.pem", serverCert), tempFile(t, "s.key", serverKey)
		}, []string{"does not allow client authentication"}},
		{"expired certificate", func(e *env) {
			e.UpstreamClientCertFile, e.UpstreamClientKeyFile = tempFile(t, "x.pem", expiredCert), tempFile(t, "x.key", expiredKey)
		}, []string{"the certificate expired on"}},
		{"plain http upstream", func(e *env) { e.Upstream, e.UpstreamCAFile = "http://127.0.0.1:8080", tempFile(t, "ca.pem", ca.pem) },
			[]string{`need an https:// AUTHPROXY_UPSTREAM: "http://127.0.0.1:8080" is plain http`}},
		{"basic auth without password", func(e *env) { e.UpstreamBasicAuth = "true" }, []string{"AUTHPROXY_UPSTREAM_BASIC_AUTH=true needs AUTHPROXY_UPSTREAM_BASIC_PASSWORD"}},
		{"password without basic auth", func(e *env) { e.UpstreamBasicPassword = "pw-secret-1" }, []string{"AUTHPROXY_UPSTREAM_BASIC_PASSWORD is set but AUTHPROXY_UPSTREAM_BASIC_AUTH is not true"}},
		{"password with a newline", func(e *env) { e.UpstreamBasicAuth, e.UpstreamBasicPassword = "true", "pw-secret-1\n" }, []string{"white space at either end"}},
		{"password with a line break inside", func(e *env) { e.UpstreamBasicAuth, e.UpstreamBasicPassword = "true", "pw-secret\n1" }, []string{"a NUL or a line break"}},
		{"basic auth not a boolean", func(e *env) { e.UpstreamBasicAuth, e.UpstreamBasicPassword = "yes", "pw-secret-1" }, []string{"AUTHPROXY_UPSTREAM_BASIC_AUTH must be true or false"}},
	}
	all := defaultEnv()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := defaultEnv()
			e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "https://127.0.0.1:8443", "https://idp.example/", "c", "s"
			tt.set(&e)
			_, err := e.parse()
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not say %q:\n%s", w, msg)
				}
			}
			if n := strings.Count(msg, "\n  - "); n != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%s", n, len(tt.want), msg)
			}
			for _, secret := range []string{keyBody, "pw-secret"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error quotes a secret %q:\n%s", secret, msg)
				}
			}
		})
		tt.set(&all)
	}
	// All at once (the later settings of a field win): each remaining
	// problem is listed.
	all.Issuer, all.ClientID, all.ClientSecret = "https://idp.example/", "c", "s"
	all.UpstreamCAFile = "/nonexistent/ca.pem"
	_, err := all.parse()
	if err == nil || !strings.Contains(err.Error(), "AUTHPROXY_UPSTREAM_CA_FILE") || !strings.Contains(err.Error(), "AUTHPROXY_UPSTREAM_BASIC_AUTH must be") ||
		!strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("all at once: %v", err)
	}
}

// TestUpstreamTLSConfig: a good configuration puts the CA (in place of the
// system roots) and the client certificate into the upstream transport;
// without the settings the transport keeps Go's defaults.
func TestUpstreamTLSConfig(t *testing.T) {
	ca := newTestCA(t, "CA")
	certPEM, keyPEM := ca.issue(t, "client", nil, time.Now().Add(time.Hour)) // no extended key usage: any
	e := defaultEnv()
	e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "https://127.0.0.1:8443", "https://idp.example/", "c", "s"
	plain, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	if tc := plain.Proxy.Transport(plain.Proxy.Routes.Routes()[0]).(*http.Transport).TLSClientConfig; tc != nil && (tc.RootCAs != nil || len(tc.Certificates) > 0) {
		t.Errorf("without settings: %+v", tc)
	}
	// OpenSSL bundles have text between the blocks.
	e.UpstreamCAFile = tempFile(t, "ca.pem", slices.Concat([]byte("# upstream CA\n"), ca.pem, []byte("\n# end\n")))
	e.UpstreamClientCertFile, e.UpstreamClientKeyFile = tempFile(t, "c.pem", certPEM), tempFile(t, "c.key", keyPEM)
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.Proxy.Transport(cfg.Proxy.Routes.Routes()[0]).(*http.Transport).TLSClientConfig
	if tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil {
		t.Fatalf("TLS config %+v", tc)
	}
	if _, err := ca.cert.Verify(x509.VerifyOptions{Roots: tc.RootCAs}); err != nil {
		t.Errorf("the pool does not hold the CA: %v", err)
	}
	sys, _ := x509.SystemCertPool()
	if sys != nil && tc.RootCAs.Equal(sys) {
		t.Errorf("the pool is the system pool")
	}
}

// TestBasicAuthConfig: the password reaches proxy.Config only with the
// switch on, and the startup line never shows it.
func TestBasicAuthConfig(t *testing.T) {
	e := defaultEnv()
	e.Upstream, e.Issuer, e.ClientID, e.ClientSecret = "http://127.0.0.1:8080", "https://idp.example/", "c", "s"
	e.UpstreamBasicAuth, e.UpstreamBasicPassword = "true", "pw-"+base64.RawURLEncoding.EncodeToString([]byte("shared"))
	cfg, err := e.parse()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Proxy.BasicPassword != e.UpstreamBasicPassword || cfg.Proxy.UserClaim != "sub" {
		t.Errorf("proxy config: password %q, user claim %q", cfg.Proxy.BasicPassword, cfg.Proxy.UserClaim)
	}
	if slices.Contains(cfg.OIDC.KeepClaims, "sub") {
		t.Errorf("sub kept although it is the user claim: %q", cfg.OIDC.KeepClaims)
	}
	e.UserClaim = "email"
	if cfg, err = e.parse(); err != nil || !slices.Contains(cfg.OIDC.KeepClaims, "sub") {
		t.Errorf("with AUTHPROXY_USER_CLAIM=email the session must keep sub for /auth/userinfo: %q %v", cfg.OIDC.KeepClaims, err)
	}
}
