package oidc

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// hostileReturnPaths are redirect targets that must never leave our origin.
// Each is a technique from open-redirect advisories against auth proxies.
var hostileReturnPaths = []string{
	"",
	"evil.example",
	"//evil.example",
	"//evil.example/path",
	"///evil.example",
	"////evil.example",
	"/\\evil.example",
	"\\\\evil.example",
	"/\\/evil.example",
	"\\/evil.example",
	"/\t/evil.example",
	"/\n/evil.example",
	"/\r/evil.example",
	"/\r\n/evil.example",
	"/ /evil.example",
	"/\x00/evil.example",
	"/\x0b/evil.example",
	"/\x7f/evil.example",
	"/%2F/evil.example",
	"/%2f/evil.example",
	"/%2F%2Fevil.example",
	"/%252F/evil.example",
	"/%25252F/evil.example",
	"/%5C/evil.example",
	"/%5cevil.example",
	"/%09/evil.example",
	"/%0d%0a/evil.example",
	"/%252525252F/evil.example",
	"https://evil.example",
	"http://evil.example/",
	"https:evil.example",
	"javascript:alert(1)",
	"JavaScript:alert(1)",
	" javascript:alert(1)",
	"data:text/html,<script>alert(1)</script>",
	"/@evil.example",      // harmless path, but kept here to be sure of the verdict below
	"//user@evil.example", // userinfo
	"//user:pw@evil.example",
	"https://ok.example@evil.example",
	"/\u3002evil.example",  // IDN full stop
	"/\uff0fevil.example",  // fullwidth solidus
	"/\u2215evil.example",  // division slash
	"/\u2044evil.example",  // fraction slash
	"/\u202e/evil.example", // right-to-left override
	"/%E3%80%82/%2F%2Fevil.example",
	"/" + strings.Repeat("a", maxReturnPath),
	"/\\\\evil.example",
	"/%zz",
	"http:/evil.example",
	"/..//evil.example",   // "//evil.example" once dot segments are resolved
	"/./..//evil.example", // same
	"/a/../..//evil.example",
	"/%2e%2e//evil.example",
	"/%2E./%2e//evil.example",
}

func TestReturnPathRefusesHostile(t *testing.T) {
	allowed := map[string]bool{
		// These stay on our origin: a browser treats them as paths.
		"/@evil.example":                true,
		"/%E3%80%82/%2F%2Fevil.example": true,
	}
	if len(hostileReturnPaths) < 40 {
		t.Fatalf("only %d hostile inputs", len(hostileReturnPaths))
	}
	for _, in := range hostileReturnPaths {
		got := ReturnPath(in)
		if allowed[in] {
			if got != in {
				t.Errorf("ReturnPath(%q) = %q, want it kept", in, got)
			}
		} else if got != "/" {
			t.Errorf("ReturnPath(%q) = %q, want /", in, got)
		}
		assertSameOrigin(t, in, got)
	}
}

func TestReturnPathKeepsOwnPaths(t *testing.T) {
	for _, in := range []string{
		"/", "/reports", "/reports?year=2026&q=a+b", "/a/b/c#frag", "/search?q=%2F%2Fnot-a-host",
		"/%C3%BCber", "/path;param", "/a//b", "/?next=//evil.example",
	} {
		if got := ReturnPath(in); got != in {
			t.Errorf("ReturnPath(%q) = %q, want it unchanged", in, got)
		}
	}
}

// assertSameOrigin checks the property every return path must have: resolved
// against our origin the way a browser does, it stays there.
func assertSameOrigin(t *testing.T, in, got string) {
	t.Helper()
	base, _ := url.Parse("https://proxy.example/start")
	if got == "" || got[0] != '/' || strings.ContainsAny(got, "\\\t\r\n") {
		t.Fatalf("ReturnPath(%q) = %q: not a plain absolute path", in, got)
	}
	ref, err := url.Parse(got)
	if err != nil {
		t.Fatalf("ReturnPath(%q) = %q does not parse: %v", in, got, err)
	}
	if res := base.ResolveReference(ref); res.Host != base.Host || res.Scheme != base.Scheme || res.User != nil {
		t.Fatalf("ReturnPath(%q) = %q resolves to %s", in, got, res)
	}
	if dec, err := url.PathUnescape(ref.EscapedPath()); err != nil || strings.HasPrefix(dec, "//") || strings.HasPrefix(dec, "/\\") {
		t.Fatalf("ReturnPath(%q) = %q decodes to %q", in, got, dec)
	}
	if p := removeDots(ref.EscapedPath()); strings.HasPrefix(p, "//") {
		t.Fatalf("ReturnPath(%q) = %q resolves to path %q", in, got, p)
	}
}

// FuzzReturnPath: whatever the input, the result is a path on our own origin.
func FuzzReturnPath(f *testing.F) {
	for _, s := range hostileReturnPaths {
		f.Add(s)
	}
	f.Add("/ok?x=1")
	f.Fuzz(func(t *testing.T, in string) {
		assertSameOrigin(t, in, ReturnPath(in))
	})
}

func TestOrigin(t *testing.T) {
	fixed, _ := url.Parse("https://app.example/auth/callback")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name   string
		origin Origin
		remote string
		tls    bool
		hdr    map[string]string
		want   string
	}{
		{"fixed ignores Host and X-Forwarded-Host", Origin{Fixed: fixed, TrustedProxies: trusted}, "10.1.1.1:1", false,
			map[string]string{"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}, "https://app.example"},
		{"request host", Origin{}, "192.0.2.1:1", false, map[string]string{"Host": "app.example"}, "http://app.example"},
		{"tls", Origin{}, "192.0.2.1:1", true, map[string]string{"Host": "app.example"}, "https://app.example"},
		{"untrusted forwarded headers ignored", Origin{TrustedProxies: trusted}, "192.0.2.1:1", false,
			map[string]string{"Host": "app.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}, "http://app.example"},
		{"no trusted proxies configured", Origin{}, "10.1.1.1:1", false,
			map[string]string{"Host": "app.example", "X-Forwarded-Host": "evil.example"}, "http://app.example"},
		{"trusted proxy", Origin{TrustedProxies: trusted}, "10.1.1.1:1", false,
			map[string]string{"Host": "internal", "X-Forwarded-Host": "app.example, evil.example", "X-Forwarded-Proto": "https"}, "https://app.example"},
		{"trusted proxy, bad proto ignored", Origin{TrustedProxies: trusted}, "10.1.1.1:1", false,
			map[string]string{"Host": "app.example", "X-Forwarded-Proto": "javascript"}, "http://app.example"},
		{"ipv4-mapped ipv6 peer", Origin{TrustedProxies: trusted}, "[::ffff:10.1.1.1]:1", false,
			map[string]string{"Host": "internal", "X-Forwarded-Host": "app.example"}, "http://app.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if !tt.tls {
				r.TLS = nil
			} else {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tt.hdr {
				if k == "Host" {
					r.Host = v
				} else {
					r.Header.Set(k, v)
				}
			}
			if got := tt.origin.Of(r).String(); got != tt.want {
				t.Errorf("Of = %s, want %s", got, tt.want)
			}
		})
	}
}
