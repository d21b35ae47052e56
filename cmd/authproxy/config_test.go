package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// proxyName matches the variable names authproxy could read.
var proxyName = regexp.MustCompile(`\b(?:AUTHPROXY|AUTH0)_[A-Z0-9_]*[A-Z0-9]\b`)

// declared is every setting's default, by name, from env's tags.
func declared(t *testing.T) map[string]string {
	t.Helper()
	e := env{}
	out := map[string]string{}
	for _, s := range e.settings() {
		if s.name == "" || !proxyName.MatchString(s.name) {
			t.Errorf("env field with envconfig tag %q: want AUTHPROXY_* or AUTH0_*", s.name)
		}
		out[s.name] = s.def
	}
	return out
}

// TestSettingsInREADME: the README's configuration table has a row for
// every setting and names no other, and shows each default.
func TestSettingsInREADME(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no ## Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	settings := declared(t)
	inTable := map[string]bool{}
	for line := range strings.Lines(section) {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `") || len(cells) != 5 {
			continue // not a row of the table: | variable | meaning | default |
		}
		names, def := proxyName.FindAllString(cells[1], -1), cells[3]
		for _, n := range names {
			inTable[n] = true
			d, ok := settings[n]
			switch {
			case !ok:
				t.Errorf("README's table lists %s, which is not a setting (env in config.go)", n)
			case d != "" && !strings.Contains(def, "`"+d+"`"):
				t.Errorf("README's table gives the default of %s as %q, want `%s`", n, strings.TrimSpace(def), d)
			}
		}
	}
	for n := range settings {
		if !inTable[n] {
			t.Errorf("%s is missing from the README's configuration table", n)
		}
	}
}

// TestNamesInSource: every AUTHPROXY_/AUTH0_ name in cmd/authproxy's code
// (messages, comments) is a setting, so no message names a variable that
// is not read.
func TestNamesInSource(t *testing.T) {
	settings := declared(t)
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range proxyName.FindAllString(string(src), -1) {
			if _, ok := settings[n]; !ok {
				t.Errorf("%s names %s, which is not a setting", f, n)
			}
		}
	}
}

// TestStartupLineHidesSecrets: with every secret setting set, the startup
// line shows every setting but no secret value, and no password of a URL.
func TestStartupLineHidesSecrets(t *testing.T) {
	e := defaultEnv()
	var secrets, shown []string
	for _, s := range e.settings() {
		if s.secret {
			*s.value = "secret-value-of-" + s.name
			secrets = append(secrets, *s.value)
		} else if *s.value == "" {
			*s.value = "value-of-" + s.name
		}
		shown = append(shown, s.name)
	}
	if len(secrets) < 6 {
		t.Fatalf("only %d secret settings: the secret tags are gone", len(secrets))
	}
	e.Upstream = "http://user:upstream-password@127.0.0.1:8080"
	secrets = append(secrets, "upstream-password")
	for name, h := range map[string]func(io.Writer) slog.Handler{
		"json": func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		"text": func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	} {
		var out bytes.Buffer
		slog.New(h(&out)).Info("authproxy starting", "config", config{vars: e})
		line := out.String()
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("%s startup line shows %q:\n%s", name, s, line)
			}
		}
		for _, s := range shown {
			if !strings.Contains(line, s) {
				t.Errorf("%s startup line lacks %s:\n%s", name, s, line)
			}
		}
	}
}

// TestHelpListsSettings: `authproxy help` lists every setting.
func TestHelpListsSettings(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, envFrom(t, nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for n := range declared(t) {
		if !strings.Contains(out.String(), "  "+n+" ") {
			t.Errorf("help does not list %s:\n%s", n, out.String())
		}
	}
}

// TestConfigErrorsHideURLPasswords: a URL setting that is refused, parsable
// or not, never shows its password in the error or the startup line.
func TestConfigErrorsHideURLPasswords(t *testing.T) {
	const pw = "hunter2-url-password"
	for _, v := range []string{
		"ftp://user:" + pw + "@app.internal/",
		"http://user:" + pw + "@app internal/",
		"http://user:" + pw + "@app.internal:99999999/",
		"http://user:" + pw + "@@app.internal/%zz",
		"//user:" + pw + "@app.internal/",
	} {
		for _, name := range []string{"AUTHPROXY_UPSTREAM", "AUTHPROXY_REDIRECT_URL", "AUTHPROXY_ISSUER", "AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS"} {
			kv := map[string]string{"AUTHPROXY_UPSTREAM": "http://127.0.0.1:8080", "AUTHPROXY_ISSUER": "https://idp.example/",
				"AUTHPROXY_CLIENT_ID": "cid", "AUTHPROXY_CLIENT_SECRET": "csecret"}
			kv[name] = v
			_, err := loadConfig(envFrom(t, kv))
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("%s=%q: the error shows the password:\n%v", name, v, err)
			}
			e := readEnv(envFrom(t, kv))
			var b strings.Builder
			slog.New(slog.NewJSONHandler(&b, nil)).Info("start", "config", e)
			if strings.Contains(b.String(), pw) {
				t.Errorf("%s=%q: the startup line shows the password:\n%s", name, v, b.String())
			}
		}
	}
}
