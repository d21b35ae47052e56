package e2e

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestShutdown sends SIGTERM to a proxy with a logged-in user: /readyz turns
// 503 at once, the proxy keeps serving during the drain delay, then exits 0.
func TestShutdown(t *testing.T) {
	const drain = 3 * time.Second
	s := newStack(t, stackOptions{ProxyEnv: map[string]string{
		"AUTHPROXY_DRAIN_DELAY":      drain.String(),
		"AUTHPROXY_SHUTDOWN_TIMEOUT": "5s",
	}})
	b := newBrowser(t, s.PKI)
	const user = "grace"
	if p := b.Login(s.ProxyURL("/before-sigterm"), user); p.Status != http.StatusOK {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}

	sent := time.Now()
	if err := syscall.Kill(s.Proxy.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	// Within the drain delay: not ready, but still serving.
	var ready *page
	for time.Since(sent) < drain/2 {
		ready = b.Do(http.MethodGet, s.ProxyURL("/readyz"), apiHeaders(), nil)
		if ready.Status == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ready.Status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz within %s of SIGTERM: status %d, want 503", drain/2, ready.Status)
	}
	if p := b.Do(http.MethodGet, s.ProxyURL("/during-drain"), apiHeaders(), nil); p.Status != http.StatusOK {
		t.Errorf("request during the drain delay: status %d, want 200", p.Status)
	}
	if got := s.Upstream.ByPath("/during-drain"); len(got) != 1 || got[0].Header.Get("X-User") != user {
		t.Errorf("upstream saw %+v during the drain delay, want one request with X-User %q", got, user)
	}
	if elapsed := time.Since(sent); elapsed >= drain {
		t.Fatalf("checks took %s, longer than the drain delay %s: the test is too slow to tell", elapsed, drain)
	}

	select {
	case <-s.Proxy.done:
		if s.Proxy.err != nil {
			t.Errorf("authproxy exited with %v after SIGTERM, want status 0", s.Proxy.err)
		}
		if elapsed := time.Since(sent); elapsed < drain {
			t.Errorf("authproxy exited %s after SIGTERM, before the drain delay %s", elapsed, drain)
		}
	case <-time.After(drain + 10*time.Second):
		t.Fatalf("authproxy still running %s after SIGTERM", drain+10*time.Second)
	}
}
