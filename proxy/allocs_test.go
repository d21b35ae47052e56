package proxy

import (
	"net/http"
	"testing"

	"github.com/authproxy/authproxy/cookie"
)

// maxExtraAllocs is what authentication may cost per request, in heap
// allocations, over a bare httputil.ReverseProxy serving the same request
// (issue 14: bare + 10).
const maxExtraAllocs = 10

// TestAllocsPerRequest holds the authenticated path's allocations within
// maxExtraAllocs of the bare proxy's: the same browser request, with a
// valid cookie session, through a bare httputil.ReverseProxy and through
// New's handler, both to the in-memory upstream (so only the handlers'
// allocations count). Allocation counts are deterministic, unlike time, so
// this can be a test; `go test -bench 'BareReverseProxy|Authproxy'` shows
// the same numbers.
//
// Under the race detector sync.Pool drops a random quarter of what is put
// back, so pooled objects (authproxy's copy buffers and timers) are
// sometimes allocated anew and the count varies from run to run.
// raceSlack (race_test.go) allows for that there; without -race the bound
// is exact.
func TestAllocsPerRequest(t *testing.T) {
	store, cookies := benchSession(t)
	req := benchRequest(cookies, true)

	bareUp := &cannedUpstream{}
	bare := newBenchBare(benchUpstreamURL, bareUp)
	authUp := &cannedUpstream{want: []string{benchUser}}
	h, err := New(allocsConfig(t, store, authUp))
	if err != nil {
		t.Fatal(err)
	}

	bareAllocs := allocsPerRequest(t, bare, req)
	authAllocs := allocsPerRequest(t, h, req)
	t.Logf("allocs per request: bare httputil.ReverseProxy %.0f, authproxy %.0f (limit bare + %d%s)", bareAllocs, authAllocs, maxExtraAllocs, raceNote())
	if n := bareUp.wrong.Load() + authUp.wrong.Load(); n > 0 {
		t.Fatalf("%d requests reached the upstream with the wrong X-User", n)
	}
	if authAllocs > bareAllocs+maxExtraAllocs+raceSlack {
		t.Errorf("authproxy allocates %.0f times per authenticated request, the bare proxy %.0f: %.0f more, want at most %d more (see BENCHMARKS.md; find them with go test -run '^$' -bench 'Authproxy/inmem' -memprofile)",
			authAllocs, bareAllocs, authAllocs-bareAllocs, maxExtraAllocs)
	}
}

// allocsPerRequest serves req through h (first checking it answers 200)
// and returns testing.AllocsPerRun's average over many requests.
func allocsPerRequest(t *testing.T, h http.Handler, req *http.Request) float64 {
	t.Helper()
	w := &sink{h: http.Header{}}
	serve := func() {
		w.reset()
		delete(req.Header, "X-Request-Id") // authproxy sets it on the inbound request
		h.ServeHTTP(w, req)
	}
	serve()
	if w.status != http.StatusOK {
		t.Fatalf("status %d, want 200", w.status)
	}
	return testing.AllocsPerRun(500, serve)
}

// allocsConfig is the one place this test names proxy.Config's fields
// (upstream and transport included), so that a change to how the upstream
// is configured changes this function only.
func allocsConfig(t *testing.T, store *cookie.Store, rt http.RoundTripper) Config {
	return Config{
		Routes: routesTo(benchUpstreamURL), Transport: transport(rt),
		UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth: authFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("auth handler called for %s", r.URL)
		}),
		Ready: func() bool { return true },
	}
}
