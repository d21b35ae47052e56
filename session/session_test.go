package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestPolicyEnded(t *testing.T) {
	life := Policy{Lifetime: 12 * time.Hour}
	idle := Policy{Lifetime: 12 * time.Hour, Idle: 30 * time.Minute}
	expiry := t0.Add(12 * time.Hour)
	tests := []struct {
		name   string
		policy Policy
		seen   time.Time
		now    time.Time
		ended  bool
	}{
		{"lifetime: before expiry", life, t0, t0.Add(11 * time.Hour), false},
		{"lifetime: at expiry", life, t0, expiry, true},
		{"lifetime: after expiry", life, t0, expiry.Add(time.Second), true},
		{"lifetime: no idle timeout however long unused", life, t0, t0.Add(11 * time.Hour), false},
		{"idle: used recently", idle, t0, t0.Add(29 * time.Minute), false},
		{"idle: unused exactly Idle", idle, t0, t0.Add(30 * time.Minute), true},
		{"idle: unused longer", idle, t0, t0.Add(2 * time.Hour), true},
		{"idle: never touched ends at expiry only", idle, time.Time{}, t0.Add(2 * time.Hour), false},
		{"idle: used just before expiry still ends at expiry", idle, expiry.Add(-time.Minute), expiry, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess := Session{User: "alice", Expiry: expiry, Seen: tt.seen}
			if got := tt.policy.Ended(&sess, tt.now); got != tt.ended {
				t.Errorf("Ended at %v = %v, want %v (End %v)", tt.now.Sub(t0), got, tt.ended, tt.policy.End(&sess).Sub(t0))
			}
		})
	}
}

func TestPolicyEnd(t *testing.T) {
	p := Policy{Lifetime: 12 * time.Hour, Idle: 30 * time.Minute}
	expiry := t0.Add(12 * time.Hour)
	tests := []struct {
		name string
		seen time.Time
		want time.Time
	}{
		{"never touched", time.Time{}, expiry},
		{"idle end first", t0, t0.Add(30 * time.Minute)},
		{"expiry first", expiry.Add(-10 * time.Minute), expiry},
	}
	for _, tt := range tests {
		sess := Session{Expiry: expiry, Seen: tt.seen}
		if got := p.End(&sess); !got.Equal(tt.want) {
			t.Errorf("%s: End = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPolicyTouch(t *testing.T) {
	idle := Policy{Lifetime: time.Hour, Idle: 30 * time.Minute}
	tests := []struct {
		name   string
		policy Policy
		seen   time.Time
		now    time.Time
		save   bool
	}{
		{"no idle timeout: never", Policy{Lifetime: time.Hour}, t0, t0.Add(time.Hour), false},
		{"just used", idle, t0, t0.Add(time.Minute), false},
		{"under a quarter of Idle", idle, t0, t0.Add(7 * time.Minute), false},
		{"a quarter of Idle", idle, t0, t0.Add(7*time.Minute + 30*time.Second), true},
		{"longer", idle, t0, t0.Add(20 * time.Minute), true},
		{"never touched", idle, time.Time{}, t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess := Session{User: "alice", Expiry: t0.Add(time.Hour), Seen: tt.seen}
			reads := 0
			clock := func() time.Time { reads++; return tt.now }
			if got := tt.policy.Touch(&sess, clock); got != tt.save {
				t.Errorf("Touch = %v, want %v", got, tt.save)
			}
			if tt.policy.Idle <= 0 && reads != 0 {
				t.Errorf("Touch read the clock %d times without an idle timeout", reads)
			}
			want := tt.seen
			if tt.save {
				want = tt.now
			}
			if !sess.Seen.Equal(want) {
				t.Errorf("Seen = %v, want %v", sess.Seen, want)
			}
		})
	}
}

// TestTouchKeepsBusySessionAlive: a session used every few minutes, and
// saved whenever Touch asks, never reaches its idle end.
func TestTouchKeepsBusySessionAlive(t *testing.T) {
	p := Policy{Lifetime: 12 * time.Hour, Idle: 20 * time.Minute}
	sess := Session{User: "alice", Expiry: t0.Add(12 * time.Hour), Seen: t0}
	stored := sess
	for now := t0; now.Before(t0.Add(3 * time.Hour)); now = now.Add(4 * time.Minute) {
		sess = stored
		if p.Ended(&sess, now) {
			t.Fatalf("busy session ended after %v", now.Sub(t0))
		}
		if p.Touch(&sess, func() time.Time { return now }) {
			stored = sess
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		policy Policy
		ok     bool
	}{
		{Policy{Lifetime: time.Hour}, true},
		{Policy{Lifetime: time.Hour, Idle: time.Minute}, true},
		{Policy{}, false},
		{Policy{Lifetime: -time.Hour}, false},
		{Policy{Lifetime: time.Hour, Idle: -time.Minute}, false},
	}
	for _, tt := range tests {
		if err := tt.policy.Check(); (err == nil) != tt.ok {
			t.Errorf("%+v: Check = %v, want ok %v", tt.policy, err, tt.ok)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name                   string
		err                    error
		noSession, unavailable bool
	}{
		{"no session", ErrNoSession, true, false},
		{"wrapped no session", fmt.Errorf("%w: expired", ErrNoSession), true, false},
		{"unavailable", ErrUnavailable, false, true},
		{"store down", fmt.Errorf("redisstore: load session: %w: %w", ErrUnavailable, context.DeadlineExceeded), false, true},
		{"twice wrapped", fmt.Errorf("refresh: %w", fmt.Errorf("%w: provider unreachable", ErrUnavailable)), false, true},
		{"joined", errors.Join(errors.New("x"), ErrUnavailable), false, true},
		{"other", errors.New("bug"), false, false},
		{"nil", nil, false, false},
	}
	for _, tt := range tests {
		if got := errors.Is(tt.err, ErrNoSession); got != tt.noSession {
			t.Errorf("%s: errors.Is(ErrNoSession) = %v", tt.name, got)
		}
		if got := errors.Is(tt.err, ErrUnavailable); got != tt.unavailable {
			t.Errorf("%s: errors.Is(ErrUnavailable) = %v", tt.name, got)
		}
	}
}

// TestSessionJSON: the field names are the stored format (cookies in
// browsers, entries in Redis) and ID is never part of it.
func TestSessionJSON(t *testing.T) {
	sess := Session{User: "u", Email: "e", Name: "n", IDToken: "t", Expiry: t0, Claims: map[string]any{"g": "x"},
		AccessToken: "a", SID: "s", RefreshToken: "r", TokenExpiry: t0, Seen: t0, ID: "server-side-id"}
	b, err := json.Marshal(sess)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"u":"u","e":"e","n":"n","t":"t","x":"2026-11-26T12:00:00Z","c":{"g":"x"},"a":"a","s":"s","r":"r","y":"2026-11-26T12:00:00Z","l":"2026-11-26T12:00:00Z"}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	if strings.Contains(string(b), "server-side-id") {
		t.Error("ID was encoded")
	}
	// A ticket cookie of an earlier version carried the ticket under "k";
	// it decodes as a session with neither user nor ID.
	var old Session
	if err := json.Unmarshal([]byte(`{"k":"ticket","x":"2026-11-26T12:00:00Z"}`), &old); err != nil || old.User != "" || old.ID != "" {
		t.Errorf("old ticket cookie decoded as %+v, %v", old, err)
	}
}
