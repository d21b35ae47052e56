package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// lockedBuffer is a bytes.Buffer safe for the writer goroutine and the
// test's reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hang bounds waits for what must happen; only a hang reaches it.
const hang = 2 * time.Minute

// eventually polls cond until it holds, failing t after hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, hang)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLogBufferOrderUnderConcurrency: records from many goroutines come out
// whole, each exactly once (none dropped while stdout is merely slower than
// the writers), each goroutine's in the order written, with batches cut by
// size and by Flush while they are written.
func TestLogBufferOrderUnderConcurrency(t *testing.T) {
	var out lockedBuffer
	b := newLogBuffer(&out, 1<<10, 4<<10, time.Millisecond, hang) // small max: writers wait for room
	b.start()
	const goroutines, each = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				fmt.Fprintf(b, "g%d %d %s\n", g, i, strings.Repeat("x", i%97))
				if i%500 == 0 {
					b.Flush()
				}
			}
		})
	}
	wg.Wait()
	b.Close()
	next := make([]int, goroutines)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, line := range lines {
		var g, i int
		if _, err := fmt.Sscanf(line, "g%d %d", &g, &i); err != nil || g < 0 || g >= goroutines {
			t.Fatalf("torn line %q: %v", line, err)
		}
		if i != next[g] || line != fmt.Sprintf("g%d %d %s", g, i, strings.Repeat("x", i%97)) {
			t.Fatalf("goroutine %d: line %q, want record %d whole", g, line, next[g])
		}
		next[g]++
	}
	if len(lines) != goroutines*each {
		t.Errorf("%d lines, want %d", len(lines), goroutines*each)
	}
}

// TestLogBufferFlushes: a record waits for neither more records nor Close:
// the interval writes it; size bytes are written without the interval; Flush
// writes all before it returns; Close writes the rest and then Write goes
// straight through.
func TestLogBufferFlushes(t *testing.T) {
	t.Run("interval", func(t *testing.T) {
		var out lockedBuffer
		b := newLogBuffer(&out, 1<<10, 1<<20, 10*time.Millisecond, hang)
		b.start()
		defer b.Close()
		io.WriteString(b, "one\n")
		eventually(t, "line written by the interval", func() bool { return out.String() == "one\n" })
	})
	t.Run("size", func(t *testing.T) {
		var out lockedBuffer
		b := newLogBuffer(&out, 1<<10, 1<<20, time.Hour, hang)
		b.start()
		defer b.Close()
		line := strings.Repeat("y", 99) + "\n"
		for range 11 { // 1100 bytes: past size
			io.WriteString(b, line)
		}
		eventually(t, "full batch written", func() bool { return out.String() == strings.Repeat(line, 11) })
	})
	t.Run("flush and close", func(t *testing.T) {
		var out lockedBuffer
		b := newLogBuffer(&out, 1<<10, 1<<20, time.Hour, hang)
		b.start()
		io.WriteString(b, "a\n")
		b.Flush()
		if got := out.String(); got != "a\n" {
			t.Errorf("after Flush: %q, want a", got)
		}
		io.WriteString(b, "b\n")
		b.Close()
		if got := out.String(); got != "a\nb\n" {
			t.Errorf("after Close: %q, want a, b", got)
		}
		io.WriteString(b, "c\n")
		if got := out.String(); got != "a\nb\nc\n" {
			t.Errorf("Write after Close: %q, want a, b, c", got)
		}
		b.Close() // twice is fine
		b.Flush()
	})
}

// TestFlushOnWarn: through openLog's handler, a Warn or Error record is
// written with everything before it by the time the call returns, also from
// a logger with attributes or a group; Info and Debug wait.
func TestFlushOnWarn(t *testing.T) {
	var out lockedBuffer
	b := newLogBuffer(&out, 1<<20, 1<<20, time.Hour, hang)
	b.start()
	defer b.Close()
	log := slog.New(flushOnWarn{Handler: newLogger(logConfig{Format: "json", Level: slog.LevelDebug}, b).Handler(), buf: b})
	for _, l := range []*slog.Logger{log, log.With("k", "v"), log.WithGroup("g")} {
		before := strings.Count(out.String(), "\n")
		l.Info("info")
		l.Debug("debug")
		if n := strings.Count(out.String(), "\n"); n != before {
			t.Fatalf("Info and Debug written at once (%d lines, want %d)", n, before)
		}
		l.Warn("warn")
		if n := strings.Count(out.String(), "\n"); n != before+3 {
			t.Fatalf("after Warn returned: %d new lines, want info, debug and warn:\n%s", n-before, out.String())
		}
		l.Error("error")
		if n := strings.Count(out.String(), "\n"); n != before+4 {
			t.Fatalf("after Error returned: %d new lines, want 4", n-before)
		}
	}
}

