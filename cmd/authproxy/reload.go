package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/joho/godotenv"
)

// A reload reads every setting again, from the environment, .env and every
// file a setting names, into a new config. A config with any problem is
// refused whole and the running one stays. Otherwise the cheap parts are
// rebuilt and swapped (build: the proxy handler with its rules, headers,
// identity signer and upstream transports), the cookie keys are swapped in
// place, and the long-lived parts are kept (listeners, provider, Redis
// client, metrics). A request reads the handler once, so requests and
// WebSockets under way finish on the handler they started with.

// dotEnv is the settings file read from the working directory.
const dotEnv = ".env"

// snapshot is the settings as read at one moment, and the files they name,
// each hashed before it was read: a file changed while being read hashes
// differently from what was read, so the change is seen at the next check.
type snapshot struct {
	vars  env
	files fileHashes
}

// fileHashes maps a file's path to the SHA-256 of its contents ("" when it
// cannot be read). Contents, not modification times: Kubernetes updates a
// mounted ConfigMap or Secret by swapping a symlink.
type fileHashes map[string]string

// loader reads a snapshot of the settings (readSettings over the process's
// environment).
type loader func() (snapshot, error)

// reloads says where a reload reads the settings and what triggers it.
type reloads struct {
	load  loader     // nil: no reloads
	files fileHashes // the files as they were when the starting config was read
	hup   <-chan os.Signal
}

// live is what a reload replaces: the handler and what it alone uses.
type live struct {
	handler http.Handler
	// transports reach the upstreams; once a newer handler is in force,
	// their idle connections are closed (busy ones finish their requests).
	transports []http.RoundTripper
	// allowHost says which host names get certificates and https
	// redirects (cfg.TLS.Hosts).
	allowHost func(host string) bool
}

// transports lists the upstream transports of cfg: one per route.
func transports(cfg config) []http.RoundTripper {
	var ts []http.RoundTripper
	if cfg.Proxy.Routes != nil && cfg.Proxy.Transport != nil {
		for _, rt := range cfg.Proxy.Routes.Routes() {
			ts = append(ts, cfg.Proxy.Transport(rt))
		}
	}
	return ts
}

// reloadable maps each setting that a reload puts in force to the name the
// reload's log line gives its change. Every other setting needs a restart:
// a reload that finds it changed keeps its running value and says so. A
// setting ending in _FILE names a file: a change of its contents counts.
func reloadable() []struct{ setting, name string } {
	return []struct{ setting, name string }{
		{"AUTHPROXY_RULES_FILE", "rules"},
		{"AUTHPROXY_RULES_CASE_INSENSITIVE", "rules"},
		{"AUTHPROXY_COOKIE_SECRET", "cookie secrets"},
		{"AUTHPROXY_COOKIE_SECRET_FILE", "cookie secrets"},
		{"AUTHPROXY_IDENTITY_KEY_FILE", "identity keys"},
		{"AUTHPROXY_IDENTITY_JWT", "identity assertion"},
		{"AUTHPROXY_IDENTITY_AUDIENCE", "identity assertion"},
		{"AUTHPROXY_UPSTREAM", "upstream"},
		{"AUTHPROXY_ROUTES_FILE", "routes"},
		{"AUTHPROXY_UPSTREAM_TIMEOUT", "upstream"},
		{"AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS", "upstream"},
		{"AUTHPROXY_UPSTREAM_MAX_CONNS", "upstream"},
		{"AUTHPROXY_UPSTREAM_CA_FILE", "upstream"},
		{"AUTHPROXY_UPSTREAM_CLIENT_CERT_FILE", "upstream"},
		{"AUTHPROXY_UPSTREAM_CLIENT_KEY_FILE", "upstream"},
		{"AUTHPROXY_UPSTREAM_BASIC_AUTH", "upstream"},
		{"AUTHPROXY_UPSTREAM_BASIC_PASSWORD", "upstream"},
		{"AUTHPROXY_PASS_HOST_HEADER", "headers"},
		{"AUTHPROXY_USER_HEADER", "headers"},
		{"AUTHPROXY_EMAIL_HEADER", "headers"},
		{"AUTHPROXY_NAME_HEADER", "headers"},
		{"AUTHPROXY_GROUPS_HEADER", "headers"},
		{"AUTHPROXY_GROUPS_CLAIM", "headers"},
		{"AUTHPROXY_WEBSOCKET_ALLOWED_ORIGINS", "websocket origins"},
	}
}

// readSettings reads the settings from lookup and .env (lookup wins), and
// hashes .env and every file a setting names before anything reads it.
func readSettings(lookup func(string) (string, bool)) (snapshot, error) {
	files := fileHashes{dotEnv: hashFile(dotEnv)}
	dotenv, err := godotenv.Read(dotEnv)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return snapshot{}, fmt.Errorf("read .env: %w", dotEnvError(err))
	}
	e := readEnv(func(name string) (string, bool) {
		if v, ok := lookup(name); ok {
			return v, true
		}
		v, ok := dotenv[name]
		return v, ok
	})
	for _, path := range namedFiles(e) {
		files[path] = hashFile(path)
	}
	return snapshot{vars: e, files: files}, nil
}

// dotEnvError is err from reading .env without godotenv's quotes of the
// file: its parse errors quote the value ("unterminated quoted value
// \"...") or the whole rest of the file ("... near \"...\""), secrets
// included, and the message reaches the log of a refused reload, the
// start's error and check-config's output. Only what kind of error it is
// remains; a file that cannot be read keeps its reason.
func dotEnvError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	kind := "it does not parse"
	for _, k := range []string{"unterminated quoted value", "unexpected character"} {
		if strings.HasPrefix(err.Error(), k) {
			kind = k
		}
	}
	return fmt.Errorf("%s (the parser's message is not shown: it quotes the file, which holds secrets); "+
		"each line must be NAME=VALUE with a name of letters, digits and _, and every quote closed", kind)
}

