// Package proxy is authproxy's front door: it holds the route table, which
// sends the /auth/ paths to the sign-in handlers, answers health checks and
// forward-auth checks, and sends every other request
// either to the login page or, with a valid session, to the upstream with
// the user's identity in a header that the client cannot forge.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/page"
	"github.com/authproxy/authproxy/session"
)

// Auth is the sign-in flow's handlers (an *oidc.Handler). Which paths and
// methods reach each of them is decided by routes.
type Auth interface {
	Login(http.ResponseWriter, *http.Request)
	Callback(http.ResponseWriter, *http.Request)
	Logout(http.ResponseWriter, *http.Request)
	BackchannelLogout(http.ResponseWriter, *http.Request)
}

// Refresher renews a session's tokens at the provider before they expire.
type Refresher interface {
	NeedsRefresh(session.Session) bool
	// Refresh returns the renewed session. An error wrapping
	// session.ErrUnavailable (provider unreachable) leaves the session as it
	// is; any other means the provider ended it.
	Refresh(context.Context, session.Session) (session.Session, error)
}

// Config configures the handler returned by New.
type Config struct {
	Upstream *url.URL
	// UserHeader carries the user's id to the upstream (X-User).
	UserHeader string
	// PassHost forwards the client's Host header instead of the upstream's.
	PassHost bool
	// Transport reaches the upstream; set its timeouts and pool size.
	Transport http.RoundTripper
	// Auth serves the sign-in flow: login, callback, logout, back-channel
	// logout.
	Auth     Auth
	Sessions session.Store
	// IsOwnCookie reports whether a cookie is authproxy's (session, chunk,
	// ticket or login cookie), to keep it from the upstream.
	IsOwnCookie func(name string) bool
	// Refresher, when set, renews tokens close to expiry (offline_access).
	Refresher Refresher
	// Locker, when set, makes replicas take turns refreshing one
	// server-side session (a session with an ID).
	Locker session.Locker
	// Revalidate is how often the session of a WebSocket or event stream is
	// loaded again, so that revocation closes it. Zero checks only sessions
	// of a server-side store (with an ID), every DefaultRevalidate.
	Revalidate time.Duration
	// Ready reports whether the proxy should receive traffic (provider
	// discovered, not shutting down).
	Ready func() bool
	// Trusted reports whether a request comes from a trusted proxy, whose
	// X-Forwarded-* headers are passed on. Nil trusts nobody.
	Trusted func(*http.Request) bool
	// Bearer verifies "Authorization: Bearer" access tokens; nil leaves the
	// Authorization header to the upstream and uses the session cookie only.
	Bearer func(r *http.Request, token string) (session.Session, error)
	// Rules decides who may pass; nil lets every logged-in user through.
	Rules Rules
	// Headers names the optional identity headers besides UserHeader.
	Headers Headers
	// Assertion, when set, signs the X-Authproxy-Jwt-Assertion header.
	Assertion Asserter
	// JWKS, when set, publishes the assertion keys at /auth/jwks.json.
	JWKS http.Handler
	// Observer counts outcomes and upstream latency; nil means nobody.
	Observer Observer
	// Logger receives one access-log line per request and upstream errors.
	Logger *slog.Logger
}

// New returns the proxy's handler.
func New(cfg Config) (http.Handler, error) {
	p, err := newHandler(cfg)
	if err != nil {
		return nil, err
	}
	return p.observe(http.HandlerFunc(p.route)), nil
}

