package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"
)

// oneConnListener hands out one connection.
type oneConnListener struct {
	net.Listener
	c net.Conn
}

func (l *oneConnListener) Accept() (net.Conn, error) { return l.c, nil }

// TestFramingTLS: a TLS connection that negotiated HTTP/2 passes through
// unwrapped (the server speaks HTTP/2 only on a *tls.Conn); HTTP/1.1 and
// no ALPN are checked, and the wrapper's NetConn returns the *tls.Conn.
func TestFramingTLS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"x"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, tt := range []struct {
		alpn    []string
		wrapped bool
	}{
		{[]string{"h2"}, false},
		{[]string{"http/1.1"}, true},
		{nil, true},
	} {
		client, server := net.Pipe()
		srv := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
		done := make(chan error, 1)
		go func() {
			done <- tls.Client(client, &tls.Config{InsecureSkipVerify: true, NextProtos: tt.alpn}).Handshake()
		}()
		if err := srv.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c, err := RefuseAmbiguousFraming(&oneConnListener{c: srv}).Accept()
		if err != nil {
			t.Fatal(err)
		}
		fc, isWrapped := c.(*framingConn)
		if isWrapped != tt.wrapped {
			t.Errorf("ALPN %v: got a %T, want wrapped %v", tt.alpn, c, tt.wrapped)
		}
		if isWrapped && fc.NetConn() != srv {
			t.Errorf("ALPN %v: NetConn is not the *tls.Conn", tt.alpn)
		}
		client.Close()
		server.Close()
	}
}
