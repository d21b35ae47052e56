package rules

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/authproxy/authproxy/proxy/route"
)

// Outcome is what Decide says about a request. Outcomes are ordered from the
// strictest; the zero value is Deny.
type Outcome int

// The outcomes of Decide.
const (
	Deny      Outcome = iota // nobody passes, or this logged-in user does not: 403
	NeedLogin                // not logged in and the path is not public: log in first
	Allow                    // a logged-in user who may pass
	Public                   // anyone passes
)

// String returns a lowercase name for the outcome.
func (o Outcome) String() string {
	switch o {
	case Deny:
		return "deny"
	case NeedLogin:
		return "need-login"
	case Allow:
		return "allow"
	case Public:
		return "public"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Decision is the answer of Decide.
type Decision struct {
	Outcome Outcome
	// Rule is the rule that decided, nil when no rule matched.
	Rule *Rule
	// Reason says why, for logs and authproxy explain, e.g.
	// "rules.txt:4: allow * /admin/ group:admins (matched group:admins)".
	Reason string
}

// maxReadPath bounds the length of a non-canonical path that Decide reads
// every way an upstream might; a longer one never passes.
const maxReadPath = 4096

// Decide decides a request for no particular host: rules scoped to a host
// never apply. See DecideHost.
func (rs *Rules) Decide(method, rawPath string, claims map[string]any, authenticated bool) Decision {
	return rs.DecideHost(method, "", rawPath, claims, authenticated)
}

// DecideHost decides a request: method, host (the request's routed host,
// as its Host header or route.HostName spells it: any case, port or
// trailing dot is read as route.HostName reads it; "" for none), rawPath
// (the escaped path, r.URL.EscapedPath(), without the query) and, for a
// logged-in user (authenticated), the user's claims. Rules scoped to
// another host, or to any host when host is "", do not apply. A host that
// is not a host name is refused. A nil Rules denies everything.
func (rs *Rules) DecideHost(method, host, rawPath string, claims map[string]any, authenticated bool) Decision {
	if rs == nil || len(rs.rules) == 0 {
		return refuse(authenticated, "no rules")
	}
	if host != "" {
		name, _, ok := route.HostName(host)
		if !ok {
			return refuse(authenticated, fmt.Sprintf("host %s is not a host name", show(host)))
		}
		host = name
	}
	decoded, why := canonical(rawPath)
	if why == "" {
		return rs.decide(method, host, rs.fold(path.Clean(decoded)), claims, authenticated, true)
	}
	if len(rawPath) > maxReadPath {
		// Reading it every way costs time in proportion; no real app
		// needs a path this long that is not canonical.
		return refuse(authenticated, fmt.Sprintf("path of %d bytes is not canonical (%s) and longer than %d", len(rawPath), why, maxReadPath))
	}
	readings, bad := readingsOf(rawPath, rs.foldCase)
	if bad != "" {
		return refuse(authenticated, fmt.Sprintf("path %s %s", show(rawPath), bad))
	}
	// The strictest reading wins; between equals, the first (decoded once).
	var d Decision
	var at string
	for i, p := range readings {
		rd := rs.decide(method, host, p, claims, authenticated, false)
		if i == 0 || rd.Outcome < d.Outcome {
			d, at = rd, p
		}
	}
	d.Reason = fmt.Sprintf("path %s is not canonical (%s), so no public rule applies; read as %s: %s",
		show(rawPath), why, show(at), d.Reason)
	return d
}

// fold lower-cases p when the upstream ignores case.
func (rs *Rules) fold(p string) string {
	if rs.foldCase {
		return strings.ToLower(p)
	}
	return p
}

// refuse answers a request that no rule can let through.
func refuse(authenticated bool, why string) Decision {
	if !authenticated {
		return Decision{Outcome: NeedLogin, Reason: why + " (login required)"}
	}
	return Decision{Outcome: Deny, Reason: why + " (denied)"}
}

// decide applies the rules for host to the cleaned path p; public rules
// count only if public is set. Between rules of the same path, one scoped
// to the host wins over one for every host.
func (rs *Rules) decide(method, host, p string, claims map[string]any, authenticated, public bool) Decision {
	var best *Rule
	for _, r := range rs.rules {
		if r.kind == KindPublic && !public || !r.takesHost(host) || !r.takesMethod(method) || !r.covers(p) {
			continue
		}
		if best == nil || len(r.prefix) > len(best.prefix) || len(r.prefix) == len(best.prefix) && r.host != "" && best.host == "" {
			best = r
		}
	}
	if best == nil {
		if host != "" {
			return refuse(authenticated, fmt.Sprintf("no rule matches %s %s%s", show(method), show(host), show(p)))
		}
		return refuse(authenticated, fmt.Sprintf("no rule matches %s %s", show(method), show(p)))
	}
	head := best.head
	if best.kind == KindPublic {
		return Decision{Outcome: Public, Rule: best, Reason: head}
	}
	if !authenticated {
		return Decision{Outcome: NeedLogin, Rule: best, Reason: head + " (login required)"}
	}
	if best.kind == KindDeny {
		return Decision{Outcome: Deny, Rule: best, Reason: head}
	}
	var unverified []string
	for _, c := range best.conds {
		ok, unv := c.match(claims, best.unverifiedEmailOK)
		if ok {
			return Decision{Outcome: Allow, Rule: best, Reason: head + " (matched " + c.String() + ")"}
		}
		if unv {
			unverified = append(unverified, c.String())
		}
	}
	why := "no condition matched"
	if len(unverified) > 0 {
		why += "; " + strings.Join(unverified, " and ") + " would, but email_verified is not true"
	}
	return Decision{Outcome: Deny, Rule: best, Reason: head + " (" + why + ")"}
}

// Canonical reports whether the escaped path raw is canonical (see the
// package doc): every upstream reads it the same way, so no reading of it
// climbs out of a prefix or lands in another.
func Canonical(raw string) bool {
	_, why := canonical(raw)
	return why == ""
}

// canonical decodes raw and returns it, or says why raw is not canonical:
// a path that every upstream reads the same way (see the package doc).
func canonical(raw string) (decoded, why string) {
	if !strings.HasPrefix(raw, "/") {
		return "", "does not start with /"
	}
	// b holds the decoded path from the first escape on; a path without
	// one decodes to itself, without an allocation.
	var b []byte
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if b == nil {
				b = append(make([]byte, 0, len(raw)), raw[:i]...)
			}
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", "broken %-escape"
			}
			d := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			if d < utf8.RuneSelf && !strings.ContainsRune(" \"<>[]^`{|}", rune(d)) {
				return "", raw[i:i+3] + " escapes " + strconv.QuoteRuneToASCII(rune(d))
			}
			b = append(b, d)
			i += 2
			continue
		}
		switch {
		case c < 0x20 || c == 0x7f:
			return "", "control character"
		case c >= utf8.RuneSelf:
			return "", "unescaped non-ASCII byte"
		case c == ';':
			return "", "; starts path parameters"
		case c == '\\':
			return "", `\ is a separator for some servers`
		case !isPathChar(c):
			return "", strconv.QuoteRune(rune(c)) + " must be escaped"
		}
		if b != nil {
			b = append(b, c)
		}
	}
	decoded = raw
	if b != nil {
		if !utf8.Valid(b) {
			return "", "escapes decode to invalid UTF-8"
		}
		decoded = string(b)
	}
	for _, r := range decoded {
		if r < utf8.RuneSelf {
			continue
		}
		if !unicode.IsLetter(r) && !unicode.IsMark(r) && !unicode.IsNumber(r) {
			return "", fmt.Sprintf("%U is neither a letter nor a digit", r)
		}
		if !norm.NFKC.IsNormalString(string(r)) {
			return "", fmt.Sprintf("%U is a compatibility form of %q", r, norm.NFKC.String(string(r)))
		}
	}
	for rest := decoded[1:]; rest != ""; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" {
			return "", "empty segment (//)"
		}
		if strings.Trim(seg, ".") == "" {
			return "", "dot segment"
		}
		if strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
			return "", "a segment ends in a dot or space, which Windows servers drop"
		}
		if !more {
			break
		}
		rest = after
	}
	return decoded, ""
}

