package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/authproxy/authproxy/internal/lines"
	"github.com/authproxy/authproxy/proxy/route"
)

const (
	// maxLineLen bounds one line of a rules file; a long list of addresses
	// fits, a binary file does not.
	maxLineLen = 16 << 10
	// maxProblems bounds the errors Parse reports for one file.
	maxProblems = 100
	// flagUnverifiedEmailOK lifts the email_verified requirement of a rule.
	flagUnverifiedEmailOK = "unverified-email-ok"
)

// Kind is what a rule does with the requests it decides.
type Kind int

// The kinds of rule.
const (
	KindPublic Kind = iota + 1 // anyone passes
	KindAllow                  // logged-in users that meet a condition pass
	KindDeny                   // nobody passes
)

// String returns the kind as written in a rules file.
func (k Kind) String() string {
	switch k {
	case KindPublic:
		return "public"
	case KindAllow:
		return "allow"
	case KindDeny:
		return "deny"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Rules is a parsed rules file. It holds at least one rule and is safe for
// concurrent use.
type Rules struct {
	rules []*Rule
	// foldCase matches paths as an upstream that ignores case reads them.
	foldCase bool
}

// Options changes how a rules file is read.
type Options struct {
	// CaseInsensitive says that the upstream serves /ADMIN as /admin (IIS,
	// ASP.NET, case-insensitive file systems): rule paths and request paths
	// are then compared in lower case.
	CaseInsensitive bool
}

// Rule is one line of a rules file.
type Rule struct {
	kind    Kind
	methods []string // nil for *
	// host is the one host the rule applies to, "" for every host.
	host   string
	path   string // as written, without the host
	prefix string // path without its trailing slash; "/" for the root
	conds  []condition
	// unverifiedEmailOK lifts the email_verified requirement.
	unverifiedEmailOK bool
	file              string
	line              int
	// head is "file:line: rule", the start of every reason it gives.
	head string
}

// Kind returns what the rule does.
func (r *Rule) Kind() Kind { return r.kind }

// Methods returns the rule's methods, or nil when it takes every method.
func (r *Rule) Methods() []string { return slices.Clone(r.methods) }

// Path returns the rule's path prefix as written, without its host.
func (r *Rule) Path() string { return r.path }

// Host returns the host the rule is scoped to (written before its path, as
// in wiki.example.com/admin/), or "" when it applies to every host.
func (r *Rule) Host() string { return r.host }

// File returns the name of the rules file the rule comes from.
func (r *Rule) File() string { return r.file }

// Line returns the rule's line number in its file.
func (r *Rule) Line() int { return r.line }

// String returns the rule as one normalized line, without its position.
func (r *Rule) String() string {
	return strings.Join(r.fields(), " ")
}

// fields returns the rule's normalized fields.
func (r *Rule) fields() []string {
	methods := "*"
	if r.methods != nil {
		methods = strings.Join(r.methods, ",")
	}
	f := []string{r.kind.String(), methods, r.host + r.path}
	for _, c := range r.conds {
		f = append(f, c.String())
	}
	if r.unverifiedEmailOK {
		f = append(f, flagUnverifiedEmailOK)
	}
	return f
}

// takesMethod reports whether the rule applies to method.
func (r *Rule) takesMethod(method string) bool {
	return r.methods == nil || slices.Contains(r.methods, method)
}

// takesHost reports whether the rule applies to the host name (from
// route.HostName).
func (r *Rule) takesHost(host string) bool { return r.host == "" || r.host == host }

// covers reports whether the rule's path matches the cleaned path p.
func (r *Rule) covers(p string) bool {
	return r.prefix == "/" || p == r.prefix ||
		strings.HasPrefix(p, r.prefix) && p[len(r.prefix)] == '/'
}

// coversMethods reports whether every method of o is one of r's.
func (r *Rule) coversMethods(o *Rule) bool {
	if r.methods == nil {
		return true
	}
	if o.methods == nil {
		return false
	}
	for _, m := range o.methods {
		if !slices.Contains(r.methods, m) {
			return false
		}
	}
	return true
}

// String returns the rules as a normalized rules file with aligned columns;
// Parse reads it back to the same rules.
func (rs *Rules) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rs.rules {
		f := r.fields()
		// Conditions and flags share the last column.
		if len(f) > 3 {
			f = append(f[:3], strings.Join(f[3:], "  "))
		}
		fmt.Fprintln(tw, strings.Join(f, "\t"))
	}
	tw.Flush()
	return b.String()
}

// Hosts returns, sorted, the hosts that rules are scoped to.
func (rs *Rules) Hosts() []string {
	var hosts []string
	for _, r := range rs.rules {
		if r.host != "" {
			hosts = append(hosts, r.host)
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// ClaimNames returns, sorted, the names of the claims that the rules'
// conditions read, so that a session can keep only those. It includes email
// and email_verified when any rule has an email condition.
func (rs *Rules) ClaimNames() []string {
	var names []string
	for _, r := range rs.rules {
		for _, c := range r.conds {
			switch c.kind {
			case condEmail, condEmailDomain:
				names = append(names, "email", "email_verified")
			case condClaim:
				names = append(names, c.name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Parse reads a rules file. name prefixes error messages and reasons
// ("rules.txt:4: ..."). The error lists every problem in the file, one per
// line, up to a hundred.
func Parse(name string, r io.Reader) (*Rules, error) {
	return ParseWith(name, r, Options{})
}

// ParseWith is Parse with options.
func ParseWith(name string, r io.Reader, o Options) (*Rules, error) {
	p := parser{name: name}
	err := lines.Read(r, maxLineLen, p.line, func(n int) {
		p.errorf(n, "line too long (more than %d bytes)", maxLineLen)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(p.problems) == 0 && len(p.rules) == 0 {
		p.problems = append(p.problems, fmt.Errorf(
			"%s: no rules (without a rules file, every logged-in user passes)", name))
	}
	if len(p.problems) > 0 {
		if p.dropped > 0 {
			p.problems = append(p.problems, fmt.Errorf("%s: and %d more problems", name, p.dropped))
		}
		return nil, errors.Join(p.problems...)
	}
	if o.CaseInsensitive {
		for _, r := range p.rules {
			r.prefix = strings.ToLower(r.prefix)
		}
	}
	return &Rules{rules: p.rules, foldCase: o.CaseInsensitive}, nil
}

// parser collects the rules and problems of one file.
type parser struct {
	name     string
	rules    []*Rule
	problems []error
	dropped  int
}

func (p *parser) errorf(line int, format string, args ...any) {
	if len(p.problems) >= maxProblems {
		p.dropped++
		return
	}
	p.problems = append(p.problems,
		fmt.Errorf("%s:%d: %s", p.name, line, fmt.Sprintf(format, args...)))
}

// line parses line n, without or with its newline.
func (p *parser) line(n int, b []byte) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if n == 1 {
		b = bytes.TrimPrefix(b, []byte("\uFEFF")) // a BOM from a Windows editor
	}
	fields, err := lines.Fields(b, maxLineLen)
	if err != nil {
		p.errorf(n, "%v", err)
		return
	}
	if len(fields) == 0 {
		return
	}
	// A line that does not start with a kind is not a rule, and is not
	// quoted: a rules setting pointed at the wrong file (the identity key,
	// a secret, a .env in the same mounted directory) would put its
	// secrets into the log and check-config's output. A short word that
	// could be a misspelt kind is still shown.
	switch fields[0] {
	case "public", "allow", "deny":
	default:
		if len(fields) < 3 || len(fields[0]) > maxKindTypo {
			p.errorf(n, "not a rule: it does not start with public, allow or deny (the line is not shown, in case this is not a rules file)")
			return
		}
	}
	if len(fields) < 3 {
		p.errorf(n, "want KIND METHODS PATH [CONDITIONS...], got %q", strings.Join(fields, " "))
		return
	}
	r := &Rule{file: p.name, line: n}
	before := len(p.problems) + p.dropped
	if r.kind = p.kind(n, fields[0]); r.kind == 0 {
		return // not a rule: the rest of the line is not judged (nor quoted)
	}
	r.methods = p.methods(n, fields[1])
	r.host, r.path, r.prefix = p.hostPath(n, fields[2])
	if r.kind == KindPublic {
		if i := strings.IndexFunc(r.path, func(c rune) bool {
			return c >= utf8.RuneSelf && !unicode.IsLetter(c) && !unicode.IsMark(c) && !unicode.IsNumber(c)
		}); i >= 0 {
			c, _ := utf8.DecodeRuneInString(r.path[i:])
			p.errorf(n, "path %q: %U is neither a letter nor a digit, so no request for it is canonical and public", r.path, c)
		}
	}
	p.conditions(n, r, fields[3:])
	if len(p.problems)+p.dropped > before {
		return
	}
	for _, o := range p.rules {
		if o.prefix != r.prefix || o.host != r.host || !o.coversMethods(r) {
			continue
		}
		if o.String() == r.String() {
			p.errorf(n, "duplicate of line %d", o.line)
		} else {
			p.errorf(n, "never applies: line %d has the same path and comes first; "+
				"put the conditions for a path and method on one line", o.line)
		}
		return
	}
	r.head = fmt.Sprintf("%s:%d: %s", r.file, r.line, r)
	p.rules = append(p.rules, r)
}

// maxKindTypo is the longest first word still quoted as a misspelt kind.
const maxKindTypo = 10

func (p *parser) kind(n int, s string) Kind {
	switch s {
	case "public":
		return KindPublic
	case "allow":
		return KindAllow
	case "deny":
		return KindDeny
	}
	p.errorf(n, "unknown kind %q (want public, allow or deny)", s)
	return 0
}

// methods parses "*" (nil) or a comma-separated list of methods.
func (p *parser) methods(n int, s string) []string {
	if s == "*" {
		return nil
	}
	var ms []string
	for _, m := range strings.Split(s, ",") {
		switch {
		case m == "":
			p.errorf(n, "empty method in %q", s)
		case m == "*":
			p.errorf(n, "* in %q: write * alone for every method", s)
		case !isMethod(m):
			if isMethod(strings.ToUpper(m)) {
				p.errorf(n, "method %q must be uppercase: %s", m, strings.ToUpper(m))
			} else {
				p.errorf(n, "bad method %q (want * or uppercase methods separated by commas, such as GET,HEAD)", m)
			}
		case slices.Contains(ms, m):
			p.errorf(n, "method %s listed twice", m)
		default:
			ms = append(ms, m)
		}
	}
	return ms
}

// isMethod reports whether m is an uppercase method token such as GET or
// M-SEARCH.
func isMethod(m string) bool {
	if m == "" || m[0] < 'A' || m[0] > 'Z' {
		return false
	}
	for i := range len(m) {
		c := m[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// hostPath splits a rule's path field into the host it is scoped to ("" for
// every host) and the path, and returns the path's matching prefix.
func (p *parser) hostPath(n int, s string) (host, path, prefix string) {
	if s != "" && s[0] != '/' {
		// A host has a dot (wiki.example.com/); admin/ is a path
		// without its leading slash.
		if h, rest, ok := strings.Cut(s, "/"); ok && strings.ContainsAny(h, ".:@[*") {
			name, port, valid := route.HostName(h)
			switch {
			case strings.HasPrefix(h, "*"):
				p.errorf(n, "path %q: a rule names one host, without wildcards", s)
			case !valid || strings.HasPrefix(name, "["):
				p.errorf(n, "path %q: %q is not a host name", s, h)
			case port != "":
				p.errorf(n, "path %q: no port; a rule applies to its host whatever the port", s)
			case name != h:
				p.errorf(n, "path %q: write the host as %s", s, name)
			}
			host, s = h, "/"+rest
		}
	}
	path, prefix = p.path(n, s)
	return host, path, prefix
}

// path checks a rule's path and returns it with its matching prefix.
func (p *parser) path(n int, s string) (path, prefix string) {
	if !strings.HasPrefix(s, "/") {
		p.errorf(n, "path %q must start with / (or with a host: wiki.example.com/)", s)
		return s, s
	}
	if i := strings.IndexAny(s, `\;%?#*`); i >= 0 {
		switch s[i] {
		case '*':
			if t := strings.TrimRight(s, "*"); !strings.Contains(t, "*") {
				p.errorf(n, "path %q: paths are prefixes without wildcards; write %s", s, t)
			} else {
				p.errorf(n, "path %q: paths are prefixes without wildcards", s)
			}
		case '%':
			p.errorf(n, "path %q: write paths decoded, without %%-escapes", s)
		default:
			p.errorf(n, "path %q must not contain %q", s, s[i])
		}
		return s, s
	}
	prefix, problem := lines.Prefix(s)
	if problem != "" {
		p.errorf(n, "path %q %s", s, problem)
	}
	return s, prefix
}

// conditions parses the conditions and flags after a rule's path.
func (p *parser) conditions(n int, r *Rule, fields []string) {
	hasEmail, hasAny, written := false, false, 0
	for _, f := range fields {
		if f == flagUnverifiedEmailOK {
			if r.unverifiedEmailOK {
				p.errorf(n, "%s given twice", f)
			}
			r.unverifiedEmailOK = true
			continue
		}
		written++
		c, err := parseCondition(f)
		if err != nil {
			p.errorf(n, "%v", err)
			continue
		}
		if slices.Contains(r.conds, c) {
			p.errorf(n, "condition %s given twice", c)
			continue
		}
		hasEmail = hasEmail || c.kind == condEmail || c.kind == condEmailDomain
		hasAny = hasAny || c.kind == condAny
		r.conds = append(r.conds, c)
	}
	switch r.kind {
	case KindAllow:
		if written == 0 {
			p.errorf(n, "allow needs at least one condition (any admits every logged-in user)")
		}
		if hasAny && len(r.conds) > 1 {
			p.errorf(n, "any already admits every logged-in user; drop the other conditions")
		}
		if r.unverifiedEmailOK && !hasEmail {
			p.errorf(n, "%s without an email or email-domain condition", flagUnverifiedEmailOK)
		}
	case KindPublic, KindDeny:
		if len(fields) > 0 {
			p.errorf(n, "%s takes no conditions or flags, got %q", r.kind, strings.Join(fields, " "))
		}
	}
}
