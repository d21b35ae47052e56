package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// checkConfig is `authproxy check-config`: it reads the settings and every
// file they name exactly as a start or a reload would, without listening,
// discovering the provider or dialing Redis, so a CI job or a pre-deploy
// hook can refuse a broken configuration. Every problem is in the error;
// a usable configuration prints "configuration OK" and a summary.
func checkConfig(lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	snap, err := readSettings(lookup)
	if err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	cfg, err := snap.vars.parse()
	if cfg, err = withTracing(cfg, err, lookup); err != nil {
		return fmt.Errorf("check-config: %w", err)
	}
	e := snap.vars
	fmt.Fprintln(stdout, "configuration OK")
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, a...)) }
	listen := cfg.Server.Addr
	if cfg.Server.MetricsAddr != "" {
		listen += ", metrics on " + cfg.Server.MetricsAddr
	}
	line("listen", "%s", listen)
	line("upstream", "%s", withoutPassword(e.Upstream))
	if t := cfg.Tracing; t.Enabled {
		line("tracing", "OTLP %s to %s as %s", t.Protocol, t.Endpoint.Redacted(), t.ServiceName)
	} else {
		line("tracing", "off")
	}
	line("provider", "%s (client %s)", withoutPassword(cfg.OIDC.Issuer), cfg.OIDC.ClientID)
	if cfg.Redis != nil {
		line("sessions", "redis at %s", strings.Join(cfg.Redis.Addrs, ","))
	} else {
		line("sessions", "cookie")
	}
	switch n := len(cfg.Cookie.Secrets); {
	case n == 0:
		line("cookie secrets", "none: a random key at start; sessions will not survive a restart (warning)")
	case e.CookieSecretFile != "":
		line("cookie secrets", "%d from %s (the first seals)", n, e.CookieSecretFile)
	default:
		line("cookie secrets", "%d (the first seals)", n)
	}
	if rs, ok := cfg.Proxy.Rules.(fmt.Stringer); ok {
		line("rules", "%d from %s", strings.Count(rs.String(), "\n"), e.RulesFile)
	} else {
		line("rules", "none: every logged-in user passes")
	}
	switch {
	case cfg.Identity == nil:
		line("identity assertion", "off")
	case len(cfg.Identity.Keys) == 0:
		line("identity assertion", "on, with a key generated at start (warning: upstreams must refetch the JWKS after every restart)")
	default:
		line("identity assertion", "on, %d keys from %s", len(cfg.Identity.Keys), e.IdentityKeyFile)
	}
	if cfg.Server.ReloadInterval > 0 {
		line("reload", "on SIGHUP, and when a file changes (checked every %s)", cfg.Server.ReloadInterval)
	} else {
		line("reload", "on SIGHUP")
	}
	if files := namedFiles(e); len(files) > 0 {
		line("files read", "%s", strings.Join(files, ", "))
	}
	return tw.Flush()
}
