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
	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/proxy/rules"
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
	// Routes chooses each request's upstream by its Host and path (see
	// package route); route.Single is the one-upstream table. A request no
	// route matches gets a 404 from the proxy and is not forwarded.
	Routes *route.Table
	// Transport returns the RoundTripper that reaches a route's upstream,
	// with its timeouts and pool size; New calls it once per route. Nil
	// uses http.DefaultTransport.
	Transport func(*route.Route) http.RoundTripper
	// UserHeader carries the user's id to the upstream (X-User).
	UserHeader string
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
	// Revalidate is how often the session of a long-running response
	// (WebSocket, event stream, long poll, download) is loaded again, so that
	// revocation, or a reload that removed the key that sealed its cookie,
	// closes it. Zero means DefaultRevalidate.
	Revalidate time.Duration
	// Ready reports whether the proxy should receive traffic (provider
	// discovered, not shutting down).
	Ready func() bool
	// Trusted reports whether a request comes from a trusted proxy, whose
	// X-Forwarded-* headers are passed on. Nil trusts nobody.
	Trusted func(*http.Request) bool
	// PublicHost is the proxy's public host[:port] (from
	// AUTHPROXY_REDIRECT_URL). When set, the upstream of a * route gets
	// X-Forwarded-Host this, never a client's Host; absolute-form request
	// targets must name it (or a host of a host route); and WebSocket
	// handshakes must come from a page on it (or, for a host route, on the
	// request's own host). Empty: the request's own Host.
	PublicHost string
	// WebSocketOrigins lists further origins (scheme://host[:port]) whose
	// pages may open WebSockets through the proxy.
	WebSocketOrigins []string
	// Bearer verifies "Authorization: Bearer" access tokens; nil leaves the
	// Authorization header to the upstream (unless BasicPassword is set)
	// and uses the session cookie only.
	Bearer func(r *http.Request, token string) (session.Session, error)
	// Rules decides who may pass; nil lets every logged-in user through.
	Rules Rules
	// Headers names the optional identity headers besides UserHeader.
	Headers Headers
	// UserClaim is the claim the user comes from (sub when empty):
	// /auth/userinfo reports the user as its sub only when it is sub.
	UserClaim string
	// BasicPassword, when set, gives every forwarded request of a user
	// "Authorization: Basic base64(user:BasicPassword)", for legacy apps
	// behind HTTP basic authentication; the client's Authorization, in
	// every spelling, never reaches the upstream then. Forward-auth answers
	// never carry it: a client can call /auth/check itself.
	BasicPassword string
	// Assertion, when set, signs the X-Authproxy-Jwt-Assertion header.
	Assertion Asserter
	// JWKS, when set, publishes the assertion keys at /auth/jwks.json.
	JWKS http.Handler
	// Observer counts outcomes and upstream latency; nil means nobody.
	Observer Observer
	// Logger receives one access-log line per request and upstream errors.
	Logger *slog.Logger
	// Tracer, when set, gives every request a server span; nil traces
	// nothing and costs nothing.
	Tracer Tracer

	// Tests shorten these; zero means the constant of the same name.
	watchAfter  time.Duration // see WatchAfter
	bodyTimeout time.Duration // see BodyTimeout
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
	if cfg.Routes == nil || len(cfg.Routes.Routes()) == 0 {
		problems = append(problems, "routes are required")
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
	p := &handler{}
	var identity []string
	for _, h := range cfg.identityHeaders() {
		identity = append(identity, NormalizeHeader(h))
	}
	if cfg.watchAfter <= 0 {
		cfg.watchAfter = WatchAfter
	}
	if cfg.bodyTimeout <= 0 {
		cfg.bodyTimeout = BodyTimeout
	}
	origins := make([]string, len(cfg.WebSocketOrigins))
	for i, o := range cfg.WebSocketOrigins {
		origins[i] = strings.ToLower(strings.TrimSuffix(o, "/"))
	}
	cfg.WebSocketOrigins = origins
	if cfg.BasicPassword != "" {
		p.basicSuffix = ":" + cfg.BasicPassword
	}
	p.cfg = cfg
	// HTTP2-Settings belongs to an h2c upgrade, which never passes.
	identity = append(identity, "http2-settings")
	// A client (not a trusted proxy) may not tell the upstream which URL,
	// host, port, prefix or address it "really" requested from: frameworks
	// that honour these headers would route, authorize or build links by
	// them. (ReverseProxy drops the canonical X-Forwarded-For/Host/Proto and
	// Forwarded; this catches every other spelling.)
	if cfg.Tracer != nil {
		// The upstream gets our trace context: a client's (or a trusted
		// proxy's, which the span continues) must not reach it in any
		// spelling.
		for _, f := range cfg.Tracer.Fields() {
			identity = append(identity, NormalizeHeader(f))
		}
	}
	untrusted := append([]string{
		"x-original-url", "x-original-uri", "x-rewrite-url", "x-forwarded-uri", "x-forwarded-path",
		"x-forwarded-prefix", "x-forwarded-port", "x-forwarded-server", "x-forwarded-method",
		"x-original-method", "x-real-ip", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
	}, identity...)
	p.identity, p.untrusted = newHeaderSet(identity), newHeaderSet(untrusted)
	p.late = newLateList(cfg.watchAfter, p.watch)
	errorLog := slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)
	for _, rt := range cfg.Routes.Routes() {
		var t http.RoundTripper
		if cfg.Transport != nil {
			t = cfg.Transport(rt)
		}
		p.upstreams = append(p.upstreams, &httputil.ReverseProxy{
			Rewrite:        p.rewrite,
			Transport:      t,
			ModifyResponse: p.upstreamResponded,
			ErrorHandler:   p.upstreamError,
			ErrorLog:       errorLog,
			BufferPool:     bufferPool{},
		})
	}
	p.multiHost = len(cfg.Routes.Hosts()) > 0 || len(cfg.Routes.Wildcards()) > 0
	if h, ok := cfg.Rules.(interface{ Hosts() []string }); ok && len(h.Hosts()) > 0 {
		p.multiHost = true
	}
	p.mux = http.NewServeMux()
	p.routes(p.mux, http.NewServeMux())
	return p, nil
}

