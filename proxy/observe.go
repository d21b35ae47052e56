package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authproxy/authproxy/internal/ascii"
	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/session"
)

// Request outcomes, as counted by the Observer.
const (
	OutcomeProxied       = "proxied"
	OutcomePublic        = "public"
	OutcomeLoginRedirect = "login_redirect"
	OutcomeUnauth        = "unauthenticated"
	OutcomeForbidden     = "forbidden"
	OutcomeAuth          = "auth"
	OutcomeProbe         = "probe"
	OutcomeError         = "error"
	// OutcomeOther is a request no handler classified: the router's own
	// redirects to a cleaned path and 404s.
	OutcomeOther = "other"
)

// Observer is told what happened to each request (for metrics).
type Observer interface {
	Request(outcome string)
	UpstreamResponse(time.Duration)
	UpstreamError(status int)
}

type nopObserver struct{}

func (nopObserver) Request(string)                 {}
func (nopObserver) UpstreamResponse(time.Duration) {}
func (nopObserver) UpstreamError(int)              {}

// reqInfo travels with a request in its context. It holds what
// ReverseProxy's hooks need (Rewrite the session, ModifyResponse the time of
// forwarding, ErrorHandler the outcome to override), and the outcome that
// the handlers report to observe for the log and metrics.
type reqInfo struct {
	sess   session.Session // the authenticated user; zero when anonymous
	bearer bool            // sess came from a bearer token
	// served is set when the handler returned, rather than panicked
	// (http.ErrAbortHandler: the response was cut short; see observe).
	served bool
	// userValue and hostValue back the user and X-Forwarded-Host header
	// values, so that they cost no allocation of their own (a one-element
	// slice never grows in place: an append copies).
	userValue, hostValue [1]string
	forValue, protoValue [1]string // X-Forwarded-For and -Proto
	basicValue           [1]string // the Authorization value, with basic auth on
	outcome              string
	// route is the request's route; host and port its Host header as
	// route.HostName read it (set by matchRoute, for proxied requests).
	route      *route.Route
	host, port string
	// rawHost is the Host header, to reuse as X-Forwarded-Host when it is
	// already in host[:port] form.
	rawHost   string
	forwarded time.Time               // when the request left for the upstream
	bodyErr   atomic.Pointer[failure] // why reading the request body failed (size, time)

	// late is the request's place in the handler's lateList.
	late lateLink
	// For a logged-in user's forwarded request (see lateList): the
	// request; under mu, the upstream's response body once it arrives (the
	// backend connection of a WebSocket), and whether watch ended it.
	req   *http.Request
	mu    sync.Mutex
	body  io.Closer
	ended bool
}

type infoKey struct{}

// infoCtx is a request's context: its parent with the request's info under
// infoKey, as context.WithValue would make it, but inside the reqState.
type infoCtx struct {
	context.Context
	info *reqInfo
}

func (c *infoCtx) Value(key any) any {
	if key == (infoKey{}) {
		return c.info
	}
	// Also how context finds the server's cancelCtx below, so that a
	// context derived from this one (ReverseProxy's, the transport's) is
	// cancelled with it without a goroutine of its own.
	return c.Context.Value(key)
}

// reqState is a request's info, context, response recorder and id in one
// allocation.
type reqState struct {
	reqInfo
	statusWriter
	ctx     infoCtx
	idValue [1]string // backs the X-Request-Id values, like userValue
	// logAttrs holds the access log record's attributes (see finish).
	logAttrs [8]slog.Attr
}

// hostPort is the request's host as X-Forwarded-Host names it: name, and
// :port when the client gave one. It reuses the Host header when that is
// spelled so already.
func (i *reqInfo) hostPort() string {
	want := len(i.host)
	if i.port != "" {
		want += 1 + len(i.port)
	}
	if len(i.rawHost) == want && i.rawHost[:len(i.host)] == i.host {
		return i.rawHost
	}
	if i.port == "" {
		return i.host
	}
	return i.host + ":" + i.port
}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{}
}

// observe gives every request an id (kept from the client when well formed,
// passed to the upstream as X-Request-Id), then writes one access-log line
// and counts the outcome.
func (p *handler) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// One allocation holds what the request needs to carry.
		st := &reqState{statusWriter: statusWriter{ResponseWriter: w}}
		info, sw := &st.reqInfo, &st.statusWriter
		info.outcome = OutcomeOther
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		st.idValue[0] = id
		r.Header["X-Request-Id"] = st.idValue[:]
		w.Header()["X-Request-Id"] = st.idValue[:]
		ctx, traceID := r.Context(), ""
		if p.cfg.Tracer != nil {
			ctx, traceID = p.cfg.Tracer.Start(r, p.cfg.Trusted(r))
		}
		st.ctx = infoCtx{Context: ctx, info: info}
		r = r.WithContext(&st.ctx)
		// Deferred: ReverseProxy panics with http.ErrAbortHandler when a
		// body's copy fails (the upstream dies mid-body, the client leaves
		// mid-download, watch cuts a revoked session's stream), and such a
		// request must be logged, counted and its span ended too.
		defer p.finish(r, st, start, traceID)
		next.ServeHTTP(sw, r)
		info.served = true
	})
}

