// Command load is authproxy's load script (`make bench`, issue 7). It measures
// authenticated proxying against the physical limit, a bare
// httputil.ReverseProxy in front of the same upstream, in the same run:
//
//	go run ./bench/load [-duration 5s] [-rounds 4] [-conns 64] [-clients 1000]
//	go run ./bench/load -store redis -variant nocache:AUTHPROXY_REDIS_CACHE_SIZE=0
//	go run ./bench/load -store redis -variant old:binary=/tmp/authproxy-old
//	go run ./bench/load -mode idle [-idle-conns 10000]
//	go run ./bench/load -mode websockets -store redis [-websockets 1000]
//
// Issue 14 added the Redis store as a target (-store redis runs a
// redis-server of its own), further authproxy configurations in the same
// rounds (-variant), the unauthenticated redirect as a paired target, CPU
// time per request, and two memory modes: idle keep-alive connections, and
// open WebSockets that must all close once their sessions are revoked.
//
// Everything listens on 127.0.0.1. The tool starts two identical upstreams
// (one per proxy, so each proxy's upstream connections are counted apart),
// the development OpenID Provider in-process, the real authproxy binary
// (go build into a temporary directory) and a bare reverse proxy (this
// program re-executed in a hidden mode), both as subprocesses so that their
// peak RSS (VmHWM) is their own. It logs in to authproxy by script, then
// drives both proxies with a keep-alive HTTP/1.1 load generator, interleaved
// over several rounds (the machine is shared and noisy), and prints median
// requests/s, p50/p99 latency and peak RSS, with the ratios against the
// targets of issue 7. Then it checks that unauthenticated requests are
// redirected without a call to the provider, and holds 1,000 concurrent
// keep-alive clients on each proxy, reporting peak RSS and whether the
// proxy's connections (hence its per-connection goroutines) return to
// baseline afterwards.
//
// It exits 1 if any counted authproxy request reached the upstream without
// exactly the logged-in user in X-User, if any counted request failed or
// answered other than expected, or (with -strict) if a target is missed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// bareMode is the hidden first argument that turns this program into the
// bare reverse proxy it measures against.
const bareMode = "-bare"

const benchUser = "bench-user"

type options struct {
	duration, warmup, clientsDuration time.Duration
	rounds, conns, clients, maxIdle   int
	bodyBytes                         int
	authproxyBin                      string
	env                               envList
	strict                            bool
	barePool                          bool
	// store is authproxy's session store: cookie, or redis (a
	// redis-server of its own on a free port).
	store, redisBin string
	// redirect adds the unauthenticated page load (302 to /auth/login) as
	// a third target of the interleaved rounds.
	redirect bool
	// mode: rounds (throughput), idle (memory per idle connection) or
	// websockets (memory per socket, and closing on revocation).
	mode                  string
	variants              variantList
	idleConns, idleRounds int
	wsCount, wsSessions   int
}

// variant is a further authproxy target of the rounds: the same binary and
// environment, plus env; or another binary (another build, to compare two
// commits in the same rounds, where the machine's drift between runs would
// swamp the difference).
type variant struct {
	name   string
	env    []string
	binary string // "" is -authproxy's
}

// variantList collects repeated -variant NAME:KEY=VALUE[,KEY=VALUE] flags.
type variantList []variant

func (v *variantList) String() string {
	var s []string
	for _, x := range *v {
		s = append(s, x.name+":"+strings.Join(x.env, ","))
	}
	return strings.Join(s, " ")
}

func (v *variantList) Set(s string) error {
	name, kvs, ok := strings.Cut(s, ":")
	if !ok || name == "" || name == "bare" || name == "authproxy" || name == "redirect" {
		return fmt.Errorf("want NAME:KEY=VALUE[,KEY=VALUE...] with a new NAME, got %q", s)
	}
	x := variant{name: name}
	for kv := range strings.SplitSeq(kvs, ",") {
		if !strings.Contains(kv, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", kv)
		}
		if path, ok := strings.CutPrefix(kv, "binary="); ok {
			x.binary = path
			continue
		}
		x.env = append(x.env, kv)
	}
	*v = append(*v, x)
	return nil
}

