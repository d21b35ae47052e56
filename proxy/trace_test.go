package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/internal/tracing"
	"github.com/authproxy/authproxy/session"
)

// tracedProxy is the proxy with tracing on, in front of a real upstream
// that records the trace headers it receives.
type tracedProxy struct {
	h       http.Handler
	spans   *tracetest.SpanRecorder
	log     *bytes.Buffer
	session []*http.Cookie
	trusted bool // what Config.Trusted answers

	mu   sync.Mutex
	seen []http.Header // the upstream's requests' headers
}

func newTracedProxy(t *testing.T, user bool) *tracedProxy {
	t.Helper()
	tp := &tracedProxy{spans: tracetest.NewSpanRecorder(), log: &bytes.Buffer{}}
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tp.spans))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	tr := tracing.New(provider, user)

	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.seen = append(tp.seen, r.Header.Clone())
		tp.mu.Unlock()
	}))
	t.Cleanup(back.Close)
	store, err := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(back.URL)
	tp.h, err = New(Config{
		Routes: routesTo(u), UserHeader: "X-User", Sessions: store, IsOwnCookie: store.IsOwn,
		Auth:      authFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		Ready:     func() bool { return true },
		Transport: transport(tr.Transport(back.Client().Transport, func(*http.Request) string { return "upstream" })),
		Trusted:   func(*http.Request) bool { return tp.trusted },
		Tracer:    tr,
		Logger:    slog.New(slog.NewJSONHandler(tp.log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tp.session = w.Result().Cookies()
	return tp
}

// serve sends a request with hdr (keys as given, not canonicalized) and
// returns the spans it ended: the server span first.
func (tp *tracedProxy) serve(t *testing.T, target string, hdr map[string][]string) []sdktrace.ReadOnlySpan {
	t.Helper()
	before := len(tp.spans.Ended())
	r := httptest.NewRequest("GET", target, nil)
	for k, v := range hdr {
		r.Header[k] = v
	}
	for _, c := range tp.session {
		r.AddCookie(c)
	}
	tp.h.ServeHTTP(httptest.NewRecorder(), r)
	spans := tp.spans.Ended()[before:]
	// The server span ends last; put it first.
	for i, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			return append([]sdktrace.ReadOnlySpan{s}, append(spans[:i:i], spans[i+1:]...)...)
		}
	}
	if len(spans) > 0 {
		t.Fatalf("no server span among %d", len(spans))
	}
	return nil // not sampled
}

func (tp *tracedProxy) lastSeen(t *testing.T) http.Header {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.seen) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return tp.seen[len(tp.seen)-1]
}

// TestTraceProxied: a proxied request is one trace, a server span with an
// upstream child; the upstream gets the child's traceparent; the access
// log carries the trace id; the query and user stay out of the spans.
func TestTraceProxied(t *testing.T) {
	tp := newTracedProxy(t, false)
	spans := tp.serve(t, "/reports/7?token=secret-token", nil)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want server and upstream", len(spans))
	}
	server, up := spans[0], spans[1]
	if server.Name() != "GET /" || up.Name() != "upstream" || up.SpanKind() != trace.SpanKindClient {
		t.Errorf("spans %q (%v), %q (%v)", server.Name(), server.SpanKind(), up.Name(), up.SpanKind())
	}
	if up.Parent().SpanID() != server.SpanContext().SpanID() || up.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Errorf("upstream span's parent %v, want the server span %v", up.Parent(), server.SpanContext())
	}
	a := map[string]string{}
	for _, kv := range server.Attributes() {
		a[string(kv.Key)] = kv.Value.String()
	}
	if a["authproxy.outcome"] != OutcomeProxied || a["http.route"] != "/" || a["url.path"] != "/reports/7" || a["http.response.status_code"] != "200" {
		t.Errorf("server span attributes %v", a)
	}
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if v := kv.Value.String(); strings.Contains(v, "secret-token") || strings.Contains(v, "alice") || strings.Contains(v, "_authproxy") {
				t.Errorf("span %q attribute %s = %q", s.Name(), kv.Key, v)
			}
		}
	}
	want := "00-" + up.SpanContext().TraceID().String() + "-" + up.SpanContext().SpanID().String() + "-01"
	if got := tp.lastSeen(t).Values("Traceparent"); len(got) != 1 || got[0] != want {
		t.Errorf("upstream got traceparent %q, want %q", got, want)
	}
	var line map[string]any
	if err := json.Unmarshal(tp.log.Bytes(), &line); err != nil {
		t.Fatalf("access log %q: %v", tp.log, err)
	}
	if line["trace_id"] != server.SpanContext().TraceID().String() {
		t.Errorf("access log trace_id %v, want %s", line["trace_id"], server.SpanContext().TraceID())
	}
}

