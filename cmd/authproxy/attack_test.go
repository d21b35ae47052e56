package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// dotEnvLeaks are .env files that do not parse, each holding secrets that
// godotenv's error message would quote: "unexpected character ... near"
// quotes the whole rest of the file, "unterminated quoted value" the value.
var dotEnvLeaks = []struct{ name, file string }{
	{"hyphen in a name, secrets after it", "AUTHPROXY-LOG-LEVEL=debug\nAUTHPROXY_UPSTREAM_BASIC_PASSWORD=pw-LEAKED-1\nAUTHPROXY_CLIENT_SECRET=cs-LEAKED-2\n"},
	{"unterminated double quote", "AUTHPROXY_UPSTREAM_BASIC_PASSWORD=\"pw-LEAKED-1\nAUTHPROXY_CLIENT_SECRET=cs-LEAKED-2\n"},
	{"unterminated single quote", "AUTHPROXY_CLIENT_SECRET='cs-LEAKED-2\n"},
	{"a secret pasted without a name", "AUTHPROXY_LOG_LEVEL=info\ncs-LEAKED-2+/==\n"},
}

// TestDotEnvErrorsHideSecrets: a .env that does not parse is refused at
// start, by check-config and by a reload, and the message says so without
// quoting the file, which holds the secrets.
func TestDotEnvErrorsHideSecrets(t *testing.T) {
	for _, tt := range dotEnvLeaks {
		t.Run(tt.name, func(t *testing.T) {
			lookup := envFrom(t, map[string]string{})
			if err := os.WriteFile(dotEnv, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			err := run(t.Context(), []string{"check-config"}, lookup, &out, &out)
			if err == nil {
				t.Fatal("check-config accepted a .env that does not parse")
			}
			_, startErr := loadConfig(lookup)
			for _, text := range []string{err.Error(), out.String(), startErr.Error()} {
				if strings.Contains(text, "LEAKED") {
					t.Errorf("a secret of .env is in the message: %s", text)
				}
			}
			if !strings.Contains(err.Error(), ".env") {
				t.Errorf("the message does not name .env: %v", err)
			}
		})
	}
}

// TestDotEnvReloadHidesSecrets: the reload's problems line never quotes a
// .env that does not parse; the running configuration stays.
func TestDotEnvReloadHidesSecrets(t *testing.T) {
	rs := startReloadStack(t, nil, nil)
	for _, tt := range dotEnvLeaks {
		writeFile(t, rs.path(dotEnv), tt.file)
		if err := rs.srv.reload(rs.load, "test"); err == nil {
			t.Errorf("%s: reload accepted it", tt.name)
		}
	}
	if strings.Contains(rs.logs.String(), "LEAKED") {
		t.Errorf("a secret of .env is in the log:\n%s", rs.logs.String())
	}
	if !strings.Contains(rs.logs.String(), "configuration reload refused") {
		t.Errorf("no refusal logged:\n%s", rs.logs.String())
	}
	if got := rs.status(t, "/"); got != 200 {
		t.Errorf("after the refused reloads: %d", got)
	}
}

// TestUpstreamTLSNameIsTheURLs: with AUTHPROXY_PASS_HOST_HEADER the client
// chooses the Host header the upstream receives, never the name its
// certificate is checked against (nor the SNI): that stays the host of
// AUTHPROXY_UPSTREAM. A certificate that names only the client's Host is
// refused.
func TestUpstreamTLSNameIsTheURLs(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "upstream CA"), newTestCA(t, "client CA")
	caFile := tempFile(t, "ca.pem", serverCA.pem)
	certPEM, keyPEM := clientCA.issue(t, "authproxy-client", clientAuth, time.Now().Add(time.Hour))
	certFile, keyFile := tempFile(t, "client.pem", certPEM), tempFile(t, "client.key", keyPEM)
	withTLS := func(e *env) {
		e.UpstreamCAFile, e.UpstreamClientCertFile, e.UpstreamClientKeyFile = caFile, certFile, keyFile
		e.PassHostHeader = "true"
	}
	get := func(t *testing.T, c *http.Client, base, host string) (int, string) {
		req, _ := http.NewRequest("GET", base+"/page", nil)
		req.Host = host
		// Go's client picks cookies by the Host: give it the proxy's.
		for _, ck := range c.Jar.Cookies(req.URL) {
			req.AddCookie(ck)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	app := tlsUpstream(t, serverCA, clientCA) // a certificate for 127.0.0.1 only
	base, c, _, _ := startProxyTo(t, app.URL, withTLS)
	if status, body := get(t, c, base, "evil.example"); status != 200 || !strings.HasPrefix(body, "app:") {
		t.Fatalf("Host evil.example, certificate for the upstream's address: %d %q, want the app", status, body)
	}
	u, _ := url.Parse(base)

	// An upstream whose certificate names only the host a client sends.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: u.Hostname()},
		DNSNames: []string{"evil.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, serverCA.cert, &key.PublicKey, serverCA.key)
	if err != nil {
		t.Fatal(err)
	}
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "reached")
	}))
	other.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	other.Config.ErrorLog = log.New(io.Discard, "", 0)
	other.StartTLS()
	t.Cleanup(other.Close)
	base2, c2, _, _ := startProxyTo(t, other.URL, withTLS)
	if status, body := get(t, c2, base2, "evil.example"); status != http.StatusBadGateway || strings.Contains(body, "reached") {
		t.Errorf("Host evil.example, certificate for evil.example only: %d %q, want 502", status, body)
	}
}