// envList collects repeated -env KEY=VALUE flags.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }
func (e *envList) Set(kv string) error {
	if !strings.Contains(kv, "=") {
		return fmt.Errorf("want KEY=VALUE, got %q", kv)
	}
	*e = append(*e, kv)
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == bareMode {
		if err := serveBare(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "load -bare:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per target per round")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds; each runs both targets, alternating which goes first")
	flag.IntVar(&o.conns, "conns", 64, "keep-alive client connections per target")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load per target before the rounds")
	flag.IntVar(&o.clients, "clients", 1000, "concurrent keep-alive clients of the memory phase (0 skips it)")
	flag.DurationVar(&o.clientsDuration, "clients-duration", 3*time.Second, "load time of the memory phase per target")
	flag.IntVar(&o.maxIdle, "upstream-max-idle", 128, "idle upstream connections each proxy keeps (AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS)")
	flag.IntVar(&o.bodyBytes, "body-bytes", 256, "size of the upstream's response body")
	flag.StringVar(&o.authproxyBin, "authproxy", "", "authproxy binary to measure (default: go build ./cmd/authproxy)")
	flag.Var(&o.env, "env", "extra KEY=VALUE for authproxy's environment, e.g. AUTHPROXY_LOG_LEVEL=warn (repeatable)")
	flag.BoolVar(&o.barePool, "bare-buffer-pool", true, "give the bare proxy a pooled copy buffer like authproxy's (a stricter baseline than ReverseProxy's default)")
	flag.BoolVar(&o.strict, "strict", false, "also exit 1 when a target of issue 7 is missed")
	flag.StringVar(&o.store, "store", "cookie", "authproxy's session store: cookie, or redis (starts a redis-server on a free 127.0.0.1 port)")
	flag.StringVar(&o.redisBin, "redis-server", "redis-server", "redis-server binary for -store redis")
	flag.BoolVar(&o.redirect, "redirect", true, "also measure unauthenticated page loads (302 to /auth/login) as a target of the rounds")
	flag.StringVar(&o.mode, "mode", "rounds", "rounds (throughput, CPU, RSS), idle (RSS per idle keep-alive connection) or websockets (RSS and goroutines per WebSocket; all closed on revocation; needs -store redis)")
	flag.Var(&o.variants, "variant", "another authproxy in the same interleaved rounds, with extra env: NAME:KEY=VALUE[,KEY=VALUE...], e.g. nocache:AUTHPROXY_REDIS_CACHE_SIZE=0; binary=PATH runs another build, e.g. old:binary=/tmp/authproxy-old (repeatable)")
	flag.IntVar(&o.idleConns, "idle-conns", 10000, "-mode idle: idle keep-alive connections held on each proxy")
	flag.IntVar(&o.idleRounds, "idle-rounds", 2, "-mode idle: rounds, each with fresh proxy processes, alternating which goes first")
	flag.IntVar(&o.wsCount, "websockets", 1000, "-mode websockets: WebSockets opened through each proxy")
	flag.IntVar(&o.wsSessions, "ws-sessions", 10, "-mode websockets: sessions (logins) the WebSockets are spread over")
	flag.Parse()
	if o.rounds < 1 || o.conns < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "load: -rounds, -conns and -duration must be positive")
		os.Exit(2)
	}
	if (o.store != "cookie" && o.store != "redis") || (o.mode != "rounds" && o.mode != "idle" && o.mode != "websockets") {
		fmt.Fprintln(os.Stderr, "load: -store is cookie or redis; -mode is rounds, idle or websockets")
		os.Exit(2)
	}
	if o.mode == "websockets" && o.store != "redis" {
		// The cookie store cannot be revoked server-side.
		fmt.Fprintln(os.Stderr, "load: -mode websockets revokes sessions through the admin API: use -store redis")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// run sets everything up, measures, and returns an error if a check failed.
func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "authproxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	bin := o.authproxyBin
	if bin == "" {
		bin = filepath.Join(tmp, "authproxy")
		fmt.Println("building authproxy ...")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/authproxy/authproxy/cmd/authproxy")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build authproxy: %w", err)
		}
	}
	desc := describeBinary(bin)
	if o.authproxyBin == "" && !strings.Contains(desc, "commit ") {
		// GOFLAGS=-buildvcs=false leaves no stamp; ask git.
		if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
			desc += ", built from work tree " + strings.TrimSpace(string(out))
		}
	}
	fmt.Printf("authproxy binary: %s\n", desc)
	self, err := os.Executable()
	if err != nil {
		return err
	}

	body := bytes.Repeat([]byte("x"), o.bodyBytes)
	upAuth, err := startUpstream("authproxy", benchUser, body)
	if err != nil {
		return err
	}
	defer upAuth.close()
	upBare, err := startUpstream("bare", "", body)
	if err != nil {
		return err
	}
	defer upBare.close()

	idp, err := oidctest.Start(oidctest.Options{Claims: func(user string) map[string]any {
		return map[string]any{"email": user + "@example.test", "email_verified": true, "name": "Bench User"}
	}})
	if err != nil {
		return err
	}
	defer idp.Close()

	var redisSrv *redisServer
	var storeEnv []string
	if o.store == "redis" {
		if redisSrv, err = startRedis(ctx, o.redisBin, tmp); err != nil {
			return err
		}
		defer redisSrv.stop()
		storeEnv = []string{"AUTHPROXY_SESSION_STORE=redis", "AUTHPROXY_REDIS_URL=redis://" + redisSrv.addr + "/0"}
		fmt.Printf("redis-server %s on %s (pid %d)\n", redisSrv.version, redisSrv.addr, redisSrv.proc.cmd.Process.Pid)
	}
	if o.mode != "rounds" {
		// The internal listener: go_goroutines, and the admin API (Redis).
		metricsAddr, err := freeAddr()
		if err != nil {
			return err
		}
		storeEnv = append(storeEnv, "AUTHPROXY_METRICS_ADDR="+metricsAddr)
		if o.store == "redis" {
			storeEnv = append(storeEnv, "AUTHPROXY_ADMIN_TOKEN="+adminToken)
		}
	}

	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	// A fixed address, not one found in the log: the log may be off
	// (-env AUTHPROXY_LOG_LEVEL=warn), and -mode idle restarts it.
	authAddr, err := freeAddr()
	if err != nil {
		return err
	}
	authEnv := append([]string{
		"AUTHPROXY_ADDR=" + authAddr,
		"AUTHPROXY_UPSTREAM=" + upAuth.url,
		"AUTHPROXY_ISSUER=" + idp.Issuer(),
		"AUTHPROXY_CLIENT_ID=authproxy-demo",
		"AUTHPROXY_CLIENT_SECRET=demo-secret",
		"AUTHPROXY_COOKIE_SECRET=" + base64.StdEncoding.EncodeToString(secret),
		"AUTHPROXY_UPSTREAM_MAX_IDLE_CONNS=" + strconv.Itoa(o.maxIdle),
		"AUTHPROXY_LOG_FORMAT=json",
		"AUTHPROXY_LOG_LEVEL=info",
		"AUTHPROXY_DRAIN_DELAY=0s",
		"AUTHPROXY_SHUTDOWN_TIMEOUT=5s",
	}, append(storeEnv, o.env...)...)
	// Both proxies can be started again (-mode idle measures fresh ones).
	startAuth := func() (*proc, error) {
		p, err := startProc(ctx, "authproxy", exec.Command(bin), tmp, authEnv, nil)
		if err != nil {
			return nil, err
		}
		p.addr = authAddr
		if err := waitReady(ctx, "http://"+p.addr+"/readyz"); err != nil {
			p.stop()
			return nil, fmt.Errorf("authproxy: %w\n%s", err, p.logs)
		}
		for _, kv := range authEnv {
			if a, ok := strings.CutPrefix(kv, "AUTHPROXY_METRICS_ADDR="); ok {
				p.metrics = a
			}
		}
		return p, nil
	}
	startBare := func() (*proc, error) {
		p, err := startProc(ctx, "bare", exec.Command(self, bareMode, "-upstream", upBare.url, "-max-idle", strconv.Itoa(o.maxIdle), "-buffer-pool="+strconv.FormatBool(o.barePool)),
			tmp, nil, bareAddr)
		if err != nil {
			return nil, err
		}
		// bareAddr found "ADDR stats STATS".
		p.addr, p.metrics, _ = strings.Cut(p.addr, " stats ")
		return p, nil
	}
	auth, err := startAuth()
	if err != nil {
		return err
	}
	defer func() { auth.stop() }()
	bare, err := startBare()
	if err != nil {
		return err
	}
	defer func() { bare.stop() }()

	cookieHeader, err := login(ctx, "http://"+auth.addr, benchUser)
	if err != nil {
		return fmt.Errorf("scripted login: %w\n%s", err, auth.logs)
	}
	fmt.Printf("logged in as %q (%s store): session cookie %d bytes\n", benchUser, o.store, len(cookieHeader))
	upAuth.resetCounts()
	upBare.resetCounts()
	switch o.mode {
	case "idle":
		printMachine()
		auth.stop()
		bare.stop()
		return idleMode(ctx, o, startAuth, startBare, upAuth, upBare, cookieHeader, func(a, b *proc) {
			if a != nil {
				auth = a
			}
			if b != nil {
				bare = b
			}
		})
	case "websockets":
		printMachine()
		return wsMode(ctx, o, auth, bare, upAuth, upBare, redisSrv)
	}

	targets := []*target{
		{name: "bare", proc: bare, up: upBare, expect: 200},
		{name: "authproxy", proc: auth, up: upAuth, expect: 200},
	}
	for _, v := range o.variants {
		up, err := startUpstream(v.name, benchUser, body)
		if err != nil {
			return err
		}
		defer up.close()
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		// Later entries win: the variant's own address and upstream, then its env.
		vbin := bin
		if v.binary != "" {
			vbin = v.binary
		}
		p, err := startProc(ctx, v.name, exec.Command(vbin), tmp, append(append(slices.Clone(authEnv), "AUTHPROXY_ADDR="+addr, "AUTHPROXY_UPSTREAM="+up.url), v.env...), nil)
		if err != nil {
			return err
		}
		p.addr = addr
		defer p.stop()
		if err := waitReady(ctx, "http://"+p.addr+"/readyz"); err != nil {
			return fmt.Errorf("%s: %w\n%s", v.name, err, p.logs)
		}
		fmt.Printf("target %s: authproxy %s with %s\n", v.name, vbin, strings.Join(v.env, " "))
		targets = append(targets, &target{name: v.name, proc: p, up: up, expect: 200})
	}
	for _, t := range targets {
		t.req = buildRequest(t.proc.addr, "/app/items?page=2", cookieHeader)
	}
	if o.redirect {
		// A browser without a session: 302 to the login page, with no
		// provider or upstream request.
		targets = append(targets, &target{name: "redirect", proc: auth, up: upAuth, expect: http.StatusFound,
			location: "/auth/login?rd=", req: buildRequest(auth.addr, "/app/items?page=2", "")})
	}

	printMachine()
	var failures []string

	// Warm-up: fill each proxy's upstream pool and grow its heap, unmeasured.
	for _, t := range targets {
		t.up.newConns.Store(0)
		r, err := drive(ctx, t.proc.addr, t.req, o.conns, o.warmup, t.expect, t.location)
		if err != nil {
			return fmt.Errorf("%s warm-up: %w", t.name, err)
		}
		if t.location == "" {
			t.clientOK += r.ok
		}
		failures = append(failures, r.failures(t.name+" warm-up")...)
		if t.location == "" {
			t.warmupConns = t.up.newConns.Load()
		}
	}

	fmt.Printf("\n== %d rounds x %s per target, %d keep-alive connections, interleaved ==\n", o.rounds, o.duration, o.conns)
	fmt.Printf("%-10s %5s %10s %9s %9s %10s %9s %9s %8s %9s\n", "target", "round", "req/s", "p50", "p99", "peak RSS", "CPU/req", "redis/req", "up new", "up open")
	for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
		// Each round runs every target; the order rotates, and reverses
		// every other round, so that no target always follows another.
		order := slices.Clone(targets)
		for range (round - 1) / 2 % len(order) {
			order = append(order[1:], order[0])
		}
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, t := range order {
			t.proc.resetPeak()
			before := t.up.newConns.Load()
			upBefore, idpBefore := t.up.ok.Load()+t.up.bad.Load(), idpRequests(idp)
			cpuBefore := t.proc.status().cpu
			var redisBefore time.Duration
			if redisSrv != nil {
				redisBefore = cpuTime(redisSrv.proc.cmd.Process.Pid)
			}
			r, err := drive(ctx, t.proc.addr, t.req, o.conns, o.duration, t.expect, t.location)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", t.name, round, err)
			}
			st := t.proc.status()
			r.peakRSS = st.hwm
			r.upNew = t.up.newConns.Load() - before
			if n := r.ok + r.wrongStatus; n > 0 {
				r.cpuPerReq = (st.cpu - cpuBefore) / time.Duration(n)
				if redisSrv != nil && t.proc != bare {
					r.redisPerReq = (cpuTime(redisSrv.proc.cmd.Process.Pid) - redisBefore) / time.Duration(n)
				}
			}
			if t.location != "" {
				// Unauthenticated: nothing may reach the upstream or the provider.
				if up, calls := t.up.ok.Load()+t.up.bad.Load()-upBefore, idpRequests(idp)-idpBefore; up != 0 || calls != 0 {
					failures = append(failures, fmt.Sprintf("%s round %d: unauthenticated requests caused %d provider and %d upstream requests", t.name, round, calls, up))
				}
				r.upNew = 0
			} else {
				t.clientOK += r.ok
			}
			t.rounds = append(t.rounds, r)
			failures = append(failures, r.failures(fmt.Sprintf("%s round %d", t.name, round))...)
			fmt.Printf("%-10s %5d %10.0f %9s %9s %10s %9s %9s %8d %9d\n", t.name, round, r.rps, ms(r.p50), ms(r.p99), mib(r.peakRSS),
				us(r.cpuPerReq), us(r.redisPerReq), r.upNew, t.up.openConns.Load())
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	bm, am := summarize(targets[0].rounds), summarize(targets[1].rounds)
	fmt.Printf("\n== medians over %d rounds (authproxy: %s store) ==\n", o.rounds, o.store)
	fmt.Printf("%-10s %10s %9s %9s %9s %9s %22s %22s\n", "target", "req/s", "p50", "p99", "CPU/req", "redis/req", "peak RSS (median/max)", "upstream conns opened")
	for _, t := range targets {
		m := summarize(t.rounds)
		fmt.Printf("%-10s %10.0f %9s %9s %9s %9s %22s %10d (+%d warm-up)\n", t.name, m.rps, ms(m.p50), ms(m.p99), us(m.cpuPerReq), us(m.redisPerReq),
			mib(m.peakRSS)+" / "+mib(m.maxPeakRSS), m.upNew, t.warmupConns)
	}
	ratio := am.rps / bm.rps
	p99diff := am.p99 - bm.p99
	fmt.Println()
	for _, t := range targets[1:] {
		var paired []float64
		var list []string
		for i := range targets[0].rounds {
			r := t.rounds[i].rps / targets[0].rounds[i].rps
			paired = append(paired, r)
			list = append(list, fmt.Sprintf("%.3f", r))
		}
		fmt.Printf("throughput %s/bare = %.3f (ratio of medians); paired per round: median %.3f, rounds %s\n",
			t.name, summarize(t.rounds).rps/bm.rps, median(paired), strings.Join(list, " "))
	}
	fmt.Printf("p99 authproxy - bare     = %+.3f ms\n", float64(p99diff)/1e6)
	fmt.Printf("p50 authproxy - bare     = %+.3f ms\n", float64(am.p50-bm.p50)/1e6)

	var missed []string
	check := func(met bool, what, by string) {
		verdict := "met"
		if !met {
			verdict = "MISSED by " + by
			missed = append(missed, what)
		}
		fmt.Printf("  target %-48s %s\n", what+":", verdict)
	}
	fmt.Println("\n== targets of issue 7 ==")
	check(ratio >= 0.90, "throughput >= 0.90 x bare", fmt.Sprintf("%.3f (%.1f%% of bare)", 0.90-ratio, ratio*100))
	check(p99diff <= time.Millisecond, "p99 within +1 ms of bare", fmt.Sprintf("%.3f ms", float64(p99diff-time.Millisecond)/1e6))
	// Bounded: the connections opened over the whole run fit in the idle
	// pool, so requests reuse them instead of dialing. (A pool can exceed
	// the client connections a little: a connection goes back to the pool
	// just after its response is read, and a request arriving meanwhile
	// dials.)
	authOpened := targets[1].warmupConns + sumUpNew(targets[1].rounds)
	check(authOpened <= int64(o.maxIdle), fmt.Sprintf("upstream pool bounded (%d opened <= %d)", authOpened, o.maxIdle),
		fmt.Sprintf("%d connections", authOpened-int64(o.maxIdle)))

	if !o.redirect {
		if err := checkRedirects(ctx, auth, upAuth, idp, o, &failures); err != nil {
			return err
		}
	}
	if o.clients > 0 {
		fmt.Printf("\n== %d concurrent keep-alive clients, %s per target ==\n", o.clients, o.clientsDuration)
		for _, t := range targets[:2] {
			if err := manyClients(ctx, t, o, &failures); err != nil {
				return err
			}
		}
	}

	// Every counted authproxy request must have reached the upstream with
	// the right X-User, and nothing else may have.
	for _, t := range targets {
		if t.location != "" {
			continue // the redirect target's upstream is authproxy's, checked there
		}
		ok, bad := t.up.ok.Load(), t.up.bad.Load()
		if bad > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d requests reached the upstream with a wrong X-User (e.g. %q)", t.name, bad, t.up.badSample()))
		}
		if ok != t.clientOK {
			failures = append(failures, fmt.Sprintf("%s: the client counted %d answers of 200, the upstream %d correct requests", t.name, t.clientOK, ok))
		}
	}
	fmt.Printf("\nupstream check (whole run): authproxy %d requests, all with X-User=%q: %v; bare %d requests, none with X-User: %v\n",
		upAuth.ok.Load()+upAuth.bad.Load(), benchUser, upAuth.bad.Load() == 0, upBare.ok.Load()+upBare.bad.Load(), upBare.bad.Load() == 0)

	if len(failures) > 0 {
		return fmt.Errorf("FAILED:\n  %s", strings.Join(failures, "\n  "))
	}
	if o.strict && len(missed) > 0 {
		return fmt.Errorf("targets missed: %s", strings.Join(missed, "; "))
	}
	fmt.Println("\nall checks passed")
	return nil
}