// isPathChar reports whether c may appear unescaped in a canonical path: an
// RFC 3986 pchar other than ;, or /, [ or ] (which Go leaves unescaped).
func isPathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-._~!$&'()*+,=:@/[]", c) >= 0
}

// maxReadings bounds the readings of one path; a path with more is refused.
const maxReadings = 1024

// readingsOf returns the cleaned paths that upstreams could make of a
// non-canonical raw path, the path decoded once first, or says why the path
// is refused outright. With foldCase every reading is in lower case.
//
// A server may have any of the lenient quirks, in any order (IIS drops a
// segment's trailing dots before a best-fit conversion reads U+FF0F as /;
// one that keeps ? in the path keeps what another would cut), and may clean
// the path before or after each: so the readings are everything a chain of
// quirks and cleanings can make of the decoded forms.
func readingsOf(raw string, foldCase bool) (readings []string, bad string) {
	if !strings.HasPrefix(raw, "/") {
		raw = "/" + raw
	}
	if !validEscapes(raw) {
		return nil, "has a broken %-escape"
	}
	once := decode(raw, false)
	forms := []string{once, raw, decode(raw, true)}
	if twice := decode(once, false); twice != once {
		forms = append(forms, twice)
	}
	// The quirks of the more forgiving servers: overlong UTF-8 and
	// compatibility or look-alike characters read as the ASCII they stand
	// for (NFKC: fullwidth letters, U+2025 for ..), \ taken for /, a ? or #
	// (decoded from %3F, %23) ending the path, ;params dropped from each
	// segment (Tomcat reads /a/..;/b as /b), trailing dots and spaces
	// dropped from each segment (IIS reads /admin./ as /admin/), and dot
	// segments resolved between any two of them.
	quirks := [...]func(string) string{foldCompat, backslashes, endAtQuery, dropParams, trimSegmentEnds, path.Clean}
	seen := make(map[string]bool)
	var queue []string
	add := func(s string) bool {
		if !seen[s] {
			seen[s] = true
			queue = append(queue, s)
		}
		return len(queue) <= maxReadings
	}
	for _, f := range forms {
		add(f)
	}
	for i := 0; i < len(queue); i++ {
		g := queue[i]
		if strings.ContainsFunc(g, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, "has a control character"
		}
		c := path.Clean(g)
		if foldCase {
			c = strings.ToLower(c)
		}
		if !slices.Contains(readings, c) {
			readings = append(readings, c)
		}
		for _, q := range quirks {
			if !add(q(g)) {
				return nil, "has too many readings"
			}
		}
	}
	return readings, ""
}

