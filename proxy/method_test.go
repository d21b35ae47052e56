package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMethodOverride: frameworks act on the method a POST names in a
// header (Express method-override, ASP.NET Core, Rack, Symfony, Google
// APIs: X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override) or in
// the query's _method (Symfony, Laravel). The rules must judge the method
// the upstream will run, in proxy mode and in forward auth.
func TestMethodOverride(t *testing.T) {
	f := newFAFixtureWith(t, "public GET /public/\nallow GET,POST / any\n")
	tests := []struct {
		method, target string
		header         http.Header
		want           verdict
	}{
		{"POST", "/x", nil, vPass},
		{"DELETE", "/x", nil, vDeny},
		{"POST", "/x", http.Header{"X-Http-Method-Override": {"DELETE"}}, vDeny},
		{"POST", "/x", http.Header{"X-Http-Method-Override": {"delete"}}, vDeny},
		{"POST", "/x", http.Header{"X-Http-Method": {"PUT"}}, vDeny},
		{"POST", "/x", http.Header{"X-Method-Override": {"PATCH"}}, vDeny},
		{"POST", "/x", http.Header{"X_http_method_override": {"DELETE"}}, vDeny},
		{"POST", "/x", http.Header{"X.Http.Method.Override": {"DELETE"}}, vDeny},
		{"POST", "/x", http.Header{"X-Http-Method-Override": {"POST", "DELETE"}}, vDeny},
		{"POST", "/x", http.Header{"X-Http-Method-Override": {" DELETE "}}, vDeny},
		{"POST", "/x?_method=DELETE", nil, vDeny},
		{"POST", "/x?a=1&_method=delete", nil, vDeny},
		{"POST", "/x?_METHOD=PUT", nil, vDeny},
		{"POST", "/x?a=1;_method=PUT", nil, vDeny},
		{"POST", "/x?%5Fmethod=PUT", nil, vDeny},
		{"POST", "/x?_method=GET", nil, vPass},
		{"POST", "/x", http.Header{"X-Http-Method-Override": {"GET"}}, vPass},
		{"GET", "/x", http.Header{"X-Http-Method-Override": {"POST"}}, vPass},
		{"GET", "/public/a", http.Header{"X-Http-Method-Override": {"GET"}}, vPass},
	}
	for _, tc := range tests {
		// Proxy mode.
		req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(""))
		req.Host = "app.example"
		for k, v := range tc.header {
			req.Header[k] = v
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", f.cookies["alice"])
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		if got := verdictOf(w.Code, w.Body.String()); got != tc.want {
			t.Errorf("proxy %s %s %v: %s, want %s", tc.method, tc.target, tc.header, got, tc.want)
		}
		// Forward auth: nginx passes the client's headers along.
		req = httptest.NewRequest("GET", "/auth/check", nil)
		req.Host = "app.example"
		for k, v := range tc.header {
			req.Header[k] = v
		}
		req.Header.Set("X-Original-Url", tc.target)
		req.Header.Set("X-Original-Method", tc.method)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", f.cookies["alice"])
		w = httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		if got := verdictOf(w.Code, w.Body.String()); got != tc.want {
			t.Errorf("check %s %s %v: %s, want %s", tc.method, tc.target, tc.header, got, tc.want)
		}
	}
}
