package main

// HTTPS served by the proxy itself: certificate files reloaded when they
// change, or certificates from an ACME CA (Let's Encrypt), and a plain-HTTP
// listener for HTTP-01 challenges and redirects to https.
//
// ACME is golang.org/x/crypto/acme/autocert, not certmagic. Both do
// TLS-ALPN-01 and HTTP-01 with a directory cache and renewal. autocert is
// maintained by the Go team in x/crypto, adds no module besides it, takes
// the host policy as one function and logs nothing by itself (we log at the
// edge with slog). certmagic brings zap, acmez, libdns, miekg/dns and a
// process-wide certificate cache of its own; what it adds (distributed
// locking for replicas sharing storage, OCSP stapling, on-demand issuance
// rate limits) matters for a fleet of TLS terminators, not for one proxy in
// front of a few apps, and Kubernetes setups terminate TLS at the ingress.
// Pin x/crypto: autocert of v0.52.0 finalizes with CreateOrderCert, which
// polls the URL of the finalize answer's Location header; Pebble 2.10.3
// sends none (RFC 8555 asks for none) and the order fails with `Post "":
// unsupported protocol scheme ""` (checked). v0.59.0 polls the order's own
// URL (CreateCertFromOrder) and passes e2e/acme_test.go against Pebble.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/authproxy/authproxy/oidc"
)

// tlsConfig is how the proxy serves HTTPS; its zero value serves plain
// HTTP.
type tlsConfig struct {
	CertFile, KeyFile string      // PEM files, reloaded when they change
	ACME              *acmeConfig // nil: no ACME
	HTTPAddr          string      // plain-HTTP listener; "": none
	// Hosts are the names that get certificates and https redirects: the
	// host of AUTHPROXY_REDIRECT_URL. The first also answers handshakes
	// without SNI (probes, clients dialing an IP).
	Hosts []string
	// HTTPSPort is the port the redirects name ("": 443), the port of
	// AUTHPROXY_REDIRECT_URL.
	HTTPSPort string
}

// acmeConfig is the ACME account and where it keeps its state.
type acmeConfig struct {
	Email     string
	Directory string
	CacheDir  string
	Roots     *x509.CertPool // trusted for the directory's HTTPS; nil: the system's
}

func (c tlsConfig) enabled() bool { return c.CertFile != "" || c.ACME != nil }

// tlsSettings reads the TLS section.
func (e env) tlsSettings(p *problems, origin oidc.Origin) tlsConfig {
	c := tlsConfig{CertFile: e.TLSCertFile, KeyFile: e.TLSKeyFile, HTTPAddr: e.HTTPAddr}
	useACME := p.boolean("AUTHPROXY_ACME", e.ACME)
	switch {
	case (e.TLSCertFile == "") != (e.TLSKeyFile == ""):
		p.add("AUTHPROXY_TLS_CERT_FILE and AUTHPROXY_TLS_KEY_FILE go together: set both or neither")
	case e.TLSCertFile != "":
		if _, err := tls.LoadX509KeyPair(e.TLSCertFile, e.TLSKeyFile); err != nil {
			p.add("AUTHPROXY_TLS_CERT_FILE/AUTHPROXY_TLS_KEY_FILE: %v", err)
		}
	}
	if origin.Fixed != nil {
		c.Hosts = []string{strings.ToLower(origin.Fixed.Hostname())}
		if origin.Fixed.Scheme == "https" {
			c.HTTPSPort = origin.Fixed.Port()
		}
	}
	if useACME {
		c.ACME = e.acmeSettings(p, c.Hosts)
		if e.TLSCertFile != "" || e.TLSKeyFile != "" {
			p.add("AUTHPROXY_ACME and AUTHPROXY_TLS_CERT_FILE/KEY_FILE exclude each other: certificates come from ACME or from files")
		}
	} else if e.ACMEEmail != "" || e.ACMECacheDir != "" || e.ACMECAFile != "" {
		p.add("AUTHPROXY_ACME_EMAIL/CACHE_DIR/CA_FILE are set but AUTHPROXY_ACME is not true")
	}
	if (useACME || e.TLSCertFile != "") && origin.Fixed != nil && origin.Fixed.Scheme != "https" {
		p.add("AUTHPROXY_REDIRECT_URL %q must be https:// when the proxy serves TLS", withoutPassword(e.RedirectURL))
	}
	if e.HTTPAddr != "" {
		switch _, _, err := net.SplitHostPort(e.HTTPAddr); {
		case err != nil:
			p.add("AUTHPROXY_HTTP_ADDR %q is not host:port", e.HTTPAddr)
		case e.HTTPAddr == e.Addr || e.HTTPAddr == e.MetricsAddr:
			p.add("AUTHPROXY_HTTP_ADDR must differ from AUTHPROXY_ADDR and AUTHPROXY_METRICS_ADDR")
		}
		if !useACME && e.TLSCertFile == "" {
			p.add("AUTHPROXY_HTTP_ADDR needs TLS (AUTHPROXY_TLS_CERT_FILE/KEY_FILE or AUTHPROXY_ACME=true): it answers ACME challenges and redirects to https")
		} else if !useACME && origin.Fixed == nil {
			p.add("AUTHPROXY_HTTP_ADDR needs AUTHPROXY_REDIRECT_URL: its host is the one redirected to https")
		}
	}
	return c
}

