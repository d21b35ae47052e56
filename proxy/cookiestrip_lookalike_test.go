package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/authproxy/authproxy/cookie"
)

// TestStripCookiesAmongLookalikes: whatever lookalike pairs surround them
// (names a browser keeps apart from authproxy's, which some upstream
// reader maps onto them: Unicode white space trimmed by JavaScript's
// trim, PHP's "." and " " to "_", case, quotes, nameless pairs, chunk
// numbers in other spellings), the cookies the browser holds from
// authproxy (session, chunks, login) never reach the upstream: their
// values appear nowhere in the forwarded Cookie header, and the lookalikes
// pass byte for byte.
func TestStripCookiesAmongLookalikes(t *testing.T) {
	p := &handler{cfg: Config{IsOwnCookie: mustStore(t).IsOwn}}
	const name = "_authproxy" // mustStore's default name
	lookalikes := []string{
		"\u00a0" + name + "=la", name + "\u3000=lb", "\ufeff" + name + "=lc", "\u200b" + name + "_0=ld",
		".authproxy=le", ".authproxy_0=lf", "_authproxy.=lg", "_AUTHPROXY=lh", "_Authproxy_0=li",
		`"_authproxy"=lj`, "=" + name + "=lk", name + "-0=ln",
		"%5Fauthproxy=lo", name + "x=lp", "x" + name + "=lq",
	}
	// Ours, and names in our namespace (name_*) that the browser cannot
	// hold from authproxy but the proxy strips too.
	ours := []string{name + "=SECRET-S", name + "_0=SECRET-C0", name + "_1=SECRET-C1", name + "_login_0123456789abcdef=SECRET-L",
		name + "_00=SECRET-N", name + "_+1=SECRET-N", name + "_=SECRET-N"}
	for i := range lookalikes {
		// Our cookies between lookalikes, rotated so each lookalike
		// stands first, last and next to each of ours; in one line, and
		// one line per pair (HTTP/2 sends cookie fields apart).
		pairs := append(append([]string{}, lookalikes[i:]...), lookalikes[:i]...)
		for k, o := range ours {
			at := (k*5 + i) % (len(pairs) + 1)
			pairs = append(pairs[:at], append([]string{o}, pairs[at:]...)...)
		}
		for _, lines := range [][]string{{strings.Join(pairs, "; ")}, pairs} {
			h := http.Header{"Cookie": append([]string(nil), lines...)}
			p.stripCookies(h)
			out := strings.Join(h["Cookie"], "\n")
			if strings.Contains(out, "SECRET") {
				t.Errorf("%q: forwarded %q, with authproxy's cookies", lines, out)
			}
			for _, l := range lookalikes {
				if !strings.Contains(out, l) {
					t.Errorf("%q: forwarded %q, without the lookalike %q", lines, out, l)
				}
			}
			r := &http.Request{Header: h}
			for _, c := range r.Cookies() {
				if p.cfg.IsOwnCookie(c.Name) {
					t.Errorf("%q: net/http reads %q=%q upstream", lines, c.Name, c.Value)
				}
			}
			for _, n := range []string{name, name + "_0", name + "_1"} {
				if v, ok := cookie.Value(h, n); ok {
					t.Errorf("%q: the store's reader finds %s=%q upstream", lines, n, v)
				}
			}
		}
	}
}