// finish counts, traces and logs r once it has been answered, or its
// answer was cut short (a panic: the record says "aborted"). It is a
// function of its own so that its frame (the log record is large) is not
// on the stack while the request is served: that path runs deep, and a
// connection's goroutine whose stack has to grow for every request, after
// each GC shrank it back, pays a stack copy each time.
func (p *handler) finish(r *http.Request, st *reqState, start time.Time, traceID string) {
	info, sw := &st.reqInfo, &st.statusWriter
	p.cfg.Observer.Request(info.outcome)
	if p.cfg.Tracer != nil {
		// The router has set r.Pattern (route does for its shortcut).
		p.cfg.Tracer.End(r, routeOf(r.Pattern), info.outcome, sw.status(), info.sess.User)
	}
	level := slog.LevelInfo
	if info.outcome == OutcomeProbe {
		level = slog.LevelDebug // kubelet probes every few seconds
	}
	// The record is built here rather than by Logger.LogAttrs, which
	// would walk the stack for a source position nobody logs.
	h := p.cfg.Logger.Handler()
	if !h.Enabled(r.Context(), level) {
		return
	}
	now := time.Now()
	// In the request's state, which is on the heap anyway: an array of
	// its own would be moved there, as HandleAttrs is an interface call.
	attrs := &st.logAttrs
	*attrs = [len(st.logAttrs)]slog.Attr{
		slog.String("method", r.Method),
		// The path only: the query may carry codes, tokens or personal data.
		slog.String("path", r.URL.Path),
		slog.Int("status", sw.status()),
		slog.Float64("duration_ms", float64(now.Sub(start).Microseconds())/1000),
		slog.String("user", info.sess.User),
		slog.String("outcome", info.outcome),
		slog.String("request_id", st.idValue[0]),
	}
	n := 7
	if traceID != "" {
		attrs[n] = slog.String("trace_id", traceID)
		n++
	}
	all := attrs[:n]
	if !info.served { // rare: the copy is no cost on the common path
		all = append(all[:n:n], slog.Bool("aborted", true))
	}
	if ah, ok := h.(AttrsHandler); ok {
		_ = ah.HandleAttrs(r.Context(), now, level, "request", all)
		return
	}
	rec := slog.NewRecord(now, level, "request", 0)
	rec.AddAttrs(all...)
	_ = h.Handle(r.Context(), rec)
}

// AttrsHandler is a slog.Handler that also takes a record as its parts:
// HandleAttrs must do what Handle does with the slog.Record of them
// (slog.NewRecord(t, level, msg, 0) with attrs added). The access log uses
// it where the Config's Logger has it, sparing a Record per request: one
// is copied into every handler it passes, and allocates for more than five
// attributes.
type AttrsHandler interface {
	HandleAttrs(ctx context.Context, t time.Time, level slog.Level, msg string, attrs []slog.Attr) error
}

// Tracer traces requests (internal/tracing holds the OpenTelemetry one).
type Tracer interface {
	// Start starts r's server span and returns the context carrying it,
	// and its trace id for the access log. parent is true for a trusted
	// proxy's request, whose trace (traceparent) is continued; any other
	// starts a new trace.
	Start(r *http.Request, parent bool) (ctx context.Context, traceID string)
	// End ends the span in r's context, recording the route pattern ("" if
	// none matched), the outcome (Outcome*), the status and the user (the
	// tracer decides whether to keep it).
	End(r *http.Request, route, outcome string, status int, user string)
	// Fields names the headers that carry a trace: the upstream gets the
	// proxy's, so a client's are stripped in every spelling.
	Fields() []string
}

// routeOf is the path part of a route pattern ("GET /auth/login" is
// /auth/login).
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		return pattern[i+1:]
	}
	return pattern
}

// tag marks the outcome of every request a handler serves.
func tag(outcome string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoOf(r).outcome = outcome
		h.ServeHTTP(w, r)
	})
}

// validRequestID accepts 1–128 characters of [A-Za-z0-9._-]: enough for
// every tracing format, nothing that could forge a log line or a header.
func validRequestID(id string) bool {
	return len(id) <= 128 && ascii.IsName(id, ".")
}

// newRequestID returns 32 hex digits. Request ids correlate log lines; they
// are not secrets, so the runtime's fast ChaCha8 source is enough.
func newRequestID() string {
	var b [32]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	buf := strconv.AppendUint(b[:0], hi|1<<63, 16) // fixed width: top bit set
	buf = strconv.AppendUint(buf, lo|1<<63, 16)
	return string(buf)
}

// statusWriter records the status code. Unwrap lets http.ResponseController
// reach the real writer, so that flushing (SSE) works; hijacking (WebSocket)
// goes through its own Hijack, which also ends the framing check.
type statusWriter struct {
	http.ResponseWriter
	code int
}

// Hijack hands the connection over (ReverseProxy does, to tunnel a
// protocol switch: a WebSocket) and tells the framing check that it carries
// no more HTTP/1.1 requests, so that the tunnel's bytes are not read as
// heads. The server reads no more of it either.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if fc, ok := c.(*framingConn); ok && err == nil {
		fc.tunnel()
	}
	return c, rw, err
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
