package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// adminToken is the admin API's bearer token in -mode websockets; the
// listener is on 127.0.0.1 and lives as long as the run.
const adminToken = "load-script-admin-token-0123456789"

// redisServer is the redis-server behind -store redis: no persistence, on
// a free 127.0.0.1 port, on the same two cores as everything else.
type redisServer struct {
	proc    *proc
	addr    string
	version string
}

// startRedis starts redis-server in dir and waits until it answers PING.
func startRedis(ctx context.Context, bin, dir string) (*redisServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", "", "--daemonize", "no")
	p, err := startProc(ctx, "redis-server", cmd, dir, nil, func(line string) string {
		if strings.Contains(line, "Ready to accept connections") {
			return addr
		}
		return ""
	})
	if err != nil {
		return nil, fmt.Errorf("%w (is redis-server installed? apt-get install redis-server)", err)
	}
	r := &redisServer{proc: p, addr: addr}
	info, err := redisCommand(addr, "INFO", "server")
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("redis-server on %s: %w", addr, err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			r.version = v
		}
	}
	return r, nil
}

func (r *redisServer) stop() { r.proc.stop() }

// redisCommand sends one command and returns a bulk or simple string reply.
func redisCommand(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("reply %q", line)
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// goroutines reads a proxy's goroutine count: go_goroutines from
// authproxy's /metrics, or from the bare proxy's stats listener.
func goroutines(p *proc) (int, error) {
	if p.metrics == "" {
		return 0, fmt.Errorf("%s: no metrics listener", p.name)
	}
	u := "http://" + p.metrics + "/"
	if p.name == "authproxy" {
		u += "metrics"
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("%s: no go_goroutines in %s", p.name, u)
}