type target struct {
	name        string
	proc        *proc
	up          *upstream
	req         []byte
	expect      int
	location    string // an expected redirect's Location prefix
	clientOK    int64  // answers counted as correct, warm-up included
	warmupConns int64
	rounds      []result
}

// describeBinary names the commit a binary was built from, and whether the
// work tree had changes, so that a recorded run can be traced to its code.
func describeBinary(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return bin
	}
	rev, dirty := "unknown commit", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = "commit " + s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = " with uncommitted changes"
		}
	}
	return fmt.Sprintf("%s (%s%s, %s)", bin, rev, dirty, bi.GoVersion)
}

func printMachine() {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()
	fmt.Printf("machine: %d CPUs (%s), %s, load average %s", runtime.NumCPU(), cpu, strings.TrimSpace(string(goVersion)), load)
}

// ---------------------------------------------------------------------------
// Upstream

// upstream is the app behind a proxy. It answers every request with a fixed
// body and checks X-User: exactly wantUser, or absent when wantUser is "".
type upstream struct {
	name      string
	wantUser  string
	body      []byte
	srv       *http.Server
	url       string
	ok, bad   atomic.Int64
	newConns  atomic.Int64 // TCP connections accepted
	openConns atomic.Int64 // TCP connections open now
	wsOpen    atomic.Int64 // WebSockets open now (hijacked, not in openConns)
	mu        sync.Mutex
	firstBad  string
}

