package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// both returns what slog's JSONHandler and flatJSON write for the same
// record, and whether flatJSON wrote it itself.
func both(t *testing.T, r slog.Record) (want, got string, flat bool) {
	t.Helper()
	var a, b bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	if err := slog.NewJSONHandler(&a, opts).Handle(context.Background(), r.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := newFlatJSON(&b, opts).Handle(context.Background(), r.Clone()); err != nil {
		t.Fatal(err)
	}
	_, flat = appendFlatRecord(nil, r.Clone())
	// The access log's way, the record as its parts, writes the same.
	var c bytes.Buffer
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	if err := newFlatJSON(&c, opts).HandleAttrs(context.Background(), r.Time, r.Level, r.Message, attrs); err != nil {
		t.Fatal(err)
	}
	if c.String() != b.String() {
		t.Errorf("HandleAttrs wrote\n%q\nHandle\n%q", c.String(), b.String())
	}
	return a.String(), b.String(), flat
}

// FuzzFlatJSONMatchesSlog checks flatJSON against slog's JSONHandler, byte
// for byte, on records of every attribute kind it writes itself, with any
// key, message and string value.
func FuzzFlatJSONMatchesSlog(f *testing.F) {
	f.Add("request", "path", "/app/items", int64(200), 1.234, true, int64(1_700_000_000_123_456_789), 0)
	f.Add("a\"b\\c\n\r\t\x00\x1f\x7f", "ké\u2028y\u2029", "\xff\xfe<>&'\xe2\x80", int64(-1), math.Copysign(0, -1), false, int64(0), 4)
	f.Add("", "", "", int64(math.MinInt64), 1e21, false, int64(-1), -4)
	f.Add("m", "k", "v", int64(0), 1e-7, true, int64(math.MaxInt64), 8)
	f.Add("m", "k", "v", int64(0), 0.000001, true, int64(math.MaxInt64-1), 2)
	f.Fuzz(func(t *testing.T, msg, key, s string, i int64, fl float64, b bool, unixNano int64, level int) {
		var when time.Time
		if unixNano != 0 {
			when = time.Unix(0, unixNano).In(time.FixedZone("z", int(i%50000)))
		}
		r := slog.NewRecord(when, slog.Level(level), msg, 0)
		r.AddAttrs(
			slog.String(key, s), slog.Int64("i", i), slog.Uint64("u", uint64(i)),
			slog.Float64(key, fl), slog.Bool("b", b), slog.Duration("d", time.Duration(i)),
			slog.Attr{}, slog.String("", s),
		)
		want, got, _ := both(t, r)
		if got != want {
			t.Errorf("flatJSON wrote\n%q\nslog's JSONHandler\n%q", got, want)
		}
	})
}

// TestFlatJSON checks which records flatJSON writes itself (the access
// log's, or the proxy pays the JSONHandler's price again) and that the rest
// come out as the JSONHandler writes them.
func TestFlatJSON(t *testing.T) {
	now := time.Date(2026, 12, 2, 11, 0, 0, 123456000, time.UTC)
	access := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	access.AddAttrs(slog.String("method", "GET"), slog.String("path", "/app/items"), slog.Int("status", 200),
		slog.Float64("duration_ms", 1.25), slog.String("user", "auth0|abc"), slog.String("outcome", "proxied"),
		slog.String("request_id", "f00d"), slog.String("trace_id", "0af7651916cd43dd8448eb211c80319c"))
	group := slog.NewRecord(now, slog.LevelWarn, "m", 0)
	group.AddAttrs(slog.Group("g", slog.String("a", "b")))
	anyValue := slog.NewRecord(now, slog.LevelError, "m", 0)
	anyValue.AddAttrs(slog.Any("err", errors.New("boom")), slog.Any("list", []string{"a"}))
	timeValue := slog.NewRecord(now, slog.LevelInfo, "m", 0)
	timeValue.AddAttrs(slog.Time("at", now))
	nan := slog.NewRecord(now, slog.LevelInfo, "m", 0)
	nan.AddAttrs(slog.Float64("x", math.NaN()), slog.Float64("y", math.Inf(1)))
	tiny := slog.NewRecord(now, slog.LevelInfo, "m", 0)
	tiny.AddAttrs(slog.Float64("x", 1e-9), slog.Float64("y", 3e25))
	year := slog.NewRecord(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", 0)
	for _, tt := range []struct {
		name string
		r    slog.Record
		flat bool
	}{
		{"access log", access, true},
		{"no time", slog.NewRecord(time.Time{}, slog.LevelDebug, "m", 0), true},
		{"group", group, false},
		{"any and error", anyValue, false},
		{"time value", timeValue, false},
		{"NaN and Inf", nan, false},
		{"exponent floats", tiny, false},
		{"year 10000", year, false},
	} {
		want, got, flat := both(t, tt.r)
		if flat != tt.flat {
			t.Errorf("%s: written by flatJSON itself: %v, want %v", tt.name, flat, tt.flat)
		}
		if got != want {
			t.Errorf("%s: flatJSON wrote\n%q\nslog's JSONHandler\n%q", tt.name, got, want)
		}
	}

	// A derived logger is the JSONHandler's.
	var a, b bytes.Buffer
	slog.New(slog.NewJSONHandler(&a, nil)).With("k", "v").WithGroup("g").Info("m", "x", 1)
	slog.New(newFlatJSON(&b, nil)).With("k", "v").WithGroup("g").Info("m", "x", 1)
	if x, y := stripTime(a.String()), stripTime(b.String()); x != y || !strings.Contains(y, `"g":{"x":1}`) {
		t.Errorf("With and WithGroup: flatJSON wrote %q, slog's JSONHandler %q", y, x)
	}
	// The level is the JSONHandler's.
	b.Reset()
	slog.New(newFlatJSON(&b, &slog.HandlerOptions{Level: slog.LevelWarn})).Info("dropped")
	if b.Len() != 0 {
		t.Errorf("an Info record passed a Warn level: %q", b.String())
	}
}

func stripTime(line string) string {
	if i := strings.Index(line, `"level"`); i >= 0 {
		return line[i:]
	}
	return line
}

// BenchmarkAccessRecord is the access log's record through slog's
// JSONHandler and through flatJSON.
func BenchmarkAccessRecord(b *testing.B) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/app/items"), slog.Int("status", 200),
		slog.Float64("duration_ms", 1.25), slog.String("user", "bench-user"), slog.String("outcome", "proxied"),
		slog.String("request_id", "8f0c3b1e2d4a5f6789abcdef01234567"))
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog", slog.NewJSONHandler(discard{}, nil)},
		{"flat", newFlatJSON(discard{}, nil)},
	} {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = h.h.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestFlatJSONSerializesWrites: records from both ways (flat, and the
// JSONHandler's) reach a writer that is not safe for concurrent use one at
// a time, as with the JSONHandler alone (the race detector checks it).
func TestFlatJSONSerializesWrites(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newFlatJSON(&buf, nil))
	const goroutines, each = 4, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i%2 == 0 {
					log.Info("request", "path", "/a", "n", i)
				} else {
					log.Info("other", "err", errors.New("boom"), "g", g) // the JSONHandler's way
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != goroutines*each {
		t.Fatalf("%d lines, want %d", len(lines), goroutines*each)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("not one JSON record: %q", l)
		}
	}
}

// FuzzPlain8 checks the eight-byte test against the byte-wise one.
func FuzzPlain8(f *testing.F) {
	for _, s := range []string{"GET /app", "\x1f\x20\x21\x22\x5b\x5c\x5d\x7f", "\x80aaaaaaa", "aaaaaaa\xff", "\"\"\"\"\"\"\"\"", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) < 8 {
			return
		}
		s = s[:8]
		want := true
		for i := range 8 {
			c := s[i]
			want = want && c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\'
		}
		if got := plain8(s); got != want {
			t.Errorf("plain8(%q) = %v, want %v", s, got, want)
		}
	})
}

