package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// newTest returns a Tracing whose ended spans sr holds.
func newTest(t *testing.T, user bool) (*Tracing, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return New(tp, user), sr
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// noSecrets fails t when any attribute of s holds one of secrets.
func noSecrets(t *testing.T, s sdktrace.ReadOnlySpan, secrets ...string) {
	t.Helper()
	for _, kv := range s.Attributes() {
		for _, secret := range secrets {
			if strings.Contains(kv.Value.String(), secret) {
				t.Errorf("span %q attribute %s = %q holds %q", s.Name(), kv.Key, kv.Value.String(), secret)
			}
		}
	}
}

const incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// TestServerSpan: the span is named after the method and route, carries
// the outcome and status, the path without the query, and the user only
// when allowed.
func TestServerSpan(t *testing.T) {
	for _, user := range []bool{false, true} {
		tr, sr := newTest(t, user)
		r := httptest.NewRequest("GET", "/reports/7?code=secret-code&email=ada%40example.com", nil)
		r.Header.Set("Cookie", "_authproxy=secret-cookie")
		ctx, traceID := tr.Start(r, false)
		tr.End(r.WithContext(ctx), "/", "proxied", 200, "auth0|ada")
		spans := sr.Ended()
		if len(spans) != 1 {
			t.Fatalf("%d spans, want 1", len(spans))
		}
		s := spans[0]
		if s.Name() != "GET /" || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %q kind %v, want GET / server", s.Name(), s.SpanKind())
		}
		if s.SpanContext().TraceID().String() != traceID {
			t.Errorf("Start's trace id %s, span's %s", traceID, s.SpanContext().TraceID())
		}
		a := attrs(s)
		for k, want := range map[attribute.Key]string{"http.route": "/", "authproxy.outcome": "proxied",
			"url.path": "/reports/7", "http.request.method": "GET", "http.response.status_code": "200"} {
			if got := a[k].String(); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if got, ok := a["enduser.id"]; ok != user || (user && got.AsString() != "auth0|ada") {
			t.Errorf("TraceUser %v: enduser.id = %q (set %v)", user, got.String(), ok)
		}
		noSecrets(t, s, "secret-code", "ada%40", "ada@", "secret-cookie")
	}
}

// TestServerSpanStatus: a 5xx is an error; a request no route matched is
// named by its method alone.
func TestServerSpanStatus(t *testing.T) {
	tr, sr := newTest(t, false)
	r := httptest.NewRequest("POST", "/auth/nope", nil)
	ctx, _ := tr.Start(r, false)
	tr.End(r.WithContext(ctx), "", "other", 502, "")
	s := sr.Ended()[0]
	if s.Name() != "POST" || s.Status().Code != codes.Error {
		t.Errorf("span %q status %v, want POST with an error", s.Name(), s.Status())
	}
	if _, ok := attrs(s)["http.route"]; ok {
		t.Error("http.route set for a request no route matched")
	}
}

// TestTrust: the incoming trace is continued only when the caller says the
// client is trusted; otherwise a new root span starts.
func TestTrust(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		tr, sr := newTest(t, false)
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Traceparent", incoming)
		r.Header.Set("Tracestate", "vendor=x")
		ctx, traceID := tr.Start(r, trusted)
		tr.End(r.WithContext(ctx), "/", "proxied", 200, "")
		s := sr.Ended()[0]
		continued := traceID == "0af7651916cd43dd8448eb211c80319c"
		if continued != trusted {
			t.Errorf("trusted %v: trace %s continued %v", trusted, traceID, continued)
		}
		if trusted && (s.Parent().SpanID().String() != "b7ad6b7169203331" || !s.Parent().IsRemote() || s.SpanContext().TraceState().Get("vendor") != "x") {
			t.Errorf("trusted: parent %v, tracestate %q", s.Parent(), s.SpanContext().TraceState())
		}
		if !trusted && s.Parent().IsValid() {
			t.Errorf("untrusted: span has parent %v", s.Parent())
		}
	}
}

// TestTransport: a client span per call, named by the caller, child of the
// request's span, whose traceparent the server receives; the caller's
// request is not changed; the query is never recorded.
func TestTransport(t *testing.T) {
	tr, sr := newTest(t, false)
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	client := &http.Client{Transport: tr.Transport(srv.Client().Transport, func(r *http.Request) string { return "call " + r.Method })}

	parent, span := tr.tracer.Start(context.Background(), "parent")
	req, _ := http.NewRequestWithContext(parent, "GET", srv.URL+"/token?code=secret-code", nil)
	req.Header.Set("Traceparent", incoming) // a stale one, replaced in the copy sent
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	span.End()

	if req.Header.Get("Traceparent") != incoming {
		t.Errorf("the caller's request was changed: traceparent %q", req.Header.Get("Traceparent"))
	}
	spans := sr.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	c := spans[0]
	if c.Name() != "call GET" || c.SpanKind() != trace.SpanKindClient || c.Parent().SpanID() != span.SpanContext().SpanID() {
		t.Errorf("client span %q kind %v parent %v", c.Name(), c.SpanKind(), c.Parent().SpanID())
	}
	want := "00-" + c.SpanContext().TraceID().String() + "-" + c.SpanContext().SpanID().String() + "-01"
	if v := got.Values("Traceparent"); len(v) != 1 || v[0] != want {
		t.Errorf("server got traceparent %q, want %q", v, want)
	}
	a := attrs(c)
	if a["http.response.status_code"].AsInt64() != 418 || a["url.path"].AsString() != "/token" || c.Status().Code != codes.Error {
		t.Errorf("client span attributes %v, status %v", a, c.Status())
	}
	noSecrets(t, c, "secret-code")
}

// TestTransportError: a failed call records the kind of error, never its
// text (which names the URL and its query).
func TestTransportError(t *testing.T) {
	tr, sr := newTest(t, false)
	for _, tt := range []struct {
		err  error
		kind string
	}{
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
		{errors.New(`Get "http://up/x?token=secret-token": connection refused`), "transport"},
	} {
		rt := tr.Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, tt.err }),
			func(*http.Request) string { return "upstream" })
		req := httptest.NewRequest("GET", "http://up/x?token=secret-token", nil)
		if _, err := rt.RoundTrip(req); !errors.Is(err, tt.err) {
			t.Errorf("RoundTrip error %v, want %v", err, tt.err)
		}
		spans := sr.Ended()
		s := spans[len(spans)-1]
		if got := attrs(s)["error.type"].AsString(); got != tt.kind || s.Status().Code != codes.Error {
			t.Errorf("%v: error.type %q status %v, want %q", tt.err, got, s.Status(), tt.kind)
		}
		noSecrets(t, s, "secret-token")
		if len(s.Events()) > 0 {
			t.Errorf("span records events %v: error texts may name the query", s.Events())
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestShutdownFlushes: Setup's provider exports what is buffered at
// Shutdown, to a real OTLP/HTTP endpoint, within the bound.
func TestShutdownFlushes(t *testing.T) {
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	c, problems := FromEnv(lookupMap(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"}))
	if len(problems) > 0 || !c.Enabled {
		t.Fatalf("config %+v, problems %q", c, problems)
	}
	tr, err := Setup(context.Background(), c, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	ctx, _ := tr.Start(r, false)
	tr.End(r.WithContext(ctx), "/", "proxied", 200, "")
	// The batch would wait 5 s; Shutdown must not.
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tr.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "/v1/traces" {
			t.Errorf("exported to %s, want /v1/traces", p)
		}
	default:
		t.Fatal("Shutdown returned before exporting the buffered span")
	}
}
