package e2e

import (
	"errors"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRollingUpdateNoErrors is a Kubernetes rolling update seen from the
// clients: logged-in users keep sending requests, some of them to a page the
// upstream takes 500ms to answer, while the proxy gets SIGTERM. /readyz must
// turn 503 before the listener closes (the load balancer stops sending), the
// proxy must keep answering 200 for the drain delay, finish every request it
// has forwarded when it closes its listener, and exit 0. No client may get a
// 5xx. Requests that cannot connect once the listener is closed are what a
// load balancer would have sent elsewhere: they are counted, and must all
// come after the drain delay.
func TestRollingUpdateNoErrors(t *testing.T) {
	const (
		drain           = 3 * time.Second
		shutdownTimeout = 10 * time.Second
		slowFor         = 500 * time.Millisecond // the upstream's /slow pages
		slowClients     = 4
		fastClients     = 2
		maxRequests     = 1000 // per client; the clients stop when the proxy has exited
	)
	up := newArrivalRecorder(t, slowFor)
	s := newStack(t, stackOptions{ProxyEnv: map[string]string{
		"AUTHPROXY_UPSTREAM":         up.URL,
		"AUTHPROXY_DRAIN_DELAY":      drain.String(),
		"AUTHPROXY_SHUTDOWN_TIMEOUT": shutdownTimeout.String(),
	}})

	type result struct {
		client     int
		pathQuery  string
		start, end time.Time
		status     int
		body       string
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
		stop    atomic.Bool
		ok      atomic.Int64 // 200s so far
		wg      sync.WaitGroup
	)
	users := make([]string, slowClients+fastClients)
	for i := range users {
		users[i] = fmt.Sprintf("rolling-user-%d", i)
		b := newBrowser(t, s.PKI)
		start := s.ProxyURL("/landing?c=" + strconv.Itoa(i))
		if p := b.Login(start, users[i]); p.Status != http.StatusOK || p.URL.String() != start {
			t.Fatalf("login as %s: landed on %d %s; hops:\n%s", users[i], p.Status, p.URL, b.HopsString())
		}
		// A client of its own per user, with the browser's cookies and a
		// keep-alive pool, as a browser behind a load balancer has.
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Jar: b.Jar, Transport: tr, Timeout: hangTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		path := "/fast"
		if i < slowClients {
			path = "/slow"
		}
		deadline := time.Now().Add(hangTimeout)
		wg.Go(func() {
			for n := range maxRequests {
				if stop.Load() || time.Now().After(deadline) {
					return
				}
				r := result{client: i, pathQuery: path + "?c=" + strconv.Itoa(i) + "&n=" + strconv.Itoa(n), start: time.Now()}
				req, err := http.NewRequest(http.MethodGet, s.ProxyURL(r.pathQuery), nil)
				if err != nil {
					panic(err) // a constant URL
				}
				req.Header = apiHeaders()
				resp, err := client.Do(req)
				if err == nil {
					var data []byte
					data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					r.status, r.body = resp.StatusCode, string(data)
				}
				r.end, r.err = time.Now(), err
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				switch {
				case err != nil:
					time.Sleep(50 * time.Millisecond) // the listener is gone; don't spin
				case r.status == http.StatusOK:
					ok.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	t.Cleanup(func() { stop.Store(true); wg.Wait() }) // on an early Fatal

	// Let every slow client have a request in flight before the signal.
	for wait := time.Now().Add(hangTimeout); ok.Load() < 2*slowClients+10*fastClients; {
		if time.Now().After(wait) {
			t.Fatalf("only %d requests answered 200 within %s before SIGTERM", ok.Load(), hangTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}

	sent := time.Now()
	closeAt := sent.Add(drain) // the listener cannot close before this
	if err := syscall.Kill(s.Proxy.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	// /readyz turns 503 before the listener closes, on fresh connections as
	// a kubelet probes. Only a refused connection ends the polling: a slow
	// answer is still an answer.
	probe := &http.Client{Timeout: hangTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var notReady time.Duration
	for notReady == 0 {
		resp, err := probe.Get(s.ProxyURL("/readyz"))
		if errors.Is(err, syscall.ECONNREFUSED) {
			if time.Since(sent) < drain {
				t.Errorf("GET /readyz: connection refused %s after SIGTERM, within the drain delay, before any 503",
					time.Since(sent).Round(time.Millisecond))
			} else {
				// The drain delay ran out between two polls.
				t.Logf("GET /readyz: refused %s after SIGTERM, before this test saw a 503: the machine is too slow to tell",
					time.Since(sent).Round(time.Millisecond))
			}
			break
		}
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				notReady = time.Since(sent)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}

	select {
	case <-s.Proxy.done:
	case <-time.After(drain + shutdownTimeout + hangTimeout):
		t.Fatalf("authproxy still running %s after SIGTERM", drain+shutdownTimeout+hangTimeout)
	}
	exited := time.Since(sent)
	stop.Store(true)
	wg.Wait()

	if s.Proxy.err != nil {
		t.Errorf("authproxy exited with %v after SIGTERM, want status 0", s.Proxy.err)
	}
	if exited < drain {
		t.Errorf("authproxy exited %s after SIGTERM, before the drain delay %s", exited.Round(time.Millisecond), drain)
	}

	arrived := up.Arrivals()
	var before, acrossSignal, duringDrain, inFlight, late, refused int
	var refusedFirst time.Duration
	for _, r := range results {
		at, forwarded := arrived[mustQuery(r.pathQuery)]
		if r.err != nil {
			// Could not connect: fine once the listener is closed, as long
			// as the proxy had not taken the request.
			if !errors.Is(r.err, syscall.ECONNREFUSED) {
				t.Errorf("GET %s (started %s after SIGTERM): %v, want a response or, after the drain delay, connection refused",
					r.pathQuery, r.start.Sub(sent).Round(time.Millisecond), r.err)
			} else if r.end.Before(closeAt) {
				t.Errorf("GET %s refused %s after SIGTERM, before the drain delay %s ended",
					r.pathQuery, r.end.Sub(sent).Round(time.Millisecond), drain)
			}
			if forwarded {
				t.Errorf("GET %s reached the upstream (%s after SIGTERM), but the client got no response: %v",
					r.pathQuery, at.Sub(sent).Round(time.Millisecond), r.err)
			}
			if refused == 0 || r.end.Sub(sent) < refusedFirst {
				refusedFirst = r.end.Sub(sent)
			}
			refused++
			continue
		}
		user := users[r.client]
		want := `<h1 id="user">` + html.EscapeString(user) + `</h1>`
		if r.status != http.StatusOK || !strings.Contains(r.body, want) {
			t.Errorf("GET %s (started %s after SIGTERM, answered %s after): status %d, want 200 from the upstream as %s; body:\n%s",
				r.pathQuery, r.start.Sub(sent).Round(time.Millisecond), r.end.Sub(sent).Round(time.Millisecond), r.status, user, r.body)
			continue
		}
		switch {
		case r.end.Before(sent):
			before++
		case r.start.Before(sent):
			acrossSignal++
		case r.end.Before(closeAt):
			duringDrain++
		case r.start.Before(closeAt):
			inFlight++ // sent before the listener could close, answered after
		default:
			late++ // sent after the drain delay, before the listener actually closed
		}
	}
	t.Logf("SIGTERM: /readyz 503 after %s, exit after %s (drain %s). %d requests: answered 200 %d before SIGTERM, %d across it, %d started and answered during the drain, %d in flight when the drain ended, %d sent just after it; %d refused (first %s after SIGTERM)",
		notReady.Round(time.Millisecond), exited.Round(time.Millisecond), drain, len(results),
		before, acrossSignal, duringDrain, inFlight, late, refused, refusedFirst.Round(time.Millisecond))
	if before == 0 || duringDrain == 0 || inFlight == 0 {
		t.Errorf("want requests answered before SIGTERM, during the drain and in flight when it ended; got %d, %d and %d", before, duringDrain, inFlight)
	}
}

// arrivalRecorder is the upstream of TestRollingUpdateNoErrors: a recorder
// whose /slow pages take a while, and which notes when each request (by raw
// query) arrived.
type arrivalRecorder struct {
	rec *recorder
	URL string

	mu      sync.Mutex
	arrived map[string]time.Time
}

func newArrivalRecorder(t *testing.T, slowFor time.Duration) *arrivalRecorder {
	t.Helper()
	a := &arrivalRecorder{rec: &recorder{}, arrived: map[string]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.arrived[r.URL.RawQuery] = time.Now()
		a.mu.Unlock()
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(slowFor):
			case <-r.Context().Done():
				return
			}
		}
		a.rec.serveHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// Arrivals returns when each request arrived, by raw query.
func (a *arrivalRecorder) Arrivals() map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.arrived)
}
