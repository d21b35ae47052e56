package e2e

import "testing"

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
	return newCustomStack(t, customStackOptions{
		Provider: func(c *providerConfig) { c.TTL = opts.ProviderTTL },
		ProxyEnv: opts.ProxyEnv,
	})
}

// ProxyURL returns the proxy's absolute URL for a path with query, such as
// "/some/path?a=1".
func (s *stack) ProxyURL(pathQuery string) string {
	return s.Proxy.URL.String() + pathQuery
}
