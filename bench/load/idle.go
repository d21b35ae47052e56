package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// raiseFileLimit lifts this process's soft RLIMIT_NOFILE to the hard limit
// and fails if that is still below need.
func raiseFileLimit(need int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", l.Max, err)
		}
	}
	if l.Cur < uint64(need) {
		return fmt.Errorf("RLIMIT_NOFILE is %d (hard limit), %d descriptors needed: raise it (ulimit -Hn, or as root: prlimit)", l.Cur, need)
	}
	return nil
}

// idleMode measures what an idle keep-alive client connection costs each
// proxy: per round, a fresh process of each (in alternating order) gets
// o.idleConns connections, each of which sends one request (authenticated,
// for authproxy) and then stays open, idle, as browsers keep theirs. RSS
// and goroutines with the connections open, less those before, divided by
// the connections, is the cost per connection.
func idleMode(ctx context.Context, o options, startAuth, startBare func() (*proc, error), upAuth, upBare *upstream,
	cookieHeader string, running func(auth, bare *proc)) error {
	// Connections of one proxy at a time, and a margin for the rest.
	if err := raiseFileLimit(o.idleConns + 1000); err != nil {
		return err
	}
	type row struct {
		name               string
		round              int
		baseRSS, rss, peak int64
		baseG, g           int
	}
	var rows []row
	var failures []string
	fmt.Printf("\n== %d idle keep-alive connections per proxy, %d rounds, fresh processes each round ==\n", o.idleConns, o.idleRounds)
	fmt.Printf("%-10s %5s %11s %11s %11s %10s %11s %11s\n", "target", "round", "RSS before", "RSS idle", "peak RSS", "RSS/conn", "goroutines", "gor./conn")
	for round := 1; round <= o.idleRounds && ctx.Err() == nil; round++ {
		names := []string{"bare", "authproxy"}
		if round%2 == 0 {
			names = []string{"authproxy", "bare"}
		}
		for _, name := range names {
			start, up := startBare, upBare
			if name == "authproxy" {
				start, up = startAuth, upAuth
			}
			p, err := start()
			if err != nil {
				return err
			}
			if name == "authproxy" {
				running(p, nil)
			} else {
				running(nil, p)
			}
			req := buildRequest(p.addr, "/app/items?page=2", cookieHeader)
			// A few requests, so that both have served before the baseline.
			if r, err := drive(ctx, p.addr, req, 4, 200*time.Millisecond, 200, ""); err != nil || r.ok == 0 {
				p.stop()
				return fmt.Errorf("%s: first requests: %v %v", name, err, r.failures(name))
			}
			time.Sleep(time.Second)
			base := p.status()
			baseG, err := goroutines(p)
			if err != nil {
				p.stop()
				return err
			}
			p.resetPeak()
			okBefore := up.ok.Load()
			conns, n, err := openIdle(ctx, p.addr, req, o.idleConns)
			if err != nil {
				p.stop()
				return fmt.Errorf("%s: %w", name, err)
			}
			if n != o.idleConns {
				failures = append(failures, fmt.Sprintf("%s round %d: %d of %d connections got 200", name, round, n, o.idleConns))
			}
			if got := up.ok.Load() - okBefore; got != int64(n) {
				failures = append(failures, fmt.Sprintf("%s round %d: the upstream counted %d correct requests, the client %d answers of 200", name, round, got, n))
			}
			// Idle now: let the proxy settle (its connections' read
			// goroutines parked), then read it.
			time.Sleep(3 * time.Second)
			st := p.status()
			g, err := goroutines(p)
			if err != nil {
				p.stop()
				return err
			}
			for _, c := range conns {
				c.Close()
			}
			p.stop()
			r := row{name: name, round: round, baseRSS: base.rss, rss: st.rss, peak: st.hwm, baseG: baseG, g: g}
			rows = append(rows, r)
			fmt.Printf("%-10s %5d %11s %11s %11s %10s %11s %11.2f\n", name, round, mib(r.baseRSS), mib(r.rss), mib(r.peak),
				kib(float64(r.rss-r.baseRSS)/float64(o.idleConns)), fmt.Sprintf("%d->%d", r.baseG, r.g), float64(r.g-r.baseG)/float64(o.idleConns))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	perConn := map[string][]float64{}
	for _, r := range rows {
		perConn[r.name] = append(perConn[r.name], float64(r.rss-r.baseRSS)/float64(o.idleConns))
	}
	b, a := median(perConn["bare"]), median(perConn["authproxy"])
	fmt.Printf("\nRSS per idle connection (median of rounds): bare %s, authproxy %s: authproxy/bare = %.3f\n", kib(b), kib(a), a/b)
	verdict := "met"
	if a > 1.10*b {
		verdict = fmt.Sprintf("MISSED by %.1f%%", (a/b-1.10)*100)
	}
	fmt.Printf("  target authproxy within 10%% of bare: %s\n", verdict)
	if len(failures) > 0 {
		return fmt.Errorf("FAILED:\n  %v", failures)
	}
	fmt.Println("\nall checks passed")
	return nil
}

// openIdle opens n connections to addr, sends req once on each and reads
// the answer, and returns the connections, open and idle, with the number
// of answers of 200.
func openIdle(ctx context.Context, addr string, req []byte, n int) ([]net.Conn, int, error) {
	conns := make([]net.Conn, n)
	var ok atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(nil, 4<<10)
			d := net.Dialer{Timeout: 30 * time.Second}
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					br.Reset(c)
					var status int
					var closeConn bool
					status, _, closeConn, err = roundTrip(c, br, req)
					if err == nil && (status != 200 || closeConn) {
						err = fmt.Errorf("status %d, close %v", status, closeConn)
					}
					if br.Buffered() > 0 {
						err = fmt.Errorf("%d bytes after the answer", br.Buffered())
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					if c != nil {
						c.Close()
					}
					continue
				}
				conns[i] = c
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	var open []net.Conn
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	if firstErr != nil && len(open) == 0 {
		return nil, 0, firstErr
	}
	if firstErr != nil {
		fmt.Printf("  (first failed connection: %v)\n", firstErr)
	}
	return open, int(ok.Load()), ctx.Err()
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