type handler struct {
	cfg Config
	mux *http.ServeMux
	// upstreams holds one ReverseProxy per route, by route.Index.
	upstreams []*httputil.ReverseProxy
	// multiHost: the routes or rules tell hosts apart, so which host a
	// request is for decides where it goes and who may pass.
	multiHost bool
	// identity holds the normalized names stripped from every request: each
	// header the proxy sets, and HTTP2-Settings.
	identity headerSet
	// untrusted adds the names only a trusted proxy may send.
	untrusted headerSet
	// basicSuffix is ":" and the basic-auth password; empty when off.
	basicSuffix string
	// late lists the forwarded requests of logged-in users until their
	// responses end, to watch those that run long.
	late *lateList
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
	// GET for links; POST for the sign-out confirmation's button.
	auth.Handle("GET /auth/logout", http.HandlerFunc(a.Logout))
	auth.Handle("POST /auth/logout", http.HandlerFunc(a.Logout))
	auth.Handle("POST /auth/backchannel-logout", http.HandlerFunc(a.BackchannelLogout))
	auth.Handle("/auth/check", http.HandlerFunc(p.check))
	auth.Handle("GET /auth/userinfo", http.HandlerFunc(p.userinfo))
	if p.cfg.JWKS != nil {
		auth.Handle("GET /auth/jwks.json", p.cfg.JWKS)
	}
	mux.Handle("/auth/", tag(OutcomeAuth, securityHeaders(p.bounded(auth))))
	mux.Handle("GET /healthz", tag(OutcomeProbe, http.HandlerFunc(healthz)))
	mux.Handle("GET /readyz", tag(OutcomeProbe, http.HandlerFunc(p.readyz)))
	mux.Handle("/", http.HandlerFunc(p.serveProxied))
}

