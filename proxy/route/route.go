// Package route is the proxy's routes table: which upstream serves a
// request, chosen by its Host and path. It exists so that one authproxy, with
// one login, can stand in front of several apps (a wiki on its own host name,
// an API under a path) instead of one proxy, and one login, per app. The
// table comes from a plain-text file in the style of the rules file, meant to
// be read at a glance:
//
//	# host              path     upstream                      options
//	app.example.com     /        http://127.0.0.1:8080
//	app.example.com     /api/    http://127.0.0.1:9000         strip-prefix
//	wiki.example.com    /        https://wiki.internal:8443    pass-host timeout=5m
//	*.example.com       /        http://127.0.0.1:8081
//	*                   /        http://127.0.0.1:8080
//
// # Matching
//
// The host is matched first, on the Host header's name whatever its port,
// in lower case and without a trailing dot (see HostName): an exact name
// wins over a *.suffix wildcard (the longest suffix first), which wins over
// *. A *.example.com route matches every name that ends in .example.com, not
// example.com itself. The most specific host decides alone: within its
// routes the longest path prefix wins, on / boundaries as with the rules: /api/ and /api both match /api,
// /api/ and /api/x, never /apix. Paths are matched on the request's escaped
// path, case-sensitively. A request that matches no route of its host gets no
// upstream, even if a less specific host routes its path.
//
// # Options
//
//   - strip-prefix: the upstream sees the path without the route's prefix
//     (/api/users as /users). Not on /.
//   - pass-host: the upstream gets the client's Host header instead of its
//     own.
//   - timeout=DURATION: how long the upstream may take to send its response
//     headers (default AUTHPROXY_UPSTREAM_TIMEOUT).
//   - max-conns=N: cap on connections to this route's upstream
//     (default AUTHPROXY_UPSTREAM_MAX_CONNS).
//
// Every problem of a file is reported at once, each with its line number.
package route

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/authproxy/authproxy/internal/lines"
)

const (
	maxLineLen  = 16 << 10
	maxProblems = 100
	// Any is the host field that matches every host.
	Any = "*"
)

// Options are what a route's options column says.
type Options struct {
	// StripPrefix removes the route's path prefix before forwarding.
	StripPrefix bool
	// PassHost sends the client's Host header to the upstream.
	PassHost bool
	// Timeout bounds the wait for the upstream's response headers; zero
	// means the proxy's default.
	Timeout time.Duration
	// MaxConns caps the connections to the upstream; -1 means the proxy's
	// default, 0 no cap.
	MaxConns int
}

// Route is one line of a routes file. A Table's routes are shared by every
// request: treat them as read-only.
type Route struct {
	// Host is the host field as written, in lower case: a name, *.suffix,
	// or *.
	Host string
	// Path is the path prefix as written.
	Path string
	// Upstream is where the route's requests go.
	Upstream *url.URL
	Options
	// Line is the route's line in its file (0 for Single).
	Line int
	// Index is the route's position in Table.Routes.
	Index int

	prefix string // Path without its trailing slash; "/" for the root
}

// covers reports whether the route's path matches the escaped path p.
func (r *Route) covers(p string) bool {
	return r.prefix == "/" || p == r.prefix ||
		len(p) > len(r.prefix) && p[len(r.prefix)] == '/' && p[:len(r.prefix)] == r.prefix
}

// Strip returns what the upstream sees of the escaped path p when the route
// strips its prefix: p without the prefix, "/" for the prefix itself. Routes
// without strip-prefix return p.
func (r *Route) Strip(p string) string {
	if !r.StripPrefix || r.prefix == "/" || !r.covers(p) {
		return p
	}
	if rest := p[len(r.prefix):]; rest != "" {
		return rest
	}
	return "/"
}

// String returns the route as a line of a routes file.
func (r *Route) String() string {
	f := []string{r.Host, r.Path, r.Upstream.String()}
	if r.StripPrefix {
		f = append(f, "strip-prefix")
	}
	if r.PassHost {
		f = append(f, "pass-host")
	}
	if r.Timeout > 0 {
		f = append(f, "timeout="+r.Timeout.String())
	}
	if r.MaxConns >= 0 {
		f = append(f, "max-conns="+strconv.Itoa(r.MaxConns))
	}
	return strings.Join(f, " ")
}