// namedFiles lists the files e's settings name (those ending in _FILE).
func namedFiles(e env) []string {
	var paths []string
	for _, s := range e.settings() {
		if strings.HasSuffix(s.name, "_FILE") && *s.value != "" {
			paths = append(paths, *s.value)
		}
	}
	return paths
}

// hashFiles hashes .env and the files e names, now.
func hashFiles(e env) fileHashes {
	h := fileHashes{dotEnv: hashFile(dotEnv)}
	for _, path := range namedFiles(e) {
		h[path] = hashFile(path)
	}
	return h
}

func hashFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// watch reloads on SIGHUP, and when a watched file's contents change (every
// AUTHPROXY_RELOAD_INTERVAL), until ctx ends. One goroutine: reloads never
// overlap, and a SIGHUP during a reload is served after it.
func (s *server) watch(ctx context.Context, r reloads) {
	var tick <-chan time.Time
	if d := s.interval(); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.hup:
			_ = s.reload(r.load, "SIGHUP")
		case <-tick:
			if s.filesChanged() {
				_ = s.reload(r.load, "file change")
			}
		}
	}
}

// interval is the running AUTHPROXY_RELOAD_INTERVAL (a restart-only
// setting, checked at start).
func (s *server) interval() time.Duration {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	d, _ := time.ParseDuration(s.running.vars.ReloadInterval)
	return d
}

// filesChanged reports whether a watched file differs from when the last
// reload (or the start) read it. A file refused once is not retried until
// it changes again, so its problems are logged once.
func (s *server) filesChanged() bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	now := hashFiles(s.running.vars)
	for path, h := range now {
		if s.seen[path] != h {
			return true
		}
	}
	return false
}

// reload reads the settings with load and puts them in force, or refuses
// them whole: see the comment at the top of this file. It logs the outcome
// once and counts it; the error is for tests.
func (s *server) reload(load loader, trigger string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.closed {
		return errors.New("shutting down")
	}
	changed, restart, err := s.reloadLocked(load)
	if err != nil {
		s.metrics.ConfigReloaded(false)
		var p problems
		if errors.As(err, &p) {
			s.log.Error("configuration reload refused; the running configuration stays", "trigger", trigger, "problems", []string(p))
		} else {
			s.log.Error("configuration reload refused; the running configuration stays", "trigger", trigger, "problems", []string{err.Error()})
		}
		return err
	}
	s.metrics.ConfigReloaded(true)
	if len(restart) > 0 {
		s.log.Warn("settings changed that take effect only at a restart; their running values stay", "settings", restart)
	}
	s.log.Info("configuration reloaded", "trigger", trigger, "changed", changed)
	return nil
}

func (s *server) reloadLocked(load loader) (changed, restart []string, err error) {
	snap, err := load()
	if err != nil {
		return nil, nil, err
	}
	s.seen = snap.files
	restart = keepRestartOnly(&snap.vars, s.running.vars)
	cfg, err := snap.vars.parse()
	if err != nil {
		return nil, nil, err
	}
	// Keys that were configured and are now missing (a .env deleted, a
	// variable dropped) would become a random key: everyone logged out, and
	// replicas disagreeing. That is never what a reload is for.
	if len(cfg.Cookie.Secrets) == 0 && s.generated == nil {
		return nil, nil, problems{"AUTHPROXY_COOKIE_SECRET and AUTHPROXY_COOKIE_SECRET_FILE are no longer set: " +
			"a reload does not replace configured cookie keys with a random one (that would end every session)"}
	}
	l, err := s.build(cfg)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range s.reloaders {
		if err := r(); err != nil {
			return nil, nil, err
		}
	}
	secrets := s.cookieSecrets(cfg.Cookie.Secrets)
	if err := s.cookies.SetSecrets(secrets); err != nil {
		return nil, nil, err
	}
	if s.redisSessions != nil {
		if err := s.redisSessions.SetSecrets(secrets); err != nil {
			return nil, nil, err
		}
	}
	s.auth.SetKeepClaims(cfg.OIDC.KeepClaims)
	s.auth.SetReturns(cfg.OIDC.Returns)
	old := s.current.Swap(l)
	for _, rt := range old.transports {
		if t, ok := rt.(interface{ CloseIdleConnections() }); ok && !slices.Contains(l.transports, rt) {
			t.CloseIdleConnections()
		}
	}
	changed = changedNames(s.running, snap)
	s.running = snap
	return changed, restart, nil
}

// keepRestartOnly gives every setting of next that a reload cannot put in
// force its value in running, and returns the names of those that differed.
func keepRestartOnly(next *env, running env) []string {
	ok := map[string]bool{}
	for _, r := range reloadable() {
		ok[r.setting] = true
	}
	old := running.settings()
	var names []string
	for i, s := range next.settings() {
		if !ok[s.name] && *s.value != *old[i].value {
			names = append(names, s.name)
			*s.value = *old[i].value
		}
	}
	return names
}

// changedNames names what differs between two snapshots, by the names of
// reloadable, without values.
func changedNames(old, next snapshot) []string {
	before, after := settingsByName(old.vars), settingsByName(next.vars)
	names := []string{}
	for _, r := range reloadable() {
		b, a := before[r.setting], after[r.setting]
		diff := b != a
		if strings.HasSuffix(r.setting, "_FILE") && a != "" && old.files[a] != next.files[a] {
			diff = true
		}
		if diff && !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	return names
}

func settingsByName(e env) map[string]string {
	m := map[string]string{}
	for _, s := range e.settings() {
		m[s.name] = *s.value
	}
	return m
}
