package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisReadyTimeout bounds redis-server's start, until it answers PING.
const redisReadyTimeout = hangTimeout

// recoverWithin bounds how long the proxy may answer 503 after Redis is
// back. go-redis probes a server it gave up dialing once a second, so it
// takes about a second; the bound is generous for a loaded machine and
// still fails a proxy that never reconnects.
const recoverWithin = 30 * time.Second

// outageAnswerWithin bounds each answer while Redis is down. With the server
// gone, the store's calls fail at once (connection refused) and the proxy
// answers 503 in milliseconds; the bound catches a request that waits on the
// dead store (retrying, or queued for a pool connection) until the client
// gives up, not a slow machine.
const outageAnswerWithin = 30 * time.Second

// requireRedis fails t when redis-server is missing, saying how to install it.
func requireRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("e2e: redis-server not found on PATH: apt-get install redis-server (`make test` does it when run as root): %v", err)
	}
	return bin
}

// redisServer is a redis-server on a free 127.0.0.1 port, without
// persistence, in a temporary directory. It can be killed and started again
// on the same port (empty: nothing was saved); whatever runs when t ends is
// stopped then.
type redisServer struct {
	t    *testing.T
	bin  string
	dir  string
	Port int
	proc *process // nil while killed
	// logs holds the output of every run, for a failure message.
	logs []*syncBuffer
}

// startRedis starts a redis-server for t and waits until it answers PING.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	requireE2E(t)
	r := &redisServer{t: t, bin: requireRedis(t), dir: t.TempDir()}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			for i, l := range r.logs {
				t.Logf("--- output of redis-server run %d on port %d ---\n%s", i+1, r.Port, l.String())
			}
		}
	})
	// The port may be taken between freePort and redis's bind: try again.
	for attempt := 1; ; attempt++ {
		r.Port = freePort(t)
		err := r.start()
		if err == nil {
			return r
		}
		if attempt == 3 {
			t.Fatalf("start redis-server: %v", err)
		}
	}
}

// Addr is host:port of the server.
func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// URL is what AUTHPROXY_REDIS_URL takes.
func (r *redisServer) URL() string { return "redis://" + r.Addr() + "/0" }