// validEscapes reports whether every % in s starts a %XX escape.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// decode decodes the %XX escapes of s, leaving broken ones as they are and,
// if keepSlash, %2F too.
func decode(s string, keepSlash bool) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			if d := unhex(s[i+1])<<4 | unhex(s[i+2]); d != '/' || !keepSlash {
				b = append(b, d)
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

// foldCompat reads overlong UTF-8, compatibility forms and look-alikes as
// the ASCII they imitate.
func foldCompat(s string) string {
	s = norm.NFKC.String(foldOverlong(s))
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if a := lookAlike(r); a != "" {
			b.WriteString(a)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func backslashes(s string) string { return strings.ReplaceAll(s, `\`, "/") }

func endAtQuery(s string) string {
	s, _, _ = strings.Cut(s, "?")
	s, _, _ = strings.Cut(s, "#")
	return s
}

// dropParams drops each segment's ;params.
func dropParams(s string) string {
	return eachSegment(s, func(seg string) string {
		seg, _, _ = strings.Cut(seg, ";")
		return seg
	})
}

// trimSegmentEnds drops the trailing dots and spaces of each segment that
// is not made of dots only, as Windows does with file names.
func trimSegmentEnds(s string) string {
	return eachSegment(s, func(seg string) string {
		if t := strings.TrimRight(seg, ". "); t != "" && strings.Trim(seg, ".") != "" {
			return t
		}
		return seg
	})
}

func eachSegment(s string, f func(string) string) string {
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		segs[i] = f(seg)
	}
	return strings.Join(segs, "/")
}

// foldOverlong decodes overlong UTF-8 sequences (%C0%AE for .), which
// old decoders accepted.
func foldOverlong(s string) string {
	cont := func(i int) bool { return i < len(s) && s[i]&0xC0 == 0x80 }
	var b []byte
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case (c == 0xC0 || c == 0xC1) && cont(i+1):
			b = append(b, (c&0x1F)<<6|s[i+1]&0x3F)
			i += 2
		case c == 0xE0 && cont(i+1) && s[i+1] < 0xA0 && cont(i+2):
			b = utf8.AppendRune(b, rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F))
			i += 3
		case c == 0xF0 && cont(i+1) && s[i+1] < 0x90 && cont(i+2) && cont(i+3):
			b = utf8.AppendRune(b, rune(s[i+1]&0x3F)<<12|rune(s[i+2]&0x3F)<<6|rune(s[i+3]&0x3F))
			i += 4
		default:
			b = append(b, c)
			i++
		}
	}
	return string(b)
}

// lookAlike returns the ASCII that r imitates in paths (NFKC or to the eye),
// or "".
func lookAlike(r rune) string {
	switch r {
	case '\uFF0F', '\u2215', '\u2044', '\u29F8': // fullwidth, division, fraction, big solidus
		return "/"
	case '\uFF3C', '\uFE68', '\u29F5', '\u29F9': // fullwidth, small, reverse solidus operator, big reverse solidus
		return `\`
	case '\uFF0E', '\u2024', '\uFE52', '\u3002', '\uFF61': // fullwidth, one dot leader, small, ideographic full stops
		return "."
	case '\u2025': // two dot leader
		return ".."
	case '\u2026': // ellipsis
		return "..."
	case '\uFF1B', '\uFE54', '\u037E': // fullwidth, small semicolon, Greek question mark
		return ";"
	case '\uFF1F', '\uFE56': // fullwidth, small question mark
		return "?"
	case '\uFF03', '\uFE5F': // fullwidth, small number sign
		return "#"
	}
	return ""
}

// show returns s as is if it is printable ASCII without spaces, else quoted.
func show(s string) string {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}
