package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testRules = `# test rules
public  GET  /public/
allow   *    /admin/  group:admins
allow   *    /        any
deny    *    wiki.example.com/admin/
`

func writeRules(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.txt")
	if err := os.WriteFile(p, []byte(testRules), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExplain(t *testing.T) {
	rules := writeRules(t)
	noEnv := envFrom(t, nil)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-rules", rules, "GET", "/public/a.css"}, "PUBLIC: GET /public/a.css"},
		{[]string{"-rules", rules, "GET", "/admin/x"}, "NEED-LOGIN: GET /admin/x"},
		{[]string{"-rules", rules, "-claims", `{"groups":["admins"]}`, "POST", "/admin/x"}, "ALLOW: POST /admin/x\n  " + rules + ":3:"},
		{[]string{"-rules", rules, "-claims", `{"groups":["staff"]}`, "GET", "/admin/x?to=/public/"}, "DENY: GET /admin/x\n"},
		{[]string{"-rules", rules, "GET", "/public/..;/admin/x"}, "NEED-LOGIN"},
		{[]string{"-rules", rules, "-claims", `{"groups":["staff"]}`, "GET", "/ADMIN/x"}, "ALLOW"},
		{[]string{"-rules", rules, "-case-insensitive", "-claims", `{"groups":["staff"]}`, "GET", "/ADMIN/x"}, "DENY"},
		{[]string{"-rules", rules, "-case-insensitive", "-claims", `{"groups":["staff"]}`, "GET", "/%41dmin/x"}, "DENY"},
		{[]string{"-rules", rules, "-claims", `{"groups":["admins"]}`, "GET", "https://wiki.example.com/admin"}, "DENY: GET wiki.example.com/admin\n  " + rules + ":5:"},
		{[]string{"-rules", rules, "-claims", `{"groups":["admins"]}`, "GET", "https://WIKI.Example.com.:8443/admin/x?y"}, "DENY: GET wiki.example.com/admin/x\n"},
		{[]string{"-rules", rules, "-claims", `{"groups":["admins"]}`, "GET", "https://app.example.com/admin"}, "ALLOW: GET app.example.com/admin\n  " + rules + ":3:"},
		{[]string{"-rules", rules, "-claims", `{"groups":["admins"]}`, "GET", "/admin"}, "ALLOW: GET /admin\n"},
		{[]string{"-rules", rules, "GET", "http://wiki.example.com"}, "NEED-LOGIN: GET wiki.example.com/\n"},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), append([]string{"explain"}, tt.args...), noEnv, &out, io.Discard); err != nil {
			t.Errorf("explain %v: %v", tt.args, err)
			continue
		}
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("explain %v:\n%s\nwant it to contain %q", tt.args, out.String(), tt.want)
		}
	}
	// Without -rules, AUTHPROXY_RULES_FILE names the file.
	var out bytes.Buffer
	fromEnv := envFrom(t, map[string]string{"AUTHPROXY_RULES_FILE": rules})
	if err := run(t.Context(), []string{"explain", "GET", "/public/a.css"}, fromEnv, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "PUBLIC: GET /public/a.css") {
		t.Errorf("explain with AUTHPROXY_RULES_FILE: %v\n%s", err, out.String())
	}
	for _, args := range [][]string{
		{"GET"},
		{"-rules", rules, "-claims", "{not json", "GET", "/"},
		{"-rules", filepath.Join(t.TempDir(), "missing.txt"), "GET", "/"},
		{"-rules", rules, "GET", "admin"},
		{"-rules", rules, "GET", "ftp://wiki.example.com/admin"},
		{"-rules", rules, "GET", "https://user@wiki.example.com/admin"},
		{"-rules", rules, "GET", "https://wiki..example.com/admin"},
	} {
		if err := run(t.Context(), append([]string{"explain"}, args...), noEnv, io.Discard, io.Discard); err == nil {
			t.Errorf("explain %v succeeded", args)
		}
	}
}

func TestBadRulesFileStopsStart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rules.txt")
	os.WriteFile(p, []byte("allow * /admin/\npermit GET /x any\n"), 0o600)
	_, err := loadRules(p, false)
	if err == nil || !strings.Contains(err.Error(), ":1:") || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("loadRules = %v, want both bad lines reported", err)
	}
}

// TestRulesThroughTheProxy: the rules file wired into a running proxy.
func TestRulesThroughTheProxy(t *testing.T) {
	rules := writeRules(t)
	// pass-host: testRules scope a rule to wiki.example.com, which the
	// upstream can tell only from the Host (TestRoutesRefuseUpstreamAliases).
	s := startStack(t, func(e *env) { e.RulesFile, e.PassHostHeader = rules, "true" })
	c := &http.Client{Jar: s.jar}
	for path, want := range map[string]int{"/public/a.css": 200, "/admin/x": 403, "/other": 200} {
		resp, err := c.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("alice GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(s.base + "/public/a.css")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("anonymous public: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, seen := range s.upstream() {
		if strings.Contains(seen, "/admin/") {
			t.Errorf("a denied request reached the upstream: %q", seen)
		}
	}
}

// TestCaseInsensitiveRules: AUTHPROXY_RULES_CASE_INSENSITIVE=true makes the
// rules for /admin/ cover every case of it, for upstreams that fold case;
// explain reads the same setting.
func TestCaseInsensitiveRules(t *testing.T) {
	rules := writeRules(t)
	s := startStack(t, func(e *env) { e.RulesFile, e.RulesCaseInsensitive, e.PassHostHeader = rules, "true", "true" })
	c := &http.Client{Jar: s.jar}
	for _, path := range []string{"/admin/x", "/ADMIN/x", "/Admin/x", "/%41dmin/x", "/aDMIN./x"} {
		resp, err := c.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("alice GET %s: %d, want 403", path, resp.StatusCode)
		}
	}
	if got := s.upstream(); len(got) != 0 {
		t.Errorf("denied requests reached the upstream: %q", got)
	}
	var out bytes.Buffer
	fold := envFrom(t, map[string]string{"AUTHPROXY_RULES_CASE_INSENSITIVE": "true"})
	if err := run(t.Context(), []string{"explain", "-rules", rules, "-claims", `{"groups":["staff"]}`, "GET", "/ADMIN/x"}, fold, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "DENY") {
		t.Errorf("explain with AUTHPROXY_RULES_CASE_INSENSITIVE=true: %q, %v; want DENY", out.String(), err)
	}
}
