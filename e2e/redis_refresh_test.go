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
	env := map[string]string{"AUTHPROXY_SCOPES": offlineScopes}
	rs := newReplicaSet(t, replicaOptions{
		Replicas: []replicaSpec{{Name: "a", Env: env}, {Name: "b", Env: env}},
		Provider: func(c *providerConfig, _ map[string]string) {
			// Tokens live 65 s: 5 s after the login they are inside the
			// proxy's 60 s refresh margin, and renewed ones are not.
			c.TTL = map[string]int{"IdToken": 65, "AccessToken": 65}
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
	cookie := sessionCookie(t, b, rs)
	c := rawClient(t)

	time.Sleep(7 * time.Second) // until the login's tokens are due (5 s), with a margin
	want := rs.Provider.grantCounts()
	for burst := 1; burst <= 2; burst++ {
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
		}
		waitGrants(t, rs.Provider, fmt.Sprintf("after burst %d of 20 requests over both replicas", burst), want)
	}
}
