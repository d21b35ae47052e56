package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRedisReplicasRefreshOnce: with the Redis store, a session whose
// tokens are due is refreshed once, however many requests of it arrive at
// once and on however many replicas; the rotated refresh token is never
// sent twice (oidc-provider would revoke the grant and refuse the rest).
func TestRedisReplicasRefreshOnce(t *testing.T) {
	const tokenTTL = 70 // seconds; the margin is 60
	env := map[string]string{"AUTHPROXY_SCOPES": offlineScopes}
	rs := newReplicaSet(t, replicaOptions{
		Replicas: []replicaSpec{{Name: "a", Env: env}, {Name: "b", Env: env}},
		Provider: func(c *providerConfig, _ map[string]string) {
			// Tokens live 70 s: 10 s after the login they are inside the
			// proxy's 60 s refresh margin, and renewed ones are not for 10 s,
			// time enough for the second burst on a loaded machine.
			c.TTL = map[string]int{"IdToken": tokenTTL, "AccessToken": tokenTTL}
			c.Clients[0].GrantTypes = []string{"authorization_code", "refresh_token"}
			c.RotateRefreshToken = true
			c.LogRequests = true
			c.ClockTolerance = 1
		},
	})
	b := newBrowser(t, rs.PKI)
	if p := b.Login(rs.URL("a", "/start?x=1"), "ada"); p.Status != http.StatusOK {
		t.Fatalf("login through a: %d %s", p.Status, p.URL)
	}
	loggedIn := time.Now()
	cookie := sessionCookie(t, b, rs)
	c := rawClient(t)

	// Until the login's tokens are due (issued before loggedIn), with a
	// second for the provider's whole-second expiry.
	time.Sleep(time.Until(loggedIn.Add((tokenTTL-60+1)*time.Second + 500*time.Millisecond)))
	rs.Provider.Mark(t) // the login's grants are read
	want := rs.Provider.grantCounts()
	var renewed time.Time // before the first burst's refresh
	for burst := 1; burst <= 2; burst++ {
		if burst == 1 {
			renewed = time.Now()
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []string
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				replica := []string{"a", "b"}[i%2]
				a, err := rawGet(c, rs.URL(replica, "/burst"), []*http.Cookie{cookie}, apiHeaders())
				if err != nil || a.Status != http.StatusOK || !strings.Contains(a.Body, userHeading("ada")) {
					mu.Lock()
					failures = append(failures, replica)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("burst %d: %d of 20 requests were not served as ada (replicas %v)", burst, len(failures), failures)
		}
		if burst == 1 { // the second burst finds the tokens renewed
			want.Refresh++
			want.Rotated++
			want.TokenRequests++
		} else if late := time.Since(renewed); late >= (tokenTTL-60)*time.Second {
			t.Skipf("the second burst ended %s after the refresh: the renewed tokens may be due again; too slow to tell", late.Round(time.Millisecond))
		}
		waitGrants(t, rs.Provider, fmt.Sprintf("after burst %d of 20 requests over both replicas", burst), want)
	}
}
