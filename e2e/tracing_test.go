package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

// jaeger is a running Jaeger all-in-one (e2e/tools/jaeger): an OTLP/HTTP
// receiver and the query API, with in-memory storage, on 127.0.0.1 ports of
// its own.
type jaeger struct {
	*process
	OTLP   string // http://127.0.0.1:PORT, the OTLP/HTTP receiver
	GRPC   string // http://127.0.0.1:PORT, the OTLP/gRPC receiver
	Query  string // http://127.0.0.1:PORT, the query API
	client *http.Client
}

// startJaeger starts Jaeger with a configuration of only what the test
// needs (no UI port, no metrics port, no other receivers), and waits until
// its query API answers.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := requireTool(t, "jaeger")
	otlp, otlpGRPC, query, queryGRPC := freePort(t), freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
      grpc:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, query, queryGRPC, otlp, otlpGRPC)
	cmd := exec.Command(bin, "--config", writeTestFile(t, "jaeger.yaml", cfg))
	cmd.Dir = t.TempDir()
	client := &http.Client{Timeout: hangTimeout}
	t.Cleanup(client.CloseIdleConnections)
	j := &jaeger{process: startProcess(t, "jaeger", cmd), client: client,
		OTLP: fmt.Sprintf("http://127.0.0.1:%d", otlp), GRPC: fmt.Sprintf("http://127.0.0.1:%d", otlpGRPC),
		Query: fmt.Sprintf("http://127.0.0.1:%d", query)}
	j.waitFor(t, "200 from the query API", hangTimeout, func() error {
		resp, err := client.Get(j.Query + "/api/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /api/services: %s", resp.Status)
		}
		return nil
	})
	// The receivers are started with the rest; wait for their ports all the same.
	for _, addr := range []string{j.OTLP, j.GRPC} {
		j.waitFor(t, "the OTLP receiver on "+addr, hangTimeout, func() error {
			c, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	return j
}

// jaegerSpan is a span as Jaeger's query API returns it.
type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

// tag returns the span's tag key as text ("" when absent).
func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// parent is the span id of the span's CHILD_OF reference ("" for a root).
func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// jaegerID pads an id as Jaeger prints it (without leading zeros) to the
// W3C width of n hex digits.
func jaegerID(id string, n int) string {
	return strings.Repeat("0", max(0, n-len(id))) + id
}

// traces returns service's traces in Jaeger, each as its spans by trace id.
func (j *jaeger) traces(t *testing.T, service string) (map[string][]jaegerSpan, error) {
	t.Helper()
	resp, err := j.client.Get(j.Query + "/api/traces?limit=1000&lookback=1h&service=" + url.QueryEscape(service))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/traces: %s", resp.Status)
	}
	var body struct {
		Data []struct {
			TraceID string       `json:"traceID"`
			Spans   []jaegerSpan `json:"spans"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string][]jaegerSpan{}
	for _, tr := range body.Data {
		id := jaegerID(tr.TraceID, 32)
		for _, s := range tr.Spans {
			s.SpanID = jaegerID(s.SpanID, 16)
			for i := range s.References {
				s.References[i].SpanID = jaegerID(s.References[i].SpanID, 16)
			}
			out[id] = append(out[id], s)
		}
	}
	return out, nil
}

// waitTrace polls Jaeger until trace id of service holds spans that satisfy
// complete (the batch exporter sends spans every few hundred milliseconds,
// Jaeger stores them a little later), and returns them.
func (j *jaeger) waitTrace(t *testing.T, service, id string, complete func([]jaegerSpan) error) []jaegerSpan {
	t.Helper()
	var spans []jaegerSpan
	j.waitFor(t, "trace "+id+" in Jaeger", hangTimeout, func() error {
		all, err := j.traces(t, service)
		if err != nil {
			return err
		}
		spans = all[id]
		if len(spans) == 0 {
			return fmt.Errorf("no trace %s among %d traces of %s", id, len(all), service)
		}
		if err := complete(spans); err != nil {
			return fmt.Errorf("trace %s: %w; spans: %s", id, err, describeSpans(spans))
		}
		return nil
	})
	return spans
}

func describeSpans(spans []jaegerSpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %q parent %s", s.SpanID, s.OperationName, s.parent())
	}
	return b.String()
}

// spanNamed returns the spans called name.
func spanNamed(spans []jaegerSpan, name string) []jaegerSpan {
	var out []jaegerSpan
	for _, s := range spans {
		if s.OperationName == name {
			out = append(out, s)
		}
	}
	return out
}

// wantTree checks that spans hold exactly one server span named server
// and, as its children, at least one span of each of children.
func wantTree(server string, children ...string) func([]jaegerSpan) error {
	return func(spans []jaegerSpan) error {
		roots := spanNamed(spans, server)
		if len(roots) != 1 {
			return fmt.Errorf("%d spans %q, want 1", len(roots), server)
		}
		for _, c := range children {
			found := false
			for _, s := range spanNamed(spans, c) {
				found = found || s.parent() == roots[0].SpanID
			}
			if !found {
				return fmt.Errorf("no span %q child of %q", c, server)
			}
		}
		return nil
	}
}

// wantRedisChild checks that the span named server has a Redis command
// span as its child, which names the command but not its arguments.
func wantRedisChild(server string) func([]jaegerSpan) error {
	return func(spans []jaegerSpan) error {
		roots := spanNamed(spans, server)
		if len(roots) != 1 {
			return fmt.Errorf("%d spans %q, want 1", len(roots), server)
		}
		for _, s := range spans {
			if s.parent() == roots[0].SpanID && s.tag("db.system") == "redis" {
				if st := s.tag("db.statement"); st != "" {
					return fmt.Errorf("redis span %q records the statement %q", s.OperationName, st)
				}
				return nil
			}
		}
		return fmt.Errorf("no redis span child of %q", server)
	}
}

// allOf checks every one of checks.
func allOf(checks ...func([]jaegerSpan) error) func([]jaegerSpan) error {
	return func(spans []jaegerSpan) error {
		for _, c := range checks {
			if err := c(spans); err != nil {
				return err
			}
		}
		return nil
	}
}

// traceparentOf splits a W3C traceparent into trace and parent span id.
func traceparentOf(t *testing.T, v string) (trace, span string) {
	t.Helper()
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("traceparent %q is not W3C version 00", v)
	}
	return parts[1], parts[2]
}

// TestTracingJaeger runs the proxy with OTEL_EXPORTER_OTLP_ENDPOINT pointing
// at a real Jaeger and reads the traces back through Jaeger's query API:
//
//   - a login's callback is one trace: the server span with the token
//     exchange as its child, and, after the provider rotated its signing
//     key, the key fetch too;
//   - a proxied request is one trace, server span and upstream span, and the
//     upstream received the upstream span's traceparent;
//   - a client's traceparent is not continued, a trusted proxy's is;
//   - over OTLP/gRPC as over OTLP/HTTP, and the spans still buffered at
//     shutdown are exported before the proxy exits;
//   - Redis commands of the session store (the callback's save) are child
//     spans, without their arguments;
//   - each access-log line carries its request's trace_id;
//   - no span holds the query string or the user.
func TestTracingJaeger(t *testing.T) {
	requireE2E(t)
	j := startJaeger(t)
	service := "authproxy-e2e-" + randomToken(t)[:8]
	rdb := startRedis(t) // the Redis store, for its command spans
	s := newStack(t, stackOptions{ProxyEnv: map[string]string{
		"AUTHPROXY_SESSION_STORE":     "redis",
		"AUTHPROXY_REDIS_URL":         rdb.URL(),
		"OTEL_EXPORTER_OTLP_ENDPOINT": j.OTLP,
		"OTEL_SERVICE_NAME":           service,
		"OTEL_BSP_SCHEDULE_DELAY":     "200", // ms: read by the SDK itself
		// Clients from 127.0.0.2 are a trusted proxy; from 127.0.0.1 not.
		"AUTHPROXY_TRUSTED_PROXIES": "127.0.0.2",
	}})
	s.Proxy.waitOutput(t, `msg="tracing on"`)
	// Discovery at start is a trace of its own, with its key fetch.
	j.waitFor(t, "the discovery trace", hangTimeout, func() error {
		all, err := j.traces(t, service)
		if err != nil {
			return err
		}
		for _, spans := range all {
			if len(spanNamed(spans, "oidc discovery")) == 1 {
				return nil
			}
		}
		return fmt.Errorf("no trace with an oidc discovery span among %d", len(all))
	})

	// callbackTrace logs user in and returns the trace id of the callback,
	// from its access-log line.
	callbackTrace := func(b *browser, user, pathQuery string) string {
		t.Helper()
		p := b.Login(s.ProxyURL(pathQuery), user)
		if p.Status != http.StatusOK {
			t.Fatalf("login: landed on %d %s; hops:\n%s", p.Status, p.URL, b.HopsString())
		}
		id := ""
		for _, f := range s.Proxy.accessLog(t) {
			if f["path"] == "/auth/callback" {
				id = f["trace_id"]
			}
		}
		if len(id) != 32 {
			t.Fatalf("the callback's access-log line has trace_id %q", id)
		}
		return id
	}

	b := newBrowser(t, s.PKI)
	login := callbackTrace(b, "tracy", "/traced/login?q=secret-query")
	spans := j.waitTrace(t, service, login, allOf(wantTree("GET /auth/callback", "oidc token"), wantRedisChild("GET /auth/callback")))
	if n := len(spanNamed(spans, "oidc jwks")); n != 0 {
		t.Logf("the first login fetched the keys again (%d fetches): the warm-up at start failed?", n)
	}

	// The provider rotates its signing key: the next login's ID token names
	// a key the proxy has not seen, and the callback fetches the keys.
	if err := s.Provider.stop(stopTimeout); err != nil {
		t.Fatalf("stop the provider: %v", err)
	}
	cfg := s.Provider.Config
	cfg.SigningKeys = []map[string]string{newSigningJWK(t)}
	s.Provider = startProvider(t, s.PKI, cfg)
	rotated := callbackTrace(newBrowser(t, s.PKI), "tracy", "/traced/rotated")
	j.waitTrace(t, service, rotated, wantTree("GET /auth/callback", "oidc token", "oidc jwks"))

	// Proxied requests with the session, from an untrusted client
	// (127.0.0.1) and from a trusted proxy (127.0.0.2), each with a
	// traceparent of its own.
	proxied := func(from, traceparent, pathQuery string) (traceID string, upstream seenRequest) {
		t.Helper()
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}
		defer tr.CloseIdleConnections()
		c := &http.Client{Jar: b.Jar, Transport: tr, Timeout: hangTimeout}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.ProxyURL(pathQuery), nil)
		if err != nil {
			t.Fatal(err)
		}
		reqID := "e2e-trace-" + randomToken(t)[:12]
		req.Header.Set("X-Request-Id", reqID)
		req.Header.Set("Traceparent", traceparent)
		req.Header.Set("Tracestate", "hostile=1")
		req.Header.Set("Baggage", "role=admin")
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", pathQuery, from, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s from %s: %s", pathQuery, from, resp.Status)
		}
		seen := s.Upstream.ByRequestURI(pathQuery)
		if len(seen) != 1 {
			t.Fatalf("the upstream saw %s %d times, want once", pathQuery, len(seen))
		}
		for _, f := range s.Proxy.accessLog(t) {
			if f["request_id"] == reqID {
				traceID = f["trace_id"]
			}
		}
		if len(traceID) != 32 {
			t.Fatalf("access-log line of %s: trace_id %q", reqID, traceID)
		}
		return traceID, seen[0]
	}

	const (
		clientTrace = "0af7651916cd43dd8448eb211c80319c"
		trustedSpan = "b7ad6b7169203331"
		proxyTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	)
	for _, tt := range []struct {
		name, from, traceparent, pathQuery string
		continued                          bool
		parentTrace                        string
	}{
		{"untrusted client", "127.0.0.1", "00-" + clientTrace + "-00f067aa0ba902b7-01", "/traced/api?token=secret-query", false, clientTrace},
		{"trusted proxy", "127.0.0.2", "00-" + proxyTrace + "-" + trustedSpan + "-01", "/traced/trusted?token=secret-query", true, proxyTrace},
	} {
		traceID, up := proxied(tt.from, tt.traceparent, tt.pathQuery)
		if got := up.Header.Values("Traceparent"); len(got) != 1 {
			t.Fatalf("%s: the upstream got traceparent %q, want one", tt.name, got)
		}
		upTrace, upParent := traceparentOf(t, up.Header.Get("Traceparent"))
		if upTrace != traceID {
			t.Errorf("%s: the upstream got trace %s, the access log says %s", tt.name, upTrace, traceID)
		}
		if continued := traceID == tt.parentTrace; continued != tt.continued {
			t.Errorf("%s: the client's trace %s continued: %v, want %v", tt.name, tt.parentTrace, continued, tt.continued)
		}
		if ts := up.Header.Values("Tracestate"); !tt.continued && len(ts) > 0 {
			t.Errorf("%s: the upstream got the client's tracestate %q", tt.name, ts)
		}
		if bg := up.Header.Values("Baggage"); !tt.continued && len(bg) > 0 {
			t.Errorf("%s: the upstream got the client's baggage %q", tt.name, bg)
		}
		// No Redis span required: the store's cache of verified sessions
		// may answer without Redis.
		spans := j.waitTrace(t, service, traceID, wantTree("GET /", "upstream"))
		server := spanNamed(spans, "GET /")[0]
		if ups := spanNamed(spans, "upstream"); len(ups) != 1 || ups[0].SpanID != upParent {
			t.Errorf("%s: the upstream's traceparent names span %s, Jaeger has upstream spans %s", tt.name, upParent, describeSpans(ups))
		}
		if tt.continued && server.parent() != trustedSpan {
			t.Errorf("%s: the server span's parent is %q, want the trusted proxy's %s", tt.name, server.parent(), trustedSpan)
		}
		if !tt.continued && server.parent() != "" {
			t.Errorf("%s: the server span has a parent %q", tt.name, server.parent())
		}
		if server.tag("authproxy.outcome") != "proxied" || server.tag("http.route") != "/" || server.tag("http.response.status_code") != "200" {
			t.Errorf("%s: server span tags %+v", tt.name, server.Tags)
		}
	}

	// The same over OTLP/gRPC, from a second proxy: one request. Its batch
	// would wait ten minutes: only the flush at shutdown can export it.
	grpcService := service + "-grpc"
	p2 := startProxy(t, s.PKI, proxyConfig{Upstream: s.Upstream.URL.String(), Issuer: s.Provider.Issuer,
		ClientID: s.Client.ClientID, ClientSecret: s.Client.ClientSecret, CookieSecret: newCookieSecret(t), PostLogoutURL: "/",
		Env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": j.GRPC, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_SERVICE_NAME": grpcService, "OTEL_BSP_SCHEDULE_DELAY": "600000"}})
	req, err := http.NewRequest(http.MethodGet, p2.URL.String()+"/traced/grpc", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Request-Id", "e2e-trace-grpc")
	resp, err := (&http.Client{Timeout: hangTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /traced/grpc without a session: %s, want 401", resp.Status)
	}
	grpcTrace := ""
	for _, f := range p2.accessLog(t) {
		if f["request_id"] == "e2e-trace-grpc" {
			grpcTrace = f["trace_id"]
		}
	}
	if err := p2.stop(stopTimeout); err != nil {
		t.Fatalf("stop the gRPC proxy: %v", err)
	}
	j.waitTrace(t, grpcService, grpcTrace, wantTree("GET /"))

	// Nothing in any span of the run names the query or the user.
	all, err := j.traces(t, service)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 5 {
		t.Errorf("Jaeger holds %d traces of %s, want at least discovery, two logins' callbacks and two requests", len(all), service)
	}
	for id, spans := range all {
		for _, sp := range spans {
			for _, tag := range sp.Tags {
				if v := fmt.Sprint(tag.Value); strings.Contains(v, "secret-query") || strings.Contains(v, "tracy") {
					t.Errorf("trace %s span %q tag %s = %q", id, sp.OperationName, tag.Key, v)
				}
			}
		}
	}
}
