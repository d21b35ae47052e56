package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// revocationsPerKind is how many sessions TestRedisCacheRevocationDelay
// ends each way: three ways, at least 200 revocations in all.
const revocationsPerKind = 70

// TestRedisCacheRevocationDelay measures how long a revoked session stays
// usable on two replicas that share one redis-server and each cache
// sessions (the default). Each round logs in, makes both replicas cache
// the session, ends it through one replica (alternately A and B) by
// logout, the admin API or a back-channel logout token, and from the
// moment that call returns polls both replicas until each refuses the
// cookie.
//
// It asserts correctness only, never time: every revocation is refused on
// both replicas, and once a replica has refused the cookie, it never
// serves it again. The delays (from the revocation call's return to the
// sending of the first refused request, so an upper bound at the polling
// resolution) are logged with their p50/p99, and written to the file named
// by AUTHPROXY_REVOCATION_DELAY_OUT when it is set.
func TestRedisCacheRevocationDelay(t *testing.T) {
	token := randomToken(t)
	signing := newSigningJWK(t)
	metrics := map[string]string{"a": fmt.Sprintf("127.0.0.1:%d", freePort(t)), "b": fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	replicaEnv := func(name string) map[string]string {
		return map[string]string{"AUTHPROXY_METRICS_ADDR": metrics[name], "AUTHPROXY_ADMIN_TOKEN": token}
	}
	rs := newReplicaSet(t, replicaOptions{
		Replicas: []replicaSpec{{Name: "a", Env: replicaEnv("a")}, {Name: "b", Env: replicaEnv("b")}},
		Provider: func(c *providerConfig, base map[string]string) {
			c.SigningKey = signing
			c.Features.BackchannelLogout = true
			c.AllowLoopbackFetch = true
			c.Clients[0].BackchannelLogoutURI = base["a"] + "/auth/backchannel-logout"
		},
	})
	c := rawClient(t)
	mint := newLogoutTokenMinter(t, rs, signing)
	const user = "revocation-delay-user"
	replicas := []string{"a", "b"}

	kinds := []struct {
		name   string
		revoke func(on string, ck *http.Cookie)
	}{
		{"logout", func(on string, ck *http.Cookie) {
			a, err := rawGet(c, rs.URL(on, "/auth/logout"), []*http.Cookie{ck}, navigationHeaders())
			if err != nil || !isRedirect(a.Status) {
				t.Fatalf("GET /auth/logout on %s: %v %d, want a redirect to the provider", on, err, a.Status)
			}
		}},
		{"admin revoke", func(on string, ck *http.Cookie) {
			admin := &adminClient{t: t, c: c, base: "http://" + metrics[on], token: token}
			if a := admin.call(http.MethodDelete, "/admin/sessions?user="+user, "Bearer "+token); a.Status != http.StatusOK || !strings.Contains(a.Body, `"revoked":1`) {
				t.Fatalf("DELETE /admin/sessions?user= on %s: %d, want 200 revoked 1; body:\n%s", on, a.Status, a.Body)
			}
		}},
		{"back-channel logout", func(on string, ck *http.Cookie) {
			// The provider's back-channel goes to A; a token is accepted by
			// any replica.
			a := postForm(t, c, rs.URL(on, "/auth/backchannel-logout"), url.Values{"logout_token": {mint.sign(mint.claims(user))}})
			if a.Status != http.StatusOK {
				t.Fatalf("POST /auth/backchannel-logout on %s: %d, want 200; body:\n%s", on, a.Status, a.Body)
			}
		}},
	}

	b := newBrowser(t, rs.PKI)
	delays := map[string][]time.Duration{} // "a", "b", "every replica", and per kind
	// servedAfter counts the rounds in which a replica served the session
	// after the revocation call had returned (before refusing it).
	servedAfter := map[string]int{}
	round := 0
	for _, kind := range kinds {
		for i := range revocationsPerKind {
			round++
			on := replicas[i%2]
			dropSessionCookie(b, rs)
			start := rs.URL("a", fmt.Sprintf("/login?round=%d", round))
			if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start {
				t.Fatalf("round %d: login: landed on %d %s; hops:\n%s", round, p.Status, p.URL, b.HopsString())
			}
			ck := sessionCookie(t, b, rs)
			// Both replicas read the session, the second time from their
			// cache.
			for n := range 2 {
				for _, name := range replicas {
					pq := fmt.Sprintf("/warm?round=%d&n=%d&on=%s", round, n, name)
					if a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{ck}, apiHeaders()); err != nil || a.Status != http.StatusOK {
						t.Fatalf("round %d: GET %s on %s before the revocation: %v %d", round, pq, name, err, a.Status)
					}
				}
			}

			kind.revoke(on, ck)
			done := time.Now()
			refused := map[string]time.Duration{}
			deadline := done.Add(hangTimeout)
			for poll := 0; len(refused) < len(replicas) || poll < 5; poll++ {
				for _, name := range replicas {
					pq := fmt.Sprintf("/after?round=%d&poll=%d&on=%s", round, poll, name)
					sent := time.Now()
					a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{ck}, apiHeaders())
					if err != nil {
						t.Fatalf("round %d: GET %s: %v", round, pq, err)
					}
					_, wasRefused := refused[name]
					switch {
					case a.Status == http.StatusUnauthorized:
						if !wasRefused {
							refused[name] = max(0, sent.Sub(done))
						}
					case a.Status == http.StatusOK && wasRefused:
						t.Fatalf("round %d (%s on %s): replica %s served the session again after refusing it", round, kind.name, on, name)
					case a.Status == http.StatusOK && poll == 0:
						servedAfter[name]++
					case a.Status != http.StatusOK:
						t.Fatalf("round %d: GET %s on %s after the revocation: status %d, want 200 until refused, then 401; body:\n%s", round, pq, name, a.Status, a.Body)
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d (%s on %s): still served %v after the revocation (refused on: %v)", round, kind.name, on, hangTimeout, refused)
				}
			}
			every := max(refused["a"], refused["b"])
			delays["a"] = append(delays["a"], refused["a"])
			delays["b"] = append(delays["b"], refused["b"])
			delays["other replica"] = append(delays["other replica"], refused[replicas[(i+1)%2]])
			delays["every replica"] = append(delays["every replica"], every)
			delays[kind.name] = append(delays[kind.name], every)
		}
	}

	var report strings.Builder
	fmt.Fprintf(&report, "Revocation delay, two authproxy replicas sharing one redis-server, cache on (default settings)\n")
	fmt.Fprintf(&report, "measured from the revocation call's return to the sending of the first request refused; polling both replicas back to back\n")
	fmt.Fprintf(&report, "command: AUTHPROXY_E2E=1 go test -race -count=1 -run 'TestRedisCacheRevocationDelay' ./e2e\n")
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&report, "machine: %d CPUs (%s/%s), load average %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, strings.TrimSpace(string(load)))
	for _, k := range []string{"every replica", "other replica", "a", "b", "logout", "admin revoke", "back-channel logout"} {
		d := delays[k]
		fmt.Fprintf(&report, "%-20s n=%d p50=%v p99=%v max=%v\n", k, len(d), percentile(d, 50), percentile(d, 99), percentile(d, 100))
	}
	fmt.Fprintf(&report, "rounds in which a replica still served the session after the call returned: a %d, b %d (of %d)\n", servedAfter["a"], servedAfter["b"], round)
	t.Log("\n" + report.String())
	if out := os.Getenv("AUTHPROXY_REVOCATION_DELAY_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
	checkServedNoError(t, rs)
}

// percentile returns the p-th percentile of d (nearest rank).
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[min(max(i, 0), len(s)-1)].Round(10 * time.Microsecond)
}

