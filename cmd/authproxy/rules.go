package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/authproxy/authproxy/proxy/rules"
)

// access is the loaded rules file; rules is nil when none is configured.
type access struct{ rules *rules.Rules }

func loadRules(path string) (access, error) {
	if path == "" {
		return access{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return access{}, fmt.Errorf("AUTHPROXY_RULES_FILE: %w", err)
	}
	defer f.Close()
	rs, err := rules.Parse(path, f)
	if err != nil {
		return access{}, fmt.Errorf("AUTHPROXY_RULES_FILE: %w", err)
	}
	return access{rules: rs}, nil
}

// claimNames lists the claims the session must keep for the rules.
func (a access) claimNames() []string {
	if a.rules == nil {
		return nil
	}
	return a.rules.ClaimNames()
}

// explain answers "would this user be allowed on METHOD PATH, and by which
// rule?" from the rules file alone, without starting the proxy. rulesFile
// is the default of -rules: AUTHPROXY_RULES_FILE.
func explain(args []string, rulesFile string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rulesFile, "rules", rulesFile, "rules file (default $AUTHPROXY_RULES_FILE)")
	claimsArg := fs.String("claims", "", "the user's ID-token claims as JSON, or @FILE; omit for a visitor who is not logged in")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: authproxy explain [-rules FILE] [-claims JSON|@FILE] METHOD PATH")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("explain needs METHOD and PATH")
	}
	method, target := fs.Arg(0), fs.Arg(1)
	if rulesFile == "" {
		return errors.New("no rules file: set AUTHPROXY_RULES_FILE or pass -rules (without rules every logged-in user passes)")
	}
	a, err := loadRules(rulesFile)
	if err != nil {
		return err
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return fmt.Errorf("PATH %q: %w", target, err)
	}
	var claims map[string]any
	authenticated := *claimsArg != ""
	if authenticated {
		raw := []byte(*claimsArg)
		if name, ok := strings.CutPrefix(*claimsArg, "@"); ok {
			if raw, err = os.ReadFile(name); err != nil {
				return err
			}
		}
		if err := json.Unmarshal(raw, &claims); err != nil {
			return fmt.Errorf("-claims is not a JSON object: %w", err)
		}
	}
	d := a.rules.Decide(method, u.EscapedPath(), claims, authenticated)
	fmt.Fprintf(stdout, "%s: %s %s\n  %s\n", strings.ToUpper(d.Outcome.String()), method, u.EscapedPath(), d.Reason)
	return nil
}
