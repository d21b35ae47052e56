package oidctest

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
)

// banner is on every page: the provider signs in anyone who types a name.
const banner = "development provider — not for production"

const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}} · {{.Banner}}</title>
<style>
body{margin:0;font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1f2328}
.warn{margin:0;padding:.6em 1em;background:#b3261e;color:#fff;font-weight:600;text-align:center}
main{max-width:24em;margin:3em auto;padding:2em;background:#fff;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{margin-top:0;font-size:1.3em}
label{display:block;margin-bottom:.3em;font-weight:600}
input[type=text]{box-sizing:border-box;width:100%;padding:.5em;font:inherit;border:1px solid #8c959f;border-radius:4px}
.buttons{display:flex;gap:.5em;margin-top:1em}
button{padding:.5em 1.2em;font:inherit;border:0;border-radius:4px;cursor:pointer;background:#0969da;color:#fff}
button[name=cancel]{background:#eaeef2;color:#1f2328}
.error{color:#b3261e}
.note{color:#59636e;font-size:.9em}
</style>
</head>
<body>
<p class="warn" role="alert">{{.Banner}}</p>
<main>
<h1>{{.Title}}</h1>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
{{with .Message}}<p>{{.}}</p>{{end}}
{{with .Login}}<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label for="username">Name</label>
<input type="text" id="username" name="username" value="{{.Username}}" maxlength="{{.MaxLen}}" autocomplete="username" autofocus required>
<p class="note">Any name signs in; it becomes the user's subject (sub).</p>
<div class="buttons"><button type="submit">Sign in</button>
<button type="submit" name="cancel" value="1" formnovalidate>Cancel</button></div>
</form>{{end}}
</main>
</body>
</html>
`

// page is the data of every HTML page.
type page struct {
	Title   string
	Message string
	Error   string
	Login   *loginForm
	Banner  string
}

type loginForm struct {
	Action   string
	Hidden   []field
	Username string
	MaxLen   int
}

type field struct{ Name, Value string }

func parsePages() (*template.Template, error) {
	t, err := template.New("page").Parse(pageHTML)
	if err != nil {
		return nil, fmt.Errorf("oidctest: parse page template: %w", err)
	}
	return t, nil
}

func (p *Provider) renderLogin(w http.ResponseWriter, status int, a authRequest, username, errMsg string) {
	p.render(w, status, page{
		Title: "Sign in to the development provider",
		Error: errMsg,
		Login: &loginForm{
			Action:   p.base + "/authorize",
			Hidden:   a.hidden(),
			Username: username,
			MaxLen:   maxUsernameLen,
		},
	})
}

func (p *Provider) render(w http.ResponseWriter, status int, pg page) {
	pg.Banner = banner
	var buf bytes.Buffer
	if err := p.pages.Execute(&buf, pg); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// No form-action: browsers apply it to the redirect to redirect_uri.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}