// TestFlushOnWarnHandleAttrs: the access log's way through openLog's
// handler (HandleAttrs) writes what Handle writes for the same record, in
// both formats (JSON has HandleAttrs of its own, text takes the Record),
// and a Warn record is written by the time the call returns.
func TestFlushOnWarnHandleAttrs(t *testing.T) {
	when := time.Date(2026, 12, 2, 14, 30, 0, 123456789, time.UTC)
	attrs := []slog.Attr{slog.String("method", "GET"), slog.String("path", "/a\n\"b"), slog.Int("status", 200),
		slog.Float64("duration_ms", 1.5), slog.String("user", "u"), slog.String("outcome", "proxied"),
		slog.String("request_id", "r1"), slog.Float64("huge", 1e300)}
	for _, format := range []string{"json", "text"} {
		for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
			var viaAttrs, viaRecord lockedBuffer
			for _, c := range []struct {
				out   *lockedBuffer
				attrs bool
			}{{&viaAttrs, true}, {&viaRecord, false}} {
				b := newLogBuffer(c.out, 1<<20, 1<<20, time.Hour, hang)
				b.start()
				h := flushOnWarn{Handler: newLogger(logConfig{Format: format, Level: slog.LevelDebug}, b).Handler(), buf: b}
				if c.attrs {
					if err := h.HandleAttrs(context.Background(), when, level, "request", attrs); err != nil {
						t.Fatal(err)
					}
				} else if err := h.Handle(context.Background(), newRecord(when, level, "request", attrs)); err != nil {
					t.Fatal(err)
				}
				if got := c.out.String(); (level >= slog.LevelWarn) != (got != "") {
					t.Errorf("%s, %v: written before Close: %q", format, level, got)
				}
				b.Close()
			}
			if viaAttrs.String() != viaRecord.String() || !strings.Contains(viaAttrs.String(), "request_id") {
				t.Errorf("%s, %v: HandleAttrs wrote\n%q\nHandle\n%q", format, level, viaAttrs.String(), viaRecord.String())
			}
		}
	}
}

// blockingWriter is stdout wedged: Write waits until release is closed.
type blockingWriter struct {
	entered chan struct{} // one value per Write begun
	release chan struct{}
	out     lockedBuffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.entered <- struct{}{}
	<-w.release
	return w.out.Write(p)
}

// TestLogBufferWedgedOutput: while stdout takes nothing, Write and Flush
// still return after the wait bound (a hang fails the test at its own),
// records past max are dropped and counted, and when stdout moves again the kept records come
// out in order followed by the report of the drop.
func TestLogBufferWedgedOutput(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}, 100), release: make(chan struct{})}
	b := newLogBuffer(w, 16, 100, time.Hour, time.Millisecond)
	var reported []uint64
	b.onDrop = func(n uint64) {
		reported = append(reported, n) // the writer goroutine only
		io.WriteString(b, fmt.Sprintf("dropped %d\n", n))
	}
	b.start()
	io.WriteString(b, "first batch 0123456789\n") // past size: written, and wedged
	<-w.entered

	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for i := range 20 { // 20×10 bytes against max 100
			fmt.Fprintf(b, "rec %05d\n", i)
		}
		b.Flush() // times out: the writer is stuck
		b.Flush() // does not wait again
	}()
	select {
	case <-returned:
	case <-time.After(hang):
		t.Fatal("Write or Flush blocked on a wedged stdout")
	}
	close(w.release)
	b.Close()
	<-b.done // Close waits only b.wait
	want := "first batch 0123456789\n"
	for i := range 10 {
		want += fmt.Sprintf("rec %05d\n", i)
	}
	want += "dropped 10\n"
	if got := w.out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if len(reported) != 1 || reported[0] != 10 {
		t.Errorf("drops reported %v, want [10]", reported)
	}
}

