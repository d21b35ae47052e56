package rules

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/authproxy/authproxy/proxy/route"
)

// example is the rules file of the brief, with a few more lines.
const example = `# kind    methods     path        conditions (any one suffices)
public    GET,HEAD    /healthz
public    GET         /static/
allow     *           /admin/     group:admins  email:root@example.com
allow     GET,POST    /           email-domain:example.com
allow     GET         /reports/   claim:https://example.com/roles=analyst
allow     *           /partners/  email-domain:*.partner.example  unverified-email-ok
allow     *           /beta/      claim:beta=true  claim:level=3
allow     GET         /tie/       group:first
allow     GET,POST    /tie/       group:second
deny      *           /internal/
allow     *           /everyone/  any   # trailing comment
allow     *           /k/         email:k@example.com
`

func mustParse(t testing.TB, name, text string) *Rules {
	t.Helper()
	rs, err := Parse(name, strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return rs
}

func TestParseExample(t *testing.T) {
	rs := mustParse(t, "rules.txt", example)
	if got := len(rs.rules); got != 12 {
		t.Fatalf("got %d rules, want 12", got)
	}
	r := rs.rules[2]
	if r.Kind() != KindAllow || r.Path() != "/admin/" || r.Methods() != nil || r.File() != "rules.txt" || r.Line() != 4 {
		t.Errorf("rule 3 = %v %v %q %v %s:%d", r.Kind(), r.Methods(), r.Path(), r.Methods(), r.File(), r.Line())
	}
	if got, want := r.String(), "allow * /admin/ group:admins email:root@example.com"; got != want {
		t.Errorf("Rule.String() = %q, want %q", got, want)
	}
	if got, want := rs.rules[0].Methods(), []string{"GET", "HEAD"}; !slices.Equal(got, want) {
		t.Errorf("Methods() = %q, want %q", got, want)
	}
	want := []string{"beta", "email", "email_verified", "groups", "https://example.com/roles", "level"}
	if got := rs.ClaimNames(); !slices.Equal(got, want) {
		t.Errorf("ClaimNames() = %q, want %q", got, want)
	}
}

func TestParseTolerates(t *testing.T) {
	for name, text := range map[string]string{
		"CRLF":           "public GET /healthz\r\nallow * / any\r\n",
		"BOM":            "\uFEFFpublic GET /healthz\n",
		"no newline":     "public GET /healthz",
		"tabs":           "public\tGET\t/healthz\t# comment\n",
		"comment inside": "allow * / group:a#b\n",
	} {
		if _, err := Parse(name, strings.NewReader(text)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "\n\n", "# only a comment\n   \n"} {
		rs, err := Parse("rules.txt", strings.NewReader(text))
		if err == nil || rs != nil || !strings.Contains(err.Error(), "rules.txt: no rules") {
			t.Errorf("Parse(%q) = %v, %v; want a no-rules error", text, rs, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	lines := []struct {
		text string
		want string // "" for a valid line
	}{
		{"# a bad file", ""},
		{"alow * /x any", `unknown kind "alow"`},
		{"allow get /x any", `method "get" must be uppercase: GET`},
		{"allow GET,,POST /x any", "empty method"},
		{"allow * admin/ any", `path "admin/" must start with /`},
		{"allow * /x role:admin", `unknown condition "role:admin"`},
		{"allow * /y", "allow needs at least one condition"},
		{"public GET /z any", "public takes no conditions"},
		{"deny * /w group:x", "deny takes no conditions"},
		{"allow * /a group:admins", ""},
		{"allow  *  /a  claim:groups=admins", "duplicate of line 10"},
		{"allow * /a/ email:root@example.com", "never applies: line 10"},
		{"allow * /static/* any", "without wildcards; write /static/"},
		{"allow * /a/../b any", "has a .. segment"},
		{"allow * /c email-domain:@example.com", "write the domain without @"},
		{"allow * /c claim:roles", "want claim:NAME=VALUE"},
		{"allow * /d any group:x", "any already admits"},
		{"allow * /e group:x unverified-email-ok", "unverified-email-ok without an email"},
		{"allow * /f email:*@example.com", "no wildcards in addresses"},
		{"allow * /g group:%zz", "bad %-escape"},
		{"allow GET,*", "want KIND METHODS PATH"},
		{"allow * /h group:a group:a", "condition group:a given twice"},
		{"allow * /i claim:email=a@example.com", "write email:a@example.com"},
		{"allow * /j " + strings.Repeat("group:x ", 3000), "line too long"},
		{"allow * /j GROUP:x", `unknown condition "GROUP:x"`},
		{"allow * /k email-domain:example..com", "empty label"},
		{"allow GET,GET /l any", "method GET listed twice"},
		{"public * /m unverified-email-ok", "public takes no conditions or flags"},
		{"allow * /n%20x any", "write paths decoded"},
		{"allow * /o\x01 any", "control character"},
		{"allow GET /p any # a comment", ""},
		{"allow * /q unverified-email", "unknown flag"},
		{"allow * /r;x any", `must not contain ';'`},
		{"allow * //s any", "empty segment"},
		{"allow * /t email-domain:ex*ample.com", "* only as a leading *."},
		{"deny GET /p", "never applies: line 31"},
		{"allow GET,POST /p/ group:x", ""}, // POST is new: it applies
		{"\xff", "not valid UTF-8"},
		{"allow * wiki.example.com/u any", ""},
		{"allow * WIKI.example.com/v any", "write the host as wiki.example.com"},
		{"allow * wiki.example.com./w any", "write the host as wiki.example.com"},
		{"allow * wiki.example.com:443/x any", "no port"},
		{"allow * *.example.com/y any", "without wildcards"},
		{"allow * wiki..example.com/z any", "is not a host name"},
		{"allow * user@wiki.example.com/z any", "is not a host name"},
		{"allow * [::1]/z any", "is not a host name"},
		{"allow * wiki.example.com any", "must start with /"},
		{"allow * wiki.example.com/u group:x", "never applies"},
		{"allow * other.example.com/u group:x", ""},
		{"public GET /a‥b", "U+2025 is neither a letter nor a digit"},
		{"allow * /a‥b any", ""},
		{"allow * /u*/v any", "paths are prefixes without wildcards"},
		{"public GET /healthz", ""},
	}
	var text strings.Builder
	var want []string
	for i, l := range lines {
		text.WriteString(l.text + "\n")
		if l.want != "" {
			want = append(want, "bad.txt:"+strconv.Itoa(i+1)+": ")
		}
	}
	rs, err := Parse("bad.txt", strings.NewReader(text.String()))
	if err == nil {
		t.Fatalf("Parse returned %d rules and no error", len(rs.rules))
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("error %T is not a list", err)
	}
	errs := joined.Unwrap()
	if len(errs) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, l := range lines {
		prefix := "bad.txt:" + strconv.Itoa(i+1) + ": "
		var found []string
		for _, e := range errs {
			if strings.HasPrefix(e.Error(), prefix) {
				found = append(found, e.Error())
			}
		}
		switch {
		case l.want == "" && len(found) > 0:
			t.Errorf("line %d %q: unexpected %q", i+1, l.text, found)
		case l.want != "" && len(found) != 1:
			t.Errorf("line %d %q: got %q, want one problem with %q", i+1, l.text, found, l.want)
		case l.want != "" && !strings.Contains(found[0], l.want):
			t.Errorf("line %d: got %q, want %q", i+1, found[0], l.want)
		}
	}
}

func TestParseReportsEveryProblemOfALine(t *testing.T) {
	_, err := Parse("r", strings.NewReader("allow get admin/ role:x\n"))
	for _, want := range []string{"r:1: method", "r:1: path", "r:1: unknown condition"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestParseCapsProblems(t *testing.T) {
	_, err := Parse("r", strings.NewReader(strings.Repeat("bad\n", 500)))
	if err == nil || !strings.Contains(err.Error(), "and 400 more problems") {
		t.Errorf("got %v", err)
	}
}

func TestStringRoundTrip(t *testing.T) {
	text := example + `allow * /ad/ group:Domain%20Admins claim:https://x.example/a%3Db=cn=admins,dc=example email:Root@Example.COM
allow * /cafés/ claim:tag=%25off group:%C2%A0nbsp
`
	rs := mustParse(t, "a.txt", text)
	out := rs.String()
	rs2 := mustParse(t, "b.txt", out)
	if out2 := rs2.String(); out2 != out {
		t.Errorf("String() does not round-trip:\n%s\n---\n%s", out, out2)
	}
	for _, want := range []string{
		"allow   *         /admin/     group:admins  email:root@example.com\n",
		"group:Domain%20Admins  claim:https://x.example/a%3Db=cn=admins,dc=example  email:root@example.com\n",
		"claim:tag=%25off  group:%C2%A0nbsp\n",
		"public  GET,HEAD  /healthz\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("String() lacks %q:\n%s", want, out)
		}
	}
	ad := rs2.rules[len(rs2.rules)-2]
	if got := ad.conds[1]; got.name != "https://x.example/a=b" || got.value != "cn=admins,dc=example" {
		t.Errorf("claim condition = %+v", got)
	}
}

// claims builds a verified user's claims.
func claims(email string, kv ...any) map[string]any {
	c := map[string]any{"email": email, "email_verified": true}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func TestDecide(t *testing.T) {
	rs := mustParse(t, "rules.txt", example)
	alice := claims("alice@example.com", "groups", []any{"dev", "admins"})
	bob := claims("bob@example.com", "groups", []any{"dev"}, "https://example.com/roles", []any{"viewer", "analyst"})
	tests := []struct {
		name     string
		method   string
		path     string
		claims   map[string]any
		anon     bool
		want     Outcome
		line     int // of the deciding rule, 0 for none
		inReason string
	}{
		{"public healthz", "GET", "/healthz", nil, true, Public, 2, "rules.txt:2: public GET,HEAD /healthz"},
		{"public HEAD", "HEAD", "/healthz", nil, true, Public, 2, ""},
		{"public method mismatch", "POST", "/healthz", nil, true, NeedLogin, 5, "login required"},
		{"public under prefix", "GET", "/static/js/app.js", nil, true, Public, 3, ""},
		{"public for a user too", "GET", "/static/app.js", alice, false, Public, 3, ""},
		{"group in list", "GET", "/admin/users", alice, false, Allow, 4, "(matched group:admins)"},
		{"group missing", "GET", "/admin/users", bob, false, Deny, 4, "(no condition matched)"},
		{"email any case", "DELETE", "/admin", claims("ROOT@Example.com"), false, Allow, 4, "(matched email:root@example.com)"},
		{"email unverified", "GET", "/admin", claims("root@example.com", "email_verified", false), false, Deny, 4, "email:root@example.com would, but email_verified is not true"},
		{"email_verified missing", "GET", "/admin", map[string]any{"email": "root@example.com"}, false, Deny, 4, ""},
		{"email_verified string", "GET", "/admin", claims("root@example.com", "email_verified", "true"), false, Allow, 4, ""},
		{"email_verified other string", "GET", "/admin", claims("root@example.com", "email_verified", "yes"), false, Deny, 4, ""},
		{"Kelvin sign is not k", "GET", "/k/", claims("\u212A@example.com"), false, Deny, 13, ""},
		{"anonymous on allow", "GET", "/admin/", nil, true, NeedLogin, 4, "rules.txt:4: allow * /admin/ group:admins email:root@example.com (login required)"},
		{"segment boundary", "GET", "/administrator", bob, false, Allow, 5, "(matched email-domain:example.com)"},
		{"domain any case", "GET", "/x", claims("Carol@EXAMPLE.COM"), false, Allow, 5, ""},
		{"domain unverified", "GET", "/x", claims("m@example.com", "email_verified", false), false, Deny, 5, "would, but email_verified"},
		{"no subdomain", "GET", "/x", claims("x@sub.example.com"), false, Deny, 5, ""},
		{"domain is after last @", "GET", "/x", claims(`"a@example.com"@evil.test`), false, Deny, 5, ""},
		{"lookalike domain", "GET", "/x", claims("x@example.com.evil.test"), false, Deny, 5, ""},
		{"empty local part", "GET", "/x", claims("@example.com"), false, Deny, 5, ""},
		{"email not a string", "GET", "/x", claims("", "email", []any{"x@example.com"}), false, Deny, 5, ""},
		{"no claims", "GET", "/x", nil, false, Deny, 5, ""},
		{"Auth0 namespaced list", "GET", "/reports/q", bob, false, Allow, 6, "(matched claim:https://example.com/roles=analyst)"},
		{"Auth0 namespaced string", "GET", "/reports/", claims("z@other.test", "https://example.com/roles", "analyst"), false, Allow, 6, ""},
		{"Auth0 []string", "GET", "/reports/", claims("z@other.test", "https://example.com/roles", []string{"analyst"}), false, Allow, 6, ""},
		{"longest prefix wins", "GET", "/reports/q", alice, false, Deny, 6, ""},
		{"method mismatch falls back", "POST", "/reports/q", alice, false, Allow, 5, ""},
		{"wildcard subdomain unverified ok", "GET", "/partners/x", claims("p@eu.partner.example", "email_verified", false), false, Allow, 7, "(matched email-domain:*.partner.example)"},
		{"wildcard deep subdomain", "GET", "/partners/x", claims("p@a.b.partner.example"), false, Allow, 7, ""},
		{"wildcard not apex", "GET", "/partners/x", claims("p@partner.example"), false, Deny, 7, ""},
		{"wildcard not suffix", "GET", "/partners/x", claims("p@evilpartner.example"), false, Deny, 7, ""},
		{"bool claim", "PUT", "/beta/", claims("z@other.test", "beta", true), false, Allow, 8, "(matched claim:beta=true)"},
		{"bool claim false", "PUT", "/beta/", claims("z@other.test", "beta", false), false, Deny, 8, ""},
		{"number claim", "PUT", "/beta/x", claims("z@other.test", "level", float64(3)), false, Allow, 8, "(matched claim:level=3)"},
		{"json.Number claim", "PUT", "/beta/x", claims("z@other.test", "level", json.Number("3")), false, Allow, 8, ""},
		{"int claim", "PUT", "/beta/x", claims("z@other.test", "level", 3), false, Allow, 8, ""},
		{"number in list", "PUT", "/beta/x", claims("z@other.test", "level", []any{float64(1), float64(3)}), false, Allow, 8, ""},
		{"other number", "PUT", "/beta/x", claims("z@other.test", "level", 3.5), false, Deny, 8, ""},
		{"map claim", "PUT", "/beta/x", claims("z@other.test", "level", map[string]any{"3": true}), false, Deny, 8, ""},
		{"tie: first decides", "GET", "/tie/x", claims("z@other.test", "groups", []any{"second"}), false, Deny, 9, ""},
		{"tie: second takes POST", "POST", "/tie/x", claims("z@other.test", "groups", []any{"second"}), false, Allow, 10, ""},
		{"deny", "GET", "/internal/x", alice, false, Deny, 11, "rules.txt:11: deny * /internal/"},
		{"deny anonymous", "GET", "/internal/x", nil, true, NeedLogin, 11, "(login required)"},
		{"any", "GET", "/everyone/", map[string]any{}, false, Allow, 12, "(matched any)"},
		{"no rule matches", "DELETE", "/x", alice, false, Deny, 0, "no rule matches DELETE /x (denied)"},
		{"no rule matches anonymous", "DELETE", "/x", nil, true, NeedLogin, 0, "(login required)"},
		{"methods are case-sensitive", "get", "/healthz", nil, true, NeedLogin, 0, ""},
		{"query never read", "GET", "/admin", bob, false, Deny, 4, ""},
		{"non-canonical reason", "GET", "/static/../admin/", alice, false, Allow, 4, `path /static/../admin/ is not canonical (dot segment), so no public rule applies; read as /admin: rules.txt:4:`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := rs.Decide(tc.method, tc.path, tc.claims, !tc.anon)
			if d.Outcome != tc.want {
				t.Errorf("Outcome = %v, want %v (%s)", d.Outcome, tc.want, d.Reason)
			}
			line := 0
			if d.Rule != nil {
				line = d.Rule.Line()
			}
			if line != tc.line {
				t.Errorf("rule at line %d, want %d (%s)", line, tc.line, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.inReason) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tc.inReason)
			}
		})
	}
}

func TestDecideNil(t *testing.T) {
	var rs *Rules
	if d := rs.Decide("GET", "/", nil, true); d.Outcome != Deny {
		t.Errorf("nil Rules: %v", d.Outcome)
	}
	if d := rs.Decide("GET", "/", nil, false); d.Outcome != NeedLogin {
		t.Errorf("nil Rules, anonymous: %v", d.Outcome)
	}
	var d Decision
	if d.Outcome != Deny {
		t.Errorf("zero Outcome is %v", d.Outcome)
	}
}

// hostileRules makes /public/ and /healthz public and /admin/ strict.
const hostileRules = `public  GET  /public/
public  GET  /healthz
allow   *    /admin/     group:admins
deny    *    /internal/
allow   *    /           any
`

// memberClaims are those of a logged-in user who is not an admin.
func memberClaims() map[string]any {
	return map[string]any{"email": "m@example.com", "email_verified": true, "groups": []any{"dev"}}
}

func TestHostilePaths(t *testing.T) {
	rs := mustParse(t, "hostile.txt", hostileRules)
	scoped := mustParse(t, "scoped.txt", hostileScopedRules)
	tests := []struct {
		target string
		public bool
		// member is what a logged-in non-admin gets; "" skips the check.
		// "deny" on a path that points into /admin/ means no reading let
		// the member slip past the admin rule.
		member string
	}{
		// Traversal out of /public/.
		{"/public/../admin", false, "deny"},
		{"/public/../admin/", false, "deny"},
		{"/public/..%2Fadmin", false, "deny"},
		{"/public/..%2fadmin", false, "deny"},
		{"/public%2F..%2Fadmin", false, "deny"},
		{"/public/%2e%2e/admin", false, "deny"},
		{"/public/%2E%2E/admin", false, "deny"},
		{"/public/.%2e/admin", false, "deny"},
		{"/public/%2e./admin", false, "deny"},
		{"/public/%2e%2e%2fadmin", false, "deny"},
		{"/%2e%2e/admin", false, "deny"},
		{"/public/%2e/../../admin", false, "deny"},
		{"/healthz/../admin", false, "deny"},
		// Empty and dot segments.
		{"//admin", false, "deny"},
		{"/./admin", false, "deny"},
		{"/public//x", false, "allow"},
		{"/public/./x", false, "allow"},
		{"/public/x/..", false, "allow"},
		{"/public/x/%2e", false, "allow"},
		{"/public/...", false, "allow"},
		// Path parameters (Tomcat, Jetty, Spring).
		{"/public/..;/admin", false, "deny"},
		{"/public;/../admin", false, "deny"},
		{"/public/..;x=y/admin", false, "deny"},
		{"/public/..%3B/admin", false, "deny"},
		{"/public/..%3b/admin", false, "deny"},
		{"/public/x;jsessionid=1", false, "allow"},
		{"/admin;/x", false, "deny"},
		// Backslashes (IIS, some Windows and Java servers).
		{`/public\..\admin`, false, "deny"},
		{`/public/..\admin`, false, "deny"},
		{"/public%5c..%5cadmin", false, "deny"},
		{"/public%5C..%5Cadmin", false, "deny"},
		{`/admin\x`, false, "deny"},
		// Query and fragment.
		{"/admin?x=/public", false, "deny"},
		{"/admin#/public", false, "deny"},
		{"/public/..%3F/admin", false, "allow"}, // read as /public/.. at worst,
		{"/public/..%3f/../admin", false, "allow"},
		{"/public/a%23/../../admin", false, "deny"},
		// Case: paths are case-sensitive, /PUBLIC/ is not /public/.
		{"/PUBLIC/", false, "allow"},
		{"/Public/a.css", false, "allow"},
		{"/publicity/x", false, "allow"},
		// Double encoding.
		{"/public/%252e%252e/admin", false, "deny"},
		{"/public/%252e%252e%252fadmin", false, "deny"},
		{"/public%252F..%252Fadmin", false, "deny"},
		{"/public/%2561.css", false, "allow"},
		// Needless escapes of characters that may appear raw.
		{"/%70ublic/a.css", false, "allow"},
		{"/public/%61.css", false, "allow"},
		{"/public/a%2Db", false, "allow"},
		// Control bytes: refused outright.
		{"/public/%00", false, "deny"},
		{"/public/%00/../admin", false, "deny"},
		{"/public/a%09b", false, "deny"},
		{"/public/%0d%0aSet-Cookie:%20x", false, "deny"},
		{"/public/a%7Fb", false, "deny"},
		{"/public/\x00", false, "deny"},
		{"/public/a\tb", false, "deny"},
		{"/public/a\nb", false, "deny"},
		// Unicode look-alikes and overlong UTF-8.
		{"/public/\u2025/admin", false, "deny"},
		{"/public/%E2%80%A5/admin", false, "deny"},
		{"/public%EF%BC%8F..%EF%BC%8Fadmin", false, "deny"},
		{"/public/%EF%BC%8E%EF%BC%8E/admin", false, "deny"},
		{"/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fadmin", false, "deny"},
		{"/public/%E2%88%95x", false, "allow"},
		{"/public/..%EF%BC%BCadmin", false, "deny"},
		{"/public/%c0%ae%c0%ae/admin", false, "deny"},
		{"/public/%c0%ae%c0%ae%c0%afadmin", false, "deny"},
		{"/public/%e0%80%ae%e0%80%ae/admin", false, "deny"},
		{"/public/%C0%AE", false, "allow"},
		{"/public/%E2%80%AEfdp.exe", false, "allow"}, // right-to-left override
		{"/public/caf\u00e9.css", false, "allow"},    // raw, unescaped non-ASCII
		// Trailing dots and spaces, which Windows servers (IIS, ASP.NET)
		// drop from a segment.
		{"/admin./x", false, "deny"},
		{"/admin../x", false, "deny"},
		{"/admin.../x", false, "deny"},
		{"/admin%20/x", false, "deny"},
		{"/admin.%20/x", false, "deny"},
		{"/admin%2e/x", false, "deny"},
		{"/admin%252e/x", false, "deny"},
		{"/admin./", false, "deny"},
		{"/admin.", false, "deny"},
		{"/internal./x", false, "deny"},
		{"/public/a./x", false, "allow"},
		{"/public/c.", false, "allow"},
		// Compatibility forms (NFKC) of ASCII: fullwidth letters,
		// mathematical letters, ligatures, the Kelvin sign.
		{"/%EF%BD%81dmin/x", false, "deny"},                           // U+FF41 fullwidth a
		{"/%EF%BC%A1dmin/x", false, "allow"},                          // U+FF21 fullwidth A reads /Admin: case-sensitive
		{"/adm%E2%85%B0n/x", false, "deny"},                           // U+2170 small roman numeral one
		{"/%F0%9D%90%9Adm%F0%9D%90%A2n/x", false, "deny"},             // U+1D41A, U+1D422 mathematical bold a, i
		{"/ａdmin/x", false, "deny"},                                   // raw
		{"/internal/../%EF%BD%81dmin/x", false, "deny"},               // both
		{"/public/%EF%BC%8E%EF%BC%8E/%EF%BD%81dmin/x", false, "deny"}, // fullwidth dots, then a
		{"/public/%EF%BD%81", false, "allow"},                         // fullwidth a: not canonical
		{"/%EF%AC%81le", false, "allow"},                              // U+FB01 ligature fi: /file
		// Quirks in another order than "each alone" or "all together":
		// IIS drops the trailing dots, then a Windows best-fit (ANSI)
		// conversion reads U+FF0F as / ("WorstFit"), so /admin／.. is
		// /admin/; and a server without one of the quirks, whose
		// reading the others (ending at ？, dropping ；params) would
		// have moved out of /admin/.
		{"/admin%EF%BC%8F..", false, "deny"},
		{"/admin%EF%BC%8F../x", false, "deny"},
		{"/admin%EF%BC%BC..;/..", false, "deny"},
		{"/admin%EF%BC%BC..", false, "deny"},
		{"/%5c%EF%BC%9B%3F%EF%BC%8Fadmin%EF%BC%9Fx", false, "deny"},
		{"/%EF%BC%9B%EF%BC%9F\\admin%2e%5c", false, "deny"},
		{"/admin.\\..%EF%BC%9Bx\\y", false, "deny"},
		{"/admin.\\..;x\\y", false, "deny"},
		// Broken escapes (%u is IIS's).
		{"/public/%u002e%u002e/admin", false, "deny"},
		{"/public/%", false, "deny"},
		{"/public/%2", false, "deny"},
		// Not a path.
		{"", false, ""},
		{"*", false, ""},
		{"public/a.css", false, ""},
		{"/public/a b.css", false, "allow"},
		// Canonical paths under a public prefix stay public.
		{"/public/a.css", true, "public"},
		{"/public/x/y", true, "public"},
		{"/public", true, "public"},
		{"/public/", true, "public"},
		{"/public/x/", true, "public"},
		{"/public/..a", true, "public"},
		{"/public/a..b/c", true, "public"},
		{"/public/a%20b.css", true, "public"},
		{"/public/%5B1%5D.css", true, "public"},
		{"/public/[1].css", true, "public"},
		{"/public/caf%C3%A9.css", true, "public"},
		{"/public/caf%c3%a9.css", true, "public"},
		{"/public/%C3%A0", true, "public"}, // a letter that NFKC keeps
		{"/public/a:b@c!$&'()*+,=~_-", true, "public"},
		{"/healthz", true, "public"},
		{"/healthz/", true, "public"},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d rows", len(tests))
	}
	for _, tc := range tests {
		// Each target is decided as given and, with a query or fragment,
		// as net/http hands it over: URL.EscapedPath() of the target.
		raws := []string{tc.target}
		if u, err := url.ParseRequestURI(tc.target); err == nil && strings.ContainsAny(tc.target, "?#") {
			raws = append(raws, u.EscapedPath())
		}
		for _, raw := range raws {
			anon := rs.Decide("GET", raw, nil, false)
			if got := anon.Outcome == Public; got != tc.public {
				t.Errorf("GET %q anonymous: %v, want public=%v (%s)", raw, anon.Outcome, tc.public, anon.Reason)
			}
			if !tc.public && anon.Outcome != NeedLogin {
				t.Errorf("GET %q anonymous: %v, want need-login (%s)", raw, anon.Outcome, anon.Reason)
			}
			if tc.public {
				if d := rs.Decide("HEAD", raw, nil, false); d.Outcome == Public {
					t.Errorf("HEAD %q is public (%s)", raw, d.Reason)
				}
			}
			if tc.member == "" {
				continue
			}
			if d := rs.Decide("GET", raw, memberClaims(), true); d.Outcome.String() != tc.member {
				t.Errorf("GET %q member: %v, want %s (%s)", raw, d.Outcome, tc.member, d.Reason)
			}
			// The same rules scoped to the wiki decide every spelling of
			// the wiki's host as the plain rules decide any host.
			for _, host := range wikiSpellings {
				if d := scoped.DecideHost("GET", host, raw, nil, false); d.Outcome != anon.Outcome {
					t.Errorf("GET %s%q anonymous, scoped: %v, want %v (%s)", host, raw, d.Outcome, anon.Outcome, d.Reason)
				}
				if d := scoped.DecideHost("GET", host, raw, memberClaims(), true); d.Outcome.String() != tc.member {
					t.Errorf("GET %s%q member, scoped: %v, want %s (%s)", host, raw, d.Outcome, tc.member, d.Reason)
				}
			}
		}
	}
}

// hostileScopedRules are hostileRules with /public/, /admin/ and
// /internal/ scoped to the wiki.
const hostileScopedRules = `public  GET  wiki.example.com/public/
public  GET  /healthz
allow   *    wiki.example.com/admin/     group:admins
deny    *    wiki.example.com/internal/
allow   *    /           any
`

// wikiSpellings are Host headers that all name wiki.example.com.
var wikiSpellings = []string{
	"wiki.example.com", "WIKI.EXAMPLE.COM", "Wiki.Example.Com", "wiki.example.com.", "wiki.example.com:443",
	"wiki.example.com:8443", "WIKI.example.com.:80", "wiki.example.com.:65535",
}

// notHosts are Host headers that are no host name at all: a rule scoped to
// a host must not be escaped by them, so they are refused.
var notHosts = []string{
	"wiki.example.com..", ".wiki.example.com", "wiki..example.com", "wiki.example.com:", "wiki.example.com:0",
	"wiki.example.com:x", "wiki.example.com:80:80", "user@wiki.example.com", "wiki.example.com@evil.example",
	"wiki.example.com/", "wiki.example.com\\", "wiki%2eexample.com", "wiki.example.com%00", "wiki.example.com\x00",
	"wiki.example.com ", " wiki.example.com", "wiki.example.com\t", "wiki.example.com\r\n", "wiki\uff0eexample.com",
	"wiki.example.com\u3002", "wikі.example.com", "*.example.com", "*", "[wiki.example.com]", "[::1", ":443",
}

func TestHostScoped(t *testing.T) {
	rs := mustParse(t, "scoped.txt", `allow * wiki.example.com/admin/ group:admins
deny  * ci.example.com/
allow * /admin/ any
public GET app.example.com/static/
allow * / any
`)
	if got, want := rs.Hosts(), []string{"app.example.com", "ci.example.com", "wiki.example.com"}; !slices.Equal(got, want) {
		t.Errorf("Hosts() = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		host, path string
		member     Outcome
		anonPublic bool
	}{
		{"wiki.example.com", "/admin/x", Deny, false},
		{"wiki.example.com", "/admin", Deny, false},
		{"wiki.example.com", "/other", Allow, false},
		{"app.example.com", "/admin/x", Allow, false},
		{"other.example", "/admin/x", Allow, false},
		{"", "/admin/x", Allow, false},
		{"ci.example.com", "/", Deny, false},
		{"ci.example.com", "/admin/", Allow, false}, // /admin/ is longer than ci's /
		{"CI.Example.com.:8080", "/x", Deny, false},
		{"app.example.com", "/static/a.css", Public, true},
		{"wiki.example.com", "/static/a.css", Allow, false},
		{"wiki.example.com.evil.example", "/admin/x", Allow, false},
		{"evil.example.wiki.example.com", "/admin/x", Allow, false},
	} {
		if d := rs.DecideHost("GET", tt.host, tt.path, memberClaims(), true); d.Outcome != tt.member {
			t.Errorf("%s%s member: %v, want %v (%s)", tt.host, tt.path, d.Outcome, tt.member, d.Reason)
		}
		if got := rs.Public("GET", tt.host, tt.path); got != tt.anonPublic {
			t.Errorf("%s%s public: %v", tt.host, tt.path, got)
		}
	}
	for _, h := range wikiSpellings {
		if d := rs.DecideHost("GET", h, "/admin/x", memberClaims(), true); d.Outcome != Deny || d.Rule == nil || d.Rule.Host() != "wiki.example.com" {
			t.Errorf("Host %q: %v by %v, want the wiki's rule to deny", h, d.Outcome, d.Rule)
		}
	}
	for _, h := range notHosts {
		if d := rs.DecideHost("GET", h, "/other", memberClaims(), true); d.Outcome != Deny {
			t.Errorf("Host %q: %v, want deny (%s)", h, d.Outcome, d.Reason)
		}
		if d := rs.DecideHost("GET", h, "/static/a.css", nil, false); d.Outcome != NeedLogin {
			t.Errorf("Host %q anonymous: %v, want need-login (%s)", h, d.Outcome, d.Reason)
		}
	}
}

// readsUnder reports whether the cleaned path p lies under prefix, on a
// segment boundary.
func readsUnder(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// canonicalForTest restates the package doc's definition of a canonical
// path, independently of canonical().
func canonicalForTest(raw string) (string, bool) {
	if !strings.HasPrefix(raw, "/") {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c >= 0x80 || c <= ' ' || c == 0x7f || strings.IndexByte(`;\?#"<>^`+"`{|}", c) >= 0 {
			return "", false
		}
		if c == '%' && i+2 < len(raw) {
			e := strings.ToUpper(raw[i+1 : i+3])
			if e[0] < '8' && !slices.Contains([]string{"20", "22", "3C", "3E", "5B", "5D", "5E", "60", "7B", "7C", "7D"}, e) {
				return "", false
			}
		}
	}
	dec, err := url.PathUnescape(raw)
	if err != nil || !utf8.ValidString(dec) {
		return "", false
	}
	for _, r := range dec {
		if r >= 0x80 && (!unicode.In(r, unicode.L, unicode.M, unicode.N) || norm.NFKC.String(string(r)) != string(r)) {
			return "", false
		}
	}
	segs := strings.Split(dec, "/")[1:]
	for i, s := range segs {
		if s == "" && i != len(segs)-1 || s != "" && strings.Trim(s, ".") == "" ||
			strings.HasSuffix(s, ".") || strings.HasSuffix(s, " ") {
			return "", false
		}
	}
	return dec, true
}

// hostileReadings are ways upstreams may read a path, written apart from
// readingsOf.
func hostileReadings(raw string) []string {
	once, _ := url.PathUnescape(raw)
	twice, err := url.PathUnescape(once)
	if err != nil {
		twice = once
	}
	var out []string
	for _, s := range []string{raw, once, twice} {
		out = append(out, s, strings.ReplaceAll(s, `\`, "/"))
		s = norm.NFKC.String(strings.ReplaceAll(s, `\`, "/"))
		s, _, _ = strings.Cut(s, "?")
		s, _, _ = strings.Cut(s, "#")
		segs := strings.Split(s, "/")
		iis := slices.Clone(segs)
		for i := range segs {
			segs[i], _, _ = strings.Cut(segs[i], ";")
			if t := strings.TrimRight(iis[i], ". "); t != "" && strings.Trim(iis[i], ".") != "" {
				iis[i] = t
			}
		}
		out = append(out, s, strings.Join(segs, "/"), strings.Join(iis, "/"))
	}
	for i := range out {
		out[i] = path.Clean(out[i])
	}
	return out
}

// TestQuirksInAnyOrder checks Decide against servers that have any subset
// of the lenient quirks, applied in any order: IIS drops trailing dots
// before a best-fit conversion folds U+FF0F to /, a server that does not
// end the path at ? keeps what another quirk would have cut. Paths are
// drawn (with a fixed seed) from the pieces these quirks act on.
func TestQuirksInAnyOrder(t *testing.T) {
	rs := mustParse(t, "hostile.txt", hostileRules)
	quirks := []func(string) string{
		norm.NFKC.String,
		func(s string) string { return strings.ReplaceAll(s, `\`, "/") },
		func(s string) string {
			s, _, _ = strings.Cut(s, "?")
			s, _, _ = strings.Cut(s, "#")
			return s
		},
		func(s string) string { // ;params
			segs := strings.Split(s, "/")
			for i := range segs {
				segs[i], _, _ = strings.Cut(segs[i], ";")
			}
			return strings.Join(segs, "/")
		},
		func(s string) string { // Windows trailing dots and spaces
			segs := strings.Split(s, "/")
			for i, seg := range segs {
				if t := strings.TrimRight(seg, ". "); t != "" && strings.Trim(seg, ".") != "" {
					segs[i] = t
				}
			}
			return strings.Join(segs, "/")
		},
	}
	// Every order of every subset of the quirks.
	var orders [][]int
	var grow func(order []int)
	grow = func(order []int) {
		orders = append(orders, slices.Clone(order))
		for q := range quirks {
			if !slices.Contains(order, q) {
				grow(append(order, q))
			}
		}
	}
	grow(nil)
	pieces := []string{"/", "admin", "x", ".", "..", `\`, ";", "%3F", "%23", "%5c", "%2e", "%2f", "%20",
		"%EF%BC%9F", "%EF%BC%9B", "%EF%BC%8E", "%EF%BC%8F", "%EF%BC%BC"} // ？ ； ． ／ ＼
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		raw := "/"
		for range rnd.IntN(8) + 1 {
			raw += pieces[rnd.IntN(len(pieces))]
		}
		if rs.Decide("GET", raw, memberClaims(), true).Outcome != Allow {
			continue
		}
		once, _ := url.PathUnescape(raw)
		twice, err := url.PathUnescape(once)
		if err != nil {
			twice = once
		}
		for _, form := range []string{raw, once, twice} {
			for _, order := range orders {
				r := form
				for _, q := range order {
					r = quirks[q](r)
				}
				if r = path.Clean(r); readsUnder(r, "/admin/") {
					t.Fatalf("GET %q lets a member in, but a server with quirks %v reads it as %q", raw, order, r)
				}
			}
		}
	}
}

func FuzzDecide(f *testing.F) {
	rs := mustParse(f, "fuzz.txt", hostileRules)
	publics := []string{"/public/", "/healthz"}
	for _, s := range []string{
		"/public/../admin", "/public/..%2Fadmin", "/public%2F..%2Fadmin", "//admin", "/./admin",
		"/public/..;/admin", "/public;/../admin", "/%2e%2e/admin", "/public/%2E%2E/admin",
		"/public/.%2e/admin", `/public\..\admin`, "/public%5c..%5cadmin", "/public/%252e%252e/admin",
		"/public/%00", "/public/\u2025/admin", "/public%EF%BC%8F..%EF%BC%8Fadmin", "/public/%c0%ae%c0%ae/admin",
		"/public/a.css", "/public/x/y", "/healthz", "/public/caf%C3%A9.css", "/public/%5B1%5D",
		"/admin./x", "/admin%20/x", "/%EF%BD%81dmin/x", "/\uff41dmin", "/admin;/x", "/admin%2fx",
	} {
		f.Add("GET", "", s)
		f.Add("GET", "WIKI.example.com.:443", s)
	}
	for _, h := range append(slices.Clone(wikiSpellings), notHosts...) {
		f.Add("GET", h, "/admin/x")
		f.Add("GET", h, "/public/a")
	}
	f.Add("HEAD", "", "/public/a")
	scoped := mustParse(f, "scoped.txt", hostileScopedRules)
	folded, err := ParseWith("folded.txt", strings.NewReader(hostileRules), Options{CaseInsensitive: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, host, raw string) {
		// Scoped to the wiki, the rules decide every spelling of its
		// host as the plain rules decide any host, refuse what is no host
		// name, and leave other hosts to the rules for every host.
		sd, sm := scoped.DecideHost(method, host, raw, nil, false), scoped.DecideHost(method, host, raw, memberClaims(), true)
		name, _, ok := route.HostName(host)
		switch {
		case host != "" && !ok:
			if sd.Outcome != NeedLogin || sm.Outcome != Deny {
				t.Fatalf("host %q is no host name, yet %s %q: anonymous %v, member %v", host, method, raw, sd.Outcome, sm.Outcome)
			}
		case name == "wiki.example.com":
			if pd, pm := rs.Decide(method, raw, nil, false), rs.Decide(method, raw, memberClaims(), true); pd.Outcome != sd.Outcome || pm.Outcome != sm.Outcome {
				t.Fatalf("host %q (the wiki's) %s %q: scoped %v/%v, plain %v/%v", host, method, raw, sd.Outcome, sm.Outcome, pd.Outcome, pm.Outcome)
			}
		default:
			if sd.Rule != nil && sd.Rule.Host() != "" || sm.Rule != nil && sm.Rule.Host() != "" {
				t.Fatalf("host %q %s %q: decided by the wiki's rule %v / %v", host, method, raw, sd.Rule, sm.Rule)
			}
		}
		if fm := folded.Decide(method, raw, memberClaims(), true); fm.Outcome == Allow && strings.HasPrefix(raw, "/") {
			for _, r := range hostileReadings(raw) {
				if r = strings.ToLower(r); readsUnder(r, "/admin/") || readsUnder(r, "/internal/") {
					t.Fatalf("case-insensitive: %s %q lets a member in, but an upstream may read it as %q", method, raw, r)
				}
			}
		}
		d := rs.Decide(method, raw, nil, false)
		m := rs.Decide(method, raw, memberClaims(), true)
		if d.Outcome != Public && d.Outcome != NeedLogin {
			t.Fatalf("anonymous %s %q: %v", method, raw, d.Outcome)
		}
		if d.Reason == "" || m.Reason == "" {
			t.Fatalf("%s %q: empty reason", method, raw)
		}
		if (d.Outcome == Public) != (m.Outcome == Public) {
			t.Fatalf("%s %q: anonymous %v, member %v", method, raw, d.Outcome, m.Outcome)
		}
		if m.Outcome == Allow && strings.HasPrefix(raw, "/") {
			// A member passes only if no reading an upstream may make
			// lands under a prefix closed to members.
			for _, r := range hostileReadings(raw) {
				if readsUnder(r, "/admin/") || readsUnder(r, "/internal/") {
					t.Fatalf("%s %q lets a member in, but an upstream may read it as %q (%s)", method, raw, r, m.Reason)
				}
			}
		}
		if d.Outcome != Public {
			return
		}
		dec, ok := canonicalForTest(raw)
		if !ok {
			t.Fatalf("%s %q is public but not canonical (%s)", method, raw, d.Reason)
		}
		if method != "GET" || d.Rule == nil || d.Rule.Kind() != KindPublic {
			t.Fatalf("%s %q: public by %v", method, raw, d.Rule)
		}
		cleaned := path.Clean(dec)
		under := ""
		for _, p := range publics {
			if readsUnder(cleaned, p) {
				under = p
			}
		}
		if under == "" || under != d.Rule.Path() {
			t.Fatalf("%s %q is public by %s, cleaned %q", method, raw, d.Reason, cleaned)
		}
		for _, r := range hostileReadings(raw) {
			if !readsUnder(r, under) {
				t.Fatalf("%s %q is public, but an upstream may read it as %q", method, raw, r)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add(hostileRules)
	f.Add("allow * /ad/ group:Domain%20Admins claim:https://x.example/a%3Db=cn=admins\n")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := Parse("f", strings.NewReader(text))
		if err != nil {
			if rs != nil {
				t.Fatal("rules and an error")
			}
			return
		}
		out := rs.String()
		rs2, err := Parse("g", strings.NewReader(out))
		if err != nil {
			t.Fatalf("String() does not parse: %v\n%s", err, out)
		}
		if out2 := rs2.String(); out2 != out {
			t.Fatalf("String() does not round-trip:\n%s\n---\n%s", out, out2)
		}
		if !slices.Equal(rs.ClaimNames(), rs2.ClaimNames()) {
			t.Fatalf("ClaimNames differ")
		}
		for _, p := range []string{"/", "/a", "/a/b", "/admin/x"} {
			d1, d2 := rs.Decide("GET", p, memberClaims(), true), rs2.Decide("GET", p, memberClaims(), true)
			if d1.Outcome != d2.Outcome {
				t.Fatalf("GET %s: %v then %v", p, d1.Outcome, d2.Outcome)
			}
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	rs := mustParse(b, "rules.txt", example)
	alice := claims("alice@example.com", "groups", []any{"dev", "admins"})
	for _, p := range []string{"/static/app.js", "/admin/users", "/public/..;/admin"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Decide("GET", p, alice, true)
			}
		})
	}
}

func TestPublicAndAllowed(t *testing.T) {
	rs, err := Parse("rules.txt", strings.NewReader("public GET /pub/\nallow * /admin/ group:admins\nallow * / any\n"))
	if err != nil {
		t.Fatal(err)
	}
	admin := map[string]any{"groups": []any{"admins"}}
	for _, tt := range []struct {
		method, path    string
		claims          map[string]any
		public, allowed bool
	}{
		{"GET", "/pub/a", nil, true, true},
		{"POST", "/pub/a", nil, false, true},
		{"GET", "/pub/../admin/x", nil, false, false},
		{"GET", "/admin/x", admin, false, true},
		{"GET", "/admin/x", nil, false, false},
		{"GET", "/other", nil, false, true},
	} {
		if got := rs.Public(tt.method, "", tt.path); got != tt.public {
			t.Errorf("Public(%s %s) = %v", tt.method, tt.path, got)
		}
		if got, reason := rs.Allowed(tt.method, "", tt.path, tt.claims); got != tt.allowed || reason == "" {
			t.Errorf("Allowed(%s %s, %v) = %v, %q", tt.method, tt.path, tt.claims, got, reason)
		}
	}
}

func TestCaseInsensitive(t *testing.T) {
	text := hostileRules + "deny * /Secret/\n"
	folded, err := ParseWith("ci.txt", strings.NewReader(text), Options{CaseInsensitive: true})
	if err != nil {
		t.Fatal(err)
	}
	strict := mustParse(t, "cs.txt", text)
	tests := []struct {
		target         string
		folded, strict string // what a logged-in member gets
	}{
		{"/admin/x", "deny", "deny"},
		{"/ADMIN/x", "deny", "allow"},
		{"/Admin", "deny", "allow"},
		{"/aDmIn/", "deny", "allow"},
		{"/%41dmin/x", "deny", "allow"},
		{"/%EF%BC%A1DMIN/x", "deny", "allow"}, // fullwidth A
		{"/ADMIN./x", "deny", "allow"},
		{"/ADMIN;/x", "deny", "allow"},
		{"/public/../ADMIN", "deny", "allow"},
		{"/INTERNAL/x", "deny", "allow"},
		{"/secret/x", "deny", "allow"},
		{"/SECRET", "deny", "allow"},
		{"/Secret/x", "deny", "deny"},
		{"/PUBLIC/a.css", "public", "allow"},
		{"/administrator", "allow", "allow"},
		{"/other", "allow", "allow"},
	}
	for _, tc := range tests {
		if d := folded.Decide("GET", tc.target, memberClaims(), true); d.Outcome.String() != tc.folded {
			t.Errorf("case-insensitive GET %q: %v, want %s (%s)", tc.target, d.Outcome, tc.folded, d.Reason)
		}
		if d := strict.Decide("GET", tc.target, memberClaims(), true); d.Outcome.String() != tc.strict {
			t.Errorf("case-sensitive GET %q: %v, want %s (%s)", tc.target, d.Outcome, tc.strict, d.Reason)
		}
	}
	if got := folded.String(); !strings.Contains(got, "/Secret/") {
		t.Errorf("String() lost the path as written:\n%s", got)
	}
}

// TestLongNonCanonicalPath: a non-canonical path too long to read every
// way never passes; a canonical one of any length is decided as usual.
func TestLongNonCanonicalPath(t *testing.T) {
	rs := mustParse(t, "hostile.txt", hostileRules)
	long := "/public/" + strings.Repeat("a", maxReadPath)
	tests := []struct {
		raw          string
		anon, member Outcome
	}{
		{long, Public, Public},
		{"/x/" + strings.Repeat("a", maxReadPath), NeedLogin, Allow},
		{"/x;/" + strings.Repeat("a", maxReadPath), NeedLogin, Deny},
		{"/public/%2e" + strings.Repeat("a", maxReadPath), NeedLogin, Deny},
		{"/x;/" + strings.Repeat("a", maxReadPath-10), NeedLogin, Allow},
	}
	for _, tc := range tests {
		if d := rs.Decide("GET", tc.raw, nil, false); d.Outcome != tc.anon {
			t.Errorf("anonymous %.40q… (%d bytes): %v, want %v", tc.raw, len(tc.raw), d.Outcome, tc.anon)
		}
		if d := rs.Decide("GET", tc.raw, memberClaims(), true); d.Outcome != tc.member {
			t.Errorf("member %.40q… (%d bytes): %v, want %v (%s)", tc.raw, len(tc.raw), d.Outcome, tc.member, d.Reason)
		}
	}
}
