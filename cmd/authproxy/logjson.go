package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/authproxy/authproxy/proxy"
)

// flatJSON is slog's JSONHandler with a faster way for the records most
// logged, the access log's line per request: a record of flat attributes
// (string, integer, float, bool and duration values) on the logger itself,
// not one derived by With or WithGroup. It writes those byte for byte as the
// JSONHandler does (FuzzFlatJSONMatchesSlog), with one Write each, and hands
// everything else to the JSONHandler on the same writer. The JSONHandler
// spends more on a record than the proxy's own work on the request it
// describes: generic attribute handling, a stack walk, and encoding/json
// for every float.
type flatJSON struct {
	json slog.Handler
	w    *lockedWriter // both write through it, as the JSONHandler alone would
}

func newFlatJSON(w io.Writer, opts *slog.HandlerOptions) *flatJSON {
	lw := &lockedWriter{w: w}
	return &flatJSON{json: slog.NewJSONHandler(lw, opts), w: lw}
}

// lockedWriter makes the Writes of both ways into w one at a time, as the
// JSONHandler's own lock does for its records, whatever w is.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (h *flatJSON) Enabled(ctx context.Context, l slog.Level) bool {
	return h.json.Enabled(ctx, l)
}

func (h *flatJSON) WithAttrs(attrs []slog.Attr) slog.Handler { return h.json.WithAttrs(attrs) }
func (h *flatJSON) WithGroup(name string) slog.Handler       { return h.json.WithGroup(name) }

var flatBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (h *flatJSON) Handle(ctx context.Context, r slog.Record) error {
	bp := flatBuffers.Get().(*[]byte)
	buf, ok := appendFlatRecord((*bp)[:0], r)
	if !ok {
		flatBuffers.Put(bp)
		return h.json.Handle(ctx, r)
	}
	return h.write(bp, buf)
}

var _ proxy.AttrsHandler = (*flatJSON)(nil)

// HandleAttrs writes the record of t, level, msg and attrs as Handle writes
// that slog.Record, without building one (the access log's way).
func (h *flatJSON) HandleAttrs(ctx context.Context, t time.Time, level slog.Level, msg string, attrs []slog.Attr) error {
	bp := flatBuffers.Get().(*[]byte)
	buf, ok := appendFlatHead((*bp)[:0], t, level, msg)
	for i := 0; ok && i < len(attrs); i++ {
		buf, ok = appendFlatAttr(buf, attrs[i])
	}
	if !ok {
		flatBuffers.Put(bp)
		return h.json.Handle(ctx, newRecord(t, level, msg, attrs))
	}
	return h.write(bp, append(buf, "}\n"...))
}

// newRecord is the slog.Record of t, level, msg and attrs.
func newRecord(t time.Time, level slog.Level, msg string, attrs []slog.Attr) slog.Record {
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

// write writes buf, a line, and pools it in bp unless it grew large.
func (h *flatJSON) write(bp *[]byte, buf []byte) error {
	_, err := h.w.Write(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf
		flatBuffers.Put(bp)
	}
	return err
}

// appendFlatRecord appends r as the JSONHandler (no options but the level)
// writes it, or reports false for a record it leaves to the JSONHandler.
func appendFlatRecord(buf []byte, r slog.Record) ([]byte, bool) {
	buf, ok := appendFlatHead(buf, r.Time, r.Level, r.Message)
	if !ok {
		return buf, false
	}
	r.Attrs(func(a slog.Attr) bool {
		buf, ok = appendFlatAttr(buf, a)
		return ok
	})
	return append(buf, "}\n"...), ok
}

// appendFlatHead appends a record's opening brace, time, level and
// message, or reports false for a time the JSONHandler reports as an error.
func appendFlatHead(buf []byte, t time.Time, level slog.Level, msg string) ([]byte, bool) {
	buf = append(buf, '{')
	if !t.IsZero() {
		if y := t.Year(); y < 0 || y >= 10000 {
			return buf, false // the JSONHandler reports the error in the line
		}
		buf = append(buf, `"time":"`...)
		buf = t.AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, `",`...)
	}
	buf = append(buf, `"level":`...)
	buf = appendJSONString(buf, level.String())
	buf = append(buf, `,"msg":`...)
	return appendJSONString(buf, msg), true
}

// appendFlatAttr appends ,"key":value, or reports false for a value kind
// left to the JSONHandler.
func appendFlatAttr(buf []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value
	if a.Key == "" && v.Any() == nil {
		return buf, true // an empty Attr: slog leaves it out
	}
	buf = append(buf, ',')
	buf = appendJSONString(buf, a.Key)
	buf = append(buf, ':')
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(buf, v.String()), true
	case slog.KindInt64:
		return strconv.AppendInt(buf, v.Int64(), 10), true
	case slog.KindUint64:
		return strconv.AppendUint(buf, v.Uint64(), 10), true
	case slog.KindBool:
		return strconv.AppendBool(buf, v.Bool()), true
	case slog.KindDuration:
		return strconv.AppendInt(buf, int64(v.Duration()), 10), true
	case slog.KindFloat64:
		// encoding/json's shortest 'f' form, in the range where it uses
		// that form; exponents, NaN and infinities are left to it.
		f := v.Float64()
		if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) || math.IsNaN(f) {
			return buf, false
		}
		if b, ok := appendMillis(buf, f); ok {
			return b, true
		}
		return strconv.AppendFloat(buf, f, 'f', -1, 64), true
	}
	return buf, false
}

// appendMillis appends f as strconv's shortest 'f' form when f is a
// positive whole number of thousandths below 10^12 (the access log's
// duration_ms, microseconds / 1000), or reports false. Such an f is the
// float nearest to u/1000 (one correctly rounded division), and its
// floats lie far closer together than 0.001, so u/1000 written out with
// its trailing zeros trimmed is the shortest decimal that reads back as f.
func appendMillis(buf []byte, f float64) ([]byte, bool) {
	if !(f > 0 && f < 1e12) {
		return buf, false
	}
	u := int64(math.Round(f * 1000))
	if float64(u)/1000 != f {
		return buf, false
	}
	buf = strconv.AppendInt(buf, u/1000, 10)
	if frac := u % 1000; frac != 0 {
		d := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		n := len(d)
		for d[n-1] == '0' {
			n--
		}
		buf = append(buf, d[:n]...)
	}
	return buf, true
}

// appendJSONString appends s quoted as slog's JSON handler quotes it: ASCII
// controls, '"' and '\\' escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped; "<", ">" and "&" as they are.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// plain8 reports whether the 8 bytes of s are all printable ASCII other
// than '"' and '\\': what appendJSONString copies as it is. Eight at a
// time: most of a log line is such bytes.
func plain8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	// (v - ones) &^ v & highs is nonzero exactly when a byte of v is zero,
	// and (x - n*ones) &^ x & highs when a byte of x is below n (n <= 0x80).
	control := (x - 0x20*ones) &^ x
	quote := x ^ '"'*ones
	backslash := x ^ '\\'*ones
	return (control|(quote-ones)&^quote|(backslash-ones)&^backslash|x)&highs == 0
}
