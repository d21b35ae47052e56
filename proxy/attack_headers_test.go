package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// cgiName is the CGI variable lighttpd makes of a header name: letters
// upper-cased, digits kept, every other byte "_", after "HTTP_".
func cgiName(name string) string {
	return "HTTP_" + strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// punctuation is every character besides letters and digits that an HTTP
// header name may hold (RFC 9110 tchar). lighttpd builds CGI, FastCGI and
// SCGI variable names by upper-casing letters and turning every other
// character into "_" (buffer_copy_string_encoded_cgi_varnames), as Apache
// 2.2 did: "X~User" reaches a PHP app behind lighttpd as HTTP_X_USER, like
// "X-User", and Go writes it after X-User, so it is the value PHP keeps.
const punctuation = "!#$%&'*+-.^_`|~"

// TestForgedIdentityPunctuation sends X-User, the assertion and
// X-Forwarded-For with each punctuation character in place of "-": each is
// the same header to such a gateway and must not reach the upstream.
func TestForgedIdentityPunctuation(t *testing.T) {
	f := newFixture(t, &recorder{}, func(c *Config) {
		c.Headers = Headers{Email: "X-Email", Name: "X-Name", Groups: "X-Groups", GroupsClaim: "groups"}
		c.Assertion = fakeAsserter{}
	})
	for _, c := range punctuation {
		s := string(c)
		t.Run(s, func(t *testing.T) {
			hdr := http.Header{"X" + s + "User": {"mallory"}, "x" + s + "uSeR": {"eve"}, "X" + s + "Email": {"m@x"},
				"X" + s + "Authproxy" + s + "Jwt" + s + "Assertion": {"forged"}, "X" + s + "Forwarded" + s + "For": {"10.0.0.1"},
				"X" + s + "Original" + s + "Url": {"/admin"}}
			resp := f.get(t, "/x", f.session, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := f.upstream.last(t)
			// What the app behind lighttpd reads: the proxy's values only.
			want := map[string]string{"HTTP_X_USER": "X-User", "HTTP_X_AUTHPROXY_JWT_ASSERTION": AssertionHeader,
				"HTTP_X_FORWARDED_FOR": "X-Forwarded-For", "HTTP_X_EMAIL": "", "HTTP_X_ORIGINAL_URL": ""}
			for name, vs := range got.Header {
				own, watched := want[cgiName(name)]
				if watched && name != own {
					t.Errorf("upstream saw %s=%q, which the app reads as %s", name, vs, cgiName(name))
				}
			}
			assertOnlyUser(t, got.Header, "alice")
		})
	}
}

// TestNormalizeHeaderPunctuation: every punctuation character reads as "-",
// letters and digits are themselves (lower case).
func TestNormalizeHeaderPunctuation(t *testing.T) {
	for _, c := range punctuation {
		name := "X" + string(c) + "User9"
		if got := NormalizeHeader(name); got != "x-user9" {
			t.Errorf("NormalizeHeader(%q) = %q, want x-user9", name, got)
		}
		if !sameHeader(name, "x-user9") {
			t.Errorf("sameHeader(%q, x-user9) = false", name)
		}
	}
	for _, name := range []string{"X-Users", "XUser", "X-Usr", "X-User-", "Authorization", "X-Authorization"} {
		if sameHeader(name, "x-user") {
			t.Errorf("sameHeader(%q, x-user) = true", name)
		}
	}
}

// spellings returns name in every case and with every punctuation
// character for each "-": the names an upstream gateway reads as name.
func spellings(name string) []string {
	var out []string
	for _, c := range punctuation {
		n := strings.ReplaceAll(name, "-", string(c))
		alt := []byte(strings.ToLower(n))
		for i := 0; i < len(alt); i += 2 {
			alt[i] = byte(unicode.ToUpper(rune(alt[i])))
		}
		out = append(out, n, strings.ToLower(n), strings.ToUpper(n), string(alt))
	}
	return out
}

// TestEverySpellingOfOurHeadersStripped attacks stripHeaders' lookup by
// length (headerSet): every header the proxy sets or only a trusted proxy
// may send, from the shortest (Forwarded) to the longest configured, in
// every spelling of case and punctuation, sent by a client, must not
// reach the upstream with the client's value; a trusted proxy's identity
// spellings neither. Names one character longer or shorter are not ours
// and pass.
func TestEverySpellingOfOurHeadersStripped(t *testing.T) {
	identity := []string{"X-User", AssertionHeader, "X-Email", "X-Name", "X-Groups",
		"X-Forwarded-Access-Token-For-The-App", "HTTP2-Settings"}
	forwarded := []string{"X-Original-URL", "X-Original-URI", "X-Rewrite-URL", "X-Forwarded-URI", "X-Forwarded-Path",
		"X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Method", "X-Original-Method",
		"X-Real-IP", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}
	for _, trusted := range []bool{false, true} {
		f := newFixture(t, &recorder{}, func(c *Config) {
			c.Headers = Headers{Email: "X-Email", Name: "X-Name", Groups: "X-Groups", GroupsClaim: "groups",
				AccessToken: "X-Forwarded-Access-Token-For-The-App"}
			c.Assertion = fakeAsserter{}
			c.Trusted = func(*http.Request) bool { return trusted }
		})
		stripped := identity
		if !trusted {
			stripped = append(slices.Clone(identity), forwarded...)
		}
		for _, name := range stripped {
			hdr := http.Header{}
			for _, s := range spellings(name) {
				hdr[s] = append(hdr[s], "forged-"+s)
			}
			// Near misses: not ours, and kept.
			near := []string{name + "x", name[:len(name)-1], "x" + name}
			for _, s := range near {
				hdr[s] = []string{"near-" + s}
			}
			f.get(t, "/x", f.session, hdr)
			got := f.upstream.last(t).Header
			for k, vs := range got {
				for _, v := range vs {
					if strings.HasPrefix(v, "forged-") {
						t.Errorf("trusted %v: %s reached the upstream as %s: %q", trusted, v[len("forged-"):], k, v)
					}
				}
			}
			for _, s := range near {
				if v := got.Get(s); v != "near-"+s {
					t.Errorf("trusted %v: %s (not ours) did not pass: %q", trusted, s, v)
				}
			}
		}
	}
}