// Table is a parsed routes file, safe for concurrent use.
type Table struct {
	routes []*Route
	// exact maps a host name to its routes, longest prefix first.
	exact map[string][]*Route
	// wildcard lists the *.suffix hosts, longest suffix first; each
	// suffix keeps its leading dot.
	wildcard []hostRoutes
	any      []*Route
}

type hostRoutes struct {
	suffix string
	routes []*Route
}

// Errors of Match.
var (
	// ErrNoRoute: no route matches the host and path.
	ErrNoRoute = errors.New("route: no route for this host and path")
)

// Match returns the route for a request to host name (from HostName) and
// escaped path, or ErrNoRoute.
func (t *Table) Match(name, escapedPath string) (*Route, error) {
	rs := t.any
	if exact, ok := t.exact[name]; ok {
		rs = exact
	} else {
		for _, w := range t.wildcard {
			if len(name) > len(w.suffix) && strings.HasSuffix(name, w.suffix) {
				rs = w.routes
				break
			}
		}
	}
	// The most specific host decides alone: a path it does not route is
	// not passed on to a less specific host's routes.
	if r := longest(rs, escapedPath); r != nil {
		return r, nil
	}
	return nil, ErrNoRoute
}

// longest returns the first route of rs (sorted longest prefix first) that
// covers p.
func longest(rs []*Route, p string) *Route {
	for _, r := range rs {
		if r.covers(p) {
			return r
		}
	}
	return nil
}

// HasHost reports whether a host route (an exact name or a *.suffix, not
// *) serves the host name.
func (t *Table) HasHost(name string) bool {
	if _, ok := t.exact[name]; ok {
		return true
	}
	for _, w := range t.wildcard {
		if len(name) > len(w.suffix) && strings.HasSuffix(name, w.suffix) {
			return true
		}
	}
	return false
}

// Routes returns the routes in file order.
func (t *Table) Routes() []*Route { return slices.Clone(t.routes) }

