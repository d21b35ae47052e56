package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/authproxy/authproxy/page"
	"github.com/authproxy/authproxy/proxy/route"
)

// Bounds on a request body where nobody has logged in yet: the proxy's own
// routes (/auth/...) and public paths. A body over the limit gets 413, one
// that takes longer than BodyTimeout to arrive 408.
const (
	AuthBodyLimit   = 64 << 10
	PublicBodyLimit = 10 << 20
	BodyTimeout     = 30 * time.Second
)

// admissible refuses, before routing or authentication, what the proxy
// never serves: CONNECT (it is no forward proxy), TRACE (it would echo
// cookies and credentials), and absolute-form request targets that are not
// an http(s) URL of the public host (as forward auth reads them). A request target http://other/x makes Go's server take "other" as
// the request's Host, whatever the Host header says.
func (p *handler) admissible(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		page.WriteJSON(w, page.Page{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Detail: r.Method + " is not served."})
		return false
	}
	if (r.URL.Scheme != "" || r.URL.Host != "") && (!p.ownAuthority(r.URL.Host) ||
		!strings.EqualFold(r.URL.Scheme, "http") && !strings.EqualFold(r.URL.Scheme, "https")) {
		w.Header().Set("Connection", "close")
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "bad_request_target",
			Detail: "The request target must be a path on this host."})
		return false
	}
	return true
}

// ownAuthority reports whether an absolute-form request target may name
// host: the public host, or a host that a host route (not *) serves. (Go's
// server then takes it as the request's Host, which the route is matched
// on.)
func (p *handler) ownAuthority(host string) bool {
	if p.cfg.PublicHost != "" && strings.EqualFold(host, p.cfg.PublicHost) {
		return true
	}
	name, _, ok := route.HostName(host)
	return ok && p.cfg.Routes.HasHost(name)
}

// upgradeAllowed lets WebSocket upgrades through and refuses every other
// protocol upgrade (h2c would tunnel HTTP/2 requests that the proxy never
// sees past its rules), on every path. A WebSocket handshake from a page on
// another site is refused too: the browser sends the user's cookie with it
// (cross-site WebSocket hijacking). Handshakes without an Origin come from
// programs, not browsers, and pass.
func (p *handler) upgradeAllowed(w http.ResponseWriter, r *http.Request) bool {
	ups := r.Header["Upgrade"]
	if len(ups) == 0 {
		return true
	}
	if len(ups) != 1 || !strings.EqualFold(strings.TrimSpace(ups[0]), "websocket") {
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "unsupported_upgrade",
			Detail: "Only WebSocket upgrades are accepted."})
		return false
	}
	origins := r.Header["Origin"]
	if len(origins) == 0 {
		return true
	}
	if len(origins) > 1 || !p.originAllowed(r, origins[0]) {
		infoOf(r).outcome = OutcomeForbidden
		p.cfg.Logger.Info("cross-site WebSocket handshake refused", "path", r.URL.Path, "origin", origins[0])
		page.WriteJSON(w, page.Page{Status: http.StatusForbidden, Code: "cross_site_websocket",
			Detail: "WebSocket connections must come from this site's own pages."})
		return false
	}
	return true
}

// originAllowed reports whether a page of origin may open a WebSocket: one
// on the proxy's public host, one on the request's own host when a host
// route serves it, or one listed in WebSocketOrigins.
func (p *handler) originAllowed(r *http.Request, origin string) bool {
	o := strings.ToLower(strings.TrimSuffix(origin, "/"))
	if slices.Contains(p.cfg.WebSocketOrigins, o) {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return false // "null" (sandboxed pages, file:) and anything malformed
	}
	if info := infoOf(r); info.route != nil && info.route.Host != route.Any {
		// A page of the routed host itself: same origin.
		name, port, ok := route.HostName(u.Host)
		if ok && name == info.host && port == info.port {
			return true
		}
	}
	return strings.EqualFold(u.Host, p.publicHost(r))
}

// publicHost is the host the client reached: PublicHost when configured,
// else a trusted proxy's X-Forwarded-Host, else the request's Host.
func (p *handler) publicHost(r *http.Request) string {
	if p.cfg.PublicHost != "" {
		return p.cfg.PublicHost
	}
	if p.cfg.Trusted(r) {
		if h, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ","); strings.TrimSpace(h) != "" {
			return strings.TrimSpace(h)
		}
	}
	return r.Host
}

// bounded bounds the request body of the proxy's own routes.
func (p *handler) bounded(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody && !p.boundBody(w, r, AuthBodyLimit) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// boundBody limits r's body to limit bytes arriving within BodyTimeout. A
// body announced larger is refused at once (false, answer written).
func (p *handler) boundBody(w http.ResponseWriter, r *http.Request, limit int64) bool {
	if r.ContentLength > limit {
		p.bodyRefused(w, r, &http.MaxBytesError{Limit: limit})
		return false
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(p.cfg.bodyTimeout))
	r.Body = &boundedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), rc: rc, info: infoOf(r)}
	return true
}

// boundedBody records why a body could not be read, for the answer, and
// lifts the read deadline once the body is in: a deadline left on the
// connection would cut a long response (the server watches the connection
// for a disconnect while the handler runs).
type boundedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	info *reqInfo
}

// failure carries an error through an atomic.Pointer.
type failure struct{ err error }

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		b.info.bodyErr.CompareAndSwap(nil, &failure{err})
	}
	return n, err
}

// bodyRefused answers a request whose body was too large (413), too slow
// (408) or broken (400), and closes the connection: the rest of the body
// is not worth reading.
func (p *handler) bodyRefused(w http.ResponseWriter, r *http.Request, err error) {
	status, code, detail := http.StatusBadRequest, "bad_request_body", "The request body could not be read."
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooLarge):
		status, code = http.StatusRequestEntityTooLarge, "request_body_too_large"
		detail = fmt.Sprintf("The request body may not exceed %d bytes here.", tooLarge.Limit)
	case errors.As(err, &ne) && ne.Timeout():
		status, code, detail = http.StatusRequestTimeout, "request_body_timeout", "The request body arrived too slowly."
	}
	infoOf(r).outcome = OutcomeError
	w.Header().Set("Connection", "close")
	page.WriteJSON(w, page.Page{Status: status, Code: code, Detail: detail})
}
