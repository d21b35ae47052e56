package e2e

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// revalidateEvery is proxy.DefaultRevalidate, which the binary uses: how
// often the proxy checks a long-lived connection's session.
const revalidateEvery = 15 * time.Second

// streamCloseWithin bounds how long an event stream may outlive the
// revocation of its session: one revalidation interval, plus slack for a
// loaded machine. It stays well below sseMaxLife, so that a proxy that
// never closes the stream still fails.
const streamCloseWithin = revalidateEvery + 45*time.Second

// TestAdminAPI drives the session admin API on replica A's internal listener
// while the user works through replica B.
//
//   - Without the right bearer token every call gets 401 and changes nothing.
//   - Two logins of one user are listed as two sessions (oldest first, no
//     token or e-mail in the listing); authproxy_active_sessions says 2.
//   - Revoking the first by id logs that browser out on B at its next
//     request, and closes the event stream it had open through B within the
//     revalidation interval; the other browser and its stream go on.
//   - Revoking all of the user's sessions logs the other browser out and
//     closes its stream too; the gauge follows: 2, 1, 0.
func TestAdminAPI(t *testing.T) {
	token := randomToken(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sse := &sseUpstream{ended: map[string]time.Time{}}
	rs := newReplicaSet(t, replicaOptions{
		Replicas: []replicaSpec{
			// The cache TTL is an hour, so that only the announcement of a
			// revocation can end a session cached on B (awaitRevoked).
			{Name: "a", Env: map[string]string{"AUTHPROXY_METRICS_ADDR": metricsAddr, "AUTHPROXY_ADMIN_TOKEN": token, "AUTHPROXY_REDIS_CACHE_TTL": "1h"}},
			{Name: "b", Env: map[string]string{"AUTHPROXY_REDIS_CACHE_TTL": "1h"}},
		},
		Upstream: sse.handler,
	})
	c := rawClient(t)
	admin := &adminClient{t: t, c: c, base: "http://" + metricsAddr, token: token}
	const user = "admin-api-user"

	if n := admin.activeSessions(); n != 0 {
		t.Errorf("authproxy_active_sessions before any login = %v, want 0", n)
	}
	var cookies [2]*http.Cookie
	for i := range cookies {
		b := newBrowser(t, rs.PKI)
		start := rs.URL("a", fmt.Sprintf("/login?browser=%d", i+1))
		if p := b.Login(start, user); p.Status != http.StatusOK || p.URL.String() != start {
			t.Fatalf("browser %d, login through A: landed on %d %s; hops:\n%s", i+1, p.Status, p.URL, b.HopsString())
		}
		cookies[i] = sessionCookie(t, b, rs)
		time.Sleep(5 * time.Millisecond) // distinct creation times, in milliseconds
	}
	if n := admin.activeSessions(); n != 2 {
		t.Errorf("authproxy_active_sessions after 2 logins = %v, want 2", n)
	}

	// The wrong token, or none, changes nothing.
	listURL := "/admin/sessions?user=" + user
	for _, authz := range []string{"", "Bearer " + randomToken(t), "Bearer " + token[:len(token)-1], "Basic " + token, "bearer " + token, token} {
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			a := admin.call(method, listURL, authz)
			if a.Status != http.StatusUnauthorized || !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with Authorization %q: status %d (WWW-Authenticate %q), want 401 with a Bearer challenge; body:\n%s",
					method, listURL, redactToken(authz, token), a.Status, a.Header.Get("WWW-Authenticate"), a.Body)
			}
		}
	}
	if n := admin.activeSessions(); n != 2 {
		t.Errorf("authproxy_active_sessions after unauthorized calls = %v, want 2", n)
	}

	list := admin.list(user)
	if len(list) != 2 {
		t.Fatalf("GET %s: %d sessions, want 2: %+v", listURL, len(list), list)
	}
	for i, s := range list {
		if s.ID == "" || s.User != user || !s.Expiry.After(time.Now().Add(11*time.Hour)) {
			t.Errorf("session %d listed as %+v, want an id, user %s and an expiry about 12h ahead", i, s, user)
		}
	}
	if list[0].ID == list[1].ID || list[1].Created.Before(list[0].Created) {
		t.Errorf("sessions listed %+v, want two ids, oldest first", list)
	}
	if a := admin.call(http.MethodGet, listURL, "Bearer "+token); strings.Contains(a.Body, "eyJhbGciOi") || strings.Contains(a.Body, "@example.test") {
		t.Errorf("the session listing shows a token or an e-mail address:\n%s", a.Body)
	}
	if got := admin.list("nobody-at-all"); len(got) != 0 {
		t.Errorf("sessions of a user who never logged in: %+v, want none", got)
	}

	for i, ck := range cookies {
		checkServed(t, rs, c, "b", fmt.Sprintf("/work?browser=%d&step=before", i+1), ck, user)
	}
	// An event stream through B for each browser.
	var streams [2]*sseStream
	var opened [2]time.Time // the proxy's revalidation ticker of each started before this
	for i, ck := range cookies {
		streams[i] = openSSE(t, rs.URL("b", fmt.Sprintf("/events?stream=%d", i+1)), ck)
		opened[i] = time.Now()
		if ev := streams[i].next(t); ev != "hello "+user {
			t.Fatalf("stream %d: first event %q, want %q", i+1, ev, "hello "+user)
		}
	}

	// Revoke browser 1's session (the older) by id.
	if a := admin.call(http.MethodDelete, "/admin/sessions/"+list[0].ID, "Bearer "+token); a.Status != http.StatusOK || !strings.Contains(a.Body, `"revoked":1`) {
		t.Fatalf("DELETE /admin/sessions/ID: status %d, want 200 revoked 1; body:\n%s", a.Status, a.Body)
	}
	revoked := time.Now()
	for _, replica := range []string{"b", "a"} {
		awaitRevoked(t, rs, c, replica, cookies[0])
		checkLoggedOut(t, rs, c, replica, "/work?browser=1&step=revoked&on="+replica, cookies[0])
	}
	checkServed(t, rs, c, "b", "/work?browser=2&step=other-revoked", cookies[1], user)
	if n := admin.activeSessions(); n != 1 {
		t.Errorf("authproxy_active_sessions after revoking one = %v, want 1", n)
	}
	if got := admin.list(user); len(got) != 1 || got[0].ID != list[1].ID {
		t.Errorf("sessions after revoking %s: %+v, want only %s", list[0].ID, got, list[1].ID)
	}
	if a := admin.call(http.MethodDelete, "/admin/sessions/"+list[0].ID, "Bearer "+token); a.Status != http.StatusNotFound {
		t.Errorf("DELETE of a revoked session again: status %d, want 404; body:\n%s", a.Status, a.Body)
	}

	closed1 := streams[0].waitEnd(t, revoked, streamCloseWithin)
	t.Logf("stream 1 (revoked session) closed %s after the revocation (client saw: %v)", closed1.Round(time.Millisecond), streams[0].err)
	sse.checkEnded(t, "1")
	// Stream 2's session has been checked since the revocation: its first
	// revalidation was due revalidateEvery after it opened, later than the
	// one that closed stream 1. It is alive and still delivering. (Its
	// ticker may fire late on a busy machine; then this checks less, but
	// cannot fail wrongly.)
	time.Sleep(time.Until(opened[1].Add(revalidateEvery + time.Second)))
	if streams[1].ended() {
		t.Fatalf("stream 2 (session alive) closed too: %v", streams[1].err)
	}
	streams[1].drain()
	if ev := streams[1].next(t); !strings.HasPrefix(ev, "tick ") {
		t.Errorf("stream 2 after stream 1 closed: event %q, want a tick", ev)
	}

	// Revoke all of the user's sessions.
	if a := admin.call(http.MethodDelete, listURL, "Bearer "+token); a.Status != http.StatusOK || !strings.Contains(a.Body, `"revoked":1`) {
		t.Fatalf("DELETE %s: status %d, want 200 revoked 1; body:\n%s", listURL, a.Status, a.Body)
	}
	revokedAll := time.Now()
	for _, replica := range []string{"b", "a"} {
		awaitRevoked(t, rs, c, replica, cookies[1])
		checkLoggedOut(t, rs, c, replica, "/work?browser=2&step=revoked-all&on="+replica, cookies[1])
	}
	if n := admin.activeSessions(); n != 0 {
		t.Errorf("authproxy_active_sessions after revoking all = %v, want 0", n)
	}
	if got := admin.list(user); len(got) != 0 {
		t.Errorf("sessions after revoking all: %+v, want none", got)
	}
	closed2 := streams[1].waitEnd(t, revokedAll, streamCloseWithin)
	t.Logf("stream 2 closed %s after revoking all (client saw: %v)", closed2.Round(time.Millisecond), streams[1].err)
	sse.checkEnded(t, "2")
	checkServedNoError(t, rs)
}

