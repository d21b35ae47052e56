// Package page renders the few responses authproxy writes itself (errors,
// "not signed in", "provider unreachable", "access denied"): a small HTML
// page for people and a JSON body for programs. Both oidc (failed sign-ins,
// provider down) and proxy (401, 403, upstream errors) render them; the
// package stands apart from both so that they look alike and oidc need not
// import proxy.
package page

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
)

// Page is one response written by authproxy itself.
type Page struct {
	Status int
	// Code is a stable machine-readable reason, e.g. "provider_unavailable".
	Code string
	// Title and Detail are shown to people. They never carry secrets or
	// raw error strings from libraries.
	Title  string
	Detail string
	Links  []Link
	// Extra fields for the JSON body, e.g. login_url.
	Extra map[string]string
}

// Link is an action offered on the page, like "Sign in again".
type Link struct {
	Href string
	Text string
}

var tmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}.code{color:#777;font-size:.85em}a{margin-right:1em}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Detail}}</p>
<p>{{range .Links}}<a href="{{.Href}}">{{.Text}}</a>{{end}}</p>
<p class="code">{{.Status}} · {{.Code}} · authproxy</p></body></html>
`))

// Write sends p as HTML when the client accepts it, else as JSON.
func Write(w http.ResponseWriter, r *http.Request, p Page) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "5")
	}
	if WantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(p.Status)
		_ = tmpl.Execute(w, p)
		return
	}
	WriteJSON(w, p)
}

// WriteJSON sends p as a JSON body, whatever the client accepts: for
// answers a program must act on, like the 401 of a fetch().
func WriteJSON(w http.ResponseWriter, p Page) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	body := map[string]string{"error": p.Code, "message": p.Detail}
	for k, v := range p.Extra {
		body[k] = v
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// WantsHTML reports whether the client prefers an HTML page.
func WantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// IsNavigation reports whether r is a browser loading a page (which should
// be sent to the login page) rather than a script or API client (which
// should get a 401 it can act on). Sec-Fetch-* headers, when the browser
// sends them, tell a fetch() or XHR apart from a page load even if it
// accepts text/html.
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		if mode != "navigate" {
			return false
		}
		dest := r.Header.Get("Sec-Fetch-Dest")
		return dest == "" || dest == "document" || dest == "iframe" || dest == "frame"
	}
	return WantsHTML(r)
}
