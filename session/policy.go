package session

import (
	"errors"
	"time"
)

// Policy is how long sessions last. Both stores enforce it on Load; the
// server-side one also lets Redis drop a session at its End.
type Policy struct {
	// Lifetime bounds a session from its login; the login handlers set
	// Expiry from it and the stores' cookies live exactly as long.
	Lifetime time.Duration
	// Idle ends a session not used for this long (0: never).
	Idle time.Duration
}

// Check reports a policy no store can enforce.
func (p Policy) Check() error {
	if p.Lifetime <= 0 {
		return errors.New("session lifetime must be positive")
	}
	if p.Idle < 0 {
		return errors.New("session idle timeout must not be negative")
	}
	return nil
}

// End is when sess ends: at its Expiry, or earlier once unused for Idle. A
// session never touched (Seen zero) ends at its Expiry.
func (p Policy) End(sess *Session) time.Time {
	if p.Idle > 0 && !sess.Seen.IsZero() {
		if idleEnd := sess.Seen.Add(p.Idle); idleEnd.Before(sess.Expiry) {
			return idleEnd
		}
	}
	return sess.Expiry
}

// Ended reports whether sess is over at now.
func (p Policy) Ended(sess *Session, now time.Time) bool {
	return !now.Before(p.End(sess))
}

// Touch records a use of sess at now() for the idle timeout. It sets Seen
// and reports true (save the session) only when the last recorded use is a
// quarter of Idle old or more: often enough that a session in use never
// times out, rarely enough that most requests write nothing. Without an
// idle timeout it does not read the clock: Touch runs on every request,
// and time.Now costs about 60 ns in a VM.
func (p Policy) Touch(sess *Session, now func() time.Time) bool {
	if p.Idle <= 0 {
		return false
	}
	t := now()
	if t.Sub(sess.Seen) < p.Idle/4 {
		return false
	}
	sess.Seen = t
	return true
}