// redactToken hides the admin token in a failure message.
func redactToken(s, token string) string { return strings.ReplaceAll(s, token, "TOKEN") }

// adminClient calls the admin API and /metrics on a replica's internal
// listener.
type adminClient struct {
	t     *testing.T
	c     *http.Client
	base  string // http://127.0.0.1:PORT
	token string
}

// adminSession is one entry of GET /admin/sessions.
type adminSession struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Expiry  time.Time `json:"expiry"`
}

func (a *adminClient) call(method, pathQuery, authz string) answer {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+pathQuery, nil)
	if err != nil {
		a.t.Fatalf("new request: %v", err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, pathQuery, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		a.t.Fatalf("%s %s: read body: %v", method, pathQuery, err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: redactToken(string(body), a.token)}
}

// list returns user's sessions, failing unless the call answers 200 with
// the documented JSON.
func (a *adminClient) list(user string) []adminSession {
	a.t.Helper()
	r := a.call(http.MethodGet, "/admin/sessions?user="+user, "Bearer "+a.token)
	var body struct {
		User     string         `json:"user"`
		Sessions []adminSession `json:"sessions"`
	}
	if r.Status != http.StatusOK || decodeJSON(r.Body, &body) != nil || body.User != user || body.Sessions == nil {
		a.t.Fatalf("GET /admin/sessions?user=%s: status %d, want 200 with {user, sessions: [...]}; body:\n%s", user, r.Status, r.Body)
	}
	return body.Sessions
}

// activeSessions scrapes authproxy_active_sessions.
func (a *adminClient) activeSessions() float64 {
	a.t.Helper()
	r := a.call(http.MethodGet, "/metrics", "")
	if r.Status != http.StatusOK {
		a.t.Fatalf("GET /metrics: status %d", r.Status)
	}
	for line := range strings.Lines(r.Body) {
		if v, ok := strings.CutPrefix(line, "authproxy_active_sessions "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				a.t.Fatalf("authproxy_active_sessions %q: %v", v, err)
			}
			return n
		}
	}
	a.t.Fatalf("GET /metrics: no authproxy_active_sessions")
	return 0
}

