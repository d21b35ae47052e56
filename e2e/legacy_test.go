package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// legacyConfFile is the shipped example of nginx in front of a legacy app
// that knows only basic authentication, behind TLS with a client
// certificate. The test runs it, not a copy.
const legacyConfFile = "deploy/nginx/legacy-app.conf"

// clientPKI is a client-certificate authority and one client certificate
// it issued, as files.
type clientPKI struct {
	CAFile, CertFile, KeyFile string
}

// newClientPKI generates a CA named name and a client certificate (for
// clientAuth) with common name cn in t.TempDir().
func newClientPKI(t *testing.T, name, cn string) *clientPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create client CA: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create client certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal client key: %v", err)
	}
	c := &clientPKI{CAFile: filepath.Join(dir, "client-ca.pem"), CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")}
	writePEM(t, c.CAFile, "CERTIFICATE", caDER)
	writePEM(t, c.CertFile, "CERTIFICATE", der)
	writePEM(t, c.KeyFile, "PRIVATE KEY", keyDER)
	return c
}

// htpasswdLine is what the shipped example tells operators to run for each
// user: openssl passwd -apr1 with the password on stdin.
func htpasswdLine(t *testing.T, user, password string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/openssl"); err != nil {
		t.Fatalf("e2e: openssl not found: apt-get install openssl (`make test` does it when run as root): %v", err)
	}
	cmd := exec.Command("/usr/bin/openssl", "passwd", "-apr1", "-stdin")
	cmd.Stdin = strings.NewReader(password)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl passwd: %v", err)
	}
	return user + ":" + strings.TrimSpace(string(out)) + "\n"
}

// legacyNginxConfig is what the legacy example's placeholders become.
type legacyNginxConfig struct {
	Port         int    // listens on 127.0.0.1:Port with TLS, p's certificate
	App          string // host:port of the app
	ClientCAFile string // authproxy's client CA
	HtpasswdFile string
}

