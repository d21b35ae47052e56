package oidc

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Origin tells the scheme and host at which users reach the proxy, which
// callback and post-logout URLs are built from.
type Origin struct {
	// Fixed, when set (from the configured redirect URL), is the answer for
	// every request: Host and X-Forwarded-* headers cannot change it.
	Fixed *url.URL
	// TrustedProxies are the peers whose X-Forwarded-Proto/Host are
	// believed. Empty trusts none.
	TrustedProxies []netip.Prefix
}

// Trusted reports whether r came from a configured proxy, so that its
// X-Forwarded-* headers describe the client and not an attacker's wishes.
func (o Origin) Trusted(r *http.Request) bool {
	if len(o.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range o.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Of returns the public scheme://host of r.
func (o Origin) Of(r *http.Request) *url.URL {
	if o.Fixed != nil {
		return &url.URL{Scheme: o.Fixed.Scheme, Host: o.Fixed.Host}
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if o.Trusted(r) {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "https" || p == "http" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	return &url.URL{Scheme: scheme, Host: host}
}

// requestHost is the host[:port] the client asked for: a trusted proxy's
// X-Forwarded-Host, else the request's Host. Unlike Of, it ignores Fixed.
func (o Origin) requestHost(r *http.Request) string {
	if o.Trusted(r) {
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			return h
		}
	}
	return r.Host
}

// IsHTTPS reports whether r reached the proxy over https, end to end.
func (o Origin) IsHTTPS(r *http.Request) bool { return o.Of(r).Scheme == "https" }

// firstValue returns the first element of a comma-separated header: the one
// the outermost trusted proxy wrote.
func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

// removeDots resolves "." and ".." segments the way browsers do (WHATWG URL:
// "%2e" counts as a dot, empty segments are kept), unlike path.Clean and
// url.ResolveReference, which also collapse "//".
func removeDots(p string) string {
	var out []string
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if i == 0 {
			continue // the empty segment before the leading "/"
		}
		switch strings.ToLower(strings.ReplaceAll(strings.ToLower(seg), "%2e", ".")) {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

// maxReturnPath bounds the return path kept in the login cookie.
const maxReturnPath = 2048

// Returns says where, besides a path on the proxy's own origin, a redirect
// may lead: absolute URLs of the hosts the proxy routes, which share its
// login (one cookie domain, one callback). The zero value allows paths only.
type Returns struct {
	// Scheme is the public URL's scheme (https in production): an absolute
	// target must have it. Empty allows no absolute target.
	Scheme string
	// Port is the public URL's port ("" for the scheme's default): an
	// absolute target must name the same, spelled the same.
	Port string
	// Hosts are the routes' exact host names, in lower case.
	Hosts []string
	// Suffixes are the suffixes of the *.suffix routes that lie inside the
	// cookie domain, each with its leading dot (".example.com"): a name
	// with one more label or more in front matches.
	Suffixes []string
}

// ReturnPath returns raw if it is a path on the proxy's own origin and "/"
// otherwise: Returns{}.Target. Anything a browser could resolve to another
// origin is refused: scheme-relative "//host", backslashes (browsers read
// "/\host" as "//host"), control characters and whitespace (stripped by
// browsers, so "/\t/host" is "//host"), schemes, userinfo, and encoded
// slashes or backslashes at the start of the path, which some servers decode
// before redirecting.
func ReturnPath(raw string) string {
	if raw == "" || len(raw) > maxReturnPath || raw[0] != '/' {
		return "/"
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "/"
		}
	}
	if len(raw) > 1 && raw[1] == '/' {
		return "/"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	// "/..//host" is "//host" once dot segments are resolved, which an app
	// that echoes the path into a Location header would turn into a host.
	if strings.HasPrefix(removeDots(u.EscapedPath()), "//") {
		return "/"
	}
	// Decode the path repeatedly: "/%2F%2Fevil" and "/%252F%252Fevil" must
	// not become "//evil" in some later hop.
	p := u.EscapedPath()
	for range 4 {
		dec, err := url.PathUnescape(p)
		if err != nil {
			return "/"
		}
		if strings.HasPrefix(dec, "//") || strings.HasPrefix(dec, "/\\") || strings.ContainsAny(dec, "\r\n\t") {
			return "/"
		}
		if dec == p {
			return raw
		}
		p = dec
	}
	return "/" // still encoded after four rounds: nobody legitimate does that
}

// Target returns raw if it is a path ReturnPath keeps, or an absolute URL
// of one of rs's hosts, and "/" otherwise. It is the one check for every
// redirect target taken from a request (the rd parameter, the target saved
// across a login, a page's origin at sign-out). An absolute target must be
// exactly SCHEME://HOST[:PORT] followed by nothing or by a path that
// ReturnPath keeps: the public URL's scheme and port, a host of Hosts or
// under one of Suffixes written as a plain DNS name (any ASCII case; no
// trailing dot, %-escape, userinfo, brackets or other character), and no
// query or fragment straight after the host.
func (rs Returns) Target(raw string) string {
	if raw == "" || raw[0] == '/' || rs.Scheme == "" {
		return ReturnPath(raw)
	}
	if len(raw) > maxReturnPath {
		return "/"
	}
	prefix := rs.Scheme + "://"
	if len(raw) <= len(prefix) || !strings.EqualFold(raw[:len(prefix)], prefix) {
		return "/"
	}
	authority, path := raw[len(prefix):], ""
	if i := strings.IndexAny(authority, "/?#"); i >= 0 {
		authority, path = authority[:i], authority[i:]
	}
	host, port, _ := strings.Cut(authority, ":")
	if port != rs.Port || strings.Contains(authority, ":") != (rs.Port != "") || !rs.allowedHost(host) {
		return "/"
	}
	if path != "" && ReturnPath(path) != path {
		return "/" // also a query or fragment straight after the host
	}
	return raw
}

// IsOrigin reports whether origin (scheme://host[:port], as an Origin
// header or a Referer's start) is that of a host a login may return to.
func (rs Returns) IsOrigin(origin string) bool {
	_, authority, ok := strings.Cut(origin, "://")
	return ok && authority != "" && !strings.ContainsAny(authority, "/?#\\") && rs.Target(origin+"/") == origin+"/"
}

// allowedHost reports whether host, a plain DNS name in any ASCII case, is
// one of Hosts or under one of Suffixes.
func (rs Returns) allowedHost(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
			label++
		default:
			return false
		}
	}
	if label == 0 {
		return false // empty, or a trailing dot
	}
	host = strings.ToLower(host)
	for _, h := range rs.Hosts {
		if host == h {
			return true
		}
	}
	for _, s := range rs.Suffixes {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}