// start runs redis-server on r.Port and waits for PING. It does not use
// startProcess, whose cleanup would stop a killed server's successor in the
// wrong order; r's own cleanup stops whichever runs.
func (r *redisServer) start() error {
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", "", "--daemonize", "no")
	p := &process{name: "redis-server", cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	r.logs = append(r.logs, p.out)
	deadline := time.Now().Add(redisReadyTimeout)
	for {
		c, err := dialRedis(r.Addr())
		if err == nil {
			var pong any
			pong, err = c.Do("PING")
			c.Close()
			if err == nil && pong != "PONG" {
				err = fmt.Errorf("PING answered %q", pong)
			}
		}
		if err == nil {
			r.proc = p
			return nil
		}
		if gone, exitErr := p.exited(); gone {
			return fmt.Errorf("redis-server exited (%v) before answering PING:\n%s", exitErr, p.out.String())
		}
		if time.Now().After(deadline) {
			_ = p.stop(time.Second)
			return fmt.Errorf("redis-server: no PING answer within %s: %v\n%s", redisReadyTimeout, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill kills the server (SIGKILL, as a crash would) and waits for it to exit.
func (r *redisServer) Kill() {
	if r.proc == nil {
		return
	}
	_ = syscall.Kill(-r.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-r.proc.done
	r.proc = nil
}

// Restart starts an empty server on the same port after Kill.
func (r *redisServer) Restart() {
	r.t.Helper()
	r.Kill()
	if err := r.start(); err != nil {
		r.t.Fatalf("restart redis-server on port %d: %v", r.Port, err)
	}
}

// Client connects a RESP client to the server; it is closed when t ends.
func (r *redisServer) Client(t *testing.T) *respClient {
	t.Helper()
	c, err := dialRedis(r.Addr())
	if err != nil {
		t.Fatalf("connect to redis-server: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// respClient speaks just enough RESP2 to look into Redis the way an operator
// with redis-cli would: commands as arrays of bulk strings, and the five
// reply types. It shares no code with go-redis, which the proxy uses.
type respClient struct {
	conn net.Conn
	r    *bufio.Reader
}

// respError is an error reply (-ERR ...).
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

func dialRedis(addr string) (*respClient, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	return &respClient{conn: conn, r: bufio.NewReader(conn)}, nil
}

func (c *respClient) Close() error { return c.conn.Close() }

// Do sends one command and returns its reply: string (simple and bulk),
// int64, []any, nil (a nil bulk or array), or a respError.
func (c *respClient) Do(args ...string) (any, error) {
	if err := c.conn.SetDeadline(time.Now().Add(hangTimeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return nil, err
	}
	v, err := c.read()
	if err != nil {
		return nil, err
	}
	if e, ok := v.(respError); ok {
		return nil, e
	}
	return v, nil
}

func (c *respClient) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("redis: bad reply line %q", line)
	}
	kind, rest := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return respError(rest), nil
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err // $-1: nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err // *-1: nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unknown reply type %q", kind)
}

// Strings runs a command whose reply is an array of strings.
func (c *respClient) Strings(t *testing.T, args ...string) []string {
	t.Helper()
	v, err := c.Do(args...)
	if err != nil {
		t.Fatalf("redis %s: %v", strings.Join(args, " "), err)
	}
	list, ok := v.([]any)
	if !ok && v != nil {
		t.Fatalf("redis %s: reply %#v, want an array", strings.Join(args, " "), v)
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("redis %s: element %#v, want a string", strings.Join(args, " "), e)
		}
		out = append(out, s)
	}
	return out
}

// Int runs a command whose reply is an integer.
func (c *respClient) Int(t *testing.T, args ...string) int64 {
	t.Helper()
	v, err := c.Do(args...)
	if err != nil {
		t.Fatalf("redis %s: %v", strings.Join(args, " "), err)
	}
	n, ok := v.(int64)
	if !ok {
		t.Fatalf("redis %s: reply %#v, want an integer", strings.Join(args, " "), v)
	}
	return n
}

// redisKey is one key of a dump, with its type and content.
type redisKey struct {
	Name  string
	Type  string
	TTL   int64  // seconds; -1 none
	Value string // strings: the value; sorted sets: "member score" lines
}

// Dump reads every key the way an operator with a copy of the data would.
func (c *respClient) Dump(t *testing.T) []redisKey {
	t.Helper()
	names := c.Strings(t, "KEYS", "*")
	slices.Sort(names)
	var keys []redisKey
	for _, name := range names {
		typ, err := c.Do("TYPE", name)
		if err != nil {
			t.Fatalf("redis TYPE %s: %v", name, err)
		}
		k := redisKey{Name: name, Type: fmt.Sprint(typ), TTL: c.Int(t, "TTL", name)}
		switch k.Type {
		case "string":
			v, err := c.Do("GET", name)
			if err != nil {
				t.Fatalf("redis GET %s: %v", name, err)
			}
			k.Value, _ = v.(string)
		case "zset":
			pairs := c.Strings(t, "ZRANGE", name, "0", "-1", "WITHSCORES")
			for i := 0; i+1 < len(pairs); i += 2 {
				k.Value += pairs[i] + " " + pairs[i+1] + "\n"
			}
		case "none":
			continue // expired or deleted since KEYS
		default:
			t.Errorf("redis key %s has type %s, which this dump does not read", name, k.Type)
		}
		keys = append(keys, k)
	}
	return keys
}

// keysWithPrefix returns the names of the keys that start with prefix.
func keysWithPrefix(keys []redisKey, prefix string) []string {
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k.Name, prefix) {
			out = append(out, k.Name)
		}
	}
	return out
}

// describeDump lists a dump's keys for failure messages: name, type, TTL,
// and the size of the value.
func describeDump(keys []redisKey) string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s (%s, TTL %ds, %d bytes)\n", k.Name, k.Type, k.TTL, len(k.Value))
	}
	return b.String()
}

// replicaSpec is one authproxy replica of a replicaSet.
type replicaSpec struct {
	Name string
	// CookieSecret, when set, replaces the secret the replicas share.
	CookieSecret string
	// CookieStore runs this replica with the cookie store, without Redis.
	CookieStore bool
	Env         map[string]string
}

// replicaOptions configures newReplicaSet.
type replicaOptions struct {
	Replicas []replicaSpec
	// Upstream, when set, wraps the recording upstream (to add endpoints,
	// such as an event stream); the replicas' AUTHPROXY_UPSTREAM is then a
	// server of its handler.
	Upstream func(rec *recorder) http.Handler
	// Provider changes the provider's configuration before it starts; base
	// maps each replica's name to its http://127.0.0.1:PORT.
	Provider func(c *providerConfig, base map[string]string)
}

// replicaSet is several authproxy processes sharing one redis-server, one
// client registration at the provider, one cookie secret and one upstream,
// as replicas behind a load balancer are. Each has its own port, so a test
// picks the replica a request goes to.
type replicaSet struct {
	PKI      *pki
	Redis    *redisServer
	Provider *provider
	Client   providerClient
	Upstream *recorder
	Landing  *recorder // every replica's AUTHPROXY_POST_LOGOUT_URL is here (/signed-out-NAME)
	Proxy    map[string]*authproxy
}

// newReplicaSet starts redis-server, the provider, and one authproxy per
// spec with AUTHPROXY_SESSION_STORE=redis (unless CookieStore).
func newReplicaSet(t *testing.T, opts replicaOptions) *replicaSet {
	t.Helper()
	requireE2E(t)
	rs := &replicaSet{PKI: newPKI(t), Redis: startRedis(t), Upstream: newRecorder(t), Landing: newRecorder(t),
		Proxy: map[string]*authproxy{}}
	ports := map[string]int{}
	base := map[string]string{}
	var redirects, postLogouts []string
	for _, r := range opts.Replicas {
		ports[r.Name] = freePort(t)
		base[r.Name] = fmt.Sprintf("http://127.0.0.1:%d", ports[r.Name])
		redirects = append(redirects, base[r.Name]+"/auth/callback")
		postLogouts = append(postLogouts, rs.Landing.URL.String()+"/signed-out-"+r.Name)
	}
	rs.Client = providerClient{
		ClientID:                "e2e-proxy",
		ClientSecret:            newCookieSecret(t),
		RedirectURIs:            redirects,
		PostLogoutRedirectURIs:  postLogouts,
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	cfg := providerConfig{
		Clients:  []providerClient{rs.Client},
		Features: providerFeatures{RPInitiatedLogout: true},
	}
	if opts.Provider != nil {
		opts.Provider(&cfg, base)
		rs.Client = cfg.Clients[0]
	}
	rs.Provider = startProvider(t, rs.PKI, cfg)

	upstream := rs.Upstream.URL.String()
	if opts.Upstream != nil {
		srv := httptest.NewServer(opts.Upstream(rs.Upstream))
		t.Cleanup(srv.Close)
		upstream = srv.URL
	}
	shared := newCookieSecret(t)
	for i, r := range opts.Replicas {
		env := map[string]string{
			"AUTHPROXY_SESSION_STORE": "redis",
			"AUTHPROXY_REDIS_URL":     rs.Redis.URL(),
		}
		if r.CookieStore {
			env = map[string]string{}
		}
		for k, v := range r.Env {
			env[k] = v
		}
		secret := shared
		if r.CookieSecret != "" {
			secret = r.CookieSecret
		}
		rs.Proxy[r.Name] = startProxy(t, rs.PKI, proxyConfig{
			Port:          ports[r.Name],
			Upstream:      upstream,
			Issuer:        rs.Provider.Issuer,
			ClientID:      rs.Client.ClientID,
			ClientSecret:  rs.Client.ClientSecret,
			CookieSecret:  secret,
			PostLogoutURL: postLogouts[i],
			Env:           env,
		})
	}
	return rs
}

// URL returns replica name's absolute URL for a path with query.
func (rs *replicaSet) URL(name, pathQuery string) string {
	return rs.Proxy[name].URL.String() + pathQuery
}

// sessionCookie returns the proxy's session cookie that b holds (the jar
// holds one for all of 127.0.0.1: cookies are not bound to a port), and
// fails t unless there is exactly one, whole (no chunks).
func sessionCookie(t *testing.T, b *browser, rs *replicaSet) *http.Cookie {
	t.Helper()
	var found []*http.Cookie
	for _, c := range b.Jar.Cookies(rs.Provider.URL) {
		if c.Name == "_authproxy" || strings.HasPrefix(c.Name, "_authproxy_") && !strings.HasPrefix(c.Name, "_authproxy_login_") {
			found = append(found, c)
		}
	}
	if len(found) != 1 || found[0].Name != "_authproxy" {
		t.Fatalf("browser holds session cookies %q, want exactly _authproxy", cookieNames(found))
	}
	return found[0]
}

// dropSessionCookie removes the proxy's session cookie from b, keeping the
// provider's: the next login through any replica is then a new proxy
// session, in the same provider session.
func dropSessionCookie(b *browser, rs *replicaSet) {
	b.Jar.SetCookies(rs.Provider.URL, []*http.Cookie{{Name: "_authproxy", Path: "/", MaxAge: -1}})
}

// checkServed sends a page load and an API call with exactly cookie to
// replica name and checks that both reach the upstream as user.
func checkServed(t *testing.T, rs *replicaSet, c *http.Client, name, pathQuery string, cookie *http.Cookie, user string) {
	t.Helper()
	for _, kind := range []string{"page load", "API call"} {
		h, pq := navigationHeaders(), pathQuery+"&kind=page"
		if kind == "API call" {
			h, pq = apiHeaders(), pathQuery+"&kind=api"
		}
		a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{cookie}, h)
		if err != nil {
			t.Fatalf("%s GET %s on replica %s: %v", kind, pq, name, err)
		}
		if a.Status != http.StatusOK || !strings.Contains(a.Body, userHeading(user)) {
			t.Errorf("%s GET %s on replica %s with the cookie: status %d, want 200 from the upstream as %s; body:\n%s",
				kind, pq, name, a.Status, user, a.Body)
			continue
		}
		seen := rs.Upstream.ByRequestURI(pq)
		if len(seen) != 1 || seen[0].Header.Get("X-User") != user {
			t.Errorf("%s GET %s on replica %s: upstream saw %d requests, want 1 with X-User %q", kind, pq, name, len(seen), user)
		}
	}
}

// checkLoggedOut sends a page load and an API call with exactly cookie to
// replica name and checks that the page load is sent to log in (302 to
// /auth/login?rd=...), the API call gets 401, and neither reaches the
// upstream.
func checkLoggedOut(t *testing.T, rs *replicaSet, c *http.Client, name, pathQuery string, cookie *http.Cookie) {
	t.Helper()
	for _, kind := range []string{"page load", "API call"} {
		h, pq, want := navigationHeaders(), pathQuery+"&kind=page", http.StatusFound
		if kind == "API call" {
			h, pq, want = apiHeaders(), pathQuery+"&kind=api", http.StatusUnauthorized
		}
		a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{cookie}, h)
		if err != nil {
			t.Fatalf("%s GET %s on replica %s: %v", kind, pq, name, err)
		}
		if a.Status != want {
			t.Errorf("%s GET %s on replica %s with the cookie: status %d, want %d (log in again); body:\n%s",
				kind, pq, name, a.Status, want, a.Body)
		}
		p := &page{URL: mustParseURL(t, rs.URL(name, pq)), Status: a.Status, Header: a.Header, Body: a.Body}
		switch a.Status {
		case http.StatusFound:
			checkLoginRedirect(t, p, pq)
		case http.StatusUnauthorized:
			checkUnauthorized(t, p, pq)
		}
		if seen := rs.Upstream.ByRequestURI(pq); len(seen) != 0 {
			t.Errorf("%s GET %s on replica %s: upstream saw it %d times, want never", kind, pq, name, len(seen))
		}
	}
}

// TestRedisReplicas runs two replicas, A and B, with the Redis store, one
// redis-server and one cookie secret between them, and a third, C, sharing
// Redis but not the secret (a misconfigured or rotated-away replica).
//
//   - A login through A works on B: the cookie is a ticket (one cookie, under
//     300 bytes), the session is in Redis.
//   - Redis holds no ID token, e-mail, user name or issuer in plain text,
//     neither in key names nor in values.
//   - C treats the ticket as no session (302 to log in, 401), never a 5xx, and
//     leaves it alive for A and B; C's own logins work, and its cookies mean
//     nothing to A.
//   - Logout through B deletes the session: the old cookie replayed on A and
//     on B is refused.
func TestRedisReplicas(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: []replicaSpec{
		{Name: "a"}, {Name: "b"}, {Name: "c", CookieSecret: newCookieSecret(t)},
	}})
	c := rawClient(t)
	const user = "replica-user-7q4x"
	email := user + "@example.test"

	b := newBrowser(t, rs.PKI)
	start := rs.URL("a", "/via-a?step=login")
	if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start || !strings.Contains(p.Body, userHeading(user)) {
		t.Fatalf("login through A: landed on %d %s, want 200 %s as %s; hops:\n%s", p.Status, p.URL, start, user, b.HopsString())
	}
	ticket := sessionCookie(t, b, rs)
	if size := len(ticket.Name) + 1 + len(ticket.Value); size >= 300 {
		t.Errorf("session cookie is %d bytes (%s=...), want a ticket under 300", size, ticket.Name)
	} else {
		t.Logf("session cookie: %d bytes", size)
	}

	checkServed(t, rs, c, "b", "/via-b?step=shared", ticket, user)
	checkServed(t, rs, c, "a", "/via-a?step=shared", ticket, user)

	// Redis, read as someone holding a copy of its data would.
	rc := rs.Redis.Client(t)
	dump := rc.Dump(t)
	sessions := keysWithPrefix(dump, "authproxy:s:")
	if len(sessions) != 1 {
		t.Fatalf("Redis holds %d session entries (authproxy:s:*), want 1; keys:\n%s", len(sessions), describeDump(dump))
	}
	for _, k := range dump {
		if k.Name == sessions[0] && (k.TTL <= 0 || k.TTL > 12*3600) {
			t.Errorf("session entry %s has TTL %ds, want the session's remaining lifetime (0 < TTL <= 12h)", k.Name, k.TTL)
		}
	}
	t.Logf("Redis after one login:\n%s", describeDump(dump))
	secrets := map[string]string{
		"user name":        user,
		"e-mail":           email,
		"issuer":           strings.TrimSuffix(rs.Provider.Issuer, "/"),
		"a JWT (ID token)": "eyJhbGciOi", // base64url of `{"alg":`, how every JWT starts
		"client secret":    rs.Client.ClientSecret,
		"session JSON":     `"u":"`, // session.Session's user field, as encoding/json writes it
	}
	checkDumpHides(t, dump, secrets)

	// C shares Redis but not the cookie secret: "log in again", never a 5xx,
	// and the session is untouched for A and B.
	checkLoggedOut(t, rs, c, "c", "/via-c?step=foreign", ticket)
	checkServed(t, rs, c, "b", "/via-b?step=after-c", ticket, user)
	bc := newBrowser(t, rs.PKI)
	startC := rs.URL("c", "/via-c?step=login")
	if p := bc.Login(startC, "replica-c-user"); p.Status != http.StatusOK || p.URL.String() != startC {
		t.Fatalf("login through C: landed on %d %s; hops:\n%s", p.Status, p.URL, bc.HopsString())
	}
	ticketC := sessionCookie(t, bc, rs)
	checkLoggedOut(t, rs, c, "a", "/via-a?step=cookie-of-c", ticketC)

	// Logout through B.
	logout := b.Do(http.MethodGet, rs.URL("b", "/auth/logout"), navigationHeaders(), nil)
	if !isRedirect(logout.Status) {
		t.Fatalf("GET /auth/logout on B: status %d, want a redirect to the provider; body:\n%s", logout.Status, logout.Body)
	}
	if !(answer{Header: logout.Header}).clearsSession() {
		t.Errorf("GET /auth/logout on B: Set-Cookie %q, want _authproxy expired", logout.Header.Values("Set-Cookie"))
	}
	// The redirect carries the ID token the session held: it was in Redis,
	// only encrypted.
	if loc, err := logout.URL.Parse(logout.Header.Get("Location")); err != nil || loc.Query().Get("id_token_hint") == "" {
		t.Errorf("logout Location %q, want the provider's end-session URL with id_token_hint", logout.Header.Get("Location"))
	} else {
		idToken := loc.Query().Get("id_token_hint")
		parts := strings.Split(idToken, ".")
		checkDumpHides(t, dump, map[string]string{"the ID token's payload": parts[1], "the ID token's signature": parts[len(parts)-1]})
	}

	for _, name := range []string{"a", "b"} {
		awaitRevoked(t, rs, c, name, ticket)
		checkLoggedOut(t, rs, c, name, "/after-logout-"+name+"?step=replay", ticket)
	}
	after := rc.Dump(t)
	if got := keysWithPrefix(after, sessions[0]); len(got) != 0 {
		t.Errorf("after logout Redis still holds %s", sessions[0])
	}
	if got := keysWithPrefix(after, "authproxy:s:"); len(got) != 1 {
		t.Errorf("after logout Redis holds %d session entries, want 1 (C's login); keys:\n%s", len(got), describeDump(after))
	}
	checkServedNoError(t, rs)
}

