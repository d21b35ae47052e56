package oidc

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// callRecorder is the provider client's transport, noting what Call says
// of each request (the tracing transport names its spans by it).
type callRecorder struct {
	mu    sync.Mutex
	calls []string // "call path"
}

func (c *callRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.calls = append(c.calls, Call(r)+" "+r.URL.Path)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *callRecorder) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// TestCallNames: every request to the provider is named: discovery and
// the key fetch at start, the token exchange of a login, a refresh.
func TestCallNames(t *testing.T) {
	rec := &callRecorder{}
	f := newFixtureIDP(t, oidctest.Options{}, func(c *Config) {
		c.Scopes = []string{"openid", "email", "offline_access"}
		c.HTTPClient.Transport = rec
	})
	check := func(step string, want ...string) {
		t.Helper()
		got := rec.take()
		var names []string
		for _, c := range got {
			name, _, _ := strings.Cut(c, " ")
			if name == "" {
				t.Errorf("%s: request %q is not named", step, c)
			}
			names = append(names, name)
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s: calls %q, want %q", step, got, want)
		}
	}
	check("start", CallDiscovery, CallJWKS)
	sess := f.loginSession(t, "alice")
	check("login", CallToken)
	if _, err := f.h.Refresh(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	check("refresh", CallRefresh)
}
