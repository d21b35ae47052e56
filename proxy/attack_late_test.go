package proxy

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

// TestEveryListedResponseIsCut attacks the lateList that replaced a timer
// per request: many long responses of one session, of every kind, opened
// one after another while the sweeps run (so they spread over the shards
// and are added during sweeps); once the session is revoked, every one
// must end. A sweep that skipped a shard, lost a request added while it
// ran, or stopped while requests were listed would leave some open for
// the session's lifetime.
func TestEveryListedResponseIsCut(t *testing.T) {
	store := &revocable{Store: mustStore(t)}
	f := newFixture(t, http.HandlerFunc(longUpstream), func(c *Config) {
		c.Sessions = store
		c.watchAfter = 200 * time.Millisecond
		c.Revalidate = 50 * time.Millisecond
	})
	w := httptest.NewRecorder()
	if err := store.Save(w, httptest.NewRequest("GET", "/", nil), session.Session{User: "alice", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	const rounds = 6
	type open struct {
		kind string
		body *bufio.Reader
	}
	var bodies []open
	for range rounds {
		for _, k := range longKinds {
			bodies = append(bodies, open{k.name, openLong(t, f, k.path, k.accept, cookies)})
		}
	}
	store.revoked.Store(true)
	for _, o := range bodies {
		ends(t, o.body, "the revocation of its session ("+o.kind+")")
	}
}