// route sends the common case, a clean path that is not one of the proxy's
// own, straight to serveProxied; ServeMux would pick the same handler but
// allocates five times per request to find it. Everything else, including
// paths ServeMux would redirect to their clean form, goes through the mux.
func (p *handler) route(w http.ResponseWriter, r *http.Request) {
	if !p.admissible(w, r) {
		return
	}
	if direct(r) {
		r.Pattern = "/" // as ServeMux would set it, for the trace
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

// securityHeaders gives the mux's own 404 and 405 answers the headers of
// authproxy's pages; a handler that writes a page or a document sets its
// own over them.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page.SecurityHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
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
	if !p.matchRoute(w, r, info) {
		return
	}
	if !p.upgradeAllowed(w, r) {
		return
	}
	// Rewrite reads the session from info to set the identity headers.
	info.outcome = p.admit(w, r, target{method: r.Method, host: info.host, url: r.URL, redirect: page.IsNavigation}, &info.sess)
	switch info.outcome {
	case OutcomePublic:
		if r.Body != nil && r.Body != http.NoBody && !p.boundBody(w, r, PublicBodyLimit) {
			return
		}
		info.forwarded = time.Now()
	case OutcomeProxied:
		if !p.basicAllowed(w, r, info.sess) {
			info.outcome = OutcomeForbidden
			return
		}
		info.forwarded = time.Now()
		// Any response may outlive the session: an event stream or
		// WebSocket, but also a long poll, NDJSON or a download, announced
		// or not. One still running after WatchAfter is watched, and cut
		// when its session expires or is revoked.
		info.req = r
		p.late.add(info, info.forwarded)
		defer p.late.remove(info)
	default:
		return // refused; admit has answered
	}
	p.upstreams[info.route.Index].ServeHTTP(w, r)
}

// matchRoute finds r's route and keeps it, with the request's host name
// and port, in info. Where hosts matter (multiHost), a Host that is no
// host name gets a 400; a request no
// route matches a 404; a strip-prefix route takes only canonical paths
// (see rules.Canonical), since its upstream sees the path without the
// prefix: /api/..%2fadmin would be /..%2fadmin there, which an upstream
// that decodes %2F reads as /admin, a path the rules judged as /admin and
// not as /api/admin. Nothing is forwarded when it refuses.
func (p *handler) matchRoute(w http.ResponseWriter, r *http.Request, info *reqInfo) bool {
	// Where no route or rule tells hosts apart, the Host is not read at
	// all, as before routes: only the * routes can match. Where they do, a
	// request without a Host (HTTP/1.0) is refused: it would match only *,
	// under the rules for every host, and a pass-host upstream would serve
	// it from its default site.
	name, port, ok := "", "", !p.multiHost
	if !ok {
		name, port, ok = route.HostName(r.Host)
	}
	if !ok {
		info.outcome = OutcomeError
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "bad_host",
			Detail: "The Host header does not name a host."})
		return false
	}
	path := r.URL.EscapedPath()
	rt, err := p.cfg.Routes.Match(name, path)
	if err != nil {
		p.cfg.Logger.Info("no route", "host", name, "path", r.URL.Path)
		page.Write(w, r, page.Page{Status: http.StatusNotFound, Code: "no_route", Title: "Not found",
			Detail: "Nothing is served at this address."})
		return false
	}
	if rt.StripPrefix && !rules.Canonical(path) {
		info.outcome = OutcomeError
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "bad_path",
			Detail: "This path must be written plainly: without dot segments, empty segments, backslashes, path parameters or needless %-escapes."})
		return false
	}
	info.route, info.host, info.port, info.rawHost = rt, name, port, r.Host
	return true
}

// ruleTarget is what the rules judge of a request: its escaped path, as
// the request line spelled it. Proxy mode and forward auth both use it, on
// the URL read the same way (url.ParseRequestURI), so that both judge the
// same request alike.
func ruleTarget(u *url.URL) string { return u.EscapedPath() }

// DefaultRevalidate is how often a long-running response's session is
// checked again with the store (revocation, logout elsewhere, a removed
// cookie key).
const DefaultRevalidate = 15 * time.Second

// WatchAfter is how long a response for a logged-in user runs before the
// proxy starts watching its session (see lateList). Shorter responses
// cost a listing.
const WatchAfter = 10 * time.Second

// errSessionEnded cancels a response whose session ended before the
// upstream answered.
var errSessionEnded = errors.New("the session ended while the upstream was answering")

// watch starts watching a long response for a logged-in user (it runs in
// the lateList's sweep): the response ends when the session expires
// or, checked every Revalidate, when the store no longer knows it: revoked,
// or (the cookie store too) sealed with a key a reload has removed. Only an
// authoritative "no session" ends it: a store that cannot be reached leaves
// the connection alone. Bearer tokens are bound by their own expiry.
//
// The watch is timers, not a goroutine: an open WebSocket or stream holds
// no goroutine (and stack) of its own between checks, which matters with
// thousands open.
func (p *handler) watch(info *reqInfo) {
	w := &watcher{p: p, info: info}
	// Timers first, then the stop hook: a response that ends meanwhile
	// stops them at once.
	w.mu.Lock()
	if !info.sess.Expiry.IsZero() {
		w.expiry = time.AfterFunc(time.Until(info.sess.Expiry), func() { w.end("its session expired") })
	}
	if !info.bearer {
		w.every = p.cfg.Revalidate
		if w.every <= 0 {
			w.every = DefaultRevalidate
		}
		w.recheck = time.AfterFunc(w.every, w.check)
	}
	w.mu.Unlock()
	context.AfterFunc(info.req.Context(), func() { w.stop() })
	if w.recheck != nil {
		// Checked at once too: a revocation during the first WatchAfter
		// is noticed now, not a Revalidate later.
		w.check()
	}
}