// TestPlain8EveryByte puts every byte value at every place of eight plain
// ones.
func TestPlain8EveryByte(t *testing.T) {
	for c := range 256 {
		want := c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\'
		for at := range 8 {
			b := []byte("abcdefgh")
			b[at] = byte(c)
			if got := plain8(string(b)); got != want {
				t.Errorf("plain8(%q) = %v, want %v", b, got, want)
			}
		}
	}
}

// TestAppendMillis compares the duration's fast form with strconv's for
// every thousandth up to 100 s and at the ends of its range, and checks
// that it leaves other values to strconv.
func TestAppendMillis(t *testing.T) {
	check := func(u int64) {
		f := float64(u) / 1000
		got, ok := appendMillis(nil, f)
		if !ok {
			t.Fatalf("%d/1000: not taken", u)
		}
		if want := strconv.AppendFloat(nil, f, 'f', -1, 64); string(got) != string(want) {
			t.Fatalf("%d/1000: got %s, want %s", u, got, want)
		}
	}
	for u := int64(1); u <= 100_000; u++ {
		check(u)
	}
	for u := int64(1e15 - 100_000); u < 1e15; u++ {
		check(u)
	}
	for _, f := range []float64{0, math.Copysign(0, -1), -1.5, 1e12, 1.0001, 0.0005, math.NaN(), math.Inf(1), math.SmallestNonzeroFloat64} {
		if b, ok := appendMillis(nil, f); ok {
			t.Errorf("appendMillis(%v) took it: %s", f, b)
		}
	}
}
