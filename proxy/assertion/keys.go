package assertion

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// GenerateKey returns a new P-256 signing key.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("assertion: generate key: %w", err)
	}
	return k, nil
}

// LoadKeys parses the P-256 private keys in pemData, in order, so that the
// first key signs when the result is used as Config.Keys. It accepts
// "EC PRIVATE KEY" (SEC 1) and "PRIVATE KEY" (PKCS #8) blocks. It skips
// "EC PARAMETERS" blocks, which `openssl ecparam -genkey` writes, and
// rejects any other block. Errors name the block by its position and type,
// and never contain key material or the parser's own message.
func LoadKeys(pemData []byte) ([]*ecdsa.PrivateKey, error) {
	var keys []*ecdsa.PrivateKey
	rest := pemData
	n := 0 // blocks read
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type == "EC PARAMETERS" {
			continue
		}
		k, err := parseBlock(block)
		if err != nil {
			return nil, fmt.Errorf("assertion: PEM block %d (%q): %w", n, block.Type, err)
		}
		keys = append(keys, k)
	}
	// pem.Decode skips a block it cannot parse. A key silently dropped
	// that way would surprise whoever rotates keys.
	if begins := bytes.Count(pemData, []byte("-----BEGIN ")); begins != n {
		return nil, fmt.Errorf("assertion: %d of %d PEM blocks are malformed or truncated", begins-n, begins)
	}
	if len(keys) == 0 {
		return nil, errors.New(`assertion: no "EC PRIVATE KEY" or "PRIVATE KEY" PEM block found`)
	}
	return keys, nil
}

// parseBlock returns the P-256 key in block. Its errors do not wrap x509's,
// which may quote the input.
func parseBlock(block *pem.Block) (*ecdsa.PrivateKey, error) {
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM headers are not supported (is the key encrypted?)")
	}
	var k *ecdsa.PrivateKey
	switch block.Type {
	case "EC PRIVATE KEY":
		var err error
		if k, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			return nil, errors.New("not a valid SEC 1 EC private key on a supported curve")
		}
	case "PRIVATE KEY":
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("not a valid PKCS #8 private key")
		}
		switch p := parsed.(type) {
		case *ecdsa.PrivateKey:
			k = p
		case *rsa.PrivateKey:
			return nil, errors.New("RSA key, want ECDSA P-256")
		case ed25519.PrivateKey:
			return nil, errors.New("Ed25519 key, want ECDSA P-256")
		default:
			return nil, fmt.Errorf("%T key, want ECDSA P-256", parsed)
		}
	default:
		return nil, errors.New(`unsupported block type, want "EC PRIVATE KEY" or "PRIVATE KEY"`)
	}
	return ownKey(k)
}