// Hosts returns, sorted, the exact host names the routes name: not the
// wildcards, not *. These are the names a certificate may be obtained for
// and a login may return to.
func (t *Table) Hosts() []string {
	hosts := make([]string, 0, len(t.exact))
	for h := range t.exact {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return hosts
}

// Wildcards returns, sorted, the suffixes of the *.suffix routes, each with
// its leading dot (".example.com").
func (t *Table) Wildcards() []string {
	out := make([]string, 0, len(t.wildcard))
	for _, w := range t.wildcard {
		out = append(out, w.suffix)
	}
	slices.Sort(out)
	return out
}

// String returns the table as a routes file.
func (t *Table) String() string {
	var b strings.Builder
	for _, r := range t.routes {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Single returns the table of the one-line form AUTHPROXY_UPSTREAM: every
// host and path to upstream.
func Single(upstream *url.URL, passHost bool) (*Table, error) {
	if err := checkUpstream(upstream); err != "" {
		return nil, errors.New("route: upstream " + err)
	}
	return build([]*Route{{Host: Any, Path: "/", prefix: "/", Upstream: upstream,
		Options: Options{PassHost: passHost, MaxConns: -1}}}), nil
}

// build indexes routes.
func build(routes []*Route) *Table {
	t := &Table{routes: routes, exact: map[string][]*Route{}}
	for i, r := range routes {
		r.Index = i
		switch {
		case r.Host == Any:
			t.any = append(t.any, r)
		case strings.HasPrefix(r.Host, "*."):
			suffix := r.Host[1:]
			j := slices.IndexFunc(t.wildcard, func(w hostRoutes) bool { return w.suffix == suffix })
			if j < 0 {
				t.wildcard = append(t.wildcard, hostRoutes{suffix: suffix})
				j = len(t.wildcard) - 1
			}
			t.wildcard[j].routes = append(t.wildcard[j].routes, r)
		default:
			t.exact[r.Host] = append(t.exact[r.Host], r)
		}
	}
	byPrefix := func(a, b *Route) int { return len(b.prefix) - len(a.prefix) }
	for _, rs := range t.exact {
		slices.SortStableFunc(rs, byPrefix)
	}
	for _, w := range t.wildcard {
		slices.SortStableFunc(w.routes, byPrefix)
	}
	slices.SortStableFunc(t.any, byPrefix)
	slices.SortStableFunc(t.wildcard, func(a, b hostRoutes) int { return len(b.suffix) - len(a.suffix) })
	return t
}

// HostName reads a Host header (host[:port]) the way the routes match it:
// the name in lower case, without a trailing dot, and the port. It refuses
// (ok false) what is not a plain DNS name, IPv4 or bracketed IPv6 address:
// non-ASCII (IDN must arrive as xn--), %-escapes, empty labels, userinfo,
// a bad port. It allocates only for a name not already in that form.
func HostName(host string) (name, port string, ok bool) {
	if host == "" || len(host) > 260 {
		return "", "", false
	}
	if host[0] == '[' {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", "", false
		}
		a, err := netip.ParseAddr(host[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", "", false
		}
		name, rest := host[:end+1], host[end+1:]
		if rest != "" {
			if rest[0] != ':' || !validPort(rest[1:]) {
				return "", "", false
			}
			port = rest[1:]
		}
		if hasUpper(name) {
			name = strings.ToLower(name)
		}
		return name, port, true
	}
	name = host
	if i := strings.IndexByte(host, ':'); i >= 0 {
		name, port = host[:i], host[i+1:]
		if !validPort(port) {
			return "", "", false
		}
	}
	name = strings.TrimSuffix(name, ".")
	if !validName(name) {
		return "", "", false
	}
	if hasUpper(name) {
		name = strings.ToLower(name)
	}
	return name, port, true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

// validName accepts a DNS name (letters, digits, - and _, labels of 1 to 63
// bytes, 253 in all), which includes IPv4 addresses.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		if label++; label > 63 {
			return false
		}
	}
	return label > 0
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// Parse reads a routes file. name prefixes the error messages
// ("routes.txt:4: ..."); the error lists every problem, one per line, up to
// a hundred.
func Parse(name string, r io.Reader) (*Table, error) {
	p := parser{name: name}
	err := lines.Read(r, maxLineLen, p.line, func(n int) {
		p.errorf(n, "line too long (more than %d bytes)", maxLineLen)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(p.problems) == 0 && len(p.routes) == 0 {
		p.problems = append(p.problems, fmt.Errorf("%s: no routes", name))
	}
	if len(p.problems) > 0 {
		if p.dropped > 0 {
			p.problems = append(p.problems, fmt.Errorf("%s: and %d more problems", name, p.dropped))
		}
		return nil, errors.Join(p.problems...)
	}
	return build(p.routes), nil
}

type parser struct {
	name     string
	routes   []*Route
	problems []error
	dropped  int
}

func (p *parser) errorf(line int, format string, args ...any) {
	if len(p.problems) >= maxProblems {
		p.dropped++
		return
	}
	p.problems = append(p.problems, fmt.Errorf("%s:%d: %s", p.name, line, fmt.Sprintf(format, args...)))
}

func (p *parser) line(n int, b []byte) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if n == 1 {
		b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	}
	fields, err := lines.Fields(b, maxLineLen)
	if err != nil {
		p.errorf(n, "%v", err)
		return
	}
	if len(fields) == 0 {
		return
	}
	if len(fields) < 3 {
		// Not quoted: a routes setting pointed at the wrong file (the
		// identity key, a secret, a .env in the same mounted directory)
		// would put its secrets into the log and check-config's output.
		p.errorf(n, "want HOST PATH UPSTREAM [OPTIONS...], got %d field(s) (the line is not shown, in case this is not a routes file)", len(fields))
		return
	}
	before := len(p.problems) + p.dropped
	r := &Route{Line: n, Options: Options{MaxConns: -1}}
	r.Host = p.host(n, fields[0])
	r.Path, r.prefix = p.path(n, fields[1])
	r.Upstream = p.upstream(n, fields[2])
	p.options(n, r, fields[3:])
	if len(p.problems)+p.dropped > before {
		return
	}
	for _, o := range p.routes {
		if o.Host == r.Host && o.prefix == r.prefix {
			p.errorf(n, "host %s and path %s are already routed on line %d", r.Host, r.Path, o.Line)
			return
		}
	}
	p.routes = append(p.routes, r)
}

// host checks a host field: *, *.suffix or a name.
func (p *parser) host(n int, s string) string {
	if s == Any {
		return s
	}
	name, wildcard := s, false
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		name, wildcard = rest, true
	}
	switch {
	case strings.ContainsFunc(name, func(r rune) bool { return r >= utf8.RuneSelf }):
		p.errorf(n, "host %q: write international names in their ASCII form (xn--...)", s)
	case strings.Contains(name, "*"):
		p.errorf(n, "host %q: the only wildcards are * alone and a leading *.", s)
	case strings.ContainsAny(name, "/@[]%"):
		p.errorf(n, "host %q is not a host name", s)
	case strings.Contains(name, ":"):
		p.errorf(n, "host %q: no port; routes match a host whatever its port", s)
	case strings.HasSuffix(name, "."):
		p.errorf(n, "host %q: write it without the trailing dot", s)
	case !validName(name):
		p.errorf(n, "host %q is not a host name", s)
	case wildcard && !strings.Contains(name, "."):
		p.errorf(n, "host %q: a wildcard needs a suffix of at least two labels, such as *.example.com", s)
	default:
		return strings.ToLower(s)
	}
	return s
}

// path checks a path field: a prefix such as /api/, in plain ASCII.
func (p *parser) path(n int, s string) (path, prefix string) {
	if !strings.HasPrefix(s, "/") {
		p.errorf(n, "path %q must start with /", s)
		return s, s
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return r >= utf8.RuneSelf || strings.ContainsRune(`\;%?#*"<>^{|}`+"`", r)
	}); i >= 0 {
		c, _ := utf8.DecodeRuneInString(s[i:])
		if c >= utf8.RuneSelf {
			p.errorf(n, "path %q: route paths are plain ASCII", s)
		} else {
			p.errorf(n, "path %q must not contain %q (paths are prefixes, without wildcards or escapes)", s, c)
		}
		return s, s
	}
	prefix, problem := lines.Prefix(s)
	if problem != "" {
		p.errorf(n, "path %q %s", s, problem)
	}
	return s, prefix
}

func (p *parser) upstream(n int, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		p.errorf(n, "upstream %q is not a URL", redact(s))
		return nil
	}
	if why := checkUpstream(u); why != "" {
		p.errorf(n, "upstream %q %s", redact(s), why)
		return nil
	}
	return u
}

