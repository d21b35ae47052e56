package e2e

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// browser is a scripted, browser-like HTTP client: a cookie jar, no
// automatic redirects (it follows them itself and keeps every hop), the
// request headers a browser sends for a page load, and just enough HTML form
// handling to fill oidc-provider's login, consent and logout pages.
type browser struct {
	t      *testing.T
	client *http.Client
	Jar    *cookiejar.Jar

	// Hops is every request made, in order.
	Hops []hop
	// setCookie holds the names of the cookies each origin set.
	setCookie map[string]map[string]bool
}

// hop is one request the browser made and its answer.
type hop struct {
	Method   string
	URL      *url.URL
	Status   int
	Location string // resolved, for redirects
}

// page is one answer, body read.
type page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   string
}

// maxRedirects is where Follow gives up, as browsers do at about 20.
const maxRedirects = 20

// newBrowser returns a browser with an empty cookie jar that trusts p's CA.
func newBrowser(t *testing.T, p *pki) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookie jar: %v", err)
	}
	tr := &http.Transport{TLSClientConfig: p.TLSConfig()}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{
		t:   t,
		Jar: jar,
		client: &http.Client{
			Jar:       jar,
			Transport: tr,
			Timeout:   hangTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		setCookie: map[string]map[string]bool{},
	}
}

// navigationHeaders are what Chromium sends when the user opens a page.
func navigationHeaders() http.Header {
	return http.Header{
		"Accept":          {"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
		"Sec-Fetch-Mode":  {"navigate"},
		"Sec-Fetch-Dest":  {"document"},
		"Sec-Fetch-Site":  {"none"},
		"Sec-Fetch-User":  {"?1"},
		"Accept-Language": {"en"},
		"User-Agent":      {"authproxy-e2e scripted browser"},
	}
}

// apiHeaders are what an API client such as curl or a script sends.
func apiHeaders() http.Header {
	return http.Header{"Accept": {"application/json"}, "User-Agent": {"authproxy-e2e api client"}}
}

// Do sends one request (form, if not nil, as an urlencoded body) and reads
// the answer. It follows nothing.
func (b *browser) Do(method, rawURL string, header http.Header, form url.Values) *page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		b.t.Fatalf("new request %s %s: %v", method, rawURL, err)
	}
	for k, v := range header {
		req.Header[k] = append([]string(nil), v...)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", method, rawURL, err)
	}

	origin := req.URL.Scheme + "://" + req.URL.Host
	for _, c := range resp.Cookies() {
		if b.setCookie[origin] == nil {
			b.setCookie[origin] = map[string]bool{}
		}
		b.setCookie[origin][c.Name] = true
	}
	h := hop{Method: method, URL: req.URL, Status: resp.StatusCode}
	if loc, err := resp.Location(); err == nil {
		h.Location = loc.String()
	}
	b.Hops = append(b.Hops, h)
	return &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(data)}
}

// Navigate opens rawURL as a page load and follows redirects.
func (b *browser) Navigate(rawURL string) *page {
	b.t.Helper()
	return b.Follow(b.Do(http.MethodGet, rawURL, navigationHeaders(), nil))
}

// Follow follows redirects from p as page loads (GET), up to maxRedirects.
func (b *browser) Follow(p *page) *page {
	b.t.Helper()
	for range maxRedirects {
		if !isRedirect(p.Status) {
			return p
		}
		loc := p.Header.Get("Location")
		if loc == "" {
			b.t.Fatalf("%d from %s without a Location", p.Status, p.URL)
		}
		next, err := p.URL.Parse(loc)
		if err != nil {
			b.t.Fatalf("bad Location %q from %s: %v", loc, p.URL, err)
		}
		h := navigationHeaders()
		h.Set("Sec-Fetch-Site", "cross-site")
		p = b.Do(http.MethodGet, next.String(), h, nil)
	}
	b.t.Fatalf("more than %d redirects; hops:\n%s", maxRedirects, b.HopsString())
	return nil
}

