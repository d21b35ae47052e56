package e2e

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestShutdown sends SIGTERM to a proxy with a logged-in user: /readyz turns
// 503 while the proxy keeps serving during the drain delay, then it exits 0,
// not before the drain delay.
//
// Nothing here bounds how fast the machine is. The order of the proxy's
// answers proves "503 while still serving": a request answered 200 after
// /readyz said 503. Only a machine so slow that the drain delay ran out
// before those two requests were answered leaves the test unable to tell,
// and then it skips rather than fail.
func TestShutdown(t *testing.T) {
	const drain = 5 * time.Second
	s := newStack(t, stackOptions{ProxyEnv: map[string]string{
		"AUTHPROXY_DRAIN_DELAY":      drain.String(),
		"AUTHPROXY_SHUTDOWN_TIMEOUT": "5s",
	}})
	b := newBrowser(t, s.PKI)
	const user = "grace"
	if p := b.Login(s.ProxyURL("/before-sigterm"), user); p.Status != http.StatusOK {
		t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
	}
	c := rawClient(t)
	cookies := b.Jar.Cookies(s.Proxy.URL)

	sent := time.Now()
	if err := syscall.Kill(s.Proxy.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// tooSlow skips t when a request failed only because the drain delay
	// had already ended: the machine was too slow to tell.
	tooSlow := func(what string, err error) {
		t.Helper()
		if elapsed := time.Since(sent); elapsed >= drain {
			t.Skipf("%s %s after SIGTERM, after the drain delay %s: %v; the machine is too slow to tell", what, elapsed.Round(time.Millisecond), drain, err)
		}
	}

	// Not ready: /readyz says 503 before the proxy stops serving.
	for {
		a, err := rawGet(c, s.ProxyURL("/readyz"), nil, apiHeaders())
		if err != nil {
			tooSlow("GET /readyz failed", err)
			t.Fatalf("GET /readyz %s after SIGTERM: %v, before it ever said 503", time.Since(sent).Round(time.Millisecond), err)
		}
		if a.Status == http.StatusServiceUnavailable {
			break
		}
		if a.Status != http.StatusOK {
			t.Fatalf("GET /readyz after SIGTERM: status %d, want 200 until it turns 503", a.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Still serving, after /readyz said 503.
	a, err := rawGet(c, s.ProxyURL("/during-drain"), cookies, apiHeaders())
	if err != nil {
		tooSlow("a request during the drain failed", err)
		t.Fatalf("request after /readyz said 503, %s after SIGTERM, within the drain delay %s: %v",
			time.Since(sent).Round(time.Millisecond), drain, err)
	}
	if a.Status != http.StatusOK {
		t.Errorf("request during the drain delay: status %d, want 200", a.Status)
	}
	if got := s.Upstream.ByPath("/during-drain"); len(got) != 1 || got[0].Header.Get("X-User") != user {
		t.Errorf("upstream saw %+v during the drain delay, want one request with X-User %q", got, user)
	}

	select {
	case <-s.Proxy.done:
		if s.Proxy.err != nil {
			t.Errorf("authproxy exited with %v after SIGTERM, want status 0", s.Proxy.err)
		}
		if elapsed := time.Since(sent); elapsed < drain {
			t.Errorf("authproxy exited %s after SIGTERM, before the drain delay %s", elapsed, drain)
		}
	case <-time.After(drain + hangTimeout):
		t.Fatalf("authproxy still running %s after SIGTERM", drain+hangTimeout)
	}
}
