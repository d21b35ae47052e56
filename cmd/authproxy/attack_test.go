package main

import (
	"os"
	"strings"
	"testing"
)

// dotEnvLeaks are .env files that do not parse, each holding secrets that
// godotenv's error message would quote: "unexpected character ... near"
// quotes the whole rest of the file, "unterminated quoted value" the value.
var dotEnvLeaks = []struct{ name, file string }{
	{"hyphen in a name, secrets after it", "AUTHPROXY-LOG-LEVEL=debug\nAUTHPROXY_UPSTREAM_BASIC_PASSWORD=pw-LEAKED-1\nAUTHPROXY_CLIENT_SECRET=cs-LEAKED-2\n"},
	{"unterminated double quote", "AUTHPROXY_UPSTREAM_BASIC_PASSWORD=\"pw-LEAKED-1\nAUTHPROXY_CLIENT_SECRET=cs-LEAKED-2\n"},
	{"unterminated single quote", "AUTHPROXY_CLIENT_SECRET='cs-LEAKED-2\n"},
	{"a secret pasted without a name", "AUTHPROXY_LOG_LEVEL=info\ncs-LEAKED-2+/==\n"},
}

// TestDotEnvErrorsHideSecrets: a .env that does not parse is refused at
// start, by check-config and by a reload, and the message says so without
// quoting the file, which holds the secrets.
func TestDotEnvErrorsHideSecrets(t *testing.T) {
	for _, tt := range dotEnvLeaks {
		t.Run(tt.name, func(t *testing.T) {
			lookup := envFrom(t, map[string]string{})
			if err := os.WriteFile(dotEnv, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			err := run(t.Context(), []string{"check-config"}, lookup, &out, &out)
			if err == nil {
				t.Fatal("check-config accepted a .env that does not parse")
			}
			_, startErr := loadConfig(lookup)
			for _, text := range []string{err.Error(), out.String(), startErr.Error()} {
				if strings.Contains(text, "LEAKED") {
					t.Errorf("a secret of .env is in the message: %s", text)
				}
			}
			if !strings.Contains(err.Error(), ".env") {
				t.Errorf("the message does not name .env: %v", err)
			}
		})
	}
}

// TestDotEnvReloadHidesSecrets: the reload's problems line never quotes a
// .env that does not parse; the running configuration stays.
func TestDotEnvReloadHidesSecrets(t *testing.T) {
	rs := startReloadStack(t, nil, nil)
	for _, tt := range dotEnvLeaks {
		writeFile(t, rs.path(dotEnv), tt.file)
		if err := rs.srv.reload(rs.load, "test"); err == nil {
			t.Errorf("%s: reload accepted it", tt.name)
		}
	}
	if strings.Contains(rs.logs.String(), "LEAKED") {
		t.Errorf("a secret of .env is in the log:\n%s", rs.logs.String())
	}
	if !strings.Contains(rs.logs.String(), "configuration reload refused") {
		t.Errorf("no refusal logged:\n%s", rs.logs.String())
	}
	if got := rs.status(t, "/"); got != 200 {
		t.Errorf("after the refused reloads: %d", got)
	}
}