// Submit posts f from page p with fields (f.Fields when nil) and follows the
// redirects.
func (b *browser) Submit(p *page, f form, fields url.Values) *page {
	b.t.Helper()
	if fields == nil {
		fields = f.Fields
	}
	action, err := p.URL.Parse(f.Action)
	if err != nil {
		b.t.Fatalf("bad form action %q on %s: %v", f.Action, p.URL, err)
	}
	h := navigationHeaders()
	h.Set("Origin", p.URL.Scheme+"://"+p.URL.Host)
	h.Set("Sec-Fetch-Site", "same-origin")
	return b.Follow(b.Do(http.MethodPost, action.String(), h, fields))
}

// Login opens start through the proxy, types user (and any password) into
// the provider's login form, accepts the consent form, and returns the page
// the browser lands on after the proxy's callback.
func (b *browser) Login(start, user string) *page {
	b.t.Helper()
	return submitProviderForms(b, b.Navigate(start), user)
}

// submitProviderForms fills the provider's login form with user and accepts
// its consent form, starting from p, and returns where the browser lands.
func submitProviderForms(b *browser, p *page, user string) *page {
	b.t.Helper()
	for range 5 {
		if f, ok := findForm(p, providerForm("login")); ok {
			fields := cloneValues(f.Fields)
			fields.Set("login", user)
			fields.Set("password", "any password works")
			p = b.Submit(p, f, fields)
			continue
		}
		if f, ok := findForm(p, providerForm("consent")); ok {
			p = b.Submit(p, f, nil)
			continue
		}
		return p
	}
	b.t.Fatalf("still on the provider's forms after 5 submissions; hops:\n%s", b.HopsString())
	return nil
}

// CookiesSetBy returns the names of the cookies that origin
// (scheme://host:port) set so far.
func (b *browser) CookiesSetBy(origin string) []string {
	var names []string
	for n := range b.setCookie[origin] {
		names = append(names, n)
	}
	return names
}

// FirstHop returns the first request whose URL matches, or fails.
func (b *browser) FirstHop(match func(*url.URL) bool) hop {
	b.t.Helper()
	for _, h := range b.Hops {
		if match(h.URL) {
			return h
		}
	}
	b.t.Fatalf("no such request; hops:\n%s", b.HopsString())
	return hop{}
}

// HopsString lists the hops, for failure messages.
func (b *browser) HopsString() string {
	var sb strings.Builder
	for _, h := range b.Hops {
		sb.WriteString("  " + h.Method + " " + h.URL.String() + " -> " + http.StatusText(h.Status))
		if h.Location != "" {
			sb.WriteString(" -> " + h.Location)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// form is an HTML form as far as this suite needs one.
type form struct {
	ID     string
	Action string
	Method string
	Fields url.Values // every named <input> with its value
}

// parseForms finds the forms of an HTML page. oidc-provider's pages are
// small, generated and quote every attribute, which a regexp handles.
func parseForms(body string) []form {
	formRe := regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe := regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	var forms []form
	for _, m := range formRe.FindAllStringSubmatch(body, -1) {
		attrs := parseAttrs(m[1])
		f := form{ID: attrs["id"], Action: attrs["action"], Method: strings.ToLower(attrs["method"]), Fields: url.Values{}}
		for _, in := range inputRe.FindAllStringSubmatch(m[2], -1) {
			a := parseAttrs(in[1])
			if a["name"] != "" {
				f.Fields.Add(a["name"], a["value"])
			}
		}
		forms = append(forms, f)
	}
	return forms
}

func parseAttrs(s string) map[string]string {
	attrRe := regexp.MustCompile(`([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*"([^"]*)"`)
	attrs := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		attrs[strings.ToLower(m[1])] = html.UnescapeString(m[2])
	}
	return attrs
}

// findForm returns the first form on p for which match is true.
func findForm(p *page, match func(form) bool) (form, bool) {
	if p.Status != http.StatusOK || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
		return form{}, false
	}
	for _, f := range parseForms(p.Body) {
		if match(f) {
			return f, true
		}
	}
	return form{}, false
}

// providerForm matches oidc-provider's dev interaction form for prompt
// ("login" or "consent").
func providerForm(prompt string) func(form) bool {
	return func(f form) bool { return f.Method == "post" && f.Fields.Get("prompt") == prompt }
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
