package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/authproxy/authproxy/oidc"
	"github.com/authproxy/authproxy/proxy/route"
)

// routes reads where requests go: the routes file, or AUTHPROXY_UPSTREAM,
// its one-line form (* / UPSTREAM, with AUTHPROXY_PASS_HOST_HEADER). It
// returns nil when that fails, having said why.
func (e env) routes(p *problems) *route.Table {
	passHost := p.boolean("AUTHPROXY_PASS_HOST_HEADER", e.PassHostHeader)
	switch {
	case e.Upstream != "" && e.RoutesFile != "":
		p.add("set AUTHPROXY_UPSTREAM or AUTHPROXY_ROUTES_FILE, not both (AUTHPROXY_UPSTREAM=URL is the routes file line: * / URL)")
		return nil
	case e.RoutesFile != "":
		if passHost {
			p.add("AUTHPROXY_PASS_HOST_HEADER applies to AUTHPROXY_UPSTREAM only: with a routes file, give the routes the pass-host option")
		}
		t, err := loadRoutes(e.RoutesFile)
		if err != nil {
			p.add("%v", err)
			return nil
		}
		if e.upstreamTLSSet() && !slices.ContainsFunc(t.Routes(), func(r *route.Route) bool { return r.Upstream.Scheme == "https" }) {
			p.add("AUTHPROXY_UPSTREAM_CA_FILE and AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE need an https:// upstream: every route of %s is plain http", e.RoutesFile)
		}
		return t
	case e.Upstream == "":
		p.add("AUTHPROXY_UPSTREAM (the app to protect, e.g. http://127.0.0.1:8080) or AUTHPROXY_ROUTES_FILE is required")
		return nil
	}
	u, err := url.Parse(e.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("AUTHPROXY_UPSTREAM %q must be an http:// or https:// URL with a host", withoutPassword(e.Upstream))
		return nil
	}
	if u.Scheme == "http" && e.upstreamTLSSet() {
		p.add("AUTHPROXY_UPSTREAM_CA_FILE and AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE need an https:// AUTHPROXY_UPSTREAM: %q is plain http", withoutPassword(e.Upstream))
	}
	t, err := route.Single(u, passHost)
	if err != nil {
		p.add("AUTHPROXY_UPSTREAM %q: %v", withoutPassword(e.Upstream), err)
		return nil
	}
	return t
}

// loadRoutes reads a routes file: a fresh table on every call (SIGHUP
// reload may call it again).
func loadRoutes(path string) (*route.Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return route.Parse(path, f)
}

// returns lists the hosts a login may return to (oidc.Returns): the routes'
// host names, and the *.suffix routes inside the cookie domain, when the
// callback is fixed (AUTHPROXY_REDIRECT_URL). A login started on a host
// can complete at the callback's host only if the login cookie reaches it:
// every host route must lie inside AUTHPROXY_COOKIE_DOMAIN (or be the
// callback's host). Rules scoped to a host no route serves are reported.
func (e env) returns(p *problems, origin oidc.Origin, routes *route.Table, a access) oidc.Returns {
	if routes == nil {
		return oidc.Returns{}
	}
	if a.rules != nil {
		for _, h := range a.rules.Hosts() {
			if _, err := routes.Match(h, "/"); err != nil && !routes.HasHost(h) {
				p.add("AUTHPROXY_RULES_FILE has rules for host %s, which no route serves", h)
			}
		}
		aliases(p, routes, a.rules.Hosts())
	}
	if origin.Fixed == nil {
		return oidc.Returns{}
	}
	domain := strings.ToLower(e.CookieDomain)
	if domain != "" && !strings.HasPrefix(domain, ".") {
		domain = "." + domain
	}
	inside := func(name string) bool { return domain != "" && (strings.HasSuffix(name, domain) || "."+name == domain) }
	r := oidc.Returns{Scheme: origin.Fixed.Scheme, Port: origin.Fixed.Port()}
	callback := strings.ToLower(origin.Fixed.Hostname())
	for _, h := range routes.Hosts() {
		if h != callback && !inside(h) {
			p.add("route host %s is not inside AUTHPROXY_COOKIE_DOMAIN (%q): a login started there cannot complete at %s; "+
				"set AUTHPROXY_COOKIE_DOMAIN to a domain of every routed host", h, e.CookieDomain, origin.Fixed.Host)
		}
		r.Hosts = append(r.Hosts, h)
	}
	for _, s := range routes.Wildcards() {
		if !inside(s[1:]) {
			p.add("route host *%s is not inside AUTHPROXY_COOKIE_DOMAIN (%q): a login started there cannot complete at %s",
				s, e.CookieDomain, origin.Fixed.Host)
			continue
		}
		r.Suffixes = append(r.Suffixes, s)
	}
	return r
}

