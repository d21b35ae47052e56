package proxy

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/tracing"
	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/session"
)

// The benchmarks in this file put authproxy's handler side by side with a
// bare httputil.ReverseProxy in front of the same upstream, so that the cost
// of authentication reads as the difference between the two:
//
//	go test -run '^$' -bench 'BareReverseProxy|Authproxy' -benchmem ./proxy
//
// See BENCHMARKS.md for the numbers.

const benchUser = "auth0|64f1c2a9e4b0d7c3a1b2c3d4"

// cannedUpstream is an in-memory upstream: a RoundTripper that answers every
// request with a fresh small 200, as a transport would, and counts requests
// whose X-User is not exactly want (a fast but wrong proxy must not pass).
type cannedUpstream struct {
	want  []string // X-User values expected; nil means none
	wrong atomic.Int64
	calls atomic.Int64
}

const cannedBody = `{"ok":true,"items":[1,2,3]}` + "\n"

func (u *cannedUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.calls.Add(1)
	if got := r.Header["X-User"]; len(got) != len(u.want) || (len(got) == 1 && got[0] != u.want[0]) {
		u.wrong.Add(1)
	}
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		Status: "200 OK", StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"application/json"},
			"Content-Length": {strconv.Itoa(len(cannedBody))},
			"Date":           {"Thu, 01 Jan 2026 00:00:00 GMT"},
		},
		Body:          io.NopCloser(strings.NewReader(cannedBody)),
		ContentLength: int64(len(cannedBody)),
		Request:       r,
	}, nil
}

// sink is a ResponseWriter reused across iterations (headers cleared), so a
// benchmark counts the handler's allocations and not a recorder's.
type sink struct {
	h      http.Header
	status int
	n      int
}

func (w *sink) Header() http.Header { return w.h }
func (w *sink) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *sink) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	w.n += len(p)
	return len(p), nil
}
func (w *sink) reset() { clear(w.h); w.status, w.n = 0, 0 }

// benchRequest is what Chrome sends for a page of the app (its usual 13
// headers), with an app cookie and, when sessionCookies is set, authproxy's
// cookies. navigation false makes it an API call (Accept: JSON, no
// Sec-Fetch-Mode: navigate).
func benchRequest(sessionCookies []*http.Cookie, navigation bool) *http.Request {
	r := httptest.NewRequest("GET", "http://app.example/app/items?page=2", nil)
	r.URL.Scheme, r.URL.Host = "", "" // origin-form, as a server reads it; Host stays
	r.RemoteAddr = "192.0.2.10:51234"
	h := r.Header
	h.Set("Sec-Ch-Ua", `"Chromium";v="126", "Google Chrome";v="126", "Not-A.Brand";v="99"`)
	h.Set("Sec-Ch-Ua-Mobile", "?0")
	h.Set("Sec-Ch-Ua-Platform", `"Linux"`)
	h.Set("Upgrade-Insecure-Requests", "1")
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
	h.Set("Sec-Fetch-Site", "same-origin")
	h.Set("Sec-Fetch-Dest", "document")
	h.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	h.Set("Accept-Language", "en-GB,en;q=0.9")
	if navigation {
		h.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
		h.Set("Sec-Fetch-Mode", "navigate")
		h.Set("Sec-Fetch-User", "?1")
	} else {
		h.Set("Accept", "application/json")
		h.Set("Sec-Fetch-Mode", "cors")
	}
	h.Set("Cookie", "theme=dark; _ga=GA1.1.123456789.1700000000")
	for _, c := range sessionCookies {
		r.AddCookie(c)
	}
	return r
}