func startUpstream(name, wantUser string, body []byte) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{name: name, wantUser: wantUser, body: body, url: "http://" + ln.Addr().String()}
	u.srv = &http.Server{
		Handler:           u,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute, // outlive the proxies' pools: closing is their call
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				u.newConns.Add(1)
				u.openConns.Add(1)
			case http.StateClosed, http.StateHijacked:
				u.openConns.Add(-1)
			}
		},
	}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "" {
		u.serveWebSocket(w, r)
		return
	}
	u.checkUser(r)
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(len(u.body))}
	_, _ = w.Write(u.body)
}

// checkUser counts r as correct (X-User exactly wantUser, or absent when
// wantUser is "") or not.
func (u *upstream) checkUser(r *http.Request) bool {
	got := r.Header["X-User"]
	if (u.wantUser == "" && len(got) == 0) || (u.wantUser != "" && len(got) == 1 && got[0] == u.wantUser) {
		u.ok.Add(1)
		return true
	}
	if u.bad.Add(1) == 1 {
		u.mu.Lock()
		u.firstBad = fmt.Sprint(got)
		u.mu.Unlock()
	}
	return false
}

func (u *upstream) badSample() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.firstBad
}

func (u *upstream) resetCounts() { u.ok.Store(0); u.bad.Store(0) }