// checkDumpHides fails t for every key name or value of dump that contains
// one of secrets (what -> text).
func checkDumpHides(t *testing.T, dump []redisKey, secrets map[string]string) {
	t.Helper()
	for what, s := range secrets {
		if s == "" {
			continue
		}
		for _, k := range dump {
			if strings.Contains(k.Name, s) {
				t.Errorf("Redis key name %q contains %s (%q)", k.Name, what, s)
			}
			if strings.Contains(k.Value, s) {
				t.Errorf("Redis value of %s (%s) contains %s (%q) in plain text", k.Name, k.Type, what, s)
			}
		}
	}
}

// checkServedNoError fails t if any replica answered a request with a 5xx
// other than 501. The suite's own polls of /readyz while a replica started
// do not count: a replica says 503 there until its first provider discovery
// is done, by design.
func checkServedNoError(t *testing.T, rs *replicaSet) {
	t.Helper()
	for name, p := range rs.Proxy {
		for _, f := range serverErrors(t, p) {
			// 501 is the cookie store's answer to back-channel logout, by design.
			if f["status"] != "501" {
				t.Errorf("replica %s answered %s %s with %s (request %s)", name, f["method"], f["path"], f["status"], f["request_id"])
			}
		}
	}
}

// serverErrors returns the access-log lines of p's 5xx answers so far
// (authproxy.accessLog).
func serverErrors(t *testing.T, p *authproxy) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, f := range p.accessLog(t) {
		if strings.HasPrefix(f["status"], "5") {
			out = append(out, f)
		}
	}
	return out
}