// TestTraceUser: the user id is on the server span only when allowed.
func TestTraceUser(t *testing.T) {
	tp := newTracedProxy(t, true)
	spans := tp.serve(t, "/", nil)
	found := false
	for _, kv := range spans[0].Attributes() {
		found = found || (kv.Key == "enduser.id" && kv.Value.AsString() == "alice")
	}
	if !found {
		t.Errorf("AUTHPROXY_TRACE_USER on: no enduser.id=alice in %v", spans[0].Attributes())
	}
}

// TestTraceRoutes: each span names the route pattern that served it and
// the outcome; a path no route knows is named by its method.
func TestTraceRoutes(t *testing.T) {
	tp := newTracedProxy(t, false)
	for _, tt := range []struct{ target, name, outcome string }{
		{"/auth/login?rd=/x", "GET /auth/login", OutcomeAuth},
		{"/auth/callback?code=secret", "GET /auth/callback", OutcomeAuth},
		{"/healthz", "GET /healthz", OutcomeProbe},
		{"/auth/nope", "GET", OutcomeAuth},
		{"/a//b", "GET /", OutcomeOther}, // the router redirects to the clean path
		{"/app/page", "GET /", OutcomeProxied},
	} {
		s := tp.serve(t, tt.target, nil)[0]
		outcome := ""
		for _, kv := range s.Attributes() {
			if kv.Key == "authproxy.outcome" {
				outcome = kv.Value.AsString()
			}
		}
		if s.Name() != tt.name || outcome != tt.outcome {
			t.Errorf("%s: span %q outcome %q, want %q %q", tt.target, s.Name(), outcome, tt.name, tt.outcome)
		}
	}
}

