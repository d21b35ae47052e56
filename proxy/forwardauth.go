package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/authproxy/authproxy/page"
	"github.com/authproxy/authproxy/proxy/route"
)

// check answers an ingress's authorization sub-request (nginx auth_request,
// Traefik ForwardAuth, ingress-nginx auth-url). The original request is
// described by X-Forwarded-Uri/X-Original-URL and X-Forwarded-Method/
// X-Original-Method, which only this endpoint reads: its caller is the
// ingress. 2xx carries the identity headers in the response; 401 means no
// valid session (with ?redirect=1, browsers get the 302 to the login page
// instead, for ingresses that pass the auth response to the client); 403
// means logged in but not allowed. The rules judge the original request
// exactly as in proxy mode: the same functions on the same ruleTarget.
func (p *handler) check(w http.ResponseWriter, r *http.Request) {
	info := infoOf(r)
	w.Header().Set("Cache-Control", "no-store")
	orig, method, err := originalRequest(r)
	var host string
	if err == nil {
		host, err = p.originalHost(r)
	}
	if err != nil {
		// Fail closed: deciding on a guess could let the real request pass.
		info.outcome = OutcomeError
		p.cfg.Logger.Warn("forward-auth request refused", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "bad_forward_auth_request", Detail: err.Error()})
		return
	}
	if _, err := p.cfg.Routes.Match(host, ruleTarget(orig)); err != nil {
		// The ingress asks about a host (or path) the proxy does not
		// route: no rules were written for it.
		info.outcome = OutcomeForbidden
		p.cfg.Logger.Warn("forward-auth request for an unrouted host refused", "host", host, "path", orig.Path)
		page.WriteJSON(w, page.Page{Status: http.StatusForbidden, Code: "no_route",
			Detail: "authproxy serves no route for this host and path."})
		return
	}
	info.outcome = p.admit(w, r, target{method: method, host: host, url: orig, redirect: forwardAuthRedirect}, &info.sess)
	switch info.outcome {
	case OutcomeProxied:
		p.setIdentity(w.Header(), info)
		w.WriteHeader(http.StatusOK)
	case OutcomePublic:
		w.WriteHeader(http.StatusOK)
	}
}

// originalRequest is the request the ingress is asking about. Ingresses
// name it in different headers (Traefik X-Forwarded-Uri/-Method, nginx and
// ingress-nginx X-Original-URL/-Method), and some pass the client's own
// headers along, so a client could add the header its ingress does not set.
// Hence: every header present must agree, and a missing or unparsable URL
// is an error, never a default.
func originalRequest(r *http.Request) (*url.URL, string, error) {
	var orig *url.URL
	for _, h := range []string{"X-Forwarded-Uri", "X-Original-Url", "X-Original-Uri"} {
		vs := r.Header.Values(h)
		if len(vs) == 0 {
			continue
		}
		if len(vs) > 1 {
			return nil, "", fmt.Errorf("%s appears %d times", h, len(vs))
		}
		this, err := requestTarget(vs[0], ownHost(r))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", h, err)
		}
		if orig != nil && orig.RequestURI() != this.RequestURI() {
			return nil, "", errors.New("the original-URL headers disagree")
		}
		orig = this
	}
	if orig == nil {
		return nil, "", errors.New("no X-Forwarded-Uri or X-Original-URL header: the ingress must say which request to check")
	}
	method := ""
	for _, h := range []string{"X-Forwarded-Method", "X-Original-Method"} {
		for _, v := range r.Header.Values(h) {
			if method != "" && v != method {
				return nil, "", errors.New("the original-method headers disagree")
			}
			method = v
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	return orig, method, nil
}

// originalHost is the host name (route.HostName) of the request the
// ingress asks about: ownHost's, or "" where hosts decide nothing. Where hosts matter (host routes or rules
// scoped to hosts), an X-Forwarded-Host is believed only from a trusted
// proxy: an ingress that passes its client's headers on would otherwise let
// the client name the host whose rules apply.
func (p *handler) originalHost(r *http.Request) (string, error) {
	if !p.multiHost {
		return "", nil // only * routes, no rule for a host: the host decides nothing
	}
	if len(r.Header.Values("X-Forwarded-Host")) > 0 && !p.cfg.Trusted(r) {
		return "", errors.New("X-Forwarded-Host from a peer that is not a trusted proxy (AUTHPROXY_TRUSTED_PROXIES)")
	}
	if len(r.Header.Values("X-Forwarded-Host")) > 1 {
		return "", errors.New("X-Forwarded-Host appears more than once")
	}
	// Not "" for a missing or blank host: a * route would match it, and
	// only the rules for every host would judge the request.
	host := strings.TrimSpace(ownHost(r))
	if host == "" {
		return "", errors.New("no host: the ingress must name the request's host (Host or X-Forwarded-Host)")
	}
	name, _, ok := route.HostName(host)
	if !ok {
		return "", fmt.Errorf("host %q is not a host name", host)
	}
	return name, nil
}

// requestTarget reads an original-URL header the way Go's server reads the
// request line's target in proxy mode (url.ParseRequestURI), so that both
// modes hand the rules the same path. A value starting with "/" is a path
// and query, never an authority: nginx's $request_uri "//admin/users" is
// the path the app serves as /admin/users, not host "admin" and path
// "/users". Only an absolute http(s) URL carries a host, and it must be
// host, the request's own.
func requestTarget(v, host string) (*url.URL, error) {
	if strings.HasPrefix(v, "/") {
		u, err := url.ParseRequestURI(v)
		if err != nil || strings.ContainsAny(v, " \t") {
			return nil, errors.New("not a request target")
		}
		return &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}, nil
	}
	scheme, _, _ := strings.Cut(v, "://")
	if !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		return nil, errors.New("neither a path nor an http(s) URL")
	}
	u, err := url.ParseRequestURI(v)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" || strings.ContainsAny(v, " \t") ||
		(u.Path != "" && u.Path[0] != '/') {
		return nil, errors.New("not an absolute http(s) URL")
	}
	if host == "" || !strings.EqualFold(u.Host, host) {
		return nil, fmt.Errorf("names host %q, not the request's own (%q)", u.Host, host)
	}
	path := &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	if path.Path == "" {
		path.Path = "/"
	}
	return path, nil
}

// ownHost is the host the ingress says the original request was for: its
// X-Forwarded-Host when it sends exactly one, else the Host of the
// sub-request (nginx auth_request passes $host).
func ownHost(r *http.Request) string {
	switch vs := r.Header.Values("X-Forwarded-Host"); len(vs) {
	case 0:
		return r.Host
	case 1:
		return vs[0]
	}
	return ""
}

// forwardAuthRedirect: a forward-auth request asks for the login redirect
// with ?redirect=1, and gets it for a browser's page load.
func forwardAuthRedirect(r *http.Request) bool {
	return r.URL.Query().Get("redirect") == "1" && page.IsNavigation(r)
}