// benchIDToken is sized like a real RS256 ID token (about 900 bytes), which
// the session keeps for logout and which dominates the cookie's size.
func benchIDToken() string {
	enc := base64.RawURLEncoding
	header := `{"alg":"RS256","kid":"Qm9vdHN0cmFwS2V5SWQtMDEyMzQ1Njc4OWFiY2RlZg","typ":"JWT"}`
	payload := `{"iss":"https://tenant.eu.auth0.com/","sub":"` + benchUser + `","aud":"authproxy-client-id-0123456789",` +
		`"exp":1767225600,"iat":1767189600,"auth_time":1767189600,"nonce":"n-0S6_WzA2Mj-9f8e7d6c5b4a3","sid":"6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",` +
		`"email":"ada.lovelace@example.com","email_verified":true,"name":"Ada Lovelace","nickname":"ada","picture":"https://example.com/a.png"}`
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + strings.Repeat("s", 342)
}

// benchSession returns a real store and the cookies it saves for a login.
func benchSession(b testing.TB) (*cookie.Store, []*http.Cookie) {
	b.Helper()
	store, err := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	if err != nil {
		b.Fatal(err)
	}
	w := httptest.NewRecorder()
	sess := session.Session{User: benchUser, Email: "ada.lovelace@example.com", Name: "Ada Lovelace",
		IDToken: benchIDToken(), Expiry: time.Now().Add(12 * time.Hour)}
	if err := store.Save(w, httptest.NewRequest("GET", "/auth/callback", nil), sess); err != nil {
		b.Fatal(err)
	}
	var cookies []*http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.MaxAge > 0 {
			cookies = append(cookies, &http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return store, cookies
}

var benchUpstreamURL = &url.URL{Scheme: "http", Host: "upstream.internal:8080"}

// newBenchAuthproxy builds the real handler with the real store.
func newBenchAuthproxy(b *testing.B, store *cookie.Store, upstream *url.URL, rt http.RoundTripper, mutate ...func(*Config)) http.Handler {
	b.Helper()
	cfg := Config{
		Routes: routesTo(upstream), UserHeader: "X-User", Transport: transport(rt), Sessions: store, IsOwnCookie: store.IsOwn,
		Auth: authFunc(func(w http.ResponseWriter, r *http.Request) {
			b.Errorf("auth handler called for %s", r.URL)
		}),
		Ready: func() bool { return true },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// newBenchBare is the baseline: the standard library's single-host reverse
// proxy with no authentication, on the same transport.
func newBenchBare(upstream *url.URL, rt http.RoundTripper) http.Handler {
	p := httputil.NewSingleHostReverseProxy(upstream)
	p.Transport = rt
	return p
}

// runHandler serves r through h b.N times and checks every answer.
func runHandler(b *testing.B, h http.Handler, r *http.Request, wantStatus int) {
	b.Helper()
	w := &sink{h: http.Header{}}
	h.ServeHTTP(w, r)
	if w.status != wantStatus {
		b.Fatalf("status %d, want %d", w.status, wantStatus)
	}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		delete(r.Header, "X-Request-Id") // authproxy sets it on the inbound request
		h.ServeHTTP(w, r)
		if w.status != wantStatus {
			b.Fatalf("status %d, want %d", w.status, wantStatus)
		}
	}
}

// loopbackUpstream is a real HTTP upstream on 127.0.0.1 with a transport
// whose idle pool holds every connection the benchmark uses.
func loopbackUpstream(b *testing.B, want []string) (*url.URL, http.RoundTripper, *atomic.Int64) {
	b.Helper()
	var wrong atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header["X-User"]; len(got) != len(want) || (len(got) == 1 && got[0] != want[0]) {
			wrong.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, cannedBody)
	}))
	b.Cleanup(srv.Close)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 128, 128
	b.Cleanup(t.CloseIdleConnections)
	u, _ := url.Parse(srv.URL)
	return u, t, &wrong
}

func checkWrong(b *testing.B, wrong *atomic.Int64) {
	b.Helper()
	if n := wrong.Load(); n > 0 {
		b.Fatalf("%d requests reached the upstream with the wrong X-User", n)
	}
}

