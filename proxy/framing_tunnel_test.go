package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestFramingStopsAtTheTunnel: behind RefuseAmbiguousFraming, the bytes of
// a WebSocket tunnel reach the upstream as they were sent, even when they
// look like a head with both framing fields (they are not HTTP: the check
// stops when the proxy hijacks the connection). An upgrade that was
// refused leaves the connection HTTP, and still watched.
func TestFramingStopsAtTheTunnel(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { echoTunnel(w) }))
	guarded := httptest.NewUnstartedServer(f.front.Config.Handler)
	guarded.Listener = RefuseAmbiguousFraming(guarded.Listener)
	guarded.Start()
	t.Cleanup(guarded.Close)
	g := *f
	g.front = guarded
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	const ambiguous = "POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"

	conn, br, resp := rawGet(t, &g, "/ws", upgrade, g.session)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	// Bounds only a broken tunnel: the echo would never send back as
	// many bytes.
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	for range 2 {
		if _, err := io.WriteString(conn, ambiguous); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(ambiguous))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != ambiguous {
			t.Fatalf("tunnel echoed %q, %v; want %q", got, err, ambiguous)
		}
	}

	// Refused (no session): the connection stays HTTP, and the next head
	// on it is still judged.
	conn, br, resp = rawGet(t, &g, "/ws", upgrade, nil)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous upgrade: %d, want 401", resp.StatusCode)
	}
	if _, err := io.WriteString(conn, ambiguous); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("after a refused upgrade, a head with both framing fields: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("after a refused upgrade, a head with both framing fields: %d, want 400", resp.StatusCode)
	}
}
