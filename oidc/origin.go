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

// ReturnPath returns raw if it is a path on the proxy's own origin and "/"
// otherwise. It is the one check for every redirect target taken from a
// request (the rd parameter, the path saved across a login). Anything a
// browser could resolve to another origin is refused: scheme-relative
// "//host", backslashes (browsers read "/\host" as "//host"), control
// characters and whitespace (stripped by browsers, so "/\t/host" is
// "//host"), schemes, userinfo, and encoded slashes or backslashes at the
// start of the path, which some servers decode before redirecting.
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