// TestTraceContextTrust is the hostile table for the trace headers: from a
// client that is not a trusted proxy, no traceparent (in any letter case,
// repeated, malformed), tracestate or baggage is continued or reaches the
// upstream; from a trusted proxy a valid one is continued, and the upstream
// still gets only ours.
func TestTraceContextTrust(t *testing.T) {
	const (
		theirTrace = "0af7651916cd43dd8448eb211c80319c"
		theirSpan  = "b7ad6b7169203331"
		valid      = "00-" + theirTrace + "-" + theirSpan + "-01"
	)
	for _, tt := range []struct {
		name string
		hdr  map[string][]string
		// continuable: a trusted proxy's trace is continued.
		continuable bool
	}{
		{"canonical", map[string][]string{"Traceparent": {valid}}, true},
		{"lower case key", map[string][]string{"traceparent": {valid}}, false}, // net/http's Get misses it; still stripped
		{"upper case key", map[string][]string{"TRACEPARENT": {valid}}, false},
		{"two values", map[string][]string{"Traceparent": {valid, "00-11111111111111111111111111111111-2222222222222222-01"}}, true},
		{"two spellings", map[string][]string{"Traceparent": {valid}, "traceParent": {"00-11111111111111111111111111111111-2222222222222222-01"}}, true},
		{"unsampled", map[string][]string{"Traceparent": {"00-" + theirTrace + "-" + theirSpan + "-00"}}, true},
		{"malformed", map[string][]string{"Traceparent": {"00-zz-" + theirSpan + "-01"}}, false},
		{"version ff", map[string][]string{"Traceparent": {"ff-" + theirTrace + "-" + theirSpan + "-01"}}, false},
		{"zero trace id", map[string][]string{"Traceparent": {"00-00000000000000000000000000000000-" + theirSpan + "-01"}}, false},
		{"tracestate", map[string][]string{"Traceparent": {valid}, "Tracestate": {"evil=1"}, "TRACESTATE": {"evil=2"}}, true},
		{"tracestate alone", map[string][]string{"tracestate": {"evil=1"}}, false},
		{"baggage", map[string][]string{"Traceparent": {valid}, "Baggage": {"role=admin,user=root"}}, true},
		{"baggage any case", map[string][]string{"BAGGAGE": {"role=admin"}, "baggage": {"user=root"}}, false},
		{"huge", map[string][]string{"Traceparent": {strings.Repeat("0", 8000)}, "Baggage": {strings.Repeat("a=b,", 2000)}}, false},
	} {
		for _, trusted := range []bool{false, true} {
			tp := newTracedProxy(t, false)
			tp.trusted = trusted
			spans := tp.serve(t, "/", tt.hdr)
			if trusted && tt.name == "unsampled" {
				// The trusted proxy's decision holds: nothing recorded, and
				// the upstream is told to record nothing either.
				got := tp.lastSeen(t).Values("Traceparent")
				if len(spans) != 0 || len(got) != 1 || !strings.HasPrefix(got[0], "00-"+theirTrace+"-") || !strings.HasSuffix(got[0], "-00") ||
					strings.Contains(got[0], theirSpan) {
					t.Errorf("unsampled (trusted): %d spans, upstream traceparent %q", len(spans), got)
				}
				continue
			}
			if len(spans) != 2 {
				t.Fatalf("%s (trusted %v): %d spans, want 2", tt.name, trusted, len(spans))
			}
			server, up := spans[0], spans[1]
			continued := server.SpanContext().TraceID().String() == theirTrace
			if want := trusted && tt.continuable; continued != want {
				t.Errorf("%s (trusted %v): trace continued %v, want %v", tt.name, trusted, continued, want)
			}
			if continued && server.Parent().SpanID().String() != theirSpan {
				t.Errorf("%s: continued, but the parent is %v", tt.name, server.Parent())
			}
			if !trusted && server.Parent().IsValid() {
				t.Errorf("%s (untrusted): the server span has a parent %v", tt.name, server.Parent())
			}
			// The upstream sees exactly one traceparent, ours; no header
			// of the client's in any case.
			seen := tp.lastSeen(t)
			ours := "00-" + up.SpanContext().TraceID().String() + "-" + up.SpanContext().SpanID().String() + "-"
			for k, vs := range seen {
				switch NormalizeHeader(k) {
				case "traceparent":
					if len(vs) != 1 || !strings.HasPrefix(vs[0], ours) {
						t.Errorf("%s (trusted %v): upstream got %s %q, want only ours %s..", tt.name, trusted, k, vs, ours)
					}
				case "tracestate":
					if !continued {
						t.Errorf("%s (trusted %v): upstream got %s %q from a trace not continued", tt.name, trusted, k, vs)
					}
				case "baggage": // a trusted proxy's passes on, even without a trace
					if !trusted {
						t.Errorf("%s (untrusted): upstream got %s %q", tt.name, k, vs)
					}
				}
			}
			if len(seen.Values("Traceparent")) != 1 {
				t.Errorf("%s (trusted %v): upstream got no traceparent", tt.name, trusted)
			}
			if continued && tt.name == "baggage" && seen.Get("Baggage") == "" {
				t.Errorf("%s: a trusted proxy's baggage did not reach the upstream", tt.name)
			}
		}
	}
}

// TestTraceOffLeavesHeaders: with tracing off, the proxy does not touch
// trace headers (they are not ours), and the access log has no trace_id.
func TestTraceOffLeavesHeaders(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t, &recorder{}, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	f.get(t, "/", f.session, http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	if got := f.upstream.last(t).Header.Get("Traceparent"); got != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("tracing off: upstream got traceparent %q, want the client's", got)
	}
	if strings.Contains(logs.String(), "trace_id") {
		t.Errorf("tracing off: access log has trace_id: %s", logs.String())
	}
}
