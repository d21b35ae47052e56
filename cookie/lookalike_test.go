package cookie

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// lookalikes are cookie names (and nameless pairs) a browser keeps apart
// from the session cookie's NAME, beyond white space (disguises): other
// case (browsers match names case-sensitively; a sibling may set
// "__HOST-..." where it does not enforce the prefix case-insensitively),
// invisible characters no trimming removes (BOM, zero width), what other
// readers decode or map to NAME (PHP's "." and " " to "_", percent
// encoding), quotes, a nameless cookie whose value spells NAME (browsers
// send it as the bare value), and chunk names in another spelling.
var lookalikes = []string{
	"__HOST-authproxy=attacker", "__host-authproxy=attacker", "__Host-Authproxy=attacker",
	"\ufeff__Host-authproxy=attacker", "__Host-authproxy\ufeff=attacker",
	"\u200b__Host-authproxy=attacker", "__Host-authproxy\u200d=attacker",
	"%5F_Host-authproxy=attacker", "__Host%2Dauthproxy=attacker", "__Host-authproxy%00=attacker",
	"__Host.authproxy=attacker", "__Host authproxy=attacker", "__Host-authproxy.=attacker",
	`"__Host-authproxy"=attacker`, "'__Host-authproxy'=attacker",
	"__Host-authproxy", "=__Host-authproxy=attacker", "__Host-authproxy:=attacker",
	"$__Host-authproxy=attacker", "__Host-authproxy\x00=attacker", "__Host-authproxy\x7f=attacker",
	"__Host-authproxy_00=attacker", "__Host-authproxy_+0=attacker", "__Host-authproxy_ 0=attacker",
	"__Host-authproxy_0_=attacker", "__Host-authproxy-0=attacker",
}

// TestValueLookalikeNames: Value reads neither the session cookie nor a
// chunk from a lookalike pair, wherever it stands, in one Cookie line or
// its own.
func TestValueLookalikeNames(t *testing.T) {
	const name = "__Host-authproxy"
	for _, l := range lookalikes {
		for _, lines := range [][]string{
			{l + "; " + name + "=victim; " + name + "_0=victim"},
			{l, name + "=victim", name + "_0=victim"},
			{"x=1;" + l + ";" + name + "=victim;" + name + "_0=victim"},
		} {
			h := http.Header{"Cookie": lines}
			for _, n := range []string{name, name + "_0"} {
				if v, ok := Value(h, n); !ok || v != "victim" {
					t.Errorf("Value(%q) of %q = %q, %v; want victim", n, lines, v, ok)
				}
			}
			h = http.Header{"Cookie": {l}}
			for _, n := range []string{name, name + "_0"} {
				if v, ok := Value(h, n); ok {
					t.Errorf("Value(%q) of %q = %q: read from a lookalike", n, l, v)
				}
			}
		}
	}
}

// TestCookieTossingLookalikeName: a session planted under a lookalike name,
// whole or as chunk 0, sent first, is not loaded as the victim's; alone it
// loads no session.
func TestCookieTossingLookalikeName(t *testing.T) {
	s, attacker, victim := tossingStore(t)
	for _, l := range lookalikes {
		planted := l
		if n, _, ok := strings.Cut(l, "=attacker"); ok {
			planted = n + "=" + attacker[0].Value
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Cookie"] = []string{planted + "; " + s.Name() + "=" + victim[0].Value}
		if sess, err := s.Load(r); err != nil || sess.User != "victim" {
			t.Errorf("%q before the victim's cookie: Load = %q, %v; want victim", planted, sess.User, err)
		}
		r.Header["Cookie"] = []string{planted}
		if sess, err := s.Load(r); err == nil {
			t.Errorf("%q alone: Load = %q; want no session", planted, sess.User)
		}
	}
}
