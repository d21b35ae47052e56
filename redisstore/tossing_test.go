package redisstore

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestTicketCookieTossingDisguisedName: a ticket an attacker planted under a
// name the browser keeps apart from the ticket cookie's (one with Unicode
// white space around it, which a __Host- prefix does not protect), sent
// before the victim's own ticket, does not make the victim's requests run
// as the attacker. r.Cookie ignored such names; the shared cookie reader
// must as well.
func TestTicketCookieTossingDisguisedName(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	now := time.Now()
	attacker := saveFor(t, s, smallSession("attacker", now))
	victim := saveFor(t, s, smallSession("victim", now))
	av, err := attacker.Cookie(cookieName)
	if err != nil {
		t.Fatal(err)
	}
	vv, err := victim.Cookie(cookieName)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{
		"\u00a0%s", "%s\u00a0", "\u0085%s", "\u2000%s", "\u2028%s", "\u3000%s", "\u205f%s", "\v%s", "%s\f", " \u00a0 %s",
	} {
		name := strings.Replace(d, "%s", cookieName, 1)
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["Cookie"] = []string{name + "=" + av.Value + "; " + cookieName + "=" + vv.Value}
		sess, err := s.Load(req)
		if err != nil || sess.User != "victim" {
			t.Errorf("ticket under %q before the victim's: Load = %q, %v; want victim", name, sess.User, err)
		}
	}
}
