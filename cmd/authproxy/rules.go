package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/authproxy/authproxy/proxy/route"
	"github.com/authproxy/authproxy/proxy/rules"
)

// access is the loaded rules file; rules is nil when none is configured.
type access struct{ rules *rules.Rules }

// loadRules reads the rules file; caseInsensitive folds case (see
// rules.Options).
func loadRules(path string, caseInsensitive bool) (access, error) {
	if path == "" {
		return access{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return access{}, fmt.Errorf("AUTHPROXY_RULES_FILE: %w", err)
	}
	defer f.Close()
	rs, err := rules.ParseWith(path, f, rules.Options{CaseInsensitive: caseInsensitive})
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

// explain answers "would this user be allowed on METHOD URL, and by which
// rule?" from the rules file alone, without starting the proxy. URL is a
// path (/admin/x: rules scoped to a host do not apply) or an absolute URL
// whose host the rules scoped to it apply to
// (https://wiki.example.com/admin/x). rulesFile
// is the default of -rules (AUTHPROXY_RULES_FILE), caseFold that of
// -case-insensitive (AUTHPROXY_RULES_CASE_INSENSITIVE).
func explain(args []string, rulesFile, caseFold string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rulesFile, "rules", rulesFile, "rules file (default $AUTHPROXY_RULES_FILE)")
	claimsArg := fs.String("claims", "", "the user's ID-token claims as JSON, or @FILE; omit for a visitor who is not logged in")
	foldDefault, _ := strconv.ParseBool(caseFold)
	caseInsensitive := fs.Bool("case-insensitive", foldDefault, "match paths ignoring case (default $AUTHPROXY_RULES_CASE_INSENSITIVE)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: authproxy explain [-rules FILE] [-case-insensitive] [-claims JSON|@FILE] METHOD PATH|URL")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("explain needs METHOD and PATH (or URL with the host: https://wiki.example.com/admin)")
	}
	method, target := fs.Arg(0), fs.Arg(1)
	if rulesFile == "" {
		return errors.New("no rules file: set AUTHPROXY_RULES_FILE or pass -rules (without rules every logged-in user passes)")
	}
	a, err := loadRules(rulesFile, *caseInsensitive)
	if err != nil {
		return err
	}
	host, u, err := explainTarget(target)
	if err != nil {
		return err
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
	d := a.rules.DecideHost(method, host, u.EscapedPath(), claims, authenticated)
	fmt.Fprintf(stdout, "%s: %s %s%s\n  %s\n", strings.ToUpper(d.Outcome.String()), method, host, u.EscapedPath(), d.Reason)
	return nil
}

// explainTarget reads explain's PATH or URL: a path as the proxy reads a
// request target, or an http(s) URL, whose host is read as the proxy reads
// a Host header (route.HostName).
func explainTarget(target string) (host string, u *url.URL, err error) {
	if strings.HasPrefix(target, "/") {
		if u, err = url.ParseRequestURI(target); err != nil {
			return "", nil, fmt.Errorf("PATH %q: %w", target, err)
		}
		return "", u, nil
	}
	u, err = url.ParseRequestURI(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", nil, fmt.Errorf("%q is neither a path (/admin) nor an http(s) URL (https://wiki.example.com/admin)", target)
	}
	name, _, ok := route.HostName(u.Host)
	if !ok {
		return "", nil, fmt.Errorf("URL %q: %q is not a host name", target, u.Host)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return name, u, nil
}
