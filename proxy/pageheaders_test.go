package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPageHeadersOfProxyPages: the pages proxy renders itself (403, and
// the /auth/ mux's 404 and 405) carry the same security headers as every
// authproxy page: no scripts, no forms, no framing, no sniffing, no
// Referer.
func TestPageHeadersOfProxyPages(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	html := http.Header{"Accept": {"text/html"}}
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/admin/panel", http.StatusForbidden},
		{"DELETE", "/auth/login", http.StatusMethodNotAllowed},
		{"PUT", "/auth/logout", http.StatusMethodNotAllowed},
		{"GET", "/auth/nope", http.StatusNotFound},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, f.front.URL+tt.path, nil)
			req.Header = html.Clone()
			for _, c := range f.session {
				req.AddCookie(c)
			}
			resp, err := f.front.Client().Transport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			checkPageHeaders(t, resp.Header, string(body))
		})
	}
}

func checkPageHeaders(t *testing.T, h http.Header, body string) {
	t.Helper()
	for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'none'", "style-src 'sha256-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(body, "<script") {
		t.Errorf("CSP %q or page allows scripts", csp)
	}
}
