package page

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSecurityHeaders: every page kind, as HTML and as JSON, forbids
// scripts, framing, sniffing, caching and Referers; the style hash in the
// CSP is the hash of the page's one <style>; only a page with a form may
// submit one, and only to 'self' and the origins it names.
func TestSecurityHeaders(t *testing.T) {
	tests := []struct {
		name       string
		p          Page
		formAction string
	}{
		{"error", Page{Status: 400, Code: "invalid_state", Title: "Sign-in failed", Detail: "d", Links: []Link{{"/auth/login", "Try again"}}}, "'none'"},
		{"forbidden", Page{Status: 403, Code: "forbidden", Title: "Access denied", Links: []Link{{"/auth/logout", "Sign out"}}}, "'none'"},
		{"provider down", Page{Status: 503, Code: "provider_unavailable", Title: "Sign-in is unavailable"}, "'none'"},
		{"sign-out confirmation", Page{Status: 200, Code: "confirm_logout", Title: "Sign out?", Form: &Form{"/auth/logout", "Sign out"},
			FormTargets: []string{"https://idp.example", "https://landing.example"}}, "'self' https://idp.example https://landing.example"},
	}
	for _, tt := range tests {
		for _, accept := range []string{"text/html", "application/json"} {
			t.Run(tt.name+" "+accept, func(t *testing.T) {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("Accept", accept)
				w := httptest.NewRecorder()
				Write(w, r, tt.p)
				h, body := w.Header(), w.Body.String()
				for k, want := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
					if got := h.Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				want := "default-src 'none'; style-src " + styleSource + "; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
				if accept == "text/html" {
					want = strings.Replace(want, "form-action 'none'", "form-action "+tt.formAction, 1)
					start, end := strings.Index(body, "<style>"), strings.Index(body, "</style>")
					sum := sha256.Sum256([]byte(body[start+len("<style>") : end]))
					if got := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; got != styleSource {
						t.Errorf("the page's style hashes to %s, the CSP allows %s", got, styleSource)
					}
					if strings.Count(body, "<style") != 1 || strings.Contains(body, "<script") || strings.Contains(body, "style=") {
						t.Errorf("page has other styles or scripts:\n%s", body)
					}
				}
				if got := h.Get("Content-Security-Policy"); got != want {
					t.Errorf("CSP\n got %q\nwant %q", got, want)
				}
			})
		}
	}
}

// TestPageEscapes: text, links and the form action are escaped or
// neutralized, whatever they hold.
func TestPageEscapes(t *testing.T) {
	hostile := `"><script>alert(1)</script><style>*{}</style>`
	p := Page{Status: 400, Code: hostile, Title: hostile, Detail: hostile,
		Links: []Link{{"javascript:alert(1)", hostile}, {"data:text/html,<script>alert(1)</script>", "x"}},
		Form:  &Form{Action: "javascript:alert(1)", Button: hostile}}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	Write(w, r, p)
	body := w.Body.String()
	for _, bad := range []string{"<script", "javascript:", "data:text/html", "<style>*"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q:\n%s", bad, body)
		}
	}
	if w.Code != http.StatusBadRequest {
		t.Errorf("status %d", w.Code)
	}
}
