package cookie

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// disguises are cookie names a browser keeps apart from the session
// cookie's NAME, and which a __Host- prefix does not protect (they do not
// start with it), but which a reader that trims Unicode white space (as
// strings.TrimSpace does) takes for NAME: a sibling subdomain could plant
// its own session under one and have the victim's requests run as the
// attacker's. Browsers trim only SP and HTAB from a cookie name, as
// net/http's reader does.
var disguises = []string{
	"\u00a0%s", "%s\u00a0", "\u0085%s", "%s\u0085", "\u1680%s", "\u2000%s", "\u200a%s",
	"\u2028%s", "\u2029%s", "\u202f%s", "\u205f%s", "\u3000%s", "\u00a0\u00a0%s\u3000",
	"\v%s", "%s\f", " \u00a0 %s",
}

func disguise(format, name string) string { return strings.Replace(format, "%s", name, 1) }

// TestValueDisguisedNames: Value never reads a cookie under a disguised
// name, while SP and HTAB around a name (which browsers trim too) still
// name the same cookie.
func TestValueDisguisedNames(t *testing.T) {
	const name = "__Host-authproxy"
	for _, d := range disguises {
		h := http.Header{"Cookie": {disguise(d, name) + "=attacker; x=1", name + "=victim"}}
		if v, ok := Value(h, name); !ok || v != "victim" {
			t.Errorf("Value(%q) of %q = %q, %v; want victim", name, h["Cookie"], v, ok)
		}
		for n, pair := range Pairs(h) {
			if n == name && strings.Contains(pair, "attacker") {
				t.Errorf("Pairs names %q %q, as the proxy would strip it", pair, n)
			}
		}
	}
	for _, same := range []string{" %s", "%s ", "\t%s\t", " \t %s \t "} {
		h := http.Header{"Cookie": {disguise(same, name) + "=v; x=1"}}
		if v, ok := Value(h, name); !ok || v != "v" {
			t.Errorf("Value(%q) of %q = %q, %v; want v", name, h["Cookie"], v, ok)
		}
	}
}

// TestCookieTossingDisguisedName: a session an attacker planted under a
// disguised name, sent before the victim's own cookie (a longer Path or an
// older cookie comes first), does not become the victim's session.
func TestCookieTossingDisguisedName(t *testing.T) {
	s, attacker, victim := tossingStore(t)
	for _, d := range disguises {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Cookie"] = []string{disguise(d, s.Name()) + "=" + attacker[0].Value + "; " + s.Name() + "=" + victim[0].Value}
		sess, err := s.Load(r)
		if err != nil || sess.User != "victim" {
			t.Errorf("name %q before the victim's cookie: Load = %q, %v; want victim", disguise(d, s.Name()), sess.User, err)
		}
	}
}

// FuzzValueReadsOnlyItsName: Value reads a cookie only from a pair whose
// name, trimmed of SP and HTAB as browsers trim it, is the name asked for;
// and where every pair is one net/http reads too (a token name, a valid
// value), Value agrees with r.Cookie.
func FuzzValueReadsOnlyItsName(f *testing.F) {
	f.Add("a=1; __Host-authproxy=v", "\u00a0__Host-authproxy=x", "__Host-authproxy")
	f.Add(" __Host-authproxy = \"q\" ;;", "__Host-authproxy", "__Host-authproxy")
	f.Add("\u3000s=1;s\u0085=2; s=3", "", "s")
	f.Fuzz(func(t *testing.T, a, b, name string) {
		for _, v := range []string{a, b} {
			// What Go's server lets into a header value.
			if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				return
			}
		}
		h := http.Header{"Cookie": {a, b}}
		v, ok := Value(h, name)
		if !ok {
			v = "<none>"
		}
		found := false
		for _, line := range h["Cookie"] {
			for _, pair := range strings.Split(line, ";") {
				n, val, hasEq := strings.Cut(pair, "=")
				if !hasEq || strings.Trim(n, " \t") != name {
					continue
				}
				// The value as sent, but for the pair's end (a browser
				// trims it when it stores it; net/http does not).
				val = strings.TrimRight(val, " \t")
				if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				if !found {
					found = true
					if !ok || val != v {
						t.Errorf("%q: Value(%q) = %q, want the first pair named so: %q", h["Cookie"], name, v, val)
					}
				}
			}
		}
		if ok && !found {
			t.Errorf("%q: Value(%q) = %q from no pair of that name", h["Cookie"], name, v)
		}
		// Where net/http reads every pair alike, it agrees. (A pair
		// without "=" is a cookie with an empty value to net/http and
		// none to Value.)
		r := &http.Request{Header: h}
		all := 0
		for _, line := range h["Cookie"] {
			for _, pair := range strings.Split(line, ";") {
				if pair = strings.Trim(pair, " \t"); pair == "" {
					continue
				}
				if !strings.Contains(pair, "=") {
					return
				}
				all++
			}
		}
		if len(r.Cookies()) == all && all > 0 {
			if c, err := r.Cookie(name); err == nil && (!ok || c.Value != v) {
				t.Errorf("%q: Value(%q) = %q, net/http reads %q", h["Cookie"], name, v, c.Value)
			}
		}
	})
}

// tossingStore returns a store under the __Host- name with an attacker's
// and a victim's session, one cookie each.
func tossingStore(t *testing.T) (s *Store, attacker, victim []*http.Cookie) {
	t.Helper()
	now := t0
	s, err := NewStore(Config{Name: "__Host-authproxy", Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: [][]byte{keyA}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	attacker = save(t, s, nil, session.Session{User: "attacker", Expiry: now.Add(time.Hour)})
	victim = save(t, s, nil, session.Session{User: "victim", Expiry: now.Add(time.Hour)})
	if len(attacker) != 1 || len(victim) != 1 {
		t.Fatalf("sessions in %d and %d cookies, want one each", len(attacker), len(victim))
	}
	return s, attacker, victim
}