// TestRunFlushesLogOnExit: with the buffer on (the default), run's last
// lines are out when run returns, on SIGTERM's shutdown and on a startup
// error.
func TestRunFlushesLogOnExit(t *testing.T) {
	idp, err := oidctest.Start(oidctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	settings := func(extra map[string]string) map[string]string {
		kv := map[string]string{
			"AUTHPROXY_ADDR": "127.0.0.1:0", "AUTHPROXY_UPSTREAM": "http://127.0.0.1:1",
			"AUTHPROXY_ISSUER": idp.Issuer(), "AUTHPROXY_CLIENT_ID": "authproxy-demo", "AUTHPROXY_CLIENT_SECRET": "demo-secret",
			"AUTHPROXY_REDIRECT_URL": "http://127.0.0.1/auth/callback", "AUTHPROXY_COOKIE_SECRET": testSecret,
			"AUTHPROXY_DRAIN_DELAY": "0s",
		}
		for k, v := range extra {
			kv[k] = v
		}
		return kv
	}

	t.Run("SIGTERM", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out lockedBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, nil, envFrom(t, settings(nil)), &out, io.Discard) }()
		eventually(t, "startup line", func() bool {
			select {
			case err := <-done:
				t.Fatalf("run returned before serving: %v\n%s", err, out.String())
			default:
			}
			return strings.Contains(out.String(), `"msg":"authproxy starting"`)
		})
		cancel() // as signal.NotifyContext does on SIGTERM
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		if got := out.String(); !strings.HasSuffix(got, `"msg":"stopped"}`+"\n") {
			t.Errorf("after run returned, the log does not end with the stop line:\n%s", got)
		}
	})
	t.Run("startup error", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		taken := ln.Addr().String()
		defer ln.Close()
		var out lockedBuffer
		err := run(context.Background(), nil, envFrom(t, settings(map[string]string{"AUTHPROXY_METRICS_ADDR": taken})), &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "metrics listener") {
			t.Fatalf("run with the metrics address taken: %v, want a listener error", err)
		}
		if got := out.String(); !strings.Contains(got, `"msg":"authproxy starting"`) {
			t.Errorf("after run failed, the startup line is not out:\n%s", got)
		}
	})
}

// BenchmarkLogOutput: an access-log record through slog's JSON handler into
// a pipe whose other end is read (as stdout is by a container runtime),
// written per record (AUTHPROXY_LOG_BUFFER=false) or through the buffer.
func BenchmarkLogOutput(b *testing.B) {
	for _, buffered := range []bool{false, true} {
		name := map[bool]string{false: "unbuffered", true: "buffered"}[buffered]
		b.Run(name, func(b *testing.B) {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			drained := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, r); close(drained) }()
			cfg := logConfig{Format: "json", Level: slog.LevelInfo}
			log, closeLog := newLogger(cfg, w), func() {}
			var dropped uint64
			if buffered { // openLog's, with the drops counted
				lb := newLogBuffer(w, logBufferSize, logBufferMax, logFlushInterval, logFlushWait)
				lb.onDrop = func(n uint64) { dropped += n }
				log = slog.New(flushOnWarn{Handler: newLogger(cfg, lb).Handler(), buf: lb})
				lb.start()
				closeLog = func() { lb.Close(); <-lb.done }
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					log.LogAttrs(context.Background(), slog.LevelInfo, "request",
						slog.String("method", http.MethodGet), slog.String("path", "/reports/2026/q4"),
						slog.Int("status", 200), slog.Float64("duration_ms", 1.3), slog.String("user", "auth0|5f7c8ec7"),
						slog.String("outcome", "proxied"), slog.String("request_id", "8f0c3b1e9a2d4c5f8e7d6c5b4a392817"))
				}
			})
			b.StopTimer()
			closeLog()
			b.ReportMetric(float64(dropped), "dropped")
			w.Close()
			<-drained
			r.Close()
		})
	}
}
