package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/proxy"
)

// accessRecord is the access log's record (proxy/observe.go) with the
// values a client or an IdP chooses: method, path, user and request id.
func accessRecord(method, path, user, id string) slog.Record {
	r := slog.NewRecord(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC), slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("method", method), slog.String("path", path), slog.Int("status", 200),
		slog.Float64("duration_ms", 1.25), slog.String("user", user), slog.String("outcome", "proxied"),
		slog.String("request_id", id))
	return r
}

// asDecoded is s as a JSON reader gets it back: each invalid UTF-8 byte a
// U+FFFD.
func asDecoded(s string) string { return string([]rune(s)) }

// checkOneRecord checks that line is one whole JSON object on one line with
// exactly the access log's keys and the given values: nothing a value holds
// adds a key, a line or a record.
func checkOneRecord(t *testing.T, line, method, path, user, id string) {
	t.Helper()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "}\n") || strings.ContainsAny(line, "\r\u2028\u2029") {
		t.Errorf("not one line: %q", line)
		return
	}
	dec := json.NewDecoder(strings.NewReader(line))
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		t.Errorf("not one JSON object (%v): %q", err, line)
		return
	}
	want := map[string]any{"time": "2026-12-02T11:00:00Z", "level": "INFO", "msg": "request", "method": asDecoded(method),
		"path": asDecoded(path), "status": 200.0, "duration_ms": 1.25, "user": asDecoded(user), "outcome": "proxied", "request_id": asDecoded(id)}
	if len(m) != len(want) {
		t.Errorf("keys %v, want %d keys: %q", m, len(want), line)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q in %q", k, m[k], v, line)
		}
	}
	// Duplicate keys decode to the last one; count them in the raw line.
	for k := range want {
		if n := strings.Count(line, `"`+k+`":`); n != 1 {
			t.Errorf("key %q %d times in %q", k, n, line)
		}
	}
}

// hostileLogValues are values built to forge or split an access-log line.
var hostileLogValues = []string{
	"/a\n{\"time\":\"2026-01-01T00:00:00Z\",\"level\":\"ERROR\",\"msg\":\"forged\"}",
	"/a\r\n{\"level\":\"ERROR\"}", "/a\"}\n{\"x\":\"", `/a\"},"user":"admin`, "/a\\", `/a\`, "\\\"",
	"/a\",\"user\":\"admin", "/a\u2028{\"forged\":1}\u2029", "/a\x00\x01\x1b[31m\x7f", "\xff\xfe\xc0\xaf/\xed\xa0\x80",
	"\xe2\x80", "\xe2\x80\xa8", "\"status\":500", strings.Repeat("\"\\\n", 30000), "/\u0085\u00a0\ufeff", "",
	"\x1e{\"json-seq\":1}", "/%0a%22", "</script><script>", "&amp;<>",
}

// TestFlatJSONHostileValues: an access-log record whose method, path, user
// or request id is hostile comes out as one line holding one record with
// exactly its keys, and as slog's JSONHandler writes it.
func TestFlatJSONHostileValues(t *testing.T) {
	for _, v := range hostileLogValues {
		for _, rec := range [][4]string{{"GET", v, "u", "id"}, {v, "/", "u", "id"}, {"GET", "/", v, "id"}, {"GET", "/", "u", v}} {
			want, got, flat := both(t, accessRecord(rec[0], rec[1], rec[2], rec[3]))
			if !flat {
				t.Errorf("%q: left to the JSONHandler", v)
			}
			if got != want {
				t.Errorf("flatJSON wrote\n%q\nslog's JSONHandler\n%q", got, want)
			}
			checkOneRecord(t, got, rec[0], rec[1], rec[2], rec[3])
		}
	}
}

// FuzzFlatJSONOneRecord: whatever the access log's client-chosen values,
// flatJSON writes one line, one record, exactly its keys.
func FuzzFlatJSONOneRecord(f *testing.F) {
	for _, v := range hostileLogValues {
		if len(v) < 1000 {
			f.Add("GET", v, "auth0|u", "f00d")
		}
	}
	f.Fuzz(func(t *testing.T, method, path, user, id string) {
		var b strings.Builder
		if err := newFlatJSON(&b, nil).Handle(context.Background(), accessRecord(method, path, user, id)); err != nil {
			t.Fatal(err)
		}
		checkOneRecord(t, b.String(), method, path, user, id)
		checkOneRecord(t, viaAccessLog(t, accessRecord(method, path, user, id)), method, path, user, id)
	})
}

// viaAccessLog writes r the way the proxy's access log does in production
// (proxy.AttrsHandler.HandleAttrs, through openLog's buffered JSON
// handler) and returns what reached the output.
func viaAccessLog(t *testing.T, r slog.Record) string {
	t.Helper()
	var out lockedBuffer
	log, closeLog := openLog(logConfig{Format: "json", Level: slog.LevelDebug, Buffer: true}, &out)
	ah, ok := log.Handler().(proxy.AttrsHandler)
	if !ok {
		t.Fatalf("openLog's handler %T is no proxy.AttrsHandler: the access log takes the slow way", log.Handler())
	}
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	if err := ah.HandleAttrs(context.Background(), r.Time, r.Level, r.Message, attrs); err != nil {
		t.Fatal(err)
	}
	closeLog()
	return out.String()
}

// TestAccessLogHostileValuesViaHandleAttrs: the access log's own way
// (HandleAttrs through flushOnWarn and the buffer) writes each hostile
// record as one line, one record, exactly its keys, as Handle does.
func TestAccessLogHostileValuesViaHandleAttrs(t *testing.T) {
	for _, v := range hostileLogValues {
		for _, rec := range [][4]string{{"GET", v, "u", "id"}, {v, "/", "u", "id"}, {"GET", "/", v, "id"}, {"GET", "/", "u", v}} {
			got := viaAccessLog(t, accessRecord(rec[0], rec[1], rec[2], rec[3]))
			want, _, _ := both(t, accessRecord(rec[0], rec[1], rec[2], rec[3]))
			if got != want {
				t.Errorf("HandleAttrs wrote\n%q\nslog's JSONHandler\n%q", got, want)
			}
			checkOneRecord(t, got, rec[0], rec[1], rec[2], rec[3])
		}
	}
}

// TestFlatJSONConcurrentRecordsWhole: records written at once from many
// goroutines, by flatJSON itself and through its JSONHandler, large ones
// among them, reach a pipe whole, each on its own line, none lost.
func TestFlatJSONConcurrentRecordsWhole(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := newFlatJSON(pw, nil)
	const workers, each = 8, 200
	var lines []string
	done := make(chan error, 1)
	go func() {
		// Reads on while the writers write (a pipe holds 64 KiB).
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
		done <- sc.Err()
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				path := fmt.Sprintf("/w%d/%d/%s", w, i, strings.Repeat("p\n", (w*each+i)%7*3000))
				r := accessRecord("GET", path, "u", "id")
				if i%5 == 0 {
					r.AddAttrs(slog.Any("err", fmt.Errorf("e%d", i))) // the JSONHandler's
				}
				if err := h.Handle(context.Background(), r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a line that is not a record (%v): %.200q", err, line)
		}
		p, _ := m["path"].(string)
		if parts := strings.SplitN(p, "/", 4); len(parts) == 4 {
			seen[parts[1]+"/"+parts[2]] = true // "/w3/17/..." is w3/17
		}
	}
	if len(seen) != workers*each {
		t.Errorf("%d records read back, want %d", len(seen), workers*each)
	}
}
