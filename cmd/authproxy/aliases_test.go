package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoutesRefuseUpstreamAliases: the rules judge the path (and host) the
// client wrote, so one page of an upstream must not have two of them. A
// routes file that reaches one upstream with different path mappings (a
// strip-prefix route beside a plain one), or from another host than one
// whose rules are scoped to it, lets a request through the other spelling
// past those rules: with the shipped multi-app routes and README's rules,
// GET ci.example.com/api/settings/ reached ci's /settings/, which
// "deny * ci.example.com/settings/" closes. Such a table is refused when
// there are rules; without rules every logged-in user passes anyway.
func TestRoutesRefuseUpstreamAliases(t *testing.T) {
	readmeRules := writeTemp(t, "rules.txt", "allow  *    wiki.example.com/admin/   group:wiki-admins\n"+
		"deny   *    ci.example.com/settings/\nallow  *    /                         email-domain:example.com\n")
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deploy", "overlays", "multi-app", "routes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The shape the multi-app overlay had before its routes were made
	// alias-free.
	aliased := "wiki.example.com / http://wiki:8080\nci.example.com / http://ci:8111\nci.example.com /api/ http://ci:8111 strip-prefix\n"
	for _, tt := range []struct {
		name, routes, rules string
		want                []string // "" : loads
	}{
		{"strip-prefix beside a plain route to one upstream", "ci.example.com / http://ci:8111\nci.example.com /api/ http://ci:8111 strip-prefix\nwiki.example.com / http://wiki\n",
			readmeRules, []string{"lines 1 and 2 reach upstream http://ci:8111 with different paths"}},
		{"the same, upstream spelled differently", "ci.example.com / http://CI:8111/\nci.example.com /api/ http://ci:8111 strip-prefix\nwiki.example.com / http://wiki\n",
			readmeRules, []string{"lines 1 and 2 reach upstream"}},
		{"default port spelled out", "ci.example.com / https://ci\nci.example.com /api/ https://ci:443/ strip-prefix\nwiki.example.com / http://wiki\n",
			readmeRules, []string{"lines 1 and 2 reach upstream"}},
		{"another host's strip-prefix route to a host-scoped upstream", "wiki.example.com / http://wiki:8080\nci.example.com / http://ci:8111\napp.example.com /wiki/ http://wiki:8080 strip-prefix\n",
			readmeRules, []string{"lines 1 and 3 reach upstream http://wiki:8080 with different paths", "wiki.example.com has rules of its own"}},
		{"another host's plain route to a host-scoped upstream", "wiki.example.com / http://wiki:8080\nci.example.com / http://ci:8111\nwww.example.com / http://wiki:8080\n",
			readmeRules, []string{"wiki.example.com has rules of its own, but line 3 (www.example.com) reaches its upstream http://wiki:8080"}},
		{"the * route to a host-scoped upstream", "wiki.example.com / http://wiki:8080\nci.example.com / http://ci:8111\n* / http://wiki:8080\n",
			readmeRules, []string{"line 3 (*) reaches its upstream"}},
		{"a wildcard serving a host-scoped name", "*.example.com / http://wiki:8080\nci.example.com / http://ci:8111\n",
			readmeRules, []string{"wiki.example.com has rules of its own, but line 1 (*.example.com) serves it and other names"}},
		{"strip-prefix to the prefix itself is no alias", "ci.example.com / http://ci:8111\nci.example.com /api/ http://ci:8111/api/ strip-prefix\nwiki.example.com / http://wiki\n",
			readmeRules, nil},
		{"pass-host tells the upstream the host", "wiki.example.com / http://web:8080 pass-host\nci.example.com / http://web:8080 pass-host\n",
			readmeRules, nil},
		{"aliases without host rules", "wiki.example.com / http://w\nci.example.com / http://c\napp.example.com / http://a\nwww.example.com / http://a\n* / http://a\n",
			readmeRules, nil},
		{"without rules, aliases are harmless", aliased, "", nil},
		{"README's routes and rules", "app.example.com / http://127.0.0.1:8080\napp.example.com /api/ http://127.0.0.1:9000 strip-prefix\n" +
			"wiki.example.com / https://wiki.internal:8443 pass-host timeout=5m\nci.example.com / http://127.0.0.1:8111 max-conns=20\n" +
			"*.apps.example.com / http://127.0.0.1:8081\n* / http://127.0.0.1:8080\n", readmeRules, nil},
		{"one upstream at / and at /api/ strip-prefix, with rules", aliased, readmeRules, []string{"lines 2 and 3 reach upstream http://ci:8111"}},
		{"the shipped multi-app routes with README's rules", string(shipped), readmeRules, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kv := routesEnv(writeTemp(t, "routes.txt", tt.routes))
			if tt.rules != "" {
				kv["AUTHPROXY_RULES_FILE"] = tt.rules
			}
			_, err := loadConfig(envFrom(t, kv))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