// newHandler checks cfg and builds the handler's parts.
func newHandler(cfg Config) (*handler, error) {
	var problems []string
	if cfg.Upstream == nil || cfg.Upstream.Scheme == "" || cfg.Upstream.Host == "" {
		problems = append(problems, "upstream URL is required")
	}
	if cfg.UserHeader == "" {
		problems = append(problems, "user header is required")
	}
	if cfg.Auth == nil || cfg.Sessions == nil || cfg.IsOwnCookie == nil || cfg.Ready == nil {
		problems = append(problems, "auth handler, session store, own-cookie test and readiness are required")
	}
	if len(problems) > 0 {
		return nil, errors.New("proxy: " + strings.Join(problems, "; "))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Trusted == nil {
		cfg.Trusted = func(*http.Request) bool { return false }
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	// Canonical, so the header can be set by map assignment per request.
	cfg.UserHeader = http.CanonicalHeaderKey(cfg.UserHeader)
	p := &handler{cfg: cfg}
	for _, h := range cfg.identityHeaders() {
		p.identity = append(p.identity, NormalizeHeader(h))
	}
	// A client (not a trusted proxy) may not tell the upstream which URL or
	// address it "really" requested from: frameworks that honour these
	// headers would route or authorize by them.
	p.untrusted = append([]string{"x-original-url", "x-rewrite-url", "x-forwarded-uri", "x-forwarded-method", "x-original-method", "x-real-ip"}, p.identity...)
	p.upstream = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      cfg.Transport,
		ModifyResponse: p.upstreamResponded,
		ErrorHandler:   p.upstreamError,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BufferPool:     bufferPool{},
	}
	p.mux = http.NewServeMux()
	p.routes(p.mux, http.NewServeMux())
	return p, nil
}

type handler struct {
	cfg      Config
	mux      *http.ServeMux
	upstream *httputil.ReverseProxy
	// identity holds the normalized names of every header the proxy sets.
	identity []string
	// untrusted adds the names only a trusted proxy may send.
	untrusted []string
}

// router is what routes needs of an *http.ServeMux; TestRouteTable passes
// a recorder instead.
type router interface {
	http.Handler
	Handle(pattern string, h http.Handler)
}

// routes is the route table: the one place that says which paths and
// methods reach which handler. README's route table is checked against it.
// A pattern without a method accepts every method; GET accepts HEAD too.
//
// The /auth/ routes have a mux of their own, mounted at /auth/. Every
// request matches the "/" catch-all, so one mux would send a wrong method
// to the upstream rather than answer 405. The /auth/ mux answers 405 (with
// Allow) for a known path and 404 for any other: no /auth/ path reaches
// the upstream.
func (p *handler) routes(mux, auth router) {
	a := p.cfg.Auth
	auth.Handle("GET /auth/login", http.HandlerFunc(a.Login))
	auth.Handle("/auth/callback", http.HandlerFunc(a.Callback))
	auth.Handle("/auth/logout", http.HandlerFunc(a.Logout))
	auth.Handle("POST /auth/backchannel-logout", http.HandlerFunc(a.BackchannelLogout))
	auth.Handle("/auth/check", http.HandlerFunc(p.check))
	if p.cfg.JWKS != nil {
		auth.Handle("GET /auth/jwks.json", p.cfg.JWKS)
	}
	mux.Handle("/auth/", tag(OutcomeAuth, auth))
	mux.Handle("GET /healthz", tag(OutcomeProbe, http.HandlerFunc(healthz)))
	mux.Handle("GET /readyz", tag(OutcomeProbe, http.HandlerFunc(p.readyz)))
	mux.Handle("/", http.HandlerFunc(p.serveProxied))
}

// route sends the common case, a clean path that is not one of the proxy's
// own, straight to serveProxied; ServeMux would pick the same handler but
// allocates five times per request to find it. Everything else, including
// paths ServeMux would redirect to their clean form, goes through the mux.
func (p *handler) route(w http.ResponseWriter, r *http.Request) {
	if direct(r) {
		p.serveProxied(w, r)
		return
	}
	p.mux.ServeHTTP(w, r)
}

// direct reports whether ServeMux would route r to the "/" pattern as it
// is, without a redirect.
func direct(r *http.Request) bool {
	path := r.URL.Path
	if r.Method == http.MethodConnect || path == "" || path[0] != '/' ||
		strings.HasPrefix(path, "/auth") || path == "/healthz" || path == "/readyz" {
		return false
	}
	return !strings.Contains(path, "//") && !strings.Contains(path, "/./") && !strings.Contains(path, "/../") &&
		!strings.HasSuffix(path, "/.") && !strings.HasSuffix(path, "/..")
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (p *handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !p.cfg.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// serveProxied lets public paths through, authenticates and authorizes
// everything else, and forwards what passes.
func (p *handler) serveProxied(w http.ResponseWriter, r *http.Request) {
	info := infoOf(r)
	sess, outcome := p.admit(w, r, target{method: r.Method, url: r.URL, redirect: page.IsNavigation(r)})
	// Rewrite reads the session from info to set the identity headers.
	info.sess, info.outcome = sess, outcome
	if outcome != OutcomeProxied && outcome != OutcomePublic {
		return // refused; admit has answered
	}
	if outcome == OutcomeProxied && longLived(r) {
		// A WebSocket or event stream would outlive the session; end it
		// when the session ends or is revoked. (Cancelling the request
		// closes the upstream connection and, for an upgrade, the client's.)
		ctx, cancel := context.WithDeadline(r.Context(), sess.Expiry)
		defer cancel()
		if sess.ID != "" || p.cfg.Revalidate > 0 {
			go p.watch(ctx, cancel, r)
		}
		r = r.WithContext(ctx)
	}
	info.forwarded = time.Now()
	p.upstream.ServeHTTP(w, r)
}

// DefaultRevalidate is how often a long-lived connection's session is
// checked again with the store (revocation, logout elsewhere).
const DefaultRevalidate = 15 * time.Second

// watch loads the session of a long-lived request again every Revalidate
// and cancels the request once the store no longer knows it. Only an
// authoritative "no session" cancels: a store that cannot be reached leaves
// the connection alone.
func (p *handler) watch(ctx context.Context, cancel context.CancelFunc, r *http.Request) {
	every := p.cfg.Revalidate
	if every <= 0 {
		every = DefaultRevalidate
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := p.cfg.Sessions.Load(r.WithContext(ctx)); errors.Is(err, session.ErrNoSession) {
			p.cfg.Logger.Info("closing a long-lived connection: its session ended", "path", r.URL.Path)
			cancel()
			return
		}
	}
}

// longLived reports whether r opens a connection that may stay open for
// hours: a protocol upgrade (WebSocket) or a server-sent event stream.
func longLived(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// upstreamResponded records the upstream's time to response headers.
func (p *handler) upstreamResponded(resp *http.Response) error {
	if info := infoOf(resp.Request); !info.forwarded.IsZero() {
		p.cfg.Observer.UpstreamResponse(time.Since(info.forwarded))
	}
	return nil
}

// unauthenticated sends browsers (t.redirect) to the login page, to come
// back to t's path and query, and gives everything else a 401 it can act
// on. It returns the outcome.
func (p *handler) unauthenticated(w http.ResponseWriter, r *http.Request, t target) string {
	login := "/auth/login?rd=" + url.QueryEscape(t.url.RequestURI())
	w.Header().Set("Cache-Control", "no-store")
	if t.redirect {
		http.Redirect(w, r, login, http.StatusFound)
		return OutcomeLoginRedirect
	}
	// Not a page load: a script or API client, which needs JSON it can act
	// on even if its Accept header mentions text/html.
	w.Header().Set("WWW-Authenticate", `Bearer realm="authproxy"`)
	page.WriteJSON(w, page.Page{Status: http.StatusUnauthorized, Code: "unauthenticated",
		Detail: "Sign in to continue.", Extra: map[string]string{"login_url": login}})
	return OutcomeUnauth
}

// rewrite builds the upstream request. It runs after ReverseProxy has
// removed hop-by-hop headers (including any named in Connection), so the
// identity header set here cannot be stripped by a client's Connection
// header.
func (p *handler) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.cfg.Upstream)
	if p.cfg.PassHost {
		pr.Out.Host = pr.In.Host
	}
	strip := p.untrusted
	if p.cfg.Trusted(pr.In) {
		strip = p.identity
		// A trusted proxy's chain is extended, its view of proto and host kept.
		if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
		pr.SetXForwarded()
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
	} else {
		pr.SetXForwarded()
	}
	stripHeaders(pr.Out.Header, strip)
	p.stripCookies(pr.Out.Header)
	p.setIdentity(pr.Out.Header, infoOf(pr.In))
}

// stripHeaders deletes every header that an upstream might read as one of
// names (normalized): any case, and "_" for "-" (CGI, PHP, WSGI and nginx
// with underscores_in_headers merge them).
func stripHeaders(h http.Header, names []string) {
	for name := range h {
		for _, id := range names {
			if sameHeader(name, id) {
				delete(h, name)
				break
			}
		}
	}
}

// sameHeader reports whether name normalizes to norm (see NormalizeHeader)
// without allocating: it runs for every header of every request.
func sameHeader(name, norm string) bool {
	if len(name) != len(norm) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

// NormalizeHeader maps a header name to the form upstream stacks compare
// on: lower case, "_" for "-". Two names with the same form are one header
// to some upstream.
func NormalizeHeader(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// stripCookies removes authproxy's own cookies (session, chunks, logins):
// they carry tokens the upstream has no business with, and their size can
// push legacy apps over header limits. Other cookies pass byte for byte.
func (p *handler) stripCookies(h http.Header) {
	ours := false
	for name := range cookie.Pairs(h) {
		if ours = p.cfg.IsOwnCookie(name); ours {
			break
		}
	}
	if !ours {
		return
	}
	lines := h["Cookie"]
	size := 0
	for _, line := range lines {
		size += len(line) + 2
	}
	var b strings.Builder
	b.Grow(size)
	for name, pair := range cookie.Pairs(h) {
		if p.cfg.IsOwnCookie(name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(pair)
	}
	if b.Len() == 0 {
		delete(h, "Cookie")
		return
	}
	// The slice is the outbound request's own copy (ReverseProxy clones
	// the headers), so it can be reused.
	lines[0] = b.String()
	h["Cookie"] = lines[:1]
}

// bufferPool recycles ReverseProxy's copy buffers, which it would otherwise
// allocate (32 KiB) for every response. Buffers are pooled as array
// pointers so that Put does not allocate either.
type bufferPool struct{}

const copyBufferSize = 32 << 10

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*[copyBufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize {
		copyBuffers.Put((*[copyBufferSize]byte)(b))
	}
}

// upstreamError answers when the upstream cannot be reached or fails
// mid-request: 504 for timeouts, 502 otherwise.
func (p *handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	status, title := http.StatusBadGateway, "The application is not responding"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status, title = http.StatusGatewayTimeout, "The application took too long to answer"
	}
	infoOf(r).outcome = OutcomeError
	p.cfg.Observer.UpstreamError(status)
	p.cfg.Logger.Warn("upstream error", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	page.Write(w, r, page.Page{Status: status, Code: "upstream_unavailable", Title: title,
		Detail: "authproxy could not get an answer from the application behind it. Please try again in a moment.",
		Links:  []page.Link{{Href: r.URL.RequestURI(), Text: "Try again"}}})
}
