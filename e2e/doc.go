// Package e2e is authproxy's end-to-end proof: it builds the real authproxy
// binary and runs it against parts written by other people, which share none
// of our assumptions: panva's oidc-provider (a certified OpenID Provider on
// Node.js, configured like an Auth0 tenant, see provider/server.mjs), a
// recording upstream, a scripted browser-like client and headless Chromium.
//
// The unit tests of cookie, oidc and proxy check each piece against our own
// fake IdP (oidc/oidctest); a misreading of the OpenID Connect specs shared by
// the code and that fake would pass them. This package is where such a
// misreading fails.
//
// The tests run only when AUTHPROXY_E2E=1 (`make test` sets it and installs
// Node modules and Chromium); plain `go test ./...` skips them. With
// AUTHPROXY_E2E=1, a missing dependency fails the suite instead of skipping.
// The suite takes 3 to 6 minutes on an idle two-core machine and about twice
// that on a busy one, close to `go test`'s default 10-minute -timeout:
// `make test` passes -timeout 30m; pass it too when running it by hand.
//
// The package has no non-test code besides this comment: the harness lives in
// the _test.go files (main_test.go, stack_test.go and their neighbours).
package e2e