// acmeSettings reads the ACME account. hosts are the names that may get
// certificates.
func (e env) acmeSettings(p *problems, hosts []string) *acmeConfig {
	a := &acmeConfig{Email: e.ACMEEmail, Directory: e.ACMEDirectory, CacheDir: e.ACMECacheDir}
	if a.Email == "" {
		p.add("AUTHPROXY_ACME needs AUTHPROXY_ACME_EMAIL: the CA writes there about expiring certificates and incidents")
	} else if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
		p.add("AUTHPROXY_ACME_EMAIL %q is not an email address like ops@example.com", a.Email)
	}
	if a.CacheDir == "" {
		p.add("AUTHPROXY_ACME needs AUTHPROXY_ACME_CACHE_DIR: without it every restart orders new certificates and soon hits the CA's rate limits")
	}
	if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		p.add("AUTHPROXY_ACME_DIRECTORY %q must be an https:// URL", withoutPassword(a.Directory))
	}
	if e.ACMECAFile != "" {
		pemData, err := os.ReadFile(e.ACMECAFile)
		a.Roots = x509.NewCertPool()
		if err != nil {
			p.add("AUTHPROXY_ACME_CA_FILE: %v", err)
		} else if !a.Roots.AppendCertsFromPEM(pemData) {
			p.add("AUTHPROXY_ACME_CA_FILE %s holds no PEM certificate", e.ACMECAFile)
		}
	}
	switch {
	case len(hosts) == 0:
		p.add("AUTHPROXY_ACME needs AUTHPROXY_REDIRECT_URL: its host is the name that gets a certificate")
	case net.ParseIP(hosts[0]) != nil || !strings.Contains(hosts[0], "."):
		p.add("AUTHPROXY_ACME needs a public DNS name in AUTHPROXY_REDIRECT_URL, not %q", hosts[0])
	}
	return a
}

// hostSet is a host policy: it allows exactly names, compared as hostName
// normalizes them. Wildcard names ("*.example.com") allow nothing: an ACME
// CA validates wildcards by DNS-01 only, and a wildcard policy would let
// anyone make the proxy order certificates for made-up names.
func hostSet(names []string) func(host string) bool {
	set := map[string]bool{}
	for _, n := range names {
		if h, ok := hostName(n); ok {
			set[h] = true
		}
	}
	return func(host string) bool { return set[host] }
}

// hostName returns the name of a Host header or SNI value: without a port,
// lower case, without a final dot; ok is false unless it is a DNS name
// (letters, digits, '-' and '.', no empty label).
func hostName(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || len(host) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", false
			}
		}
	}
	return host, true
}

// tlsServer is what serving HTTPS needs: the TLS configuration of the
// public listener and, with AUTHPROXY_HTTP_ADDR, the plain-HTTP handler.
type tlsServer struct {
	config   *tls.Config
	certs    *certFiles // nil with ACME
	http     http.Handler
	httpAddr string
}

// newTLS loads the certificate files or sets up ACME. allow says which
// host names may get certificates and redirects.
func newTLS(cfg tlsConfig, allow func(host string) bool, log *slog.Logger) (*tlsServer, error) {
	t := &tlsServer{httpAddr: cfg.HTTPAddr}
	t.config = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	var challenges http.Handler // HTTP-01; nil without ACME
	if cfg.ACME == nil {
		t.certs = &certFiles{certFile: cfg.CertFile, keyFile: cfg.KeyFile, every: certCheckInterval, log: log}
		if err := t.certs.Reload(); err != nil {
			return nil, err
		}
		t.config.GetCertificate = t.certs.GetCertificate
	} else {
		m := acmeManager(*cfg.ACME, allow, log)
		t.config.NextProtos = append(t.config.NextProtos, acme.ALPNProto)
		t.config.GetCertificate = acmeCertificate(m, allow, cfg.Hosts, log)
		// HTTPHandler also turns HTTP-01 on: autocert tries TLS-ALPN-01
		// first, then HTTP-01 in a new order.
		if cfg.HTTPAddr != "" {
			challenges = m.HTTPHandler(nil)
		}
	}
	t.http = redirectHandler(allow, cfg.HTTPSPort, challenges)
	return t, nil
}