// TestRedisCacheFailClosed: two replicas cache a session (with a cache TTL
// of an hour, so that only the store's own checks can end a cached copy).
//
//   - The subscriptions are killed (CLIENT KILL TYPE pubsub) and the
//     session deleted without an announcement, as if announced while the
//     replicas were not listening: both replicas refuse it once they have
//     resubscribed (from an empty cache), and never serve it again.
//   - Redis is killed: both replicas answer 503, and once they have, never
//     200 while it is down; the cached copy is not used.
//   - Redis restarts empty: the cookie means "log in again", never 200.
func TestRedisCacheFailClosed(t *testing.T) {
	ttl := map[string]string{"AUTHPROXY_REDIS_CACHE_TTL": "1h"}
	rs := newReplicaSet(t, replicaOptions{Replicas: []replicaSpec{{Name: "a", Env: ttl}, {Name: "b", Env: ttl}}})
	c := rawClient(t)
	const user = "fail-closed-user"
	replicas := []string{"a", "b"}
	b := newBrowser(t, rs.PKI)
	login := func(step string) *http.Cookie {
		t.Helper()
		dropSessionCookie(b, rs)
		start := rs.URL("a", "/login?step="+step)
		if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start {
			t.Fatalf("%s: login: landed on %d %s; hops:\n%s", step, p.Status, p.URL, b.HopsString())
		}
		ck := sessionCookie(t, b, rs)
		for n := range 2 {
			for _, name := range replicas {
				pq := fmt.Sprintf("/warm?step=%s&n=%d", step, n)
				if a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{ck}, apiHeaders()); err != nil || a.Status != http.StatusOK {
					t.Fatalf("%s: GET %s on %s: %v %d", step, pq, name, err, a.Status)
				}
			}
		}
		return ck
	}
	// until polls both replicas with ck until each answers want; a replica
	// that has answered want must keep answering it, and before that only
	// the statuses in also are allowed.
	until := func(step string, ck *http.Cookie, want int, also ...int) {
		t.Helper()
		got := map[string]bool{}
		deadline := time.Now().Add(hangTimeout)
		for poll := 0; len(got) < len(replicas) || poll < 20; poll++ {
			for _, name := range replicas {
				pq := fmt.Sprintf("/%s?poll=%d", step, poll)
				a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{ck}, apiHeaders())
				if err != nil {
					t.Fatalf("%s: GET %s on %s: %v", step, pq, name, err)
				}
				switch {
				case a.Status == want:
					got[name] = true
				case got[name]:
					t.Fatalf("%s: replica %s answered %d after answering %d; body:\n%s", step, name, a.Status, want, a.Body)
				case !slices.Contains(also, a.Status):
					t.Fatalf("%s: GET %s on %s: status %d, want %d (or first %v); body:\n%s", step, pq, name, a.Status, want, also, a.Body)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not every replica answered %d within %v: %v", step, want, hangTimeout, got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	rc := rs.Redis.Client(t)
	ck := login("pubsub-killed")
	sessions := keysWithPrefix(rc.Dump(t), "authproxy:s:")
	if len(sessions) != 1 {
		t.Fatalf("Redis holds sessions %q, want 1", sessions)
	}
	if n := rc.Int(t, "CLIENT", "KILL", "TYPE", "pubsub"); n != 2 {
		t.Errorf("CLIENT KILL TYPE pubsub killed %d connections, want 2 (one subscription per replica)", n)
	}
	if n := rc.Int(t, "DEL", sessions[0]); n != 1 {
		t.Fatalf("DEL %s: %d", sessions[0], n)
	}
	until("pubsub-killed", ck, http.StatusUnauthorized, http.StatusOK)

	ck = login("redis-killed")
	rs.Redis.Kill()
	until("redis-killed", ck, http.StatusServiceUnavailable, http.StatusOK)
	rs.Redis.Restart()
	until("redis-restarted", ck, http.StatusUnauthorized, http.StatusServiceUnavailable)
	for _, p := range rs.Proxy {
		if gone, err := p.exited(); gone {
			t.Fatalf("authproxy exited (%v)", err)
		}
	}
}

// awaitRevoked polls replica name with cookie (API calls under /settle)
// until it refuses it. A revocation made through one replica is refused by
// the others once its announcement has reached their session caches
// (milliseconds; TestRedisCacheRevocationDelay measures it), not
// necessarily at their very next request; tests that check another
// replica's answer right after a revocation wait for that first. Any
// answer but 200 (not yet) or 401 fails t.
func awaitRevoked(t *testing.T, rs *replicaSet, c *http.Client, name string, cookie *http.Cookie) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for n := 0; ; n++ {
		pq := fmt.Sprintf("/settle?on=%s&n=%d", name, n)
		a, err := rawGet(c, rs.URL(name, pq), []*http.Cookie{cookie}, apiHeaders())
		switch {
		case err != nil:
			t.Fatalf("GET %s on %s: %v", pq, name, err)
		case a.Status == http.StatusUnauthorized:
			return
		case a.Status != http.StatusOK:
			t.Fatalf("GET %s on %s after a revocation: status %d, want 200 until the revocation arrives, then 401; body:\n%s", pq, name, a.Status, a.Body)
		case time.Now().After(deadline):
			t.Fatalf("replica %s still serves a revoked session %v after the revocation", name, hangTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}