// sseUpstream adds GET /events, a server-sent event stream, to the recording
// upstream: "hello USER" (from X-User), then "tick N" every 200ms until the
// request ends. It notes when each stream (by its stream= query) ended.
type sseUpstream struct {
	mu    sync.Mutex
	ended map[string]time.Time
}

func (s *sseUpstream) handler(rec *recorder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			rec.serveHTTP(w, r)
			return
		}
		id := r.URL.Query().Get("stream")
		defer func() {
			s.mu.Lock()
			s.ended[id] = time.Now()
			s.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fmt.Fprintf(w, "data: hello %s\n\n", html.EscapeString(r.Header.Get("X-User")))
		rc := http.NewResponseController(w)
		if rc.Flush() != nil {
			return
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			fmt.Fprintf(w, "data: tick %d\n\n", n)
			if rc.Flush() != nil {
				return
			}
		}
	})
}

// checkEnded fails t unless the upstream's handler of stream id returns
// (its request is cancelled) within hangTimeout.
func (s *sseUpstream) checkEnded(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for {
		s.mu.Lock()
		_, ok := s.ended[id]
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the upstream's stream %s is still open: the proxy closed the client's side only", id)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sseStream is an event stream opened through the proxy, read in the
// background.
type sseStream struct {
	events chan string   // the data of each event
	done   chan struct{} // closed when the stream ended
	at     time.Time     // when it ended, valid after done
	err    error         // why, valid after done
}

// sseMaxLife bounds a stream in the test, whatever the proxy does.
const sseMaxLife = 5 * time.Minute

// openSSE opens rawURL as an event stream with exactly cookie, as
// EventSource does, and fails t unless it answers 200 text/event-stream.
func openSSE(t *testing.T, rawURL string, cookie *http.Cookie) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sseMaxLife)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s as an event stream: %v", rawURL, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		t.Fatalf("GET %s as an event stream: %d %s, want 200 text/event-stream; body:\n%s", rawURL, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	s := &sseStream{events: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case s.events <- data:
				default: // nobody reads; drop
				}
			}
		}
		s.at, s.err = time.Now(), sc.Err()
		if s.err == nil {
			s.err = io.EOF
		}
		close(s.done)
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// next returns the next event's data, failing t if none comes within
// hangTimeout (the upstream sends one every 200ms).
func (s *sseStream) next(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-s.done:
		t.Fatalf("event stream ended (%v) while waiting for an event", s.err)
	case <-time.After(hangTimeout):
		t.Fatalf("no event within %s", hangTimeout)
	}
	return ""
}

// drain discards the events received so far.
func (s *sseStream) drain() {
	for {
		select {
		case <-s.events:
		default:
			return
		}
	}
}

func (s *sseStream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitEnd waits until the stream ends, up to within after since, and
// returns how long after since it ended; it fails t if it does not.
func (s *sseStream) waitEnd(t *testing.T, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	select {
	case <-s.done:
		return s.at.Sub(since)
	case <-time.After(time.Until(since.Add(within))):
		t.Fatalf("event stream still open %s after its session was revoked", within)
	}
	return 0
}
