package e2e

import (
	"fmt"
	"testing"
)

// stack is the usual set-up: one provider, one upstream, one proxy, and a
// landing page for after logout, all on 127.0.0.1 and all stopped when the
// test ends. Tests that need more (replicas, nginx, Redis) build it from the
// same parts: newPKI, startProvider, newRecorder, startProxy.
type stack struct {
	PKI      *pki
	Provider *provider
	Client   providerClient // the proxy's registration at the provider
	Upstream *recorder      // the app behind the proxy
	Landing  *recorder      // AUTHPROXY_POST_LOGOUT_URL points here
	Proxy    *authproxy
}

// stackOptions changes the usual set-up.
type stackOptions struct {
	ProviderTTL map[string]int    // oidc-provider lifetimes in seconds, e.g. {"IdToken": 5}
	ProxyEnv    map[string]string // extra or overriding AUTHPROXY_* variables
}

// newStack starts the usual set-up. It fails t (never skips, once
// AUTHPROXY_E2E=1) when a dependency is missing.
func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	requireE2E(t)
	s := &stack{PKI: newPKI(t), Upstream: newRecorder(t), Landing: newRecorder(t)}
	proxyPort := freePort(t)
	proxyBase := fmt.Sprintf("http://127.0.0.1:%d", proxyPort)
	postLogout := s.Landing.URL.String() + "/signed-out"

	s.Client = providerClient{
		ClientID:                "e2e-proxy",
		ClientSecret:            newCookieSecret(t), // any random string will do
		RedirectURIs:            []string{proxyBase + "/auth/callback"},
		PostLogoutRedirectURIs:  []string{postLogout},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	s.Provider = startProvider(t, s.PKI, providerConfig{
		Clients:  []providerClient{s.Client},
		TTL:      opts.ProviderTTL,
		Features: providerFeatures{RPInitiatedLogout: true},
	})
	s.Proxy = startProxy(t, s.PKI, proxyConfig{
		Port:          proxyPort,
		Upstream:      s.Upstream.URL.String(),
		Issuer:        s.Provider.Issuer,
		ClientID:      s.Client.ClientID,
		ClientSecret:  s.Client.ClientSecret,
		CookieSecret:  newCookieSecret(t),
		PostLogoutURL: postLogout,
		Env:           opts.ProxyEnv,
	})
	return s
}

// ProxyURL returns the proxy's absolute URL for a path with query, such as
// "/some/path?a=1".
func (s *stack) ProxyURL(pathQuery string) string {
	return s.Proxy.URL.String() + pathQuery
}
