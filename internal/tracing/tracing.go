// Package tracing is authproxy's OpenTelemetry set-up: it reads the
// standard OTEL_* variables, builds the OTLP exporter and tracer provider,
// and gives the other packages what they trace with: server spans for the
// proxy (a proxy.Tracer) and client spans for outgoing calls (Transport).
//
// It exists so that the SDK and its exporters are known to this package and
// cmd/authproxy only: proxy declares the small interface it calls, oidc only
// names its calls (oidc.Call), and with tracing off (the default) none of
// this is built, so a request costs what it did without it.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation names the tracer, as OpenTelemetry asks: the module.
const instrumentation = "github.com/authproxy/authproxy"

// Tracing starts authproxy's spans. Its methods are safe for concurrent use.
type Tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	user     bool
	shutdown func(context.Context) error
	// server is the options of every server span.
	server []trace.SpanStartOption
	// untrusted adds WithNewRoot: a request whose trace is not continued.
	untrusted []trace.SpanStartOption
}

// New returns the tracing of tp: the SDK provider Setup builds, or a test's
// with an in-memory exporter. user records user ids on server spans.
func New(tp trace.TracerProvider, user bool) *Tracing {
	server := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	return &Tracing{
		provider: tp,
		tracer:   tp.Tracer(instrumentation),
		// W3C trace context and baggage: what a trusted proxy in front
		// sends, and what the upstream receives.
		prop:      propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		user:      user,
		shutdown:  func(context.Context) error { return nil },
		server:    server,
		untrusted: append(server[:len(server):len(server)], trace.WithNewRoot()),
	}
}

// Setup builds the OTLP exporter and the tracer provider that c describes
// (c.Enabled must be true). Export errors are logged to log. Call Shutdown
// to flush what is still buffered.
func Setup(ctx context.Context, c Config, version string, log *slog.Logger) (*Tracing, error) {
	if !c.Enabled || c.Endpoint == nil {
		return nil, errors.New("tracing: not enabled")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Endpoint and protocol are passed explicitly, from the variables the
	// caller looked up; the exporter still reads its other OTEL_EXPORTER_OTLP_*
	// variables (headers, timeout, certificates) from the process.
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if c.Protocol == ProtocolGRPC {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.Endpoint.String()))
	} else {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.Endpoint.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	attrs := make([]attribute.KeyValue, 0, len(c.Attributes)+2)
	for _, a := range c.Attributes {
		attrs = append(attrs, attribute.String(a[0], a[1]))
	}
	attrs = append(attrs, attribute.String("service.name", c.ServiceName), attribute.String("service.version", version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(c.Sampler),
	)
	// The SDK reports export failures to OpenTelemetry's one global
	// handler; without this they would reach stderr unstructured.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: export failed", "err", err)
	}))
	t := New(tp, c.User)
	t.shutdown = tp.Shutdown
	return t, nil
}

// Provider is the tracer provider, for libraries that start spans of their
// own (the Redis client's hooks).
func (t *Tracing) Provider() trace.TracerProvider { return t.provider }

// Shutdown ends the provider, exporting the spans still buffered, within
// ctx's deadline.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Fields are the headers that carry a trace (traceparent, tracestate,
// baggage): the proxy strips every spelling of them from what a client
// sends, since the upstream gets ours.
func (t *Tracing) Fields() []string { return t.prop.Fields() }

// Start starts r's server span and returns the context that carries it and
// the trace id. With parent true (r comes from a trusted proxy) the trace
// named in r's traceparent and tracestate is continued, with its baggage;
// otherwise they are ignored and a new trace starts.
//
// The span's attributes are the method and path, never the query: it may
// carry codes, tokens or personal data.
func (t *Tracing) Start(r *http.Request, parent bool) (context.Context, string) {
	ctx, opts := r.Context(), t.untrusted
	if parent {
		ctx, opts = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header)), t.server
	}
	ctx, span := t.tracer.Start(ctx, r.Method, opts...)
	if span.IsRecording() {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("url.scheme", scheme))
	}
	return ctx, span.SpanContext().TraceID().String()
}

// End ends the server span in r's context (see Start): named after the
// method and route (the route table's pattern), with the route, the
// outcome (proxy's Outcome* names) and the status, and the user only when
// Config.User allows it.
func (t *Tracing) End(r *http.Request, route, outcome string, status int, user string) {
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		span.End()
		return
	}
	if route != "" {
		span.SetName(r.Method + " " + route)
		span.SetAttributes(attribute.String("http.route", route))
	}
	span.SetAttributes(
		attribute.String("authproxy.outcome", outcome),
		attribute.Int("http.response.status_code", status))
	if t.user && user != "" {
		span.SetAttributes(attribute.String("enduser.id", user))
	}
	if status >= 500 {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// Transport returns base with a client span around each request, named by
// name, and the request's trace passed on in its headers, so that the
// server it calls can join the trace. The span ends when the response
// headers arrive (a WebSocket's or an event stream's body may run for
// hours); it records the method, host, port and path, never the query.
func (t *Tracing) Transport(base http.RoundTripper, name func(*http.Request) string) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{t: t, base: base, name: name}
}

type transport struct {
	t    *Tracing
	base http.RoundTripper
	name func(*http.Request) string
}

func (c *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := c.t.tracer.Start(r.Context(), c.name(r), trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		port := r.URL.Port()
		if port == "" {
			port = "80"
			if r.URL.Scheme == "https" {
				port = "443"
			}
		}
		n, _ := strconv.Atoi(port)
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("server.address", r.URL.Hostname()),
			attribute.Int("server.port", n),
			attribute.String("url.scheme", r.URL.Scheme),
			attribute.String("url.path", r.URL.Path))
	}
	// A RoundTripper must not change the request it was given.
	out := r.WithContext(ctx)
	out.Header = r.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	c.t.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := c.base.RoundTrip(out)
	if err != nil {
		// The error's text names the URL, query included: only its kind.
		span.SetAttributes(attribute.String("error.type", errorType(err)))
		span.SetStatus(codes.Error, "")
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetStatus(codes.Error, "")
	}
	return resp, nil
}

// errorType classifies a transport error without its text.
func errorType(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport"
}