// checkUpstream says what is wrong with an upstream URL, or "".
func checkUpstream(u *url.URL) string {
	switch {
	case u == nil:
		return "is missing"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http:// or https:// URL"
	case u.Host == "":
		return "has no host"
	case u.User != nil:
		return "must not carry a user or password"
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "must not have a query or fragment"
	}
	return ""
}

// redact hides the password of a URL that failed to parse as one.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.LastIndex(s[i+3:], "@"); j >= 0 {
			return s[:i+3] + "[redacted]@" + s[i+3+j+1:]
		}
	}
	return s
}

func (p *parser) options(n int, r *Route, fields []string) {
	var seen []string
	for _, f := range fields {
		key, val, hasVal := strings.Cut(f, "=")
		if slices.Contains(seen, key) {
			p.errorf(n, "option %s given twice", key)
			continue
		}
		seen = append(seen, key)
		switch {
		case key == "strip-prefix" && !hasVal:
			r.StripPrefix = true
		case key == "pass-host" && !hasVal:
			r.PassHost = true
		case key == "timeout" && hasVal:
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				p.errorf(n, "timeout %q must be a duration like 30s or 5m", val)
			}
			r.Timeout = d
		case key == "max-conns" && hasVal:
			c, err := strconv.Atoi(val)
			if err != nil || c < 0 {
				p.errorf(n, "max-conns %q must be a whole number ≥ 0 (0: no cap)", val)
			}
			r.MaxConns = c
		case key == "preserve-host":
			p.errorf(n, "unknown option %q: write pass-host", f)
		case key == "strip-prefix" || key == "pass-host":
			p.errorf(n, "option %s takes no value", key)
		case key == "timeout" || key == "max-conns":
			p.errorf(n, "option %s needs a value: %s=...", key, key)
		default:
			p.errorf(n, "unknown option %q (want strip-prefix, pass-host, timeout=DURATION or max-conns=N)", f)
		}
	}
	if r.StripPrefix && r.prefix == "/" {
		p.errorf(n, "strip-prefix on / strips nothing")
	}
}
