package redisstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis is a real redis-server on a free 127.0.0.1 port, without
// persistence, in a temporary directory, killed when the test ends.
type testRedis struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	// args are added to the command line (startRedisWith).
	args []string
	// exited receives cmd.Wait's result.
	exited chan error
}

const missingRedis = "redis-server not found on PATH: apt-get install redis-server (make test installs it)"

// startRedis starts a redis-server for tb. Without the binary it fails when
// AUTHPROXY_E2E=1 (as under make test) and skips otherwise.
func startRedis(tb testing.TB) *testRedis {
	tb.Helper()
	return startRedisWith(tb)
}

// startRedisWith is startRedis with more arguments for redis-server.
func startRedisWith(tb testing.TB, args ...string) *testRedis {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("AUTHPROXY_E2E") == "1" {
			tb.Fatal(missingRedis)
		}
		tb.Skip(missingRedis)
	}
	r := &testRedis{tb: tb, bin: bin, dir: tb.TempDir(), args: args}
	tb.Cleanup(r.Stop)
	// A free port may be taken between our check and redis's bind: retry.
	for attempt := 1; ; attempt++ {
		r.port = freePort(tb)
		err := r.start()
		if err == nil {
			return r
		}
		if attempt == 3 {
			tb.Fatalf("start redis-server: %v\n%s", err, r.log())
		}
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is host:port of the server.
func (r *testRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *testRedis) log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return string(b)
}

func (r *testRedis) start() error {
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"),
		"--daemonize", "no")
	cmd.Args = append(cmd.Args, r.args...)
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(2 * time.Minute) // only bounds a hang
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			r.cmd = cmd
			r.exited = exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no PING answer within 2m: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server and waits for it; its data is gone.
func (r *testRedis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// Restart starts an empty server on the same port.
func (r *testRedis) Restart() {
	r.tb.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.tb.Fatalf("restart redis-server: %v\n%s", err, r.log())
	}
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing
// answers. Resume continues it with its data.
func (r *testRedis) Pause()  { _ = r.cmd.Process.Signal(syscall.SIGSTOP) }
func (r *testRedis) Resume() { _ = r.cmd.Process.Signal(syscall.SIGCONT) }

// Client returns a client configured as authproxy should configure one:
// context deadlines honoured, through the universal constructor.
func (r *testRedis) Client(tb testing.TB) redis.UniversalClient {
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{r.Addr()},
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}
