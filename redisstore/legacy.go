package redisstore

import (
	"fmt"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/authproxy/authproxy/session"
)

// Ticket cookies written before the ticket cookie had keys of its own were
// sealed with the cookie store's keys (these labels), with the same JSON
// names. Load still accepts them, so that upgrading logs nobody out; a
// cookie-store session opened this way carries no ticket and is refused.
// They are replaced at the next login and have all expired one session
// lifetime after the upgrade; then this file can go.
const (
	legacyHMACLabel = "authproxy cookie hmac"
	legacyAESLabel  = "authproxy cookie aes"
)

func legacyCodecs(secrets [][]byte, maxAge time.Duration) ([]securecookie.Codec, error) {
	var codecs []securecookie.Codec
	for _, secret := range secrets {
		c, err := newCodec(secret, legacyHMACLabel, legacyAESLabel, maxAge)
		if err != nil {
			return nil, err
		}
		codecs = append(codecs, c)
	}
	return codecs, nil
}

// readLegacy opens a ticket cookie of the earlier format, sealed under name.
func readLegacy(name, value string, codecs []securecookie.Codec) (ticketCookie, error) {
	var tc ticketCookie
	if err := securecookie.DecodeMulti(name, value, &tc, codecs...); err != nil {
		return ticketCookie{}, fmt.Errorf("%w: %w", session.ErrNoSession, err)
	}
	return tc, nil
}