// TestRedisOutage kills redis-server under a logged-in browser and starts an
// empty one on the same port. While Redis is down, page loads get a readable
// 503 page and API calls a 503 JSON body, quickly; the proxy neither exits
// nor sends the user to log in (the session may be fine). Once Redis is back
// (without the data), the same cookie means "log in again", and a new login
// works, without restarting the proxy.
func TestRedisOutage(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: []replicaSpec{{Name: "a"}}})
	c := rawClient(t)
	const user = "outage-user"
	b := newBrowser(t, rs.PKI)
	start := rs.URL("a", "/before?step=login")
	if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	ticket := sessionCookie(t, b, rs)
	checkServed(t, rs, c, "a", "/before?step=served", ticket, user)

	rs.Redis.Kill()
	killed := time.Now()
	// The proxy learns of the kill when its cache's subscription reads the
	// closed connection, a moment after the process is gone; until then
	// its lease holds and the cached session may still be served (no
	// revocation can complete without Redis, so none is missed). Wait for
	// the first 503 (200 allowed before it only); from then on every answer
	// must be a 503.
	for n := 0; ; n++ {
		pq := fmt.Sprintf("/noticing?n=%d", n)
		a, err := rawGet(c, rs.URL("a", pq), []*http.Cookie{ticket}, apiHeaders())
		switch {
		case err != nil:
			t.Fatalf("GET %s with Redis killed: %v", pq, err)
		case a.Status == http.StatusServiceUnavailable:
		case a.Status != http.StatusOK:
			t.Fatalf("GET %s with Redis killed: status %d, want 200 (cached, not yet noticed) then 503; body:\n%s", pq, a.Status, a.Body)
		case time.Since(killed) > hangTimeout:
			t.Fatalf("GET %s: still served %v after Redis was killed", pq, hangTimeout)
		default:
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	const tries = 5
	var slowest time.Duration
	for i := range tries {
		for _, kind := range []string{"page load", "API call"} {
			h := navigationHeaders()
			if kind == "API call" {
				h = apiHeaders()
			}
			pq := fmt.Sprintf("/during?n=%d&kind=%s", i, strings.ReplaceAll(kind, " ", "-"))
			sent := time.Now()
			a, err := rawGet(c, rs.URL("a", pq), []*http.Cookie{ticket}, h)
			took := time.Since(sent)
			slowest = max(slowest, took)
			if err != nil {
				t.Fatalf("%s GET %s with Redis down: %v", kind, pq, err)
			}
			if a.Status != http.StatusServiceUnavailable {
				t.Errorf("%s GET %s with Redis down: status %d, want 503; body:\n%s", kind, pq, a.Status, a.Body)
				continue
			}
			ct := a.Header.Get("Content-Type")
			switch {
			case kind == "page load" && (!strings.HasPrefix(ct, "text/html") || !strings.Contains(a.Body, "<h1>") ||
				!strings.Contains(a.Body, "session store")):
				t.Errorf("page load with Redis down: Content-Type %q, want a readable HTML page naming the session store; body:\n%s", ct, a.Body)
			case kind == "API call" && (!strings.HasPrefix(ct, "application/json") || !strings.Contains(a.Body, `"session_store_unavailable"`)):
				t.Errorf("API call with Redis down: Content-Type %q, want JSON with error session_store_unavailable; body:\n%s", ct, a.Body)
			}
			if a.Header.Get("Retry-After") == "" {
				t.Errorf("%s with Redis down: 503 without Retry-After", kind)
			}
			if seen := rs.Upstream.ByRequestURI(pq); len(seen) != 0 {
				t.Errorf("%s GET %s with Redis down reached the upstream", kind, pq)
			}
		}
	}
	if slowest > outageAnswerWithin {
		t.Errorf("slowest 503 with Redis down took %s, want an answer without waiting on the dead store (within %s)", slowest, outageAnswerWithin)
	}
	if a, err := rawGet(c, rs.URL("a", "/healthz"), nil, nil); err != nil || a.Status != http.StatusOK {
		t.Errorf("GET /healthz with Redis down: %v %d, want 200 (the process is alive)", err, a.Status)
	}
	if gone, err := rs.Proxy["a"].exited(); gone {
		t.Fatalf("authproxy exited (%v) while Redis was down", err)
	}
	t.Logf("Redis down %s: %d requests answered 503, slowest in %s",
		time.Since(killed).Round(time.Millisecond), 2*tries, slowest.Round(time.Millisecond))

	rs.Redis.Restart()
	back := time.Now()
	// go-redis stops dialing after a pool's worth of failed dials and probes
	// once a second until a dial succeeds: the proxy may answer 503 for up to
	// about a second after Redis is back. Then the answer is that of a
	// healthy store: the data is gone, so the session is.
	var recovered time.Duration
	for n := 0; recovered == 0; n++ {
		pq := fmt.Sprintf("/recovering?n=%d", n)
		a, err := rawGet(c, rs.URL("a", pq), []*http.Cookie{ticket}, apiHeaders())
		switch {
		case err != nil:
			t.Fatalf("GET %s after Redis came back: %v", pq, err)
		case a.Status == http.StatusUnauthorized:
			recovered = time.Since(back)
		case a.Status != http.StatusServiceUnavailable:
			t.Fatalf("GET %s %s after Redis came back (empty): status %d, want 503 until the proxy reconnects, then 401; body:\n%s",
				pq, time.Since(back).Round(time.Millisecond), a.Status, a.Body)
		case time.Since(back) > recoverWithin:
			t.Fatalf("GET %s: still 503 %s after Redis came back, want recovery within %s", pq, time.Since(back).Round(time.Millisecond), recoverWithin)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("the proxy served again %s after Redis came back", recovered.Round(time.Millisecond))
	checkLoggedOut(t, rs, c, "a", "/after?step=replay", ticket)
	again := rs.URL("a", "/after?step=login-again")
	if p := b.Login(again, user); p.Status != http.StatusOK || p.URL.String() != again || !strings.Contains(p.Body, userHeading(user)) {
		t.Fatalf("login after Redis came back: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	fresh := sessionCookie(t, b, rs)
	checkServed(t, rs, c, "a", "/after?step=served", fresh, user)
	if n := rs.Redis.Client(t).Int(t, "EXISTS", "authproxy:all"); n != 1 {
		t.Errorf("after the new login Redis has no authproxy:all index")
	}
	if gone, err := rs.Proxy["a"].exited(); gone {
		t.Fatalf("authproxy exited (%v) after Redis came back", err)
	}
	// 503s were written on purpose; nothing else may be a 5xx.
	for _, f := range serverErrors(t, rs.Proxy["a"]) {
		if f["path"] != "/during" && f["path"] != "/recovering" && f["path"] != "/noticing" {
			t.Errorf("authproxy answered %s %s with %s outside the outage (request %s)", f["method"], f["path"], f["status"], f["request_id"])
		}
	}
}

// TestRedisOutageLogin completes a login at the provider while Redis is
// down. The callback cannot store the session: like any request that needs
// the store, it must get the readable 503 page (and no session cookie), not
// a 500, and the same login must work once Redis is back.
func TestRedisOutageLogin(t *testing.T) {
	rs := newReplicaSet(t, replicaOptions{Replicas: []replicaSpec{{Name: "a"}}})
	const user = "outage-login-user"
	rs.Redis.Kill()

	b := newBrowser(t, rs.PKI)
	start := rs.URL("a", "/during-outage?step=login")
	p := b.Login(start, user)
	if p.URL.Path != "/auth/callback" {
		t.Fatalf("login with Redis down: landed on %d %s, want the proxy's /auth/callback answer; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	if p.Status != http.StatusServiceUnavailable || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(p.Body, "session store") {
		t.Errorf("GET /auth/callback (page load, valid code and state) with Redis down: status %d, want 503 with the page "+
			"naming the session store, as every other request that needs the store gets; body:\n%s", p.Status, p.Body)
	}
	if (answer{Header: p.Header}).setsSession() {
		t.Errorf("GET /auth/callback with Redis down set a session cookie: %q", p.Header.Values("Set-Cookie"))
	}
	if seen := rs.Upstream.ByPath("/during-outage"); len(seen) != 0 {
		t.Errorf("the upstream saw %d requests while the login could not be stored", len(seen))
	}

	rs.Redis.Restart()
	again := rs.URL("a", "/after-outage?step=login")
	deadline := time.Now().Add(recoverWithin)
	for {
		p := b.Login(again, user)
		if p.Status == http.StatusOK && p.URL.String() == again && strings.Contains(p.Body, userHeading(user)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login %s after Redis came back: landed on %d %s; hops:\n%s", recoverWithin, p.Status, p.URL, b.HopsString())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if gone, err := rs.Proxy["a"].exited(); gone {
		t.Fatalf("authproxy exited (%v)", err)
	}
}