// Reload loads the certificate files again, changed or not, for SIGHUP;
// with ACME or without TLS it does nothing. On an error the certificate in
// use stays.
func (t *tlsServer) Reload() error {
	if t == nil || t.certs == nil {
		return nil
	}
	return t.certs.Reload()
}

// acmeManager is the autocert manager for cfg. Setting AUTHPROXY_ACME
// accepts the CA's terms of service.
func acmeManager(cfg acmeConfig, allow func(string) bool, log *slog.Logger) *autocert.Manager {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.Roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12}
	}
	return &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Email:  cfg.Email,
		Cache:  loggedCache{Cache: autocert.DirCache(cfg.CacheDir), log: log},
		// autocert passes the Host header with its port (HTTP-01) and the
		// SNI name (TLS) alike.
		HostPolicy: func(_ context.Context, host string) error {
			if name, ok := hostName(host); ok && allow(name) {
				return nil
			}
			return errHostNotAllowed
		},
		Client: &acme.Client{DirectoryURL: cfg.Directory, HTTPClient: &http.Client{Transport: tr, Timeout: time.Minute}},
	}
}

var errHostNotAllowed = errors.New("acme: not one of the proxy's host names")

// acmeCertificate is m's GetCertificate that answers a handshake without
// SNI with the first host's certificate, and logs why a certificate for an
// allowed host could not be had (the client only sees a failed handshake),
// once per host and error: autocert retries an order at most once a minute
// and answers the handshakes in between with the same error.
func acmeCertificate(m *autocert.Manager, allow func(string) bool, hosts []string, log *slog.Logger) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	var logged sync.Map // host -> last error logged
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" && len(hosts) > 0 {
			h := *hello
			h.ServerName = hosts[0]
			hello = &h
		}
		cert, err := m.GetCertificate(hello)
		if err != nil {
			if name, ok := hostName(hello.ServerName); ok && allow(name) {
				if prev, _ := logged.Swap(name, err.Error()); prev != err.Error() {
					log.Warn("ACME: no certificate for an allowed host; handshakes fail until one is issued", "host", name, "err", err)
				}
			}
			return nil, err
		}
		if name, ok := hostName(hello.ServerName); ok {
			logged.Delete(name)
		}
		return cert, nil
	}
}

// loggedCache logs what the ACME manager keeps: a certificate stored is a
// new one from the CA, one read at a start comes from an earlier order.
type loggedCache struct {
	autocert.Cache
	log *slog.Logger
}

// isCertKey tells certificate keys of autocert's cache ("host", "host+rsa")
// from the account key and challenge tokens.
func isCertKey(key string) bool {
	_, suffix, found := strings.Cut(key, "+")
	return !found || suffix == "rsa"
}

func (c loggedCache) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := c.Cache.Get(ctx, key)
	if err == nil && isCertKey(key) {
		c.log.Info("ACME certificate read from the cache", "host", key)
	}
	return data, err
}

func (c loggedCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	switch {
	case err != nil:
		c.log.Error("ACME cache: cannot write; the next start orders again", "key", key, "err", err)
	case isCertKey(key):
		c.log.Info("ACME certificate issued and cached", "host", key)
	}
	return err
}

// redirectHandler serves the plain-HTTP listener: ACME HTTP-01 challenges
// (when challenges is not nil) and, for everything else, a redirect to the
// same host and path over https. Only allowed hosts are answered: a Host
// header is never echoed into a redirect unchecked.
func redirectHandler(allow func(string) bool, httpsPort string, challenges http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, ok := hostName(r.Host)
		switch {
		case !ok || !strings.HasPrefix(r.URL.Path, "/"):
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		case !allow(host):
			http.Error(w, "unknown host", http.StatusNotFound)
			return
		case challenges != nil && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/"):
			challenges.ServeHTTP(w, r)
			return
		}
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		if httpsPort != "" && httpsPort != "443" {
			target.Host = net.JoinHostPort(host, httpsPort)
		}
		code := http.StatusPermanentRedirect // keeps the method and body
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		http.Redirect(w, r, target.String(), code)
	})
}

// serveHTTP starts the plain-HTTP listener, if configured.
func (t *tlsServer) serveHTTP(log *slog.Logger, errc chan<- error) (*http.Server, error) {
	if t.httpAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", t.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	srv := &http.Server{Handler: t.http, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	log.Info("http listening for ACME challenges and https redirects", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http listener: %w", err)
		}
	}()
	return srv, nil
}

// certCheckInterval is how often a handshake may look whether the
// certificate files changed.
const certCheckInterval = 5 * time.Second