// BenchmarkBareReverseProxy is the floor: httputil.ReverseProxy alone.
//
//	inmem:    to a RoundTripper answering from memory (handler cost only)
//	loopback: to a real upstream on 127.0.0.1 (adds the kernel and transport)
//	parallel: loopback, from every core at once
func BenchmarkBareReverseProxy(b *testing.B) {
	_, sessionCookies := benchSession(b)
	req := benchRequest(sessionCookies, true) // the same bytes authproxy gets
	b.Run("inmem", func(b *testing.B) {
		up := &cannedUpstream{}
		runHandler(b, newBenchBare(benchUpstreamURL, up), req, 200)
		checkWrong(b, &up.wrong)
	})
	// With pooled copy buffers, as authproxy has (and the load script's
	// bare proxy): without them every response allocates 32 KiB, which
	// makes the bare proxy look slower than it need be.
	b.Run("inmem-pooled", func(b *testing.B) {
		up := &cannedUpstream{}
		rp := newBenchBare(benchUpstreamURL, up).(*httputil.ReverseProxy)
		rp.BufferPool = bufferPool{}
		runHandler(b, rp, req, 200)
		checkWrong(b, &up.wrong)
	})
	b.Run("loopback", func(b *testing.B) {
		u, rt, wrong := loopbackUpstream(b, nil)
		runHandler(b, newBenchBare(u, rt), req, 200)
		checkWrong(b, wrong)
	})
	b.Run("parallel", func(b *testing.B) {
		u, rt, wrong := loopbackUpstream(b, nil)
		runParallel(b, newBenchBare(u, rt), req)
		checkWrong(b, wrong)
	})
}

// BenchmarkAuthproxy is the same request through proxy.New with a valid
// session: cookie decode and validation, identity and cookie stripping,
// X-User, then the same ReverseProxy machinery.
func BenchmarkAuthproxy(b *testing.B) {
	store, sessionCookies := benchSession(b)
	req := benchRequest(sessionCookies, true)
	b.Run("inmem", func(b *testing.B) {
		up := &cannedUpstream{want: []string{benchUser}}
		runHandler(b, newBenchAuthproxy(b, store, benchUpstreamURL, up), req, 200)
		checkWrong(b, &up.wrong)
	})
	// With tracing on: a server and an upstream span per request, sampled,
	// batched and handed to an exporter that drops them (no network).
	b.Run("inmem-traced", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		tr := tracing.New(tp, false)
		up := &cannedUpstream{want: []string{benchUser}}
		h := newBenchAuthproxy(b, store, benchUpstreamURL, tr.Transport(up, func(*http.Request) string { return "upstream" }),
			func(c *Config) { c.Tracer = tr })
		runHandler(b, h, req, 200)
		checkWrong(b, &up.wrong)
	})
	// The same request to a host route of a table of several hosts, the
	// app's /api/ stripped of its prefix.
	b.Run("inmem-routes", func(b *testing.B) {
		up := &cannedUpstream{want: []string{benchUser}}
		tab, err := route.Parse("routes.txt", strings.NewReader(`wiki.example  /      http://wiki.internal
*.apps.example /      http://apps.internal
app.example   /      http://upstream.internal:8080
app.example   /app/  http://upstream.internal:8080  strip-prefix
*             /      http://default.internal
`))
		if err != nil {
			b.Fatal(err)
		}
		h, err := New(Config{Routes: tab, UserHeader: "X-User", Transport: transport(up), Sessions: store, IsOwnCookie: store.IsOwn,
			Auth: authFunc(func(http.ResponseWriter, *http.Request) { b.Error("auth handler called") }), Ready: func() bool { return true }})
		if err != nil {
			b.Fatal(err)
		}
		runHandler(b, h, req, 200)
		checkWrong(b, &up.wrong)
	})
	b.Run("loopback", func(b *testing.B) {
		u, rt, wrong := loopbackUpstream(b, []string{benchUser})
		runHandler(b, newBenchAuthproxy(b, store, u, rt), req, 200)
		checkWrong(b, wrong)
	})
	b.Run("parallel", func(b *testing.B) {
		u, rt, wrong := loopbackUpstream(b, []string{benchUser})
		runParallel(b, newBenchAuthproxy(b, store, u, rt), req)
		checkWrong(b, wrong)
	})
}

