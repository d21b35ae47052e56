package proxy

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// TestLongLivedConnectionsEndWhenTheirKeyIsRemoved: a configuration reload
// that removes a cookie key ends the sessions it sealed (README, Reload);
// that must hold for a WebSocket or stream opened before the reload too,
// with the cookie store, whose sessions are otherwise never checked again
// (no revocation): else whoever holds a cookie sealed with a leaked key
// keeps an open connection for the whole session lifetime after the key
// is removed. A rotation that keeps the key leaves the connection alone.
func TestLongLivedConnectionsEndWhenTheirKeyIsRemoved(t *testing.T) {
	oldKey, newKey := make([]byte, 32), bytes.Repeat([]byte{1}, 32)
	for _, k := range longKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			// Removed before the watch starts (its first check, with the
			// default Revalidate), and after (a periodic check).
			for _, watchAfter := range []time.Duration{time.Second, 50 * time.Millisecond} {
				f := newFixture(t, http.HandlerFunc(longUpstream), func(c *Config) {
					c.watchAfter = watchAfter
					if watchAfter < time.Second {
						c.Revalidate = 100 * time.Millisecond
					}
				})
				kept := openLong(t, f, k.path, k.accept, f.session)
				// A rotation that keeps the session's key: the connection
				// lives on past the watch's first check.
				if err := f.store.SetSecrets([][]byte{newKey, oldKey}); err != nil {
					t.Fatal(err)
				}
				if k.path != "/poll" {
					for deadline := time.Now().Add(watchAfter + time.Second); time.Now().Before(deadline); {
						if _, err := kept.ReadString('\n'); err != nil {
							t.Fatalf("watch after %s: a connection whose key was kept ended: %v", watchAfter, err)
						}
					}
				}
				if err := f.store.SetSecrets([][]byte{newKey}); err != nil {
					t.Fatal(err)
				}
				ends(t, kept, "the removal of its session's key")
			}
		})
	}
}
