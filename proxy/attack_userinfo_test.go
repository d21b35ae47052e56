package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// TestUserinfoPathSpellings: no spelling of /auth/userinfo reaches the
// upstream (where an app could answer it, with the identity headers, in a
// shape of its own), and the ones the proxy answers with the JSON are
// never cacheable and never readable cross-origin.
func TestUserinfoPathSpellings(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	for _, path := range []string{
		"/auth/userinfo", "/auth/userinfo/", "//auth/userinfo", "/auth//userinfo", "/auth/./userinfo",
		"/auth/x/../userinfo", "/auth/%75serinfo", "/auth/userinfo;x", "/auth/userinfo%2f", "/auth/userinfo%00",
		"/auth/userinfo.json", "/auth/userinfo?callback=steal", "/auth/USERINFO", "/%61uth/userinfo",
	} {
		for _, method := range []string{"GET", "HEAD", "OPTIONS", "POST"} {
			before := f.upstream.count()
			hdr := http.Header{"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"GET"}}
			resp, body := f.do(t, method, path, f.session, hdr)
			if f.upstream.count() != before {
				t.Errorf("%s %s reached the upstream", method, path)
			}
			if resp.StatusCode >= 500 {
				t.Errorf("%s %s: %d", method, path, resp.StatusCode)
			}
			for name := range resp.Header {
				if strings.HasPrefix(strings.ToLower(name), "access-control-") {
					t.Errorf("%s %s: answer carries %s", method, path, name)
				}
			}
			if resp.StatusCode == 200 {
				if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
					resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s %s: 200 with %q", method, path, resp.Header)
				}
				if strings.Contains(body, "steal(") || strings.Contains(body, "secret-token") {
					t.Errorf("%s %s: body %s", method, path, body)
				}
			}
		}
	}
}
