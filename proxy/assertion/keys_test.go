package assertion_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/authproxy/authproxy/proxy/assertion"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func sec1(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func TestLoadKeys(t *testing.T) {
	k1, k2, k3 := mustKey(t), mustKey(t), mustKey(t)
	// What `openssl ecparam -name prime256v1 -genkey` writes before the key.
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	tests := []struct {
		name string
		pem  []byte
		want []*ecdsa.PrivateKey
	}{
		{"SEC 1", sec1(t, k1), []*ecdsa.PrivateKey{k1}},
		{"PKCS #8", pkcs8(t, k1), []*ecdsa.PrivateKey{k1}},
		{"several blocks keep their order", bytes.Join([][]byte{pkcs8(t, k2), sec1(t, k1), pkcs8(t, k3)}, nil), []*ecdsa.PrivateKey{k2, k1, k3}},
		{"openssl ecparam output", append(ecParams, sec1(t, k1)...), []*ecdsa.PrivateKey{k1}},
		{"text around blocks", []byte("# current\n" + string(sec1(t, k1)) + "\n# previous\n" + string(pkcs8(t, k2)) + "\n"), []*ecdsa.PrivateKey{k1, k2}},
		{"CRLF line endings", bytes.ReplaceAll(sec1(t, k1), []byte("\n"), []byte("\r\n")), []*ecdsa.PrivateKey{k1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := assertion.LoadKeys(tt.pem)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("key %d differs", i)
				}
			}
			// The keys work as a Signer's, with the same kid as the originals.
			s := mustSigner(t, assertion.Config{Keys: got})
			set := fetchJWKS(t, s)
			for i, k := range set.Keys {
				if want := thumbprint(t, &tt.want[i].PublicKey); k.KeyID != want {
					t.Errorf("kid %d = %q, want %q", i, k.KeyID, want)
				}
			}
		})
	}
}

func TestLoadKeysRejects(t *testing.T) {
	good := mustKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1DER, err := x509.MarshalECPrivateKey(good)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&good.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   sec1DER,
	})
	goodPEM := sec1(t, good)
	if leaked(goodPEM, "oops: "+base64.StdEncoding.EncodeToString(sec1DER)[10:30]) == "" {
		t.Fatal("the leak check misses base64 of the input")
	}
	truncated := goodPEM[:len(goodPEM)-30]
	corrupt := pemBlock("EC PRIVATE KEY", append(append([]byte{}, sec1DER[:20]...), bytes.Repeat([]byte{0xA5}, 60)...))

	tests := []struct {
		name string
		pem  []byte
		want string // in the error
	}{
		{"empty", nil, "no "},
		{"garbage", []byte("this is not a key but it is long enough to show up: c2VjcmV0LWtleS1tYXRlcmlhbA=="), "no "},
		{"base64 DER without armor", []byte(base64.StdEncoding.EncodeToString(sec1DER)), "no "},
		{"P-384 SEC 1", sec1(t, p384), "P-384"},
		{"P-384 PKCS #8", pkcs8(t, p384), "P-384"},
		{"P-521 PKCS #8", pkcs8(t, p521), "P-521"},
		{"RSA PKCS #8", pkcs8(t, rsaKey), "RSA"},
		{"RSA PKCS #1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "unsupported block type"},
		{"Ed25519 PKCS #8", pkcs8(t, edKey), "Ed25519"},
		{"public key", pemBlock("PUBLIC KEY", pubDER), "unsupported block type"},
		{"certificate", pemBlock("CERTIFICATE", pubDER), "unsupported block type"},
		{"SEC 1 bytes labelled PKCS #8", pemBlock("PRIVATE KEY", sec1DER), "PKCS #8"},
		{"corrupt DER", corrupt, "SEC 1"},
		{"encrypted", encrypted, "encrypted"},
		{"only EC PARAMETERS", pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), "no "},
		{"bad second block", append(sec1(t, mustKey(t)), pkcs8(t, rsaKey)...), "block 2"},
		{"truncated second block", append(sec1(t, mustKey(t)), truncated...), "malformed or truncated"},
		{"truncated first block", append(append([]byte{}, truncated...), sec1(t, mustKey(t))...), "malformed or truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := assertion.LoadKeys(tt.pem)
			if err == nil {
				t.Fatalf("accepted, %d keys", len(keys))
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not mention %q", msg, tt.want)
			}
			if leak := leaked(tt.pem, msg); leak != "" {
				t.Errorf("error %q contains %q from the input", msg, leak)
			}
			t.Logf("%s", msg)
		})
	}
}

// leaked returns a piece of the input's content (base64 body, DER or raw
// text), at least 12 characters long, that occurs in msg, or "".
func leaked(input []byte, msg string) string {
	var pieces []string
	rest := input
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		pieces = append(pieces, base64.StdEncoding.EncodeToString(b.Bytes), string(b.Bytes))
	}
	// Also the raw input, for what did not decode as PEM, minus the armor
	// lines that may legitimately be named.
	var raw []string
	for line := range strings.Lines(string(input)) {
		if !strings.HasPrefix(line, "-----") {
			raw = append(raw, strings.TrimSpace(line))
		}
	}
	pieces = append(pieces, raw...)
	const n = 12
	for _, p := range pieces {
		for i := 0; i+n <= len(p); i++ {
			if s := p[i : i+n]; strings.Contains(msg, s) {
				return s
			}
		}
	}
	return ""
}

func TestGenerateKey(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	if k1.Curve != elliptic.P256() {
		t.Errorf("curve %s", k1.Curve.Params().Name)
	}
	if k1.Equal(k2) {
		t.Error("two generated keys are equal")
	}
}
