package oidc

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
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

// testReturns is a proxy at https://auth.example.com routing
// wiki.example.com, app.example.com and *.apps.example.com (inside the
// cookie domain .example.com); * routes are never listed.
var testReturns = Returns{Scheme: "https", Hosts: []string{"app.example.com", "wiki.example.com"}, Suffixes: []string{".apps.example.com"}}

// hostileReturnURLs are absolute redirect targets that testReturns must
// refuse: other hosts, schemes and ports, and every way of dressing up
// another host as a routed one.
var hostileReturnURLs = []string{
	"https://evil.example/",
	"https://evil.example",
	"https://auth.example.com/", // the callback host is not routed here
	"https://example.com/",      // the cookie domain itself
	"https://apps.example.com/", // a wildcard's suffix itself
	"https://.apps.example.com/",
	"https://x..apps.example.com/",
	"https://wiki.example.com.evil.example/",
	"https://wiki.example.com.apps.example.com.evil.example/",
	"https://evil.example/wiki.example.com",
	"https://evil.example/https://wiki.example.com/",
	"https://evil.example?https://wiki.example.com/",
	"https://evil.example#https://wiki.example.com/",
	"https://wiki.example.com@evil.example/",
	"https://wiki.example.com:@evil.example/",
	"https://wiki.example.com:443@evil.example/",
	"https://user@wiki.example.com/",
	"https://user:pw@wiki.example.com/",
	"https://:@wiki.example.com/",
	"https://@wiki.example.com/",
	"https://wiki.example.com\\@evil.example/",
	"https://wiki.example.com\\evil.example",
	"https:\\\\wiki.example.com/",
	"https:/\\wiki.example.com/",
	"https://wiki.example.com%2f@evil.example/",
	"https://wiki.example.com%2eevil.example/",
	"https://wiki%2eexample.com/",
	"https://%77iki.example.com/",
	"https://wiki.example.com%00.evil.example/",
	"https://wiki.example.com\x00.evil.example/",
	"https://wiki.example.com./",
	"https://WIKI.EXAMPLE.COM./",
	"https://wiki.example.com.:443/",
	"https://wiki.example.com:443/",
	"https://wiki.example.com:444/",
	"https://wiki.example.com:/",
	"https://wiki.example.com:8443/",
	"https://wiki.example.com:0x1bb/",
	"https://wiki.example.com:443:443/",
	"https://[::1]/",
	"https://127.0.0.1/",
	"https://2130706433/",
	"https://wiki.example.com?next=/",
	"https://wiki.example.com#/",
	"https://wіki.example.com/", // Cyrillic і
	"https://wiki.exаmple.com/", // Cyrillic а
	"https://wiki\u3002example.com/",
	"https://wiki\uff0eexample.com/",
	"https://xn--wiki-x.example.com/",
	"https://wiki.example.com\t/",
	"https://wi\tki.example.com/",
	"https://wiki.example.com /",
	" https://wiki.example.com/",
	"https://wiki.example.com\r\n/",
	"https://wiki.example.com//evil.example",
	"https://wiki.example.com///evil.example",
	"https://wiki.example.com/\\evil.example",
	"https://wiki.example.com/..//evil.example",
	"https://wiki.example.com/%2F%2Fevil.example",
	"https://wiki.example.com/%252F%252Fevil.example",
	"https://wiki.example.com/\t/evil.example",
	"http://wiki.example.com/",
	"HTTP://wiki.example.com/",
	"ftp://wiki.example.com/",
	"ws://wiki.example.com/",
	"wss://wiki.example.com/",
	"javascript://wiki.example.com/%0aalert(1)",
	"javascript:alert(1)//https://wiki.example.com/",
	"data:text/html,https://wiki.example.com/",
	"//wiki.example.com/",
	"///wiki.example.com/",
	"https:/wiki.example.com/",
	"https:wiki.example.com/",
	"https:///wiki.example.com/",
	"https:////wiki.example.com/",
	"https://",
	"https:// ",
	"https://wiki.example.com/" + strings.Repeat("a", maxReturnPath),
}

func TestReturnTargetRefusesHostile(t *testing.T) {
	if len(hostileReturnURLs) < 60 {
		t.Fatalf("only %d hostile inputs", len(hostileReturnURLs))
	}
	for _, in := range append(slices.Clone(hostileReturnURLs), hostileReturnPaths...) {
		got := testReturns.Target(in)
		if in != "/@evil.example" && in != "/%E3%80%82/%2F%2Fevil.example" && got != "/" {
			t.Errorf("Target(%q) = %q, want /", in, got)
		}
		assertAllowed(t, testReturns, in, got)
	}
	// Without routed hosts, or without a scheme, no absolute URL passes.
	for _, rs := range []Returns{{}, {Hosts: testReturns.Hosts, Suffixes: testReturns.Suffixes}, {Scheme: "https"}} {
		for _, in := range []string{"https://wiki.example.com/", "https://a.apps.example.com/", "https://evil.example/"} {
			if got := rs.Target(in); got != "/" {
				t.Errorf("%+v: Target(%q) = %q, want /", rs, in, got)
			}
		}
	}
}

