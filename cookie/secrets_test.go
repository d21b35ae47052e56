package cookie

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// TestSetSecrets swaps the keys of a running store, as a configuration
// reload does: adding a key keeps every session (old key decodes, new key
// encodes); removing a key ends the sessions it sealed as "no session" (a
// new login), also when they were cached; a bad set changes nothing.
func TestSetSecrets(t *testing.T) {
	keyC := bytes.Repeat([]byte{'c'}, 32)
	now := t0
	s := newStore(t, &now, keyA)
	sess := session.Session{User: "alice", Expiry: now.Add(time.Hour)}
	underA := save(t, s, nil, sess)
	if _, err := load(s, underA); err != nil { // now cached
		t.Fatal(err)
	}

	// Rotate: C first (encodes), A kept (decodes).
	if err := s.SetSecrets([][]byte{keyC, keyA}); err != nil {
		t.Fatal(err)
	}
	if got, err := load(s, underA); err != nil || got.User != "alice" {
		t.Fatalf("session under the kept key after rotation: %+v %v", got, err)
	}
	underC := save(t, s, nil, sess)
	onlyC := newStore(t, &now, keyC)
	if _, err := load(onlyC, underC); err != nil {
		t.Fatalf("new sessions are not sealed with the new first key: %v", err)
	}

	// Retire A: its sessions end, cached or not; C's stay.
	if err := s.SetSecrets([][]byte{keyC}); err != nil {
		t.Fatal(err)
	}
	if _, err := load(s, underA); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("session under a removed key: %v, want ErrNoSession", err)
	}
	if got, err := load(s, underC); err != nil || got.User != "alice" {
		t.Errorf("session under the remaining key: %+v %v", got, err)
	}

	// A refused set leaves the keys in force.
	for _, bad := range [][][]byte{nil, {}, {keyC, []byte("short")}, {make([]byte, 48)}} {
		if err := s.SetSecrets(bad); err == nil {
			t.Errorf("SetSecrets(%d keys) accepted", len(bad))
		}
		if _, err := load(s, underC); err != nil {
			t.Errorf("after a refused SetSecrets: %v", err)
		}
	}
}

// TestSetSecretsLogins: a login in progress survives a rotation that keeps
// its key and ends (ErrNoLogin, never a panic or usage error) when its key
// is removed; the legacy name follows the new keys too.
func TestSetSecretsLogins(t *testing.T) {
	now := t0
	s, err := NewStore(Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{keyA},
		Now: func() time.Time { return now }, Name: "__Host-ap", Legacy: "_ap"})
	if err != nil {
		t.Fatal(err)
	}
	state := "0123456789abcdef0123456789abcdef"
	w := httptest.NewRecorder()
	if err := s.SaveLogin(w, httptest.NewRequest("GET", "/", nil), Login{State: state, ReturnTo: "/"}); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/auth/callback", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	if err := s.SetSecrets([][]byte{keyB, keyA}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadLogin(r, state); err != nil {
		t.Errorf("login after adding a key: %v", err)
	}
	if err := s.SetSecrets([][]byte{keyB}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadLogin(r, state); !errors.Is(err, ErrNoLogin) {
		t.Errorf("login under a removed key: %v, want ErrNoLogin", err)
	}
	if s.legacy.keys.Load() == nil || len(s.legacy.keys.Load().codecs) != 1 {
		t.Errorf("legacy store did not take the new keys")
	}
}
