package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// lockedLog is an access log that tests read while requests write it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// requests returns the access-log records ("msg":"request") for path.
func (l *lockedLog) requests(t *testing.T, path string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "request" && rec["path"] == path {
			out = append(out, rec)
		}
	}
	return out
}

// outcomes counts Observer.Request by outcome.
type outcomes struct {
	nopObserver
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) Request(outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[outcome]++
}

func (o *outcomes) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	sum := 0
	for _, n := range o.n {
		sum += n
	}
	return sum
}

// abortingUpstream answers /cut with a body shorter than it announced,
// then drops the connection (an upstream that crashes mid-response); any
// other path as longUpstream.
func abortingUpstream(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/cut" {
		longUpstream(w, r)
		return
	}
	w.Header().Set("Content-Length", "100000")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "the first line\n")
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // closes the connection mid-body
}

// TestAccessLogRecordsAbortedResponses: every request the proxy forwarded
// has its access-log record and is counted, also when the response ends
// abnormally: ReverseProxy panics with http.ErrAbortHandler when copying the
// body fails (the upstream dies mid-body, the client leaves mid-download,
// the proxy itself cuts a stream whose session was revoked). An attacker
// who fetches a document and drops the connection before its last byte,
// or whose stream was cut for a revoked session, must still be in the log.
func TestAccessLogRecordsAbortedResponses(t *testing.T) {
	tests := []struct {
		name, path string
		aborted    bool // the handler panicked: the record says so
		// act ends the response once it has started (body is its reader,
		// conn the client's connection, store the session store); nil:
		// the upstream ends it.
		act func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable)
	}{
		{"upstream dies mid-body", "/cut", true, nil},
		{"client leaves mid-download", "/download", true, func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable) {
			conn.Close()
		}},
		{"client leaves mid-stream", "/events", true, func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable) {
			conn.Close()
		}},
		{"stream cut on revocation", "/ndjson", true, func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable) {
			store.revoked.Store(true)
			ends(t, body, "the revocation of its session")
		}},
		{"download cut on revocation", "/download", true, func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable) {
			store.revoked.Store(true)
			ends(t, body, "the revocation of its session")
		}},
		// No panic on this path; kept so that every long kind is covered.
		{"WebSocket cut on revocation", "/ws", false, func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable) {
			store.revoked.Store(true)
			ends(t, body, "the revocation of its session")
		}},
		{"WebSocket client leaves", "/ws", false, func(t *testing.T, body *bufio.Reader, conn net.Conn, store *revocable) {
			conn.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs, counts := &lockedLog{}, &outcomes{}
			store := &revocable{Store: mustStore(t)}
			f := newFixture(t, http.HandlerFunc(abortingUpstream), shortWatch, func(c *Config) {
				c.Sessions = store
				c.Revalidate = 50 * time.Millisecond
				c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
				c.Observer = counts
			})
			w := httptest.NewRecorder()
			if err := store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "mallory", Expiry: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if tt.act == nil {
				// Nothing to act on: the proxy's answer breaks off (with a
				// Content-Length body it is not flushed before the cut, so
				// perhaps before its head reached the client).
				req, _ := http.NewRequest("GET", f.front.URL+tt.path, nil)
				for _, c := range w.Result().Cookies() {
					req.AddCookie(c)
				}
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil {
						t.Fatal("the cut response arrived whole")
					}
				}
			} else {
				hdr := http.Header{}
				if tt.path == "/ws" {
					hdr.Set("Connection", "Upgrade")
					hdr.Set("Upgrade", "websocket")
				}
				conn, br, resp := rawGet(t, f, tt.path, hdr, w.Result().Cookies())
				if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("status %d", resp.StatusCode)
				}
				body := bufio.NewReader(resp.Body)
				if resp.StatusCode == http.StatusSwitchingProtocols {
					body = br
				}
				if _, err := body.ReadString('\n'); err != nil {
					t.Fatalf("the response did not start: %v", err)
				}
				tt.act(t, body, conn, store)
			}
			waitFor(t, "the aborted request has no access-log record", func() bool { return len(logs.requests(t, tt.path)) > 0 })
			recs := logs.requests(t, tt.path)
			if len(recs) != 1 || recs[0]["user"] != "mallory" || recs[0]["outcome"] != OutcomeProxied || (recs[0]["aborted"] == true) != tt.aborted {
				t.Errorf("access log for %s: %v; want one record of mallory's proxied request, aborted %v", tt.path, recs, tt.aborted)
			}
			waitFor(t, "the aborted request was not counted", func() bool { return counts.total() == 1 })
		})
	}
}