func (u *upstream) close() { _ = u.srv.Close() }

// ---------------------------------------------------------------------------
// Subprocesses

// proc is a proxy running as a child process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	addr  string
	logs  *tail
	done  chan struct{}
	stdin io.WriteCloser // held open for the child's lifetime
	// metrics is where the process reports its goroutines: authproxy's
	// internal listener (/metrics), the bare proxy's stats listener.
	metrics string
}

// startProc runs cmd in dir (so that no stray .env is read) with the
// environment less any AUTHPROXY_/AUTH0_ variable, plus env, and finds its
// listen address in its standard output with findAddr (nil: the caller
// knows it).
func startProc(ctx context.Context, name string, cmd *exec.Cmd, dir string, env []string, findAddr func(line string) string) (*proc, error) {
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHPROXY_") && !strings.HasPrefix(kv, "AUTH0_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = dir
	p := &proc{name: name, cmd: cmd, logs: &tail{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stderr = p.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// The bare proxy exits when its standard input closes: when this
	// program ends, however it ends.
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	addrc := make(chan string, 1)
	go func() {
		br := bufio.NewReaderSize(stdout, 64<<10)
		for findAddr != nil {
			line, err := br.ReadString('\n')
			_, _ = p.logs.Write([]byte(line))
			if a := findAddr(strings.TrimSpace(line)); a != "" {
				addrc <- a
				break
			}
			if err != nil {
				return
			}
		}
		// Then keep only the tail, in large writes (authproxy logs a line
		// per request).
		_, _ = io.Copy(p.logs, br)
	}()
	if findAddr == nil {
		return p, nil
	}
	select {
	case p.addr = <-addrc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited at start: %s\n%s", name, cmd.ProcessState, p.logs)
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s printed no listen address in 30s:\n%s", name, p.logs)
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

func bareAddr(line string) string {
	a, _ := strings.CutPrefix(line, "listening ")
	return a
}

// stop sends SIGTERM and waits; SIGKILL after 10 s.
func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type procStatus struct {
	rss, hwm int64 // bytes
	threads  int
	fds      int
	cpu      time.Duration // user + system, since start
}

// status reads the process's memory, threads and open file descriptors.
func (p *proc) status() procStatus {
	var st procStatus
	pid := strconv.Itoa(p.cmd.Process.Pid)
	if b, err := os.ReadFile("/proc/" + pid + "/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			n, _ := strconv.ParseInt(f[0], 10, 64)
			switch k {
			case "VmRSS":
				st.rss = n << 10
			case "VmHWM":
				st.hwm = n << 10
			case "Threads":
				st.threads = int(n)
			}
		}
	}
	if ents, err := os.ReadDir("/proc/" + pid + "/fd"); err == nil {
		st.fds = len(ents)
	}
	st.cpu = cpuTime(p.cmd.Process.Pid)
	return st
}

// cpuTime is a process's user plus system CPU time so far, from
// /proc/PID/stat (utime and stime, in USER_HZ ticks: 100 per second on
// Linux, whatever the kernel's HZ).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (state is field 3, utime 14, stime 15).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
}

// resetPeak resets VmHWM to the current RSS (Linux: clear_refs 5), so that
// each phase reports its own peak.
func (p *proc) resetPeak() {
	_ = os.WriteFile("/proc/"+strconv.Itoa(p.cmd.Process.Pid)+"/clear_refs", []byte("5"), 0)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b[max(0, len(t.b)-t.max):])
}

// copyBuffers is the same buffer pool authproxy gives its ReverseProxy.
type copyBuffers struct{ p sync.Pool }

func (c *copyBuffers) Get() []byte {
	if b, ok := c.p.Get().(*[32 << 10]byte); ok {
		return b[:]
	}
	return make([]byte, 32<<10)
}

func (c *copyBuffers) Put(b []byte) {
	if len(b) == 32<<10 {
		c.p.Put((*[32 << 10]byte)(b))
	}
}

// serveBare is the hidden mode: a bare httputil.ReverseProxy to -upstream,
// with the transport tuning and server timeouts authproxy uses, so that the
// difference measured is authentication and nothing else.
func serveBare(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "upstream URL")
	maxIdle := fs.Int("max-idle", 128, "idle upstream connections")
	pool := fs.Bool("buffer-pool", true, "pool the 32 KiB copy buffers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad -upstream %q", *upstream)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = *maxIdle, *maxIdle
	t.ResponseHeaderTimeout = 60 * time.Second
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = t
	if *pool {
		rp.BufferPool = &copyBuffers{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	// Its goroutine count, on a listener of its own (authproxy's is in
	// its /metrics), so that the proxied handler stays bare.
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	stats := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "go_goroutines %d\n", runtime.NumGoroutine())
	})}
	go func() { _ = stats.Serve(sln) }()
	fmt.Printf("listening %s stats %s\n", ln.Addr(), sln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ---------------------------------------------------------------------------
// Login

func waitReady(ctx context.Context, u string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after 30s (last: %v)", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// login signs in at base as user the way a browser does: the proxy sends it
// to the provider's login page, the form is posted, the callback sets the
// session. It returns the Cookie header a browser would then send.
func login(ctx context.Context, base, user string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/app/items?page=2", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if !strings.HasSuffix(resp.Request.URL.Path, "/authorize") {
		return "", fmt.Errorf("landed on %s, want the provider's login page", resp.Request.URL)
	}
	form := resp.Request.URL.Query()
	form.Set("username", user)
	u := *resp.Request.URL
	u.RawQuery = ""
	req, _ = http.NewRequestWithContext(ctx, "POST", u.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != 200 || resp.Request.URL.Host != strings.TrimPrefix(base, "http://") {
		return "", fmt.Errorf("after login: %s at %s", resp.Status, resp.Request.URL)
	}
	bu, _ := url.Parse(base)
	var parts []string
	for _, c := range jar.Cookies(bu) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) == 0 {
		return "", errors.New("no session cookie after login")
	}
	return strings.Join(parts, "; "), nil
}

// ---------------------------------------------------------------------------
// Load generator

// buildRequest is Chrome's request for a page (its usual headers), with the
// session cookies next to an app cookie. Both proxies get the same bytes,
// but for Host.
func buildRequest(addr, path, cookies string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n", path, addr)
	b.WriteString(`sec-ch-ua: "Chromium";v="126", "Google Chrome";v="126", "Not-A.Brand";v="99"` + "\r\n")
	b.WriteString("sec-ch-ua-mobile: ?0\r\n")
	b.WriteString(`sec-ch-ua-platform: "Linux"` + "\r\n")
	b.WriteString("Upgrade-Insecure-Requests: 1\r\n")
	b.WriteString("User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n")
	b.WriteString("Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n")
	b.WriteString("Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-User: ?1\r\nSec-Fetch-Dest: document\r\n")
	b.WriteString("Accept-Encoding: gzip, deflate, br, zstd\r\n")
	b.WriteString("Accept-Language: en-GB,en;q=0.9\r\n")
	b.WriteString("Cookie: theme=dark; _ga=GA1.1.123456789.1700000000")
	if cookies != "" {
		b.WriteString("; " + cookies)
	}
	b.WriteString("\r\n\r\n")
	return []byte(b.String())
}

type result struct {
	ok, wrongStatus, errs, reconnects int64
	firstProblem                      string
	elapsed                           time.Duration
	rps                               float64
	p50, p99                          time.Duration
	peakRSS                           int64
	upNew                             int64
	cpuPerReq, redisPerReq            time.Duration // the proxy's (and redis-server's) user+system CPU per answer
}

func (r result) failures(phase string) []string {
	if r.wrongStatus == 0 && r.errs == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s: %d unexpected answers, %d errors (first: %s)", phase, r.wrongStatus, r.errs, r.firstProblem)}
}

// drive opens conns keep-alive connections to addr, then sends req on each
// in a loop for d, and measures. A request counts as ok when its status is
// expect and, if location is set, its Location starts with it.
func drive(ctx context.Context, addr string, req []byte, conns int, d time.Duration, expect int, location string) (result, error) {
	cs, err := dialAll(ctx, addr, conns)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}()
	var (
		wg                      sync.WaitGroup
		ok, wrong, errs, reconn atomic.Int64
		problemOnce             sync.Once
		problem                 string
		stopped                 atomic.Bool
		lats                    = make([][]int64, conns)
		perConn                 = int(d.Seconds()*2000) + 64
	)
	reportProblem := func(s string) { problemOnce.Do(func() { problem = s }) }
	defer context.AfterFunc(ctx, func() { stopped.Store(true) })()
	start := time.Now()
	end := start.Add(d)
	for i := range cs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := cs[i]
			br := bufio.NewReaderSize(c, 16<<10)
			lat := make([]int64, 0, perConn)
			for !stopped.Load() {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				status, loc, closeConn, err := roundTrip(c, br, req)
				if err != nil {
					errs.Add(1)
					reportProblem(err.Error())
				} else {
					lat = append(lat, int64(time.Since(t0)))
					if status == expect && (location == "" || strings.HasPrefix(loc, location)) {
						ok.Add(1)
					} else {
						wrong.Add(1)
						reportProblem(fmt.Sprintf("status %d, Location %q", status, loc))
					}
				}
				if err != nil || closeConn {
					c.Close()
					reconn.Add(1)
					nc, derr := net.Dial("tcp", addr)
					if derr != nil {
						errs.Add(1)
						reportProblem(derr.Error())
						cs[i] = nil
						break
					}
					c, cs[i] = nc, nc
					br.Reset(c)
				}
			}
			lats[i] = lat
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := result{ok: ok.Load(), wrongStatus: wrong.Load(), errs: errs.Load(), reconnects: reconn.Load(),
		firstProblem: problem, elapsed: elapsed}
	r.rps = float64(len(all)) / elapsed.Seconds()
	r.p50, r.p99 = percentile(all, 0.50), percentile(all, 0.99)
	return r, ctx.Err()
}

