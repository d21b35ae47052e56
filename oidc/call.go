package oidc

import (
	"context"
	"net/http"
)

// The provider calls that Call names. A tracing transport on
// Config.HTTPClient names its spans after them.
const (
	CallDiscovery = "discovery" // the discovery document
	CallJWKS      = "jwks"      // the signing keys
	CallToken     = "token"     // the code exchange of a login
	CallRefresh   = "refresh"   // a refresh-token grant
)

type callKey struct{}

// withCall labels the provider requests made under ctx. The innermost
// label wins: a key fetch during a login's token check is CallJWKS.
func withCall(ctx context.Context, call string) context.Context {
	return context.WithValue(ctx, callKey{}, call)
}

// Call names the provider call r makes (Call* constants), or "" for a
// request oidc did not label. It lets the HTTP client's transport tell the
// calls apart without oidc knowing how they are traced.
func Call(r *http.Request) string {
	c, _ := r.Context().Value(callKey{}).(string)
	return c
}