func TestReturnTargetKeepsRoutedHosts(t *testing.T) {
	for _, in := range []string{
		"https://wiki.example.com", "https://wiki.example.com/", "https://wiki.example.com/page?x=1&y=%2F#top",
		"https://Wiki.Example.COM/a", "HTTPS://app.example.com/", "https://a.apps.example.com/x", "https://a.b.apps.example.com/",
		"https://wiki.example.com/a//b", "https://wiki.example.com/caf%C3%A9", "/local/path?x=1",
	} {
		if got := testReturns.Target(in); got != in {
			t.Errorf("Target(%q) = %q, want it unchanged", in, got)
		}
	}
	// The public URL's port, and only it.
	withPort := Returns{Scheme: "http", Port: "8443", Hosts: []string{"wiki.example.com"}}
	for in, want := range map[string]string{
		"http://wiki.example.com:8443/x": "http://wiki.example.com:8443/x",
		"http://wiki.example.com/x":      "/",
		"http://wiki.example.com:80/x":   "/",
		"http://wiki.example.com:08443/": "/",
		"https://wiki.example.com:8443/": "/",
	} {
		if got := withPort.Target(in); got != want {
			t.Errorf("port 8443: Target(%q) = %q, want %q", in, got, want)
		}
	}
	for origin, want := range map[string]bool{
		"https://wiki.example.com": true, "https://a.apps.example.com": true, "https://evil.example": false,
		"http://wiki.example.com": false, "https://wiki.example.com/": false, "https://wiki.example.com/x": false, "null": false, "": false,
	} {
		if got := testReturns.IsOrigin(origin); got != want {
			t.Errorf("IsOrigin(%q) = %v", origin, got)
		}
	}
}

// assertAllowed checks the property every target must have: a path that
// stays on our origin, or an absolute URL that a browser resolves to one of
// the allowed hosts, with the scheme and port, no userinfo, and a path that
// stays on that host.
func assertAllowed(t *testing.T, rs Returns, in, got string) {
	t.Helper()
	if got != "" && got[0] == '/' {
		assertSameOrigin(t, in, got)
		return
	}
	if strings.ContainsFunc(got, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '\\' }) {
		t.Fatalf("Target(%q) = %q: control, space, non-ASCII or backslash", in, got)
	}
	u, err := url.Parse(got)
	if err != nil || !strings.EqualFold(u.Scheme, rs.Scheme) || u.User != nil || u.Opaque != "" || u.Port() != rs.Port {
		t.Fatalf("Target(%q) = %q: scheme, userinfo or port (%v)", in, got, err)
	}
	host := strings.ToLower(u.Hostname())
	ok := slices.Contains(rs.Hosts, host)
	for _, s := range rs.Suffixes {
		ok = ok || strings.HasSuffix(host, s) && len(host) > len(s) && !strings.HasPrefix(host, ".") && !strings.Contains(host, "..")
	}
	if !ok {
		t.Fatalf("Target(%q) = %q: host %q is not allowed", in, got, host)
	}
	base, _ := url.Parse("https://proxy.example/start")
	if res := base.ResolveReference(u); !strings.EqualFold(res.Host, u.Host) {
		t.Fatalf("Target(%q) = %q resolves to %s", in, got, res)
	}
	if p := u.EscapedPath(); p != "" {
		assertSameOrigin(t, in, p)
	}
}

// FuzzReturnTarget: whatever the input, the result is a path on our
// origin or a URL of a routed host.
func FuzzReturnTarget(f *testing.F) {
	for _, s := range append(slices.Clone(hostileReturnURLs), hostileReturnPaths...) {
		f.Add(s)
	}
	f.Add("https://wiki.example.com/ok?x=1")
	f.Add("https://a.apps.example.com/")
	f.Fuzz(func(t *testing.T, in string) {
		assertAllowed(t, testReturns, in, testReturns.Target(in))
		assertAllowed(t, Returns{Scheme: "http", Port: "9001", Hosts: testReturns.Hosts}, in,
			Returns{Scheme: "http", Port: "9001", Hosts: testReturns.Hosts}.Target(in))
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