// roundTrip writes one request and reads the whole response. It parses
// only what it needs (status, Content-Length or chunked, Connection: close,
// Location) and allocates nothing per request but a redirect's Location, so
// that the load generator leaves the CPU to the proxies.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (status int, location string, closeConn bool, err error) {
	if _, err := c.Write(req); err != nil {
		return 0, "", true, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, "", true, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, "", true, fmt.Errorf("malformed status line %q", line)
	}
	status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	closeConn = line[7] == '0'
	length, chunked := int64(-1), false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return status, location, true, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, location, true, fmt.Errorf("malformed header %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return status, location, true, fmt.Errorf("bad Content-Length %q", v)
			}
			length = n
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closeConn = closeConn || bytes.EqualFold(v, []byte("close"))
		case bytes.EqualFold(k, []byte("Location")):
			location = string(v)
		}
	}
	switch {
	case chunked:
		_, err = io.Copy(io.Discard, httputil.NewChunkedReader(br))
		if err == nil { // trailers, then the final CRLF
			for {
				line, rerr := br.ReadSlice('\n')
				if rerr != nil {
					err = rerr
					break
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					break
				}
			}
		}
	case length >= 0:
		_, err = br.Discard(int(length))
	default: // body until close
		_, err = io.Copy(io.Discard, br)
		closeConn = true
	}
	if err != nil {
		return status, location, true, err
	}
	return status, location, closeConn, nil
}