// TestRulesFileMixUpHidesSecrets: AUTHPROXY_RULES_FILE pointed by mistake
// at a secret (the identity key, the cookie secret, a .env, a JSON
// credential: all in the same mounted directories) is refused without its
// lines in the message, which reaches the reload log and check-config's
// output. A rule that is merely short is still quoted.
func TestRulesFileMixUpHidesSecrets(t *testing.T) {
	_, key := keyPEM(t)
	secret := newSecret(t)
	for _, tt := range []struct{ name, data string }{
		{"identity key", key},
		{"cookie secrets", secret + "\n" + newSecret(t) + "\n"},
		{"cookie secrets, one line", secret + "," + newSecret(t)},
		{".env", "AUTHPROXY_CLIENT_SECRET=" + secret + "\n"},
		{"JSON credential", "{\n  \"client_secret\": \"" + secret + "\"\n}\n"},
		{"secret with a space", "client secret " + secret + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rules := tempFile(t, "rules.txt", []byte(tt.data))
			var out strings.Builder
			err := run(t.Context(), []string{"check-config"}, envFrom(t, map[string]string{
				"AUTHPROXY_UPSTREAM": "http://127.0.0.1:8080", "AUTHPROXY_ISSUER": "https://idp.example/",
				"AUTHPROXY_CLIENT_ID": "c", "AUTHPROXY_CLIENT_SECRET": "s", "AUTHPROXY_RULES_FILE": rules,
			}), &out, &out)
			if err == nil {
				t.Fatal("check-config accepted it")
			}
			text := err.Error() + out.String()
			if !strings.Contains(text, "AUTHPROXY_RULES_FILE") {
				t.Errorf("the message does not name the setting: %s", text)
			}
			for line := range strings.Lines(tt.data) {
				for _, f := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t\n,\":{}=", r) }) {
					if len(f) >= 16 && strings.Contains(text, f) {
						t.Errorf("the message quotes %q:\n%s", f, text)
					}
				}
			}
		})
	}
	// A short rule is still shown, to be fixed.
	rules := tempFile(t, "rules.txt", []byte("allow GET,*\n"))
	_, err := loadConfig(envFrom(t, map[string]string{"AUTHPROXY_RULES_FILE": rules}))
	if err == nil || !strings.Contains(err.Error(), `"allow GET,*"`) {
		t.Errorf("a short rule is not quoted: %v", err)
	}
}

// TestBasicAuthFlagHidesPassword: the password set by mistake in
// AUTHPROXY_UPSTREAM_BASIC_AUTH (the neighbouring variable) is refused
// without being quoted.
func TestBasicAuthFlagHidesPassword(t *testing.T) {
	for _, v := range []string{"s3cret-LEAKED-pw", "yes-LEAKED", "LEAKED"} {
		_, err := loadConfig(envFrom(t, map[string]string{"AUTHPROXY_UPSTREAM_BASIC_AUTH": v, "AUTHPROXY_UPSTREAM_BASIC_PASSWORD": v}))
		if err == nil || !strings.Contains(err.Error(), "AUTHPROXY_UPSTREAM_BASIC_AUTH must be true or false") {
			t.Errorf("%q: %v", v, err)
		} else if strings.Contains(err.Error(), "LEAKED") {
			t.Errorf("the message quotes the value: %v", err)
		}
	}
}

// TestRoutesFileMixUpHidesSecrets: AUTHPROXY_ROUTES_FILE pointed at a
// secret is refused without quoting it, like the rules file.
func TestRoutesFileMixUpHidesSecrets(t *testing.T) {
	_, key := keyPEM(t)
	secret := newSecret(t)
	for _, data := range []string{key, secret + "\n", "AUTHPROXY_CLIENT_SECRET=" + secret + "\n", "{\"client_secret\": \"" + secret + "\"}\n"} {
		routes := tempFile(t, "routes.txt", []byte(data))
		_, err := loadConfig(envFrom(t, map[string]string{"AUTHPROXY_ROUTES_FILE": routes}))
		if err == nil {
			t.Fatal("a secret was accepted as a routes file")
		}
		for line := range strings.Lines(data) {
			for _, f := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t\n,\":{}=", r) }) {
				if len(f) >= 16 && !strings.HasPrefix(f, "AUTHPROXY_") && strings.Contains(err.Error(), f) {
					t.Errorf("the message quotes %q:\n%v", f, err)
				}
			}
		}
	}
}