// withRouteHosts adds the routes' exact host names (route.Table.Hosts) to
// the TLS hosts, which get certificates (ACME) and https redirects: never
// a wildcard, never because of the * route, never an IP address (no ACME
// certificate names one).
func withRouteHosts(hosts []string, routes *route.Table) []string {
	if routes == nil {
		return hosts
	}
	for _, h := range routes.Hosts() {
		if net.ParseIP(h) == nil && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// aliases reports routes that give one upstream page two request paths or
// hosts, which rules cannot both cover: the rules judge the host and path
// the client wrote, so with "ci / http://ci" and "ci /api/ http://ci
// strip-prefix", "deny ci/settings/" leaves /api/settings/ open, and a
// rule scoped to wiki.example.com does nothing for another host routed to
// the wiki's upstream. Upstreams are told apart by scheme, host and port
// (two names for one server are not caught); an upstream told the host
// (pass-host) can tell the hosts apart itself.
func aliases(p *problems, routes *route.Table, scoped []string) {
	rs := routes.Routes()
	for i, a := range rs {
		for _, b := range rs[i+1:] {
			if backend(a.Upstream) == backend(b.Upstream) && mapping(a) != mapping(b) {
				p.add("AUTHPROXY_ROUTES_FILE lines %d and %d reach upstream %s with different paths: one of its pages "+
					"would have two paths, and the rules judge only the one the client wrote; route each path to an "+
					"upstream of its own, or drop strip-prefix", a.Line, b.Line, backend(a.Upstream))
			}
		}
	}
	for _, h := range scoped {
		for _, a := range serving(rs, h) {
			if a.Host != h && !a.PassHost {
				p.add("AUTHPROXY_RULES_FILE: %s has rules of its own, but %s serves it and other names, "+
					"which reach the same upstream without them; route %s on a line of its own (or give the route pass-host)",
					h, routeName(a), h)
				continue
			}
			for _, b := range rs {
				if b.Host != a.Host && backend(b.Upstream) == backend(a.Upstream) && !(a.PassHost && b.PassHost) {
					p.add("AUTHPROXY_RULES_FILE: %s has rules of its own, but %s reaches its upstream %s "+
						"without them; write those rules for every host (no host before the path), or give that "+
						"upstream one host", h, routeName(b), backend(a.Upstream))
				}
			}
		}
	}
}

// routeName names a route in a problem.
func routeName(r *route.Route) string {
	if r.Line == 0 {
		return "AUTHPROXY_UPSTREAM (every host; AUTHPROXY_PASS_HOST_HEADER is its pass-host)"
	}
	return fmt.Sprintf("line %d (%s)", r.Line, r.Host)
}

// backend is an upstream's scheme://host:port, in lower case.
func backend(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + strings.ToLower(net.JoinHostPort(u.Hostname(), port))
}

// mapping is what a route does to a request path: the prefix it removes
// and the upstream path it puts in front; "" for a route that passes paths
// as they are.
func mapping(r *route.Route) string {
	removed, added := "", strings.TrimSuffix(r.Upstream.EscapedPath(), "/")
	if r.StripPrefix {
		removed = strings.TrimSuffix(r.Path, "/")
	}
	if removed == added {
		return ""
	}
	return removed + " -> " + added
}

// serving returns the routes that serve host name h: its own, else those
// of the longest *.suffix over it, else the * routes.
func serving(rs []*route.Route, h string) []*route.Route {
	var exact, wild, anyHost []*route.Route
	best := 0
	for _, r := range rs {
		switch {
		case r.Host == h:
			exact = append(exact, r)
		case r.Host == route.Any:
			anyHost = append(anyHost, r)
		case strings.HasPrefix(r.Host, "*.") && strings.HasSuffix(h, r.Host[1:]) && len(r.Host) >= best:
			if len(r.Host) > best {
				wild, best = nil, len(r.Host)
			}
			wild = append(wild, r)
		}
	}
	switch {
	case len(exact) > 0:
		return exact
	case len(wild) > 0:
		return wild
	}
	return anyHost
}