// dialAll opens n connections to addr, at most 100 dials at a time.
func dialAll(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	cs := make([]net.Conn, n)
	errc := make(chan error, n)
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 10 * time.Second}
	for i := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errc <- err
				return
			}
			cs[i] = c
		}(i)
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cs, nil
}

func percentile(sorted []int64, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return time.Duration(sorted[max(0, min(i, len(sorted)-1))])
}

type summary struct {
	rps        float64
	p50, p99   time.Duration
	peakRSS    int64 // median of the rounds' peaks
	maxPeakRSS int64
	upNew      int64
	cpuPerReq  time.Duration
	// redisPerReq is redis-server's CPU per answer (Redis store only).
	redisPerReq time.Duration
}

func summarize(rs []result) summary {
	var rps []float64
	var p50, p99 []time.Duration
	var rss []int64
	var cpu, redisCPU []time.Duration
	var s summary
	for _, r := range rs {
		cpu = append(cpu, r.cpuPerReq)
		redisCPU = append(redisCPU, r.redisPerReq)
		rps = append(rps, r.rps)
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
		rss = append(rss, r.peakRSS)
		s.upNew += r.upNew
		s.maxPeakRSS = max(s.maxPeakRSS, r.peakRSS)
	}
	s.rps, s.p50, s.p99, s.peakRSS = median(rps), median(p50), median(p99), median(rss)
	s.cpuPerReq, s.redisPerReq = median(cpu), median(redisCPU)
	return s
}

