package route

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const example = `# host              path     upstream                      options
app.example.com     /        http://127.0.0.1:8080
app.example.com     /api/    http://127.0.0.1:9000         strip-prefix
wiki.example.com    /        https://wiki.internal:8443    pass-host   # the wiki checks its Host
*.dev.example.com   /        http://127.0.0.1:7000         timeout=5m  max-conns=4
*.example.com       /        http://127.0.0.1:7001
ci.example.com      /hooks   http://127.0.0.1:7002/base/
*                   /        http://127.0.0.1:8081
`

func mustParse(t testing.TB, text string) *Table {
	t.Helper()
	tab, err := Parse("routes.txt", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tab
}

func TestParseExample(t *testing.T) {
	tab := mustParse(t, example)
	rs := tab.Routes()
	if len(rs) != 7 {
		t.Fatalf("%d routes, want 7", len(rs))
	}
	api := rs[1]
	if api.Host != "app.example.com" || api.Path != "/api/" || api.Upstream.String() != "http://127.0.0.1:9000" ||
		!api.StripPrefix || api.PassHost || api.Line != 3 || api.Index != 1 || api.MaxConns != -1 || api.Timeout != 0 {
		t.Errorf("route 2 = %+v", api)
	}
	if dev := rs[3]; dev.Timeout != 5*time.Minute || dev.MaxConns != 4 {
		t.Errorf("route 4 = %+v", dev)
	}
	if !rs[2].PassHost {
		t.Error("pass-host not read")
	}
	if got, want := tab.Hosts(), []string{"app.example.com", "ci.example.com", "wiki.example.com"}; !slices.Equal(got, want) {
		t.Errorf("Hosts() = %q, want %q", got, want)
	}
	if got, want := tab.Wildcards(), []string{".dev.example.com", ".example.com"}; !slices.Equal(got, want) {
		t.Errorf("Wildcards() = %q, want %q", got, want)
	}
	again := mustParse(t, tab.String())
	if again.String() != tab.String() {
		t.Errorf("String() does not round-trip:\n%s\n%s", tab, again)
	}
}

func TestParseTolerates(t *testing.T) {
	for name, text := range map[string]string{
		"CRLF":        "* / http://a\r\napp.example.com / http://b\r\n",
		"BOM":         "\uFEFF* / http://a\n",
		"no newline":  "* / http://a",
		"tabs":        "*\t/\thttp://a\t# comment\n",
		"upper case":  "APP.Example.COM / http://a\n",
		"ipv4 host":   "10.0.0.5 / http://a\n",
		"base path":   "* / http://a/base/\n",
		"max-conns=0": "* / http://a max-conns=0\n",
	} {
		if _, err := Parse(name, strings.NewReader(text)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"", "routes.txt: no routes"},
		{"# nothing\n\n", "routes.txt: no routes"},
		{"* /\n", `routes.txt:1: want HOST PATH UPSTREAM [OPTIONS...], got 2 field(s)`},
		{"* / http://a preserve-host\n", `routes.txt:1: unknown option "preserve-host": write pass-host`},
		{"* / http://a pass-host pass-host\n", "routes.txt:1: option pass-host given twice"},
		{"* / http://a strip-prefix\n", "routes.txt:1: strip-prefix on / strips nothing"},
		{"* /a http://a strip-prefix=yes\n", "routes.txt:1: option strip-prefix takes no value"},
		{"* / http://a timeout=soon\n", `routes.txt:1: timeout "soon" must be a duration`},
		{"* / http://a timeout=0s\n", `routes.txt:1: timeout "0s" must be a duration`},
		{"* / http://a timeout\n", "routes.txt:1: option timeout needs a value"},
		{"* / http://a max-conns=-1\n", `routes.txt:1: max-conns "-1" must be a whole number`},
		{"* / http://a gzip\n", `routes.txt:1: unknown option "gzip"`},
		{"* / ftp://a\n", `routes.txt:1: upstream "ftp://a" must be an http:// or https:// URL`},
		{"* / http://user:pw@a\n", `routes.txt:1: upstream "http://user:xxxxx@a" must not carry a user or password`},
		{"* / http://a/?x=1\n", "must not have a query or fragment"},
		{"* / /relative\n", "must be an http:// or https:// URL"},
		{"* / http:///x\n", "has no host"},
		{"* / http://a\n* / http://b\n", "routes.txt:2: host * and path / are already routed on line 1"},
		{"a.example / http://a\nA.EXAMPLE / http://b\n", "routes.txt:2: host a.example and path / are already routed on line 1"},
		{"* /api/ http://a\n* /api http://b\n", "routes.txt:2: host * and path /api are already routed on line 1"},
		{"bücher.example / http://a\n", "write international names in their ASCII form"},
		{"a.example:8080 / http://a\n", "no port"},
		{"a.example. / http://a\n", "without the trailing dot"},
		{"*.com / http://a\n", "a wildcard needs a suffix of at least two labels"},
		{"a.*.example / http://a\n", "the only wildcards are"},
		{"**.example.com / http://a\n", "the only wildcards are"},
		{"a..example / http://a\n", "is not a host name"},
		{"user@a.example / http://a\n", "is not a host name"},
		{"a%2eexample / http://a\n", "is not a host name"},
		{"[::1] / http://a\n", "is not a host name"},
		{"* api http://a\n", `path "api" must start with /`},
		{"* /api/* http://a\n", "must not contain '*'"},
		{"* /a%2fb http://a\n", "must not contain '%'"},
		{`* /a\b http://a` + "\n", `must not contain '\\'`},
		{"* /a//b http://a\n", "empty segment"},
		{"* /a/../b http://a\n", "has a .. segment"},
		{"* /café http://a\n", "plain ASCII"},
		{"* / http://a\x01\n", "control character"},
		{"* / http://a\xff\n", "not valid UTF-8"},
		{"* / http://a\n" + strings.Repeat("x", maxLineLen+1) + "\n", "routes.txt:2: line too long"},
	} {
		_, err := Parse("routes.txt", strings.NewReader(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.text, err, tt.want)
		}
	}
}

// TestParseListsEveryProblem: one run reports every bad line with its
// number.
func TestParseListsEveryProblem(t *testing.T) {
	_, err := Parse("r", strings.NewReader("* / http://a preserve-host\nok.example / http://b\nx.example nope ftp://c\n"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"r:1: unknown option", `r:3: path "nope"`, `r:3: upstream "ftp://c"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "r:2") {
		t.Errorf("line 2 is fine:\n%v", err)
	}
	_, err = Parse("r", strings.NewReader(strings.Repeat("bad\n", 150)))
	if n := strings.Count(err.Error(), "\n"); n != maxProblems {
		t.Errorf("%d lines of problems, want %d", n+1, maxProblems+1)
	}
	if !strings.Contains(err.Error(), "and 50 more problems") {
		t.Errorf("no count of dropped problems: %v", err)
	}
}

func TestMatch(t *testing.T) {
	tab := mustParse(t, example)
	for _, tt := range []struct {
		host, path string
		line       int // 0: no route
	}{
		{"app.example.com", "/", 2},
		{"app.example.com", "/x", 2},
		{"app.example.com", "/api", 3},
		{"app.example.com", "/api/", 3},
		{"app.example.com", "/api/users", 3},
		{"app.example.com", "/apix", 2},
		{"app.example.com", "/API/users", 2}, // case-sensitive paths
		{"app.example.com", "/api%2fusers", 2},
		{"app.example.com", "/%61pi/users", 2},
		{"wiki.example.com", "/admin", 4},
		{"x.dev.example.com", "/", 5},
		{"a.b.dev.example.com", "/", 5},
		{"dev.example.com", "/", 6}, // *.dev.example.com does not match dev.example.com itself
		{"other.example.com", "/", 6},
		{"example.com", "/", 8},
		{"evil.com", "/", 8},
		{"notexample.com", "/", 8},
		{"ci.example.com", "/hooks/x", 7},
		{"ci.example.com", "/", 0}, // its own host decides alone: no fallback to *.example.com
		{"ci.example.com", "/hooksx", 0},
	} {
		r, err := tab.Match(tt.host, tt.path)
		switch {
		case tt.line == 0 && err != ErrNoRoute:
			t.Errorf("Match(%q, %q) = %v, %v; want ErrNoRoute", tt.host, tt.path, r, err)
		case tt.line != 0 && (err != nil || r.Line != tt.line):
			t.Errorf("Match(%q, %q) = %v, %v; want line %d", tt.host, tt.path, r, err, tt.line)
		}
	}
	// Without a * route, an unknown host has no route.
	noAny := mustParse(t, "app.example.com / http://a\n")
	if _, err := noAny.Match("evil.example", "/"); err != ErrNoRoute {
		t.Errorf("unknown host: %v", err)
	}
}

func TestStrip(t *testing.T) {
	tab := mustParse(t, "* /api/ http://a strip-prefix\n* /v1 http://b strip-prefix\n* /keep/ http://c\n* / http://d\n")
	for _, tt := range []struct{ path, want string }{
		{"/api", "/"},
		{"/api/", "/"},
		{"/api/users?x", "/users?x"},
		{"/api/a/b", "/a/b"},
		{"/api//x", "//x"},
		{"/v1/x", "/x"},
		{"/keep/x", "/keep/x"},
		{"/other", "/other"},
	} {
		r, err := tab.Match("h", tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Strip(tt.path); got != tt.want {
			t.Errorf("Strip(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// hostileHosts are Host headers that must be refused, or read as the name
// given, whatever their spelling.
var hostileHosts = []struct {
	host string
	name string // "" refused
}{
	{"app.example.com", "app.example.com"},
	{"APP.Example.COM", "app.example.com"},
	{"app.example.com.", "app.example.com"},
	{"app.example.com:443", "app.example.com"},
	{"app.example.com.:8443", "app.example.com"},
	{"App.Example.Com.:1", "app.example.com"},
	{"10.0.0.1:9001", "10.0.0.1"},
	{"[::1]:9001", "[::1]"},
	{"[2001:DB8::1]", "[2001:db8::1]"},
	{"", ""},
	{".", ""},
	{"app.example.com..", ""},
	{"..app.example.com", ""},
	{"app..example.com", ""},
	{":80", ""},
	{"app.example.com:", ""},
	{"app.example.com:0", ""},
	{"app.example.com:65536", ""},
	{"app.example.com:99999999", ""},
	{"app.example.com:80:80", ""},
	{"app.example.com:+80", ""},
	{"app.example.com: 80", ""},
	{"app.example.com:8o", ""},
	{"user@app.example.com", ""},
	{"user:pw@app.example.com", ""},
	{"app.example.com@evil.com", ""},
	{"app.example.com/evil", ""},
	{"app.example.com\\evil", ""},
	{"app.example.com%2eevil.com", ""},
	{"app%2Eexample.com", ""},
	{"app.example.com%00", ""},
	{"app.example.com\x00evil", ""},
	{"app.example.com\r\nX: y", ""},
	{"app.example.com evil", ""},
	{"app.example.com\t", ""},
	{"bücher.example", ""},
	{"xn--bcher-kva.example", "xn--bcher-kva.example"},
	{"аpp.example.com", ""}, // Cyrillic а
	{"app.example.com\u3002", ""},
	{"app\uff0eexample.com", ""},
	{"app.example.com\u200b", ""},
	{"[::1", ""},
	{"[::1]x", ""},
	{"[::1]:", ""},
	{"[fe80::1%25eth0]", ""},
	{"[1.2.3.4]", ""},
	{"[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]"},
	{"::1", ""},
	{strings.Repeat("a", 64) + ".example", ""},
	{strings.Repeat("a.", 130) + "example", ""},
	{"*.example.com", ""},
	{"*", ""},
	{"app.example.com#frag", ""},
	{"app.example.com?x", ""},
}

func TestHostNameHostile(t *testing.T) {
	for _, tt := range hostileHosts {
		name, _, ok := HostName(tt.host)
		if ok != (tt.name != "") || name != tt.name {
			t.Errorf("HostName(%q) = %q, %v; want %q", tt.host, name, ok, tt.name)
		}
	}
}

// TestMatchHostileHosts: a host spelled any other way routes as its name,
// or not at all; never to another host's route.
func TestMatchHostileHosts(t *testing.T) {
	tab := mustParse(t, "app.example.com / http://app\n*.example.com / http://wild\n")
	for _, tt := range hostileHosts {
		name, _, ok := HostName(tt.host)
		if !ok {
			continue
		}
		r, err := tab.Match(name, "/")
		want := ""
		switch {
		case tt.name == "app.example.com":
			want = "app"
		case strings.HasSuffix(tt.name, ".example.com"):
			want = "wild"
		}
		got := ""
		if err == nil {
			got = r.Upstream.Host
		}
		if got != want {
			t.Errorf("Host %q routes to %q, want %q", tt.host, got, want)
		}
	}
}

func TestSingle(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:8080")
	tab, err := Single(u, true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tab.Match("anything.example", "/x")
	if err != nil || r.Upstream != u || !r.PassHost || r.MaxConns != -1 {
		t.Errorf("Single: %+v, %v", r, err)
	}
	if len(tab.Hosts()) != 0 {
		t.Errorf("Hosts() = %q", tab.Hosts())
	}
	if _, err := Single(&url.URL{Scheme: "ftp", Host: "x"}, false); err == nil {
		t.Error("Single took an ftp upstream")
	}
	if _, err := Single(nil, false); err == nil {
		t.Error("Single took no upstream")
	}
}

func BenchmarkMatch(b *testing.B) {
	tab := mustParse(b, example)
	b.ReportAllocs()
	for b.Loop() {
		name, _, _ := HostName("app.example.com:443")
		if _, err := tab.Match(name, "/api/users"); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParse: whatever the file, Parse returns a table or an error, a table
// reads back from its String, and matching never panics.
func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add("* / http://a preserve-host\n")
	f.Add("*.x.example /a/ https://u:p@h/b/ strip-prefix timeout=1s max-conns=2\n")
	f.Fuzz(func(t *testing.T, text string) {
		tab, err := Parse("f", strings.NewReader(text))
		if err != nil {
			if tab != nil {
				t.Fatal("a table and an error")
			}
			return
		}
		again, err := Parse("g", strings.NewReader(tab.String()))
		if err != nil {
			t.Fatalf("String() does not parse: %v\n%s", err, tab)
		}
		if again.String() != tab.String() {
			t.Fatalf("String() does not round-trip:\n%s\n---\n%s", tab, again)
		}
		for _, h := range tab.Hosts() {
			if n, _, ok := HostName(h); !ok || n != h {
				t.Fatalf("Hosts() has %q, which HostName reads as %q, %v", h, n, ok)
			}
		}
		for _, r := range tab.Routes() {
			host := strings.TrimPrefix(r.Host, "*.")
			if r.Host == Any {
				host = "any.example"
			} else if host != r.Host {
				host = "zz-fuzz-label." + host
			}
			got, err := tab.Match(host, r.Path)
			if err != nil {
				t.Fatalf("route %s: its own host and path do not match: %v", r, err)
			}
			if got.Host != r.Host && r.Host != Any {
				t.Fatalf("route %s: matched %s", r, got)
			}
		}
	})
}
