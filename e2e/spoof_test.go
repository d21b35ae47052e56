package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestSpoofedIdentityHeaders sends a logged-in user's requests with forged
// identity headers in every spelling a server or a CGI-style stack may read
// as X-User, and hop-by-hop tricks. The upstream must see exactly one X-User,
// the real sub, and none of the proxy's cookies.
func TestSpoofedIdentityHeaders(t *testing.T) {
	s := newStack(t, stackOptions{})
	b := newBrowser(t, s.PKI)
	const user = "erin"
	if p := b.Login(s.ProxyURL("/spoof/login"), user); p.Status != http.StatusOK {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	proxyCookies := b.CookiesSetBy(s.Proxy.URL.Scheme + "://" + s.Proxy.URL.Host)
	if len(proxyCookies) == 0 {
		t.Fatalf("the proxy set no cookie during login")
	}
	// An application cookie, which the upstream must still receive.
	b.Jar.SetCookies(s.Proxy.URL, []*http.Cookie{{Name: "app_pref", Value: "dark"}})

	type field struct{ name, value string }
	tests := []struct {
		name   string
		header []field // sent as written, in this order
	}{
		{"X-User", []field{{"X-User", "mallory"}}},
		{"x-user", []field{{"x-user", "mallory"}}},
		{"X-USER", []field{{"X-USER", "mallory"}}},
		{"X_User", []field{{"X_User", "mallory"}}},
		{"x_user", []field{{"x_user", "mallory"}}},
		{"two X-User", []field{{"X-User", "mallory"}, {"X-User", "eve"}}},
		{"Connection: X-User", []field{{"Connection", "X-User"}}},
		{"Connection: X-User with a forged X-User", []field{{"Connection", "X-User"}, {"X-User", "mallory"}}},
		{"Connection: x_user, keep-alive", []field{{"Connection", "x_user, keep-alive"}, {"x_user", "mallory"}}},
		{"every spelling at once", []field{
			{"X-User", "mallory"}, {"x-user", "eve"}, {"X_User", "trudy"}, {"x_user", "oscar"}, {"X-USER", "peggy"},
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := "/spoof/" + string(rune('a'+i))
			header := apiHeaders()
			for _, f := range tc.header {
				header[f.name] = append(header[f.name], f.value) // not canonicalized: sent as written
			}
			p := b.Do(http.MethodGet, s.ProxyURL(path), header, nil)
			if p.Status != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200; body:\n%s", path, p.Status, p.Body)
			}
			seen := s.Upstream.ByPath(path)
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests for %s, want 1", len(seen), path)
			}
			got := identityHeaders(seen[0].Header)
			want := map[string][]string{"X-User": {user}}
			if len(got) != 1 || !slices.Equal(got["X-User"], want["X-User"]) {
				t.Errorf("upstream identity headers = %q, want %q", got, want)
			}

			cookies := (&http.Request{Header: seen[0].Header}).Cookies()
			var names []string
			for _, c := range cookies {
				names = append(names, c.Name)
				if slices.Contains(proxyCookies, c.Name) {
					t.Errorf("upstream received the proxy's cookie %q", c.Name)
				}
			}
			if !slices.Contains(names, "app_pref") {
				t.Errorf("upstream cookies = %q, want the application's app_pref kept", names)
			}
		})
	}
}

// identityHeaders returns every header whose name a server may read as
// X-User: any case, '-' or '_'.
func identityHeaders(h http.Header) map[string][]string {
	out := map[string][]string{}
	for name, values := range h {
		if strings.ReplaceAll(strings.ToLower(name), "_", "-") == "x-user" {
			out[name] = values
		}
	}
	return out
}
