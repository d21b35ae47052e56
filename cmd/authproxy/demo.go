package main

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/authproxy/authproxy/oidc/oidctest"
)

// demo runs the whole thing on 127.0.0.1 with no account anywhere: the
// development provider, a sample app that shows what it receives, and the
// proxy in front of it, on addr (127.0.0.1:9001 or, if taken, any free
// port when addr is empty).
func demo(ctx context.Context, addr string, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	idp, err := oidctest.Start(oidctest.Options{
		Claims: func(user string) map[string]any {
			return map[string]any{"email": user + "@example.test", "email_verified": true}
		},
	})
	if err != nil {
		return fmt.Errorf("start development provider: %w", err)
	}
	defer idp.Close()

	app, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	appSrv := &http.Server{Handler: http.HandlerFunc(demoApp), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = appSrv.Serve(app) }()
	defer appSrv.Close()

	ln, err := net.Listen("tcp", cmp.Or(addr, "127.0.0.1:9001"))
	if err != nil && addr == "" {
		ln, err = net.Listen("tcp", "127.0.0.1:0") // 9001 is taken: any free port will do
	}
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	base := "http://" + ln.Addr().String()
	e := defaultEnv()
	e.Addr = ln.Addr().String()
	e.Upstream = "http://" + app.Addr().String()
	e.Issuer = idp.Issuer()
	e.ClientID, e.ClientSecret = "authproxy-demo", "demo-secret"
	e.RedirectURL, e.PostLogoutURL = base+"/auth/callback", base+"/"
	e.LogFormat, e.DrainDelay, e.ShutdownTimeout = "text", "0s", "5s"
	// A fixed demo key is fine here: nothing but the demo provider can log in.
	e.CookieSecret = "ZGVtby1rZXktZGVtby1rZXktZGVtby1rZXktZGVtbyE="
	cfg, err := e.parse()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "open %s/\n", base)
	return serve(ctx, cfg, ln, log)
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authproxy demo app</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:3em auto;padding:0 1em}
table{border-collapse:collapse}td{border-top:1px solid #ddd;padding:.2em .8em;font-family:monospace;vertical-align:top}
.hi{background:#ffc}</style></head>
<body><h1 id="greeting">Hello, {{.User}}!</h1>
<p>This page is a plain app that knows nothing about OpenID Connect. authproxy logged you in and told it who you are in the
<code>X-User</code> header. Path requested: <code>{{.Path}}</code></p>
<p><a href="/auth/logout">Log out</a> · <a href="/some/page?a=1&amp;b=two">another page</a></p>
<h2>Headers the app received</h2>
<table>{{range .Headers}}<tr{{if .Mark}} class="hi"{{end}}><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>
</body></html>
`))

// demoApp is the sample upstream: it greets the user named in X-User and
// lists the headers it received.
func demoApp(w http.ResponseWriter, r *http.Request) {
	type header struct {
		Name, Value string
		Mark        bool
	}
	var hs []header
	for name, vs := range r.Header {
		hs = append(hs, header{name, strings.Join(vs, ", "), name == "X-User"})
	}
	slices.SortFunc(hs, func(a, b header) int { return strings.Compare(a.Name, b.Name) })
	user := r.Header.Get("X-User")
	if user == "" {
		user = "stranger (no X-User header: you reached the app without the proxy)"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = demoPage.Execute(w, map[string]any{"User": user, "Path": r.URL.RequestURI(), "Headers": hs})
}
