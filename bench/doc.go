// Package bench holds authproxy's load script, not part of the proxy: the
// command in bench/load is what `make bench` runs (issue 7). It builds the
// real authproxy binary, logs in through the in-repo development provider
// (oidc/oidctest), and drives authproxy and a bare httputil.ReverseProxy,
// side by side and interleaved, against the same kind of upstream on
// 127.0.0.1, checking that every counted request reached the upstream with
// the right X-User. BENCHMARKS.md records how it is run and what it showed.
//
// The go test benchmarks of the hot path live beside the code they measure:
// cookie/bench_test.go and proxy/bench_test.go.
package bench
