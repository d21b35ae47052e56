package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/authproxy/authproxy/proxy"
)

// Defaults of the log buffer (AUTHPROXY_LOG_BUFFER).
const (
	// logBufferSize: a batch this large is written at once, without
	// waiting for the interval (about 250 access-log lines).
	logBufferSize = 64 << 10
	// logBufferMax bounds what waits in memory. Past it a record waits for
	// stdout, as it would without the buffer, but at most logFlushWait:
	// a wedged pipe or a stopped log shipper drops records (counted)
	// instead of hanging requests.
	logBufferMax = 1 << 20
	// logFlushInterval is how late a line may appear. 100 ms is below what
	// a person tailing the log notices and what a shipper's batching adds
	// anyway, and each record carries its own time; at the rates where
	// batching pays (thousands of requests a second) it still gathers
	// hundreds of lines per write. It is also the most a SIGKILL or OOM
	// kill loses.
	logFlushInterval = 100 * time.Millisecond
	// logFlushWait bounds how long a Warn-or-worse record (Flush), a
	// record finding the buffer full, or the shutdown (Close) waits for
	// stdout. Longer, stdout is taken as wedged.
	logFlushWait = 2 * time.Second
)

// openLog returns the process's logger writing to w and a func that flushes
// and stops it, for every way run ends (return, error, panic of run's own
// goroutine). With cfg.Buffer the records are gathered in a logBuffer; the
// access log is a line per request, and one write(2) each cost more CPU
// than the rest of logging.
func openLog(cfg logConfig, w io.Writer) (*slog.Logger, func()) {
	if !cfg.Buffer {
		return newLogger(cfg, w), func() {}
	}
	b := newLogBuffer(w, logBufferSize, logBufferMax, logFlushInterval, logFlushWait)
	inner := newLogger(cfg, b).Handler()
	log := slog.New(flushOnWarn{Handler: inner, buf: b})
	// Reported in the format and order of the rest, once stdout takes
	// lines again; through the inner handler, as flushOnWarn would wait
	// for the very goroutine that reports.
	report := slog.New(inner)
	b.onDrop = func(n uint64) {
		report.Warn("log output was blocked: records dropped", "dropped", n)
	}
	b.start()
	return log, b.Close
}

// flushOnWarn writes records of Warn level and above (and what is buffered
// before them) at once: problems should not wait for the interval, and a
// crash right after one must not lose it.
type flushOnWarn struct {
	slog.Handler
	buf *logBuffer
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.buf.Flush()
	}
	return err
}

// HandleAttrs is Handle for the record of t, level, msg and attrs, passed
// on as parts where the handler takes them so (proxy.AttrsHandler).
func (h flushOnWarn) HandleAttrs(ctx context.Context, t time.Time, level slog.Level, msg string, attrs []slog.Attr) error {
	var err error
	if ah, ok := h.Handler.(proxy.AttrsHandler); ok {
		err = ah.HandleAttrs(ctx, t, level, msg, attrs)
	} else {
		err = h.Handler.Handle(ctx, newRecord(t, level, msg, attrs))
	}
	if level >= slog.LevelWarn {
		h.buf.Flush()
	}
	return err
}

func (h flushOnWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithAttrs(attrs), buf: h.buf}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{Handler: h.Handler.WithGroup(name), buf: h.buf}
}

// logBuffer is an io.Writer that gathers whole records (slog writes each
// record with one Write) and writes them to w in batches, in order, from one
// goroutine: when size bytes are waiting, every interval, on Flush and on
// Close. A Write only copies into memory unless max bytes wait already;
// then it waits for the writer, at most wait, and while the writer is stuck
// records are dropped and counted (onDrop reports them after the next
// successful write). It is safe for concurrent use.
type logBuffer struct {
	w              io.Writer
	size, max      int
	interval, wait time.Duration
	onDrop         func(dropped uint64) // set before start

	kick     chan struct{} // a batch is ready or a Flush waits; capacity 1
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when the writer goroutine has ended

	mu        sync.Mutex
	pending   []byte
	spare     []byte          // the last batch's memory, reused
	waiters   []chan struct{} // closed when what was pending at Flush is written
	dropped   uint64          // records dropped since the last report
	room      chan struct{}   // closed when the writer takes pending; nil if nobody waits
	stuck     bool            // a wait for the writer timed out and its write has not returned
	reporting bool            // onDrop runs: Write does not wait for room
	closed    bool            // all written at Close: Write writes straight to w
}

