package redisstore

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/authproxy/authproxy/session"
)

// An entry in Redis is a plaintext header followed by the AES-256-GCM sealed
// session JSON:
//
//	version (1 byte) | created (8, Unix ms) | expiry (8, Unix ms) | nonce (12) | ciphertext | tag (16)
//
// The header is readable without the key, for Sessions; it is also part of
// the additional data, with the id, so it cannot be altered or the entry
// moved to another id without Load refusing it.
const (
	version    = 1
	headerLen  = 17
	sealedOver = 12 + 16 // nonce and tag of NewGCMWithRandomNonce
)

type header struct {
	created, expiry time.Time
}

func (h header) put(b []byte) {
	b[0] = version
	binary.BigEndian.PutUint64(b[1:9], uint64(h.created.UnixMilli()))
	binary.BigEndian.PutUint64(b[9:17], uint64(h.expiry.UnixMilli()))
}

func parseHeader(b []byte) (header, bool) {
	if len(b) < headerLen || b[0] != version {
		return header{}, false
	}
	return header{
		created: time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9]))),
		expiry:  time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:17]))),
	}, true
}

// aead returns the cipher of one session key. A random 96-bit nonce per seal
// is safe: a key seals once per login or refresh, far from GCM's 2^32 limit.
func aead(key *[32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// additionalData binds a sealed session to its header and id.
func additionalData(buf []byte, hdr []byte, id string) []byte {
	return append(append(buf[:0], hdr...), id...)
}

func seal(t ticket, h header, plain []byte) ([]byte, error) {
	a, err := aead(&t.key)
	if err != nil {
		return nil, fmt.Errorf("redisstore: session cipher: %w", err)
	}
	out := make([]byte, headerLen, headerLen+sealedOver+len(plain))
	h.put(out)
	var ad [headerLen + idLen]byte
	return a.Seal(out, nil, plain, additionalData(ad[:], out[:headerLen], t.id)), nil
}

var errBadEntry = fmt.Errorf("%w: stored session does not open with the ticket's key", session.ErrNoSession)

// open checks and decrypts an entry with t's key. The plaintext reuses raw's
// memory.
func open(t ticket, raw []byte) (header, []byte, error) {
	h, ok := parseHeader(raw)
	if !ok || len(raw) < headerLen+sealedOver {
		return header{}, nil, errBadEntry
	}
	a, err := aead(&t.key)
	if err != nil {
		return header{}, nil, errBadEntry
	}
	var ad [headerLen + idLen]byte
	plain, err := a.Open(raw[headerLen:headerLen], nil, raw[headerLen:], additionalData(ad[:], raw[:headerLen], t.id))
	if err != nil {
		return header{}, nil, errBadEntry
	}
	return h, plain, nil
}
