package redisstore

import (
	"testing"
)

// TestSetSecrets swaps the ticket cookie's keys of a running store, as a
// configuration reload does: after adding a key, a ticket sealed with the
// old one still opens (cached or not) and new tickets are sealed with the
// new one; after removing the old key, its tickets are "no session" (log in
// again), never an unavailable store or a usage error; a bad set changes
// nothing.
func TestSetSecrets(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	s := newReplica(t, r, replicaOpts{clock: clk.Now, secret: secret(1)})
	old := save(t, s.Store, nil, smallSession("auth0|ada", clk.Now()))
	if _, err := s.Load(old); err != nil { // now cached
		t.Fatal(err)
	}

	if err := s.SetSecrets([][]byte{secret(2), secret(1)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(old); err != nil || got.User != "auth0|ada" {
		t.Fatalf("ticket under the kept key after rotation: %+v %v", got, err)
	}
	fresh := save(t, s.Store, nil, smallSession("auth0|bob", clk.Now()))
	only2 := newReplica(t, r, replicaOpts{clock: clk.Now, secret: secret(2)})
	if got, err := only2.Load(fresh); err != nil || got.User != "auth0|bob" {
		t.Fatalf("new ticket not sealed with the new first key: %+v %v", got, err)
	}

	if err := s.SetSecrets([][]byte{secret(2)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(old); !isNoSession(err) {
		t.Errorf("ticket under a removed key: %+v %v, want no session", got, err)
	}
	if _, err := s.Load(fresh); err != nil {
		t.Errorf("ticket under the remaining key: %v", err)
	}

	for _, bad := range [][][]byte{nil, {secret(2), []byte("short")}} {
		if err := s.SetSecrets(bad); err == nil {
			t.Errorf("SetSecrets(%d keys) accepted", len(bad))
		}
		if _, err := s.Load(fresh); err != nil {
			t.Errorf("after a refused SetSecrets: %v", err)
		}
	}
}