// watcher is the state of one watched response.
type watcher struct {
	p     *handler
	info  *reqInfo
	every time.Duration

	mu      sync.Mutex
	done    bool        // the response is over or has been ended
	expiry  *time.Timer // nil without an expiry
	recheck *time.Timer // nil when the session is not rechecked
}

// check loads the session again (in a timer's goroutine), ends the
// response if the store says it is gone, and otherwise re-arms itself.
func (w *watcher) check() {
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if done {
		return
	}
	if _, err := w.p.cfg.Sessions.Load(w.info.req); errors.Is(err, session.ErrNoSession) {
		w.end("its session ended")
		return
	}
	w.mu.Lock()
	if !w.done {
		w.recheck.Reset(w.every)
	}
	w.mu.Unlock()
}

// end cuts the response, once.
func (w *watcher) end(why string) {
	if w.stop() {
		w.p.endResponse(w.info, why)
	}
}

// stop ends the watch (the response is over, or end cuts it) and reports
// whether this call did.
func (w *watcher) stop() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return false
	}
	w.done = true
	if w.expiry != nil {
		w.expiry.Stop()
	}
	if w.recheck != nil {
		w.recheck.Stop()
	}
	return true
}

// endResponse cuts a running response: closing the upstream's body ends a
// stream (the client sees it cut short) and a WebSocket tunnel alike. A
// response whose headers have not arrived yet is refused when they do.
func (p *handler) endResponse(info *reqInfo, why string) {
	info.mu.Lock()
	info.ended = true
	body := info.body
	info.mu.Unlock()
	if body != nil {
		body.Close()
	}
	p.cfg.Logger.Info("closing a long-running response: "+why, "path", info.req.URL.Path, "user", info.sess.User)
}

// upstreamResponded records the upstream's time to response headers, and
// keeps a logged-in user's response where watch can end it.
func (p *handler) upstreamResponded(resp *http.Response) error {
	info := infoOf(resp.Request)
	if !info.forwarded.IsZero() {
		p.cfg.Observer.UpstreamResponse(time.Since(info.forwarded))
	}
	p.basicRefusedUpstream(resp, info)
	if info.req != nil {
		// ReverseProxy clears resp.Body of a 101 once it tunnels; keep
		// the body (the backend connection) itself.
		info.mu.Lock()
		info.body = resp.Body
		ended := info.ended
		info.mu.Unlock()
		if ended {
			return errSessionEnded
		}
	}
	return nil
}

// unauthenticated sends browsers (by t.redirect) to the login page, to come
// back to t's path and query, and gives everything else a 401 it can act
// on. It returns the outcome.
func (p *handler) unauthenticated(w http.ResponseWriter, r *http.Request, t target) string {
	login := "/auth/login?rd=" + url.QueryEscape(t.url.RequestURI())
	w.Header().Set("Cache-Control", "no-store")
	if t.redirect != nil && t.redirect(r) {
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
	info := infoOf(pr.In)
	rt := info.route
	if rt.StripPrefix {
		// matchRoute let only canonical paths through: the prefix is
		// spelled alike in Path and RawPath.
		u := pr.Out.URL
		u.Path = rt.Strip(u.Path)
		if u.RawPath != "" {
			u.RawPath = rt.Strip(u.RawPath)
		}
	}
	pr.SetURL(rt.Upstream)
	if rt.PassHost {
		// The name the route and the rules went by, not another spelling
		// of it (WIKI.example.com.) that a name-based upstream might send
		// to another of its sites.
		pr.Out.Host = pr.In.Host
		if info.host != "" {
			pr.Out.Host = info.hostPort()
		}
	}
	if p.cfg.Trusted(pr.In) {
		stripHeaders(pr.Out.Header, p.identity)
		// A trusted proxy's chain is extended, its view of proto and host kept.
		if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
		pr.SetXForwarded()
		p.setForwardedHost(pr.Out.Header, info)
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
	} else {
		// Before ours are set: the list holds every spelling of them.
		stripHeaders(pr.Out.Header, p.untrusted)
		setXForwarded(pr, info)
		// The client's Host must not become the app's idea of its own
		// name (password-reset links, redirects).
		p.setForwardedHost(pr.Out.Header, info)
	}
	p.stripCookies(pr.Out.Header)
	p.setIdentity(pr.Out.Header, info)
	p.setBasic(pr.Out.Header, info)
	// A request's trailers are header fields the client sends after the
	// body, past every check here; apps that merge them into the headers
	// (Apache's MergeTrailers, frameworks reading Go's or Node's request
	// trailers) would read a trailer Authorization or X-User as the real
	// one. Go's clone carries only their names, which are not forwarded
	// either.
	pr.Out.Trailer = nil
}

// setXForwarded is pr.SetXForwarded for a request whose X-Forwarded
// headers were stripped, with values backed by info instead of a slice
// allocated for each.
func setXForwarded(pr *httputil.ProxyRequest, info *reqInfo) {
	h := pr.Out.Header
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		info.forValue[0] = ip
		h["X-Forwarded-For"] = info.forValue[:]
	}
	info.hostValue[0] = pr.In.Host
	h["X-Forwarded-Host"] = info.hostValue[:]
	info.protoValue[0] = "http"
	if pr.In.TLS != nil {
		info.protoValue[0] = "https"
	}
	h["X-Forwarded-Proto"] = info.protoValue[:]
}