func sumUpNew(rs []result) int64 {
	var n int64
	for _, r := range rs {
		n += r.upNew
	}
	return n
}

func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

func us(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/1e3)
}

func mib(b int64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// ---------------------------------------------------------------------------
// Unauthenticated requests and many clients

// checkRedirects sends requests without a session to authproxy: each must
// be a 302 to /auth/login, and neither the provider nor the upstream may
// see any of them.
func checkRedirects(ctx context.Context, auth *proc, up *upstream, idp *oidctest.Provider, o options, failures *[]string) error {
	idpBefore, upBefore := idpRequests(idp), up.ok.Load()+up.bad.Load()
	req := buildRequest(auth.addr, "/app/items?page=2", "")
	r, err := drive(ctx, auth.addr, req, o.conns, min(o.duration, 2*time.Second), http.StatusFound, "/auth/login?rd=")
	if err != nil {
		return fmt.Errorf("redirect phase: %w", err)
	}
	*failures = append(*failures, r.failures("unauthenticated redirects")...)
	idpCalls, upCalls := idpRequests(idp)-idpBefore, up.ok.Load()+up.bad.Load()-upBefore
	fmt.Printf("\n== unauthenticated: %d redirects to /auth/login at %.0f req/s (p99 %s); provider requests %d, upstream requests %d ==\n",
		r.ok, r.rps, ms(r.p99), idpCalls, upCalls)
	if idpCalls != 0 || upCalls != 0 {
		*failures = append(*failures, fmt.Sprintf("unauthenticated requests caused %d provider and %d upstream requests", idpCalls, upCalls))
	}
	return nil
}

func idpRequests(idp *oidctest.Provider) int {
	n := 0
	for _, p := range []string{"/.well-known/openid-configuration", "/jwks", "/authorize", "/token", "/userinfo", "/end_session"} {
		n += idp.Requests(p)
	}
	return n
}

// manyClients holds o.clients keep-alive connections on t, all sending
// requests for o.clientsDuration, then closes them. It reports the peak RSS
// and whether the proxy's client-side connections return to baseline:
// each holds a file descriptor and a goroutine in the proxy, and the proxy's
// upstream connections (two goroutines each) are counted by the upstream.
func manyClients(ctx context.Context, t *target, o options, failures *[]string) error {
	// Client-side descriptors: all of the proxy's, less its upstream connections.
	clientSide := func() (int, procStatus, int64) {
		st := t.proc.status()
		open := t.up.openConns.Load()
		return st.fds - int(open), st, open
	}
	base, baseSt, baseUp := clientSide()
	t.proc.resetPeak()
	newBefore := t.up.newConns.Load()
	var peakFds int
	sampling := make(chan struct{})
	var sampled sync.WaitGroup
	sampled.Add(1)
	go func() {
		defer sampled.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-tick.C:
				peakFds = max(peakFds, t.proc.status().fds)
			}
		}
	}()
	r, err := drive(ctx, t.proc.addr, t.req, o.clients, o.clientsDuration, t.expect, "")
	close(sampling)
	sampled.Wait()
	if err != nil {
		return fmt.Errorf("%s with %d clients: %w", t.name, o.clients, err)
	}
	t.clientOK += r.ok
	*failures = append(*failures, r.failures(fmt.Sprintf("%s with %d clients", t.name, o.clients))...)
	peak := t.proc.status()
	// The clients are closed; wait for the proxy to notice.
	var after int
	var afterSt procStatus
	var afterUp int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, afterSt, afterUp = clientSide()
		if after <= base || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	returned := "yes"
	if after > base {
		returned = fmt.Sprintf("NO (%d more after 10s)", after-base)
		*failures = append(*failures, fmt.Sprintf("%s: %d client connections still open 10s after %d clients left", t.name, after-base, o.clients))
	}
	if afterUp > int64(o.maxIdle) {
		*failures = append(*failures, fmt.Sprintf("%s: %d upstream connections kept, more than the idle pool of %d", t.name, afterUp, o.maxIdle))
	}
	fmt.Printf("%-10s %6.0f req/s, p50 %s, p99 %s; peak RSS %s (RSS before %s, after %s); threads %d -> %d\n",
		t.name, r.rps, ms(r.p50), ms(r.p99), mib(peak.hwm), mib(baseSt.rss), mib(afterSt.rss), baseSt.threads, afterSt.threads)
	fmt.Printf("%-10s fds before %d, peak %d, after %d; client connections back to baseline: %s; upstream conns opened %d, open before %d, after %d (idle pool <= %d)\n",
		"", baseSt.fds, peakFds, afterSt.fds, returned, t.up.newConns.Load()-newBefore, baseUp, afterUp, o.maxIdle)
	return nil
}