// startLegacyNginx runs the shipped legacy example with its placeholders
// replaced, in a master configuration like startNginx's, and waits until
// nginx answers TLS handshakes on its port.
func startLegacyNginx(t *testing.T, p *pki, cfg legacyNginxConfig) *process {
	t.Helper()
	bin := requireNginx(t)
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(suite.repoRoot, legacyConfFile))
	if err != nil {
		t.Fatalf("read the shipped example: %v", err)
	}
	site := string(data)
	for _, r := range []struct{ placeholder, value string }{
		{"listen 8443 ssl;", fmt.Sprintf("listen 127.0.0.1:%d ssl;", cfg.Port)},
		{"server 127.0.0.1:8080;", "server " + cfg.App + ";"},
		{"/etc/nginx/tls/legacy.example.com.crt;", p.CertFile + ";"},
		{"/etc/nginx/tls/legacy.example.com.key;", p.KeyFile + ";"},
		{"/etc/nginx/tls/authproxy-client-ca.crt;", cfg.ClientCAFile + ";"},
		{"auth_basic_user_file /etc/nginx/legacy.htpasswd;", "auth_basic_user_file " + cfg.HtpasswdFile + ";"},
	} {
		if n := strings.Count(site, r.placeholder); n != 1 {
			t.Fatalf("%s: placeholder %q appears %d times, want once; update startLegacyNginx with the example", legacyConfFile, r.placeholder, n)
		}
		site = strings.Replace(site, r.placeholder, r.value, 1)
	}
	siteFile := filepath.Join(dir, "legacy-app.conf")
	if err := os.WriteFile(siteFile, []byte(site), 0o600); err != nil {
		t.Fatalf("write nginx site: %v", err)
	}
	args := nginxArgs(t, bin, dir, legacyConfFile, siteFile)
	proc := startProcess(t, "nginx (legacy app)", exec.Command(bin, args...))
	t.Cleanup(func() {
		if t.Failed() {
			for _, log := range []string{"error.log", "access.log"} {
				data, _ := os.ReadFile(filepath.Join(dir, log))
				t.Logf("--- nginx %s ---\n%s", log, data)
			}
		}
	})
	// Any HTTP answer means TLS is up; without a client certificate it is
	// nginx's 400.
	tr := &http.Transport{TLSClientConfig: p.TLSConfig()}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: hangTimeout}
	proc.waitFor(t, "an HTTPS answer", nginxReadyTimeout, func() error {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/", cfg.Port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return proc
}

// TestLegacyBasicAuthBehindNginx runs the shipped legacy example for real:
// Debian's nginx with TLS that requires authproxy's client certificate and
// auth_basic with an htpasswd made as the example says, in front of the
// recording app; authproxy in front of nginx with the private CA, the
// client certificate and the basic-auth password. A listed user reaches the
// app as the user nginx verified, whatever Authorization or X-Remote-User
// the client sends (even with the right password, for another user); an
// unlisted user, a wrong password, a wrong CA or a missing or untrusted
// client certificate never reach the app, and each ends in a readable
// answer: nginx's 401 (without its password dialog challenge), authproxy's
// 502, nginx's 400.
func TestLegacyBasicAuthBehindNginx(t *testing.T) {
	requireE2E(t)
	requireNginx(t)
	p := newPKI(t)
	clientCert := newClientPKI(t, "authproxy client CA", "authproxy")
	stranger := newClientPKI(t, "another client CA", "stranger")
	app := newRecorder(t)
	password := "pw-" + randomToken(t)
	htpasswd := writeTestFile(t, "legacy.htpasswd", htpasswdLine(t, "ann", password)+htpasswdLine(t, "bob", password))
	nginxPort := freePort(t)
	startLegacyNginx(t, p, legacyNginxConfig{Port: nginxPort, App: app.URL.Host, ClientCAFile: clientCert.CAFile, HtpasswdFile: htpasswd})
	upstream := fmt.Sprintf("https://127.0.0.1:%d", nginxPort)

	good := map[string]string{
		"AUTHPROXY_UPSTREAM":                  upstream,
		"AUTHPROXY_UPSTREAM_CA_FILE":          p.CAFile,
		"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE": clientCert.CertFile,
		"AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE":  clientCert.KeyFile,
		"AUTHPROXY_UPSTREAM_BASIC_AUTH":       "true",
		"AUTHPROXY_UPSTREAM_BASIC_PASSWORD":   password,
	}
	with := func(kv ...string) map[string]string {
		env := map[string]string{}
		for k, v := range good {
			env[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(env, kv[i])
			} else {
				env[kv[i]] = kv[i+1]
			}
		}
		return env
	}
	variants := []struct {
		name string
		env  map[string]string
	}{
		{"good", good},
		{"wrong password", with("AUTHPROXY_UPSTREAM_BASIC_PASSWORD", "not-"+password)},
		// The proxy's system roots (SSL_CERT_FILE) hold nginx's CA: the CA
		// file must replace them, not add to them, for this to fail.
		{"wrong CA", with("AUTHPROXY_UPSTREAM_CA_FILE", newPKI(t).CAFile)},
		{"no client certificate", with("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE", "", "AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE", "")},
		{"untrusted client certificate", with("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE", stranger.CertFile, "AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE", stranger.KeyFile)},
	}
	ports := make([]int, len(variants))
	client := providerClient{ClientID: "e2e-legacy", ClientSecret: newCookieSecret(t), TokenEndpointAuthMethod: "client_secret_basic"}
	for i := range variants {
		ports[i] = freePort(t)
		client.RedirectURIs = append(client.RedirectURIs, fmt.Sprintf("http://127.0.0.1:%d/auth/callback", ports[i]))
	}
	prov := startProvider(t, p, providerConfig{Clients: []providerClient{client}})
	start := func(i int) *authproxy {
		t.Helper()
		return startProxy(t, p, proxyConfig{Port: ports[i], Upstream: variants[i].env["AUTHPROXY_UPSTREAM"], Issuer: prov.Issuer,
			ClientID: client.ClientID, ClientSecret: client.ClientSecret, CookieSecret: newCookieSecret(t), PostLogoutURL: "/", Env: variants[i].env})
	}
	basic := func(user, pw string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
	}
	noSecretInLog := func(t *testing.T, ap *authproxy) {
		t.Helper()
		ap.syncLog(t)
		if out := ap.out.String(); strings.Contains(out, password) || strings.Contains(out, basic("ann", password)) {
			t.Errorf("the proxy's log shows the basic-auth password")
		}
	}

	t.Run("good", func(t *testing.T) {
		ap := start(0)
		b := newBrowser(t, p)
		landed := b.Login(ap.URL.String()+"/docs/?page=1", "ann")
		if landed.Status != http.StatusOK || landed.URL.Path != "/docs/" {
			t.Fatalf("ann's login landed on %d %s; hops:\n%s\n%s", landed.Status, landed.URL, b.HopsString(), landed.Body)
		}
		checkApp := func(path, user string) {
			t.Helper()
			seen := app.ByPath(path)
			if len(seen) != 1 {
				t.Fatalf("app saw %d requests for %s, want 1", len(seen), path)
			}
			h := seen[0].Header
			if got := h.Values("X-Remote-User"); len(got) != 1 || got[0] != user {
				t.Errorf("%s: app saw X-Remote-User %q (nginx's $remote_user), want %q", path, got, user)
			}
			if got := h.Values("X-User"); len(got) != 1 || got[0] != user {
				t.Errorf("%s: app saw X-User %q, want %q", path, got, user)
			}
			if got := h.Values("Authorization"); len(got) != 1 || got[0] != basic(user, password) {
				t.Errorf("%s: app saw Authorization %q, want the proxy's basic credentials for %s", path, got, user)
			}
		}
		checkApp("/docs/", "ann")
		// A client that even knows the password cannot be bob through the proxy.
		for i, hdr := range []http.Header{
			{"Authorization": {basic("bob", password)}},
			{"authorization": {basic("bob", password)}, "X-Remote-User": {"bob"}},
			{"Authorization": {"Bearer " + randomToken(t)}, "Connection": {"Authorization"}},
			{"X_Remote_User": {"bob"}, "x-remote-user": {"bob"}},
		} {
			path := fmt.Sprintf("/forged/%d", i)
			h := apiHeaders()
			for k, v := range hdr {
				h[k] = v
			}
			if pg := b.Do(http.MethodGet, ap.URL.String()+path, h, nil); pg.Status != http.StatusOK {
				t.Errorf("%v: status %d", hdr, pg.Status)
			}
			checkApp(path, "ann")
		}

		// carol logs in at the provider and passes authproxy, but nginx's
		// htpasswd does not list her.
		before := len(app.Requests())
		b2 := newBrowser(t, p)
		landed = b2.Login(ap.URL.String()+"/docs/", "carol")
		if landed.Status != http.StatusUnauthorized {
			t.Errorf("carol (not in htpasswd): %d, want nginx's 401", landed.Status)
		}
		if c := landed.Header.Get("WWW-Authenticate"); c != "" {
			t.Errorf("carol's 401 carries the challenge %q: her browser would ask her for a password", c)
		}
		if n := len(app.Requests()) - before; n != 0 {
			t.Errorf("app saw %d requests of carol's", n)
		}
		noSecretInLog(t, ap)
	})

	failures := []struct {
		status int
		body   string // in the answer
		log    string // in the proxy's log
	}{
		1: {http.StatusUnauthorized, "401", "AUTHPROXY_UPSTREAM_BASIC_PASSWORD"},
		2: {http.StatusBadGateway, "upstream_unavailable", "certificate signed by unknown authority"},
		3: {http.StatusBadRequest, "No required SSL certificate was sent", ""},
		// Go's TLS client sends a certificate only when the server's
		// request names its issuer (nginx names its ssl_client_certificate
		// CA), so nginx sees none.
		4: {http.StatusBadRequest, "No required SSL certificate was sent", ""},
	}
	for i := 1; i < len(variants); i++ {
		f := failures[i]
		t.Run(variants[i].name, func(t *testing.T) {
			ap := start(i)
			before := len(app.Requests())
			b := newBrowser(t, p)
			landed := b.Login(ap.URL.String()+"/docs/", "ann")
			if landed.Status != f.status || !strings.Contains(landed.Body, f.body) {
				t.Errorf("ann's login landed on %d, want %d with %q:\n%s", landed.Status, f.status, f.body, landed.Body)
			}
			if c := landed.Header.Get("WWW-Authenticate"); c != "" {
				t.Errorf("answer carries the challenge %q", c)
			}
			for _, accept := range []http.Header{apiHeaders(), navigationHeaders()} {
				if pg := b.Do(http.MethodGet, ap.URL.String()+"/other", accept, nil); pg.Status != f.status {
					t.Errorf("GET /other (Accept %s): %d, want %d", accept.Get("Accept"), pg.Status, f.status)
				}
			}
			if n := len(app.Requests()) - before; n != 0 {
				t.Errorf("app saw %d requests", n)
			}
			ap.syncLog(t)
			if f.log != "" && !strings.Contains(ap.out.String(), f.log) {
				t.Errorf("the proxy's log does not say %q", f.log)
			}
			noSecretInLog(t, ap)
		})
	}
}

// legacyPythonApp is a legacy app that does its own basic authentication
// and TLS: Python's ssl module requiring a client certificate at the
// handshake (CERT_REQUIRED), and a handler that accepts any user name with
// the one password in LEGACY_PASSWORD and answers with the user and the
// client certificate's common name.
const legacyPythonApp = `import base64, hmac, http.server, os, ssl, sys

port, cert, key, client_ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
password = os.environ["LEGACY_PASSWORD"].encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                name, _, pw = base64.b64decode(auth[6:], validate=True).partition(b":")
                if hmac.compare_digest(pw, password):
                    user = name.decode()
            except ValueError:
                pass
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="legacy"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        subject = dict(rdn[0] for rdn in self.connection.getpeercert()["subject"])
        body = ("user=%s cn=%s\n" % (user, subject["commonName"])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(client_ca)
ctx.verify_mode = ssl.CERT_REQUIRED
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
`

// TestLegacyPythonTLSUpstream puts authproxy in front of a Python app that
// checks the basic-auth password itself and refuses, in the TLS handshake,
// clients without a certificate from authproxy's client CA. With the
// private CA, the certificate and the password, the app sees the logged-in
// user and the proxy's certificate; without the certificate, the handshake
// refusal is authproxy's 502 page (not a 500, not a hang); with the wrong
// password, the app's 401 without its Basic challenge.
func TestLegacyPythonTLSUpstream(t *testing.T) {
	requireE2E(t)
	if _, err := os.Stat(pythonPath); err != nil {
		t.Fatalf("e2e: %s not found: apt-get install python3 (`make test` does it when run as root): %v", pythonPath, err)
	}
	p := newPKI(t)
	clientCert := newClientPKI(t, "authproxy client CA", "authproxy")
	password := "pw-" + randomToken(t)
	script := writeTestFile(t, "legacy_app.py", legacyPythonApp)
	appPort := freePort(t)
	cmd := exec.Command(pythonPath, script, fmt.Sprint(appPort), p.CertFile, p.KeyFile, clientCert.CAFile)
	cmd.Env = append(os.Environ(), "LEGACY_PASSWORD="+password)
	app := startProcess(t, "python3 legacy app", cmd)
	app.waitFor(t, "the app listening", hangTimeout, func() error {
		if !strings.Contains(app.out.String(), "listening") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	upstream := fmt.Sprintf("https://127.0.0.1:%d", appPort)

	variants := []struct {
		name   string
		env    map[string]string
		status int
		body   string
		log    string
	}{
		{"certificate and password", map[string]string{
			"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE": clientCert.CertFile, "AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE": clientCert.KeyFile,
			"AUTHPROXY_UPSTREAM_BASIC_PASSWORD": password,
		}, http.StatusOK, "user=ann cn=authproxy\n", ""},
		{"no client certificate", map[string]string{"AUTHPROXY_UPSTREAM_BASIC_PASSWORD": password},
			http.StatusBadGateway, "upstream_unavailable", "remote error: tls: certificate required"},
		{"wrong password", map[string]string{
			"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE": clientCert.CertFile, "AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE": clientCert.KeyFile,
			"AUTHPROXY_UPSTREAM_BASIC_PASSWORD": "not-" + password,
		}, http.StatusUnauthorized, "", "AUTHPROXY_UPSTREAM_BASIC_PASSWORD"},
	}
	ports := make([]int, len(variants))
	client := providerClient{ClientID: "e2e-legacy-python", ClientSecret: newCookieSecret(t), TokenEndpointAuthMethod: "client_secret_basic"}
	for i := range variants {
		ports[i] = freePort(t)
		client.RedirectURIs = append(client.RedirectURIs, fmt.Sprintf("http://127.0.0.1:%d/auth/callback", ports[i]))
	}
	prov := startProvider(t, p, providerConfig{Clients: []providerClient{client}})
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			env := map[string]string{"AUTHPROXY_UPSTREAM_CA_FILE": p.CAFile, "AUTHPROXY_UPSTREAM_BASIC_AUTH": "true"}
			for k, val := range v.env {
				env[k] = val
			}
			ap := startProxy(t, p, proxyConfig{Port: ports[i], Upstream: upstream, Issuer: prov.Issuer,
				ClientID: client.ClientID, ClientSecret: client.ClientSecret, CookieSecret: newCookieSecret(t), PostLogoutURL: "/", Env: env})
			b := newBrowser(t, p)
			landed := b.Login(ap.URL.String()+"/report", "ann")
			if landed.Status != v.status || !strings.Contains(landed.Body, v.body) {
				t.Errorf("ann's login landed on %d %q, want %d with %q", landed.Status, landed.Body, v.status, v.body)
			}
			if c := landed.Header.Get("WWW-Authenticate"); c != "" {
				t.Errorf("answer carries the challenge %q", c)
			}
			// A forged Authorization with the right password for someone
			// else changes nothing.
			h := apiHeaders()
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("bob:"+password)))
			if pg := b.Do(http.MethodGet, ap.URL.String()+"/report", h, nil); pg.Status != v.status || !strings.Contains(pg.Body, v.body) {
				t.Errorf("with a forged Authorization: %d %q, want %d with %q", pg.Status, pg.Body, v.status, v.body)
			}
			ap.syncLog(t)
			out := ap.out.String()
			if v.log != "" && !strings.Contains(out, v.log) {
				t.Errorf("the proxy's log does not say %q", v.log)
			}
			if strings.Contains(out, password) {
				t.Errorf("the proxy's log shows the password")
			}
		})
	}
}
