package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/authproxy/authproxy/cookie"
)

// FuzzStripCookiesMatchesStore checks the proxy's stripping of its own
// cookies against the readers on both sides of it, for any Cookie lines a
// client can send: no cookie the session store reads (session or chunk,
// cookie.Value) is left for the upstream, and the upstream, reading the
// stripped header with net/http, finds none of authproxy's cookies.
func FuzzStripCookiesMatchesStore(f *testing.F) {
	for _, lines := range [][2]string{
		{"a=1; _authproxy=s; b=2", ""},
		{"_authproxy=x", "_authproxy=y; _authproxy_0=c0; _authproxy_1=c1"},
		{` _authproxy = "q" ;;; =v; ==; _authproxy`, "\t_authproxy\t=t"},
		{"\u00a0_authproxy=attacker; _authproxy=victim", "_authproxy\u3000=x; _AUTHPROXY=y; _authproxy_login_abc=z"},
		{"_authproxyx=1; x_authproxy=2; _authproxy_=3; _authproxy__0=4", `q="x;_authproxy=y"`},
	} {
		f.Add(lines[0], lines[1])
	}
	p := &handler{cfg: Config{IsOwnCookie: mustStore(f).IsOwn}}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, v := range []string{a, b} {
			// What Go's server lets into a header value (the Transport
			// refuses the rest).
			if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				return
			}
		}
		h := http.Header{"Cookie": {a, b}}
		var read []string
		for _, name := range []string{"_authproxy", "_authproxy_0", "_authproxy_1", "_authproxy_login_abc"} {
			if _, ok := cookie.Value(h, name); ok {
				read = append(read, name)
			}
		}
		before := strings.Join(h["Cookie"], "; ")
		p.stripCookies(h)
		for _, name := range read {
			if v, ok := cookie.Value(h, name); ok {
				t.Errorf("%q: the store reads %s, and after stripping the upstream still gets %q", before, name, v)
			}
		}
		r := &http.Request{Header: h}
		for _, c := range r.Cookies() {
			if p.cfg.IsOwnCookie(c.Name) {
				t.Errorf("%q: the upstream reads authproxy's cookie %q=%q after stripping (%q)", before, c.Name, c.Value, h["Cookie"])
			}
		}
	})
}