func runParallel(b *testing.B, h http.Handler, r *http.Request) {
	b.Helper()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &sink{h: http.Header{}}
		r := r.Clone(r.Context()) // authproxy writes X-Request-Id into the request
		for pb.Next() {
			w.reset()
			delete(r.Header, "X-Request-Id")
			h.ServeHTTP(w, r)
			if w.status != 200 {
				b.Errorf("status %d", w.status)
				return
			}
		}
	})
}

// BenchmarkUnauthenticated is a request without a usable session: a browser
// gets a redirect to /auth/login, a program a 401 page. Neither may touch
// the provider (the auth handler here fails the benchmark if called) or the
// upstream.
func BenchmarkUnauthenticated(b *testing.B) {
	store, sessionCookies := benchSession(b)
	up := &cannedUpstream{}
	h := newBenchAuthproxy(b, store, benchUpstreamURL, up)
	tampered := []*http.Cookie{{Name: sessionCookies[0].Name, Value: sessionCookies[0].Value[:len(sessionCookies[0].Value)-4] + "AAAA"}}
	b.Run("redirect", func(b *testing.B) { runHandler(b, h, benchRequest(nil, true), http.StatusFound) })
	b.Run("redirect-bad-cookie", func(b *testing.B) { runHandler(b, h, benchRequest(tampered, true), http.StatusFound) })
	b.Run("401-json", func(b *testing.B) { runHandler(b, h, benchRequest(nil, false), http.StatusUnauthorized) })
	if n := up.calls.Load(); n > 0 {
		b.Fatalf("%d unauthenticated requests reached the upstream", n)
	}
}

// BenchmarkRewrite is the header rewrite alone: what ReverseProxy.Rewrite
// does to the outbound request. "bare" is SetURL plus SetXForwarded, the
// least a Rewrite does; "authproxy" is handler.rewrite, which adds header
// and cookie stripping and X-User. Out is rebuilt from In before each call
// without allocating, so the allocations counted are the rewrite's.
func BenchmarkRewrite(b *testing.B) {
	store, sessionCookies := benchSession(b)
	ph := benchHandler(b, store)
	in := benchRequest(sessionCookies, true)
	in.Header.Set("X_User", "mallory") // a forged identity, to be stripped
	in = in.WithContext(context.WithValue(in.Context(), infoKey{}, &reqInfo{sess: session.Session{User: benchUser}, route: ph.cfg.Routes.Routes()[0]}))
	out := in.Clone(in.Context())
	pr := &httputil.ProxyRequest{In: in, Out: out}
	reset := func() {
		clear(out.Header)
		for k, v := range in.Header {
			out.Header[k] = v
		}
		*out.URL = *in.URL
		out.Host = in.Host
	}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reset()
			pr.SetURL(benchUpstreamURL)
			pr.SetXForwarded()
		}
	})
	b.Run("authproxy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reset()
			ph.rewrite(pr)
		}
		forged := http.CanonicalHeaderKey("X_User") // the forged spelling set above, which must be gone
		if got := out.Header["X-User"]; len(got) != 1 || got[0] != benchUser || len(out.Header[forged]) != 0 {
			b.Fatalf("X-User = %q, X_User = %q", got, out.Header[forged])
		}
		if c := out.Header.Get("Cookie"); strings.Contains(c, cookie.DefaultName) || !strings.Contains(c, "theme=dark") {
			b.Fatalf("Cookie = %q", c)
		}
	})
}

// benchHandler builds the *handler that New wraps in its mux, field for
// field as New does, so that BenchmarkRewrite can call rewrite directly.
// Keep it in step with New (or split New into a newHandler returning
// *handler, and call that here).
func benchHandler(b *testing.B, store *cookie.Store) *handler {
	b.Helper()
	p, err := newHandler(Config{Routes: routesTo(benchUpstreamURL), UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth: authFunc(http.NotFound), Ready: func() bool { return true }})
	if err != nil {
		b.Fatal(err)
	}
	return p
}
