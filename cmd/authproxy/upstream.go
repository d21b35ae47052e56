package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// upstreamBasic reads the basic-auth password for the upstream: "" when
// basic auth is off.
func (e env) upstreamBasic(p *problems) string {
	on, err := strconv.ParseBool(e.UpstreamBasicAuth)
	pw := e.UpstreamBasicPassword
	switch {
	case err != nil:
		// Not quoted: the likeliest wrong value is the password, set in
		// the neighbouring variable's place.
		p.add("AUTHPROXY_UPSTREAM_BASIC_AUTH must be true or false (its value is not shown: is it AUTHPROXY_UPSTREAM_BASIC_PASSWORD's?)")
	case on && pw == "":
		p.add("AUTHPROXY_UPSTREAM_BASIC_AUTH=true needs AUTHPROXY_UPSTREAM_BASIC_PASSWORD, the password the upstream expects (from a Secret)")
	case !on && pw != "":
		p.add("AUTHPROXY_UPSTREAM_BASIC_PASSWORD is set but AUTHPROXY_UPSTREAM_BASIC_AUTH is not true: set both or neither")
	case on && strings.TrimSpace(pw) != pw:
		// Never echo the value: it is a secret.
		p.add("AUTHPROXY_UPSTREAM_BASIC_PASSWORD has white space at either end (a newline from the file it came from?); the upstream would see it as part of the password")
	case on && strings.ContainsAny(pw, "\x00\r\n"):
		p.add("AUTHPROXY_UPSTREAM_BASIC_PASSWORD contains a NUL or a line break")
	case on:
		return pw
	}
	return ""
}

// upstreamTLSSet reports whether any upstream TLS file is configured.
func (e env) upstreamTLSSet() bool {
	return e.UpstreamCAFile != "" || e.UpstreamClientCertFile != "" || e.UpstreamClientKeyFile != ""
}

// upstreamTLS reads the upstream's private CA and the proxy's client
// certificate into the transport's TLS configuration: nil when none is set
// (the system roots, no client certificate). The files are read here, at
// parse time, so a configuration reload reads them again with the rest.
//
// The CA file replaces the system roots rather than adding to them: an
// upstream with a private CA should not also be believed when a public CA
// issues a certificate for its name. To trust both, concatenate the system
// bundle into the file.
func (e env) upstreamTLS(p *problems) *tls.Config {
	if !e.upstreamTLSSet() {
		return nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.UpstreamCAFile != "" {
		pool, errs := readCAFile(e.UpstreamCAFile)
		for _, err := range errs {
			p.add("AUTHPROXY_UPSTREAM_CA_FILE %s: %v", e.UpstreamCAFile, err)
		}
		c.RootCAs = pool
	}
	cert, key := e.UpstreamClientCertFile, e.UpstreamClientKeyFile
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		p.add("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE and AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE go together: set both or neither")
	default:
		pair, errs := readClientCert(cert, key, time.Now())
		for _, err := range errs {
			p.add("%v", err)
		}
		if len(errs) == 0 {
			c.Certificates = []tls.Certificate{pair}
		}
	}
	return c
}

// readCAFile reads a PEM bundle of CA certificates. Every block must be a
// certificate that parses; text between blocks (as in OpenSSL's bundles)
// is allowed. It returns every problem found, each naming its block.
func readCAFile(path string) (*x509.CertPool, []error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{fmt.Errorf("cannot be read: %w", unwrapPath(err))}
	}
	pool := x509.NewCertPool()
	var errs []error
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if bytes.Contains(rest, []byte("-----BEGIN")) {
				errs = append(errs, fmt.Errorf("a PEM block after block %d is malformed (check its BEGIN/END lines and base64)", n))
			}
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			// The type only: the block may be a private key.
			errs = append(errs, fmt.Errorf("block %d is a %q, not a CERTIFICATE", n, b.Type))
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("block %d: %w", n, err))
			continue
		}
		pool.AddCert(c)
	}
	if n == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"))
	}
	return pool, errs
}

// readClientCert reads the client certificate (leaf first, then any
// intermediates) and its key, and checks that they belong together, that
// the certificate may authenticate a client, and that it has not expired:
// an upstream would refuse every request otherwise. Errors never quote the
// key file's content.
func readClientCert(certFile, keyFile string, now time.Time) (tls.Certificate, []error) {
	var errs []error
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE %s cannot be read: %w", certFile, unwrapPath(err)))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE %s cannot be read: %w", keyFile, unwrapPath(err)))
	}
	if len(errs) > 0 {
		return tls.Certificate{}, errs
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, []error{fmt.Errorf("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE %s with AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE %s: %w", certFile, keyFile, err)}
	}
	leaf := pair.Leaf // parsed by X509KeyPair since Go 1.23
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, []error{fmt.Errorf("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE %s: %w", certFile, err)}
		}
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		errs = append(errs, fmt.Errorf("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE %s: the certificate's extended key usage does not allow client authentication (clientAuth)", certFile))
	}
	if now.After(leaf.NotAfter) {
		errs = append(errs, fmt.Errorf("AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE %s: the certificate expired on %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	return pair, errs
}

// unwrapPath drops the *PathError's repetition of the path, which the
// message names already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
