package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// recorder is a recording HTTP server on 127.0.0.1: the upstream app behind
// the proxy, or the page the provider sends the browser to after logout. It
// keeps every request it saw and answers with a small HTML page showing the
// X-User it received (<h1 id="user">) and the path and query (<p id="path">).
type recorder struct {
	srv *httptest.Server
	URL *url.URL

	mu   sync.Mutex
	seen []seenRequest
}

// seenRequest is what the recorder kept of one request.
type seenRequest struct {
	Method     string
	Host       string
	RequestURI string // as sent on the wire: escaped path and raw query
	Path       string // decoded
	RawQuery   string
	Header     http.Header // as received; Go canonicalizes names it can
}

// newRecorder starts a recorder; it is closed when t ends.
func newRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{}
	// httptest.NewServer listens on 127.0.0.1 only.
	r.srv = httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	t.Cleanup(r.srv.Close)
	u, err := url.Parse(r.srv.URL)
	if err != nil {
		t.Fatalf("parse recorder URL: %v", err)
	}
	r.URL = u
	return r
}

func (r *recorder) serveHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen = append(r.seen, seenRequest{
		Method:     req.Method,
		Host:       req.Host,
		RequestURI: req.RequestURI,
		Path:       req.URL.Path,
		RawQuery:   req.URL.RawQuery,
		Header:     req.Header.Clone(),
	})
	r.mu.Unlock()

	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!DOCTYPE html>
<html><head><title>upstream</title></head>
<body>
<h1 id="user">%s</h1>
<p id="path">%s</p>
</body></html>
`, html.EscapeString(req.Header.Get("X-User")), html.EscapeString(req.RequestURI))
}

// Requests returns a copy of every request seen so far, oldest first.
func (r *recorder) Requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.seen...)
}

// ByPath returns the requests whose decoded path is path.
func (r *recorder) ByPath(path string) []seenRequest {
	var out []seenRequest
	for _, s := range r.Requests() {
		if s.Path == path {
			out = append(out, s)
		}
	}
	return out
}

// ByRequestURI returns the requests whose request line named uri exactly
// (escaped path and raw query, as sent).
func (r *recorder) ByRequestURI(uri string) []seenRequest {
	var out []seenRequest
	for _, s := range r.Requests() {
		if s.RequestURI == uri {
			out = append(out, s)
		}
	}
	return out
}
