// Package page renders the few responses authproxy writes itself (errors,
// "not signed in", "provider unreachable", "access denied"): a small HTML
// page for people and a JSON body for programs. Both oidc (failed sign-ins,
// provider down) and proxy (401, 403, upstream errors) render them; the
// package stands apart from both so that they look alike and oidc need not
// import proxy.
package page

import (
	"crypto/sha256"
	"encoding/base64"
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
	// Form, when set, is a button that POSTs to a path of the proxy's own
	// origin (the sign-out confirmation).
	Form *Form
	// FormTargets are further origins ("https://idp.example") a submission
	// of Form may be redirected to: browsers apply form-action to the
	// redirects that follow a form submission.
	FormTargets []string
	// Extra fields for the JSON body, e.g. login_url.
	Extra map[string]string
}

// Form is a one-button form on a page.
type Form struct {
	Action string // a path on the proxy's origin
	Button string
}

// Link is an action offered on the page, like "Sign in again".
type Link struct {
	Href string
	Text string
}

// style is the pages' only styling; its hash is in the CSP, so no other
// inline style (nor any script) runs on them.
const style = `body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}.code{color:#777;font-size:.85em}a{margin-right:1em}button{font:inherit;margin-right:1em}`

var tmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>` + style + `</style></head>
<body><h1>{{.Title}}</h1><p>{{.Detail}}</p>
{{with .Form}}<form method="post" action="{{.Action}}"><button type="submit">{{.Button}}</button></form>
{{end}}<p>{{range .Links}}<a href="{{.Href}}">{{.Text}}</a>{{end}}</p>
<p class="code">{{.Status}} · {{.Code}} · authproxy</p></body></html>
`))

// styleSource is the CSP source of style.
var styleSource = func() string {
	sum := sha256.Sum256([]byte(style))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// SecurityHeaders sets the headers every response authproxy writes itself
// carries: no referrer leaves the page (its URL may carry a state or a
// return path), nothing is sniffed, nothing is framed, and the CSP allows
// the one inline style and forms only to the proxy itself and formTargets.
func SecurityHeaders(h http.Header, formTargets ...string) {
	formAction := "'none'"
	if len(formTargets) > 0 {
		formAction = strings.Join(formTargets, " ")
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+styleSource+
		"; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
}

// Write sends p as HTML when the client accepts it, else as JSON.
func Write(w http.ResponseWriter, r *http.Request, p Page) {
	h := w.Header()
	if p.Status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "5")
	}
	if WantsHTML(r) {
		var targets []string
		if p.Form != nil {
			targets = append([]string{"'self'"}, p.FormTargets...)
		}
		SecurityHeaders(h, targets...)
		h.Set("Content-Type", "text/html; charset=utf-8")
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
	SecurityHeaders(h)
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