// setForwardedHost names the host the client reached: for a host route,
// the request's host as route.HostName read it (name and port); for a *
// route the public host, when it is configured.
func (p *handler) setForwardedHost(h http.Header, info *reqInfo) {
	switch {
	case info.route != nil && info.route.Host != route.Any:
		info.hostValue[0] = info.hostPort()
	case p.cfg.PublicHost != "":
		info.hostValue[0] = p.cfg.PublicHost
	default:
		return
	}
	h["X-Forwarded-Host"] = info.hostValue[:]
}

// stripHeaders deletes every header that an upstream might read as one of
// names (normalized): any case, and any punctuation for "-" (CGI, PHP, WSGI
// and nginx with underscores_in_headers merge "_"; PHP also maps ".";
// lighttpd's CGI, FastCGI and SCGI, like Apache 2.2, turn every character
// but letters and digits into "_").
func stripHeaders(h http.Header, names headerSet) {
	for name := range h {
		if names.has(name) {
			delete(h, name)
		}
	}
}

// headerSet holds normalized header names, and the same by length, so that
// a request's header is compared only with the names as long as it
// (sameHeader keeps the length): every header of every request is looked up.
type headerSet struct {
	names []string
	byLen [][]string
}

func newHeaderSet(names []string) headerSet {
	s := headerSet{names: names}
	for _, n := range names {
		for len(s.byLen) <= len(n) {
			s.byLen = append(s.byLen, nil)
		}
		s.byLen[len(n)] = append(s.byLen[len(n)], n)
	}
	return s
}

// has reports whether name normalizes to one of the set's names.
func (s headerSet) has(name string) bool {
	if len(name) >= len(s.byLen) {
		return false
	}
	for _, n := range s.byLen[len(name)] {
		if sameHeader(name, n) {
			return true
		}
	}
	return false
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
		case c < '0' || '9' < c && c < 'a' || 'z' < c:
			c = '-'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

// NormalizeHeader maps a header name to the form upstream stacks compare
// on: lower case, with every byte but ASCII letters and digits read as "-"
// (a header name's other characters are punctuation: "_", ".", "~", "!"
// ...). Two names with the same form are one header to some upstream.
func NormalizeHeader(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c < '0' || '9' < c && c < 'a' || 'z' < c:
			b[i] = '-'
		}
	}
	return string(b)
}

// stripCookies removes authproxy's own cookies (session, chunks, logins):
// they carry tokens the upstream has no business with, and their size can
// push legacy apps over header limits. Other cookies pass byte for byte.
func (p *handler) stripCookies(h http.Header) {
	ours, size := false, -2
	for name, pair := range cookie.Pairs(h) {
		if p.cfg.IsOwnCookie(name) {
			ours = true
		} else {
			size += len(pair) + 2
		}
	}
	if !ours {
		return
	}
	lines := h["Cookie"]
	var b strings.Builder
	b.Grow(max(size, 0))
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
	info := infoOf(r)
	if f := info.bodyErr.Load(); f != nil {
		// Before the check below: a failed body read cancels the request.
		p.bodyRefused(w, r, f.err)
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	if errors.Is(err, errSessionEnded) {
		info.outcome = p.unauthenticated(w, r, target{method: r.Method, url: r.URL})
		return
	}
	status, title := http.StatusBadGateway, "The application is not responding"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		status, title = http.StatusGatewayTimeout, "The application took too long to answer"
	}
	info.outcome = OutcomeError
	p.cfg.Observer.UpstreamError(status)
	p.cfg.Logger.Warn("upstream error", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	page.Write(w, r, page.Page{Status: status, Code: "upstream_unavailable", Title: title,
		Detail: "authproxy could not get an answer from the application behind it. Please try again in a moment.",
		Links:  []page.Link{{Href: r.URL.RequestURI(), Text: "Try again"}}})
}
