package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestObservability runs a login, proxied and refused requests and a
// logout, then checks the metrics moved and the logs hold one well-formed
// line per request and no secret of any kind.
func TestObservability(t *testing.T) {
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := ml.Addr().String()
	ml.Close()
	s := startStack(t, func(e *env) { e.MetricsAddr = metricsAddr; e.LogLevel = "debug" })

	c := &http.Client{Jar: s.jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", s.base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := get("/report?token=query-secret", map[string]string{"X-Request-Id": "trace-42.a_b"}); r.StatusCode != 200 || r.Header.Get("X-Request-Id") != "trace-42.a_b" {
		t.Errorf("proxied: %d, request id %q", r.StatusCode, r.Header.Get("X-Request-Id"))
	}
	anon, err := http.Get(s.base + "/api")
	if err != nil || anon.StatusCode != 401 {
		t.Fatalf("anonymous: %v %v", anon, err)
	}
	anon.Body.Close()
	// A second login, recording every URL of it: the authorization code
	// travels in one of them.
	var visited []string
	jar2, _ := cookiejar.New(nil)
	recording := &http.Client{Jar: jar2, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		visited = append(visited, req.URL.String())
		return nil
	}}
	if body := loginWith(t, recording, s.base+"/second", "bob"); body != "app:bob" {
		t.Fatalf("second login: %q", body)
	}
	var code string
	for _, v := range visited {
		if u, err := url.Parse(v); err == nil && u.Query().Get("code") != "" {
			code = u.Query().Get("code")
		}
	}
	if code == "" {
		t.Fatal("no authorization code seen during login")
	}

	// Everything the sessions ever held, to look for in the logs.
	secrets := []string{code}
	for _, ck := range jar2.Cookies(mustURL(s.base)) {
		secrets = append(secrets, ck.Value)
	}
	for _, ck := range s.jar.Cookies(mustURL(s.base)) {
		secrets = append(secrets, ck.Value)
	}
	logout := get("/auth/logout", nil)
	end, _ := url.Parse(logout.Header.Get("Location"))
	secrets = append(secrets, end.Query().Get("id_token_hint"), testSecret, "demo-secret", "query-secret")

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for metric, least := range map[string]float64{
		`authproxy_requests_total{outcome="proxied"}`:         2, // the login's landing page and /report
		`authproxy_requests_total{outcome="unauthenticated"}`: 1,
		`authproxy_requests_total{outcome="login_redirect"}`:  1,
		`authproxy_requests_total{outcome="auth"}`:            3, // login, callback, logout
		`authproxy_logins_started_total`:                      1,
		`authproxy_logins_completed_total`:                    1,
		`authproxy_logouts_total`:                             1,
		`authproxy_upstream_response_seconds_count`:           2,
	} {
		if got := metricValue(string(body), metric); got < least {
			t.Errorf("%s = %v, want ≥ %v", metric, got, least)
		}
	}
	if !strings.Contains(string(body), `authproxy_build_info{goversion="go`) {
		t.Error("no authproxy_build_info")
	}

	logs := s.logs.String()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret (%.12s…)", secret)
		}
	}
	var access int
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec["msg"] != "request" {
			continue
		}
		access++
		for _, f := range []string{"method", "path", "status", "duration_ms", "user", "request_id"} {
			if _, ok := rec[f]; !ok {
				t.Errorf("access log line lacks %s: %s", f, line)
			}
		}
		if strings.Contains(rec["path"].(string), "?") {
			t.Errorf("access log path carries a query: %s", line)
		}
		if rec["path"] == "/report" && (rec["user"] != "alice" || rec["request_id"] != "trace-42.a_b") {
			t.Errorf("access line for /report: %s", line)
		}
	}
	if access < 6 {
		t.Errorf("%d access log lines, want one per request (≥ 6)", access)
	}
}

var metricLine = regexp.MustCompile(`(?m)^(\S+) (\S+)$`)

func metricValue(text, name string) float64 {
	for _, m := range metricLine.FindAllStringSubmatch(text, -1) {
		if m[1] == name {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return -1
}
