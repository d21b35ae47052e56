package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/authproxy/authproxy/proxy"
)

// BenchmarkCertFilesGetCertificate is the handshake's cost of the
// certificate holder between looks at the files: an atomic load.
func BenchmarkCertFilesGetCertificate(b *testing.B) {
	ca := newServerCA(b)
	dir := b.TempDir()
	c := &certFiles{certFile: filepath.Join(dir, "c"), keyFile: filepath.Join(dir, "k"), every: certCheckInterval,
		log: newLogger(logConfig{Format: "text"}, io.Discard)}
	certPEM, keyPEM := ca.issue(b, 1)
	replaceFile(b, c.certFile, certPEM)
	replaceFile(b, c.keyFile, keyPEM)
	if err := c.Reload(); err != nil {
		b.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if cert, _ := c.GetCertificate(hello); cert == nil {
				b.Fatal("no certificate")
			}
		}
	})
}

// BenchmarkTLSConnection: a new HTTP/1.1 connection (handshake and one
// request) per iteration, through tlsListener and the framing check, or
// through tls.NewListener as net/http would use it (no framing check).
func BenchmarkTLSConnection(b *testing.B) {
	ca := newServerCA(b)
	certPEM, keyPEM := ca.issue(b, 1)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	for _, tt := range []struct {
		name string
		wrap func(net.Listener) net.Listener
	}{
		{"tls.NewListener", func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) }},
		{"tlsListener+framing", func(ln net.Listener) net.Listener {
			return proxy.RefuseAmbiguousFraming(newTLSListener(ln, cfg, 10*time.Second, newLogger(logConfig{Format: "text"}, io.Discard)))
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ConnContext: connTLSState}
			go srv.Serve(tt.wrap(ln))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
				TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: "localhost"},
				TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}}}
			url := "https://" + ln.Addr().String() + "/"
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
