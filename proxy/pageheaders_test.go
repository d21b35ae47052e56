package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPageHeadersOfProxyPages: the pages proxy renders itself (403, 502)
// carry the same security headers as every authproxy page: no scripts, no
// forms, no framing, no sniffing, no Referer.
func TestPageHeadersOfProxyPages(t *testing.T) {
	f := newFixture(t, &recorder{}, withAuthz)
	resp := f.get(t, "/admin/panel", f.session, http.Header{"Accept": {"text/html"}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	h := resp.Header
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
	if strings.Contains(csp, "unsafe") || strings.Contains(string(body), "<script") {
		t.Errorf("CSP %q or page allows scripts", csp)
	}
}
