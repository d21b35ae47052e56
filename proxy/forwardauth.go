package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/authproxy/authproxy/page"
)

// check answers an ingress's authorization sub-request (nginx auth_request,
// Traefik ForwardAuth, ingress-nginx auth-url). The original request is
// described by X-Forwarded-Uri/X-Original-URL and X-Forwarded-Method/
// X-Original-Method, which only this endpoint reads: its caller is the
// ingress. 2xx carries the identity headers in the response; 401 means no
// valid session (with ?redirect=1, browsers get the 302 to the login page
// instead, for ingresses that pass the auth response to the client); 403
// means logged in but not allowed.
func (p *handler) check(w http.ResponseWriter, r *http.Request) {
	info := infoOf(r)
	w.Header().Set("Cache-Control", "no-store")
	orig, method, err := originalRequest(r)
	if err != nil {
		// Fail closed: deciding on a guess could let the real request pass.
		info.outcome = OutcomeError
		p.cfg.Logger.Warn("forward-auth request refused", "err", err)
		page.WriteJSON(w, page.Page{Status: http.StatusBadRequest, Code: "bad_forward_auth_request", Detail: err.Error()})
		return
	}
	redirect := r.URL.Query().Get("redirect") == "1" && page.IsNavigation(r)
	info.sess, info.outcome = p.admit(w, r, target{method: method, url: orig, redirect: redirect})
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
		u, err := url.Parse(vs[0])
		if err != nil || (u.Path == "" && u.Opaque == "") || u.Opaque != "" || (u.Path != "" && u.Path[0] != '/') {
			return nil, "", fmt.Errorf("%s is not a URL or absolute path", h)
		}
		this := &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
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
