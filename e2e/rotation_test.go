package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestProviderKeyRotation rotates oidc-provider's signing key right after
// the proxy fetched the old one (a bearer token with an unknown key makes it
// fetch, and starts its 10 s quiet interval for such tokens) and verified a
// token with it: the provider
// restarts on the same port and issuer, first with only a new key (the old
// one replaced), then with another new key that signs while the previous
// one stays published (a key added). Each time the very next login
// succeeds: an ID token from the token endpoint with an unknown key makes
// the proxy fetch the keys again at once, whatever its refetch interval.
func TestProviderKeyRotation(t *testing.T) {
	s := newStack(t, stackOptions{ProxyEnv: map[string]string{"AUTHPROXY_AUDIENCE": apiAudience}})
	// fetchKeys has the proxy fetch the provider's keys now (unless it did
	// within its interval): a bearer token signed with a key nobody has.
	fetchKeys := func() {
		t.Helper()
		tok := signRS256(t, map[string]any{"iss": s.Provider.Issuer, "aud": apiAudience, "sub": "x",
			"exp": time.Now().Add(time.Hour).Unix()}, "unknown-"+randomToken(t)[:8])
		p := newBrowser(t, s.PKI).Do(http.MethodGet, s.ProxyURL("/api/poke"), http.Header{"Authorization": {"Bearer " + tok}}, nil)
		if p.Status != http.StatusUnauthorized {
			t.Fatalf("bearer token with an unknown key: status %d, want 401", p.Status)
		}
	}
	login := func(step string) {
		t.Helper()
		b := newBrowser(t, s.PKI)
		pathQuery := "/rotation?step=" + step
		p := b.Login(s.ProxyURL(pathQuery), "rita")
		if p.Status != http.StatusOK || p.URL.String() != s.ProxyURL(pathQuery) {
			t.Fatalf("login after the key was %s: landed on %d %s; hops:\n%s\nproxy output:\n%s",
				step, p.Status, p.URL, b.HopsString(), s.Proxy.out.String())
		}
		seen := s.Upstream.ByRequestURI(pathQuery)
		if len(seen) != 1 || seen[0].Header.Get("X-User") != "rita" {
			t.Fatalf("login after the key was %s: the upstream saw %d requests, want 1 with X-User rita", step, len(seen))
		}
	}
	restart := func(keys ...map[string]string) {
		t.Helper()
		if err := s.Provider.stop(stopTimeout); err != nil {
			t.Fatalf("stop the provider: %v", err)
		}
		cfg := s.Provider.Config // same port, issuer, TLS, clients and cookie keys
		cfg.SigningKeys = keys
		s.Provider = startProvider(t, s.PKI, cfg)
	}

	login("original")
	replaced := newSigningJWK(t)
	fetchKeys()
	restart(replaced)
	login("replaced")
	fetchKeys()
	restart(newSigningJWK(t), replaced)
	login("added")
}