func newLogBuffer(w io.Writer, size, max int, interval, wait time.Duration) *logBuffer {
	return &logBuffer{
		w: w, size: size, max: max, interval: interval, wait: wait,
		pending: make([]byte, 0, size), spare: make([]byte, 0, size),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

func (b *logBuffer) start() { go b.run() }

// Write keeps a copy of p (one record) for the next batch. When max bytes
// wait already, it waits for the writer to take them, as a write to a slow
// pipe would, but at most b.wait: then the writer is stuck, and records are
// dropped until its write returns.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	// A record alone is always kept, and so is the writer's own report
	// (it cannot wait for itself).
	for !b.closed && !b.reporting && len(b.pending) > 0 && len(b.pending)+len(p) > b.max {
		if b.stuck {
			b.dropped++
			b.mu.Unlock()
			return len(p), nil
		}
		if b.room == nil {
			b.room = make(chan struct{})
		}
		room := b.room
		b.mu.Unlock()
		b.signal()
		b.await(room)
		b.mu.Lock()
	}
	if b.closed {
		b.mu.Unlock()
		return b.w.Write(p)
	}
	b.pending = append(b.pending, p...)
	full := len(b.pending) >= b.size
	b.mu.Unlock()
	if full {
		b.signal()
	}
	return len(p), nil
}

// Flush writes what is buffered and waits until it is written, at most
// b.wait; while the writer is stuck it does not wait.
func (b *logBuffer) Flush() {
	b.mu.Lock()
	if b.closed || b.stuck {
		b.mu.Unlock()
		b.signal()
		return
	}
	written := make(chan struct{})
	b.waiters = append(b.waiters, written)
	b.mu.Unlock()
	b.signal()
	b.await(written)
}

// await waits for c to close, at most b.wait; past that the writer is
// stuck.
func (b *logBuffer) await(c <-chan struct{}) {
	t := time.NewTimer(b.wait)
	defer t.Stop()
	select {
	case <-c:
	case <-t.C:
		b.mu.Lock()
		b.stuck = true
		b.mu.Unlock()
	}
}

// Close writes what is buffered (waiting at most b.wait) and stops the
// writer; later records are written straight to w, as without a buffer.
// It may be called more than once.
func (b *logBuffer) Close() {
	b.stopOnce.Do(func() { close(b.stop) })
	t := time.NewTimer(b.wait)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
	}
}

func (b *logBuffer) signal() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run is the only goroutine that writes to w while the buffer is open.
func (b *logBuffer) run() {
	defer close(b.done)
	tick := time.NewTicker(b.interval)
	defer tick.Stop()
	for {
		select {
		case <-b.kick:
		case <-tick.C:
		case <-b.stop:
			// Until nothing is left, then Write goes straight to w:
			// no record overtakes one still buffered.
			for {
				b.writeBatch()
				b.mu.Lock()
				if len(b.pending) == 0 && len(b.waiters) == 0 && b.dropped == 0 {
					b.closed = true
					b.mu.Unlock()
					return
				}
				b.mu.Unlock()
			}
		}
		b.writeBatch()
	}
}

// writeBatch writes what is pending, then releases the Flushes waiting for
// it and reports drops.
func (b *logBuffer) writeBatch() {
	b.mu.Lock()
	batch, waiters, dropped := b.pending, b.waiters, b.dropped
	b.pending, b.waiters, b.dropped = b.spare, nil, 0
	if b.room != nil {
		close(b.room)
		b.room = nil
	}
	b.mu.Unlock()
	if len(batch) > 0 {
		// An error (stdout closed) leaves nowhere to report it; the
		// batch is gone either way, as a failed write(2) is today.
		_, _ = b.w.Write(batch)
	}
	b.mu.Lock()
	// Kept even when it grew past size (a burst, a stall): at most max,
	// and reused with no allocation.
	b.spare = batch[:0]
	b.stuck = false
	b.mu.Unlock()
	for _, c := range waiters {
		close(c)
	}
	if dropped > 0 && b.onDrop != nil {
		b.mu.Lock()
		b.reporting = true
		b.mu.Unlock()
		b.onDrop(dropped) // a record in pending, written next
		b.mu.Lock()
		b.reporting = false
		b.mu.Unlock()
		b.signal()
	}
}