// certFiles holds the certificate of AUTHPROXY_TLS_CERT_FILE/KEY_FILE for
// tls.Config.GetCertificate. A handshake looks at the files' metadata at
// most once per every, and loads them when they changed; a pair that does
// not load (a half-written one, say) leaves the certificate in use, and is
// logged once. Open connections keep the certificate they shook hands with.
type certFiles struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]
	next atomic.Int64 // unix nanoseconds: when a handshake may look again

	mu      sync.Mutex // one look or load at a time; guards what follows
	loaded  [2]os.FileInfo
	lastErr string // the last problem logged, "" after a load
}

// GetCertificate returns the certificate in use, after loading the files
// if they changed.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if now := time.Now().UnixNano(); now >= c.next.Load() && c.mu.TryLock() {
		c.next.Store(now + int64(c.every))
		if stat, err := c.stat(); err != nil {
			c.failed(err)
		} else if !sameFiles(stat, c.loaded) {
			if err := c.load(stat); err != nil {
				c.failed(err)
			}
		}
		c.mu.Unlock()
	}
	return c.cert.Load(), nil
}

// Reload loads the files now, changed or not (for SIGHUP). On an error
// the certificate in use stays.
func (c *certFiles) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	stat, err := c.stat()
	if err == nil {
		err = c.load(stat)
	}
	return err
}

// stat looks at both files; their metadata taken before reading them
// makes a change during the read show at the next look.
func (c *certFiles) stat() ([2]os.FileInfo, error) {
	var out [2]os.FileInfo
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return out, err
		}
		out[i] = fi
	}
	return out, nil
}

func (c *certFiles) load(stat [2]os.FileInfo) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&cert)
	c.loaded, c.lastErr = stat, ""
	c.log.Info("TLS certificate loaded", "file", c.certFile, "names", cert.Leaf.DNSNames,
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// failed logs err unless it was the last one logged.
func (c *certFiles) failed(err error) {
	if err.Error() != c.lastErr {
		c.lastErr = err.Error()
		c.log.Error("TLS certificate files changed but do not load; still serving the previous certificate", "err", err)
	}
}

// sameFiles reports whether a and b describe the same unchanged files: a
// Kubernetes Secret volume swaps in new files, an editor or certbot
// rewrites them in place.
func sameFiles(a, b [2]os.FileInfo) bool {
	for i := range a {
		if a[i] == nil || b[i] == nil || !os.SameFile(a[i], b[i]) ||
			!a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size() {
			return false
		}
	}
	return true
}

// tlsListener accepts connections from ln and hands out *tls.Conn whose
// handshake is done, so that the framing check above it knows HTTP/2
// (ALPN h2, passed through) from HTTP/1.1 (checked). Handshakes run
// concurrently, each bounded by timeout: a slow client stalls nobody.
// A TLS-ALPN-01 validation ends with its handshake.
type tlsListener struct {
	net.Listener
	config  *tls.Config
	timeout time.Duration
	log     *slog.Logger

	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once
}

func newTLSListener(ln net.Listener, config *tls.Config, timeout time.Duration, log *slog.Logger) *tlsListener {
	l := &tlsListener{Listener: ln, config: config, timeout: timeout, log: log,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

// acceptLoop hands every error to Accept, where the server decides
// (temporary ones it retries after a pause, which paces this loop too).
func (l *tlsListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.config)
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == acme.ALPNProto {
		_ = tc.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// tlsStateKey keys the TLS state of a connection in its context.
type tlsStateKey struct{}

// connTLSState is the server's ConnContext: the server sets r.TLS only
// for a *tls.Conn it holds itself, and the framing check wraps HTTP/1.1
// ones. withTLSState puts the state back into each request.
func connTLSState(ctx context.Context, c net.Conn) context.Context {
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		if tc, ok := w.NetConn().(*tls.Conn); ok {
			st := tc.ConnectionState()
			return context.WithValue(ctx, tlsStateKey{}, &st)
		}
	}
	return ctx
}

// withTLSState sets r.TLS from connTLSState's value, so that the public
// origin (https) and X-Forwarded-Proto are right for HTTP/1.1 over TLS.
func withTLSState(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r.TLS = st
			}
		}
		h.ServeHTTP(w, r)
	})
}

// servesTLS reports whether the environment makes the proxy serve HTTPS,
// for `authproxy healthcheck`.
func servesTLS(getenv func(string) string) bool {
	useACME, _ := strconv.ParseBool(getenv("AUTHPROXY_ACME"))
	return useACME || getenv("AUTHPROXY_TLS_CERT_FILE") != ""
}

// healthcheckTLSClient probes the proxy's own process on loopback: its
// certificate names the public host, not 127.0.0.1, and the probe asks
// whether the process answers, not who it is.
func healthcheckTLSClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
}
