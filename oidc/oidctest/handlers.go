package oidctest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ServeHTTP serves the provider's endpoints. Request paths may carry the
// issuer's path or be relative to it (e.g. under http.StripPrefix).
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if p.basePath != "" && strings.HasPrefix(path, p.basePath+"/") {
		path = strings.TrimPrefix(path, p.basePath)
	}
	p.mu.Lock()
	if _, ok := p.requests[path]; ok || len(p.requests) < maxCountedPaths {
		p.requests[path]++
	}
	fault := p.fault
	p.mu.Unlock()
	// Called unlocked: a fault may hang until the client gives up.
	if fault != nil && fault(w, r) {
		return
	}

	switch path {
	case "/.well-known/openid-configuration":
		if allow(w, r, http.MethodGet) {
			p.discovery(w)
		}
	case "/jwks":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, p.jwks())
		}
	case "/authorize":
		if allow(w, r, http.MethodGet, http.MethodPost) {
			p.authorize(w, r)
		}
	case "/token":
		if allow(w, r, http.MethodPost) {
			p.token(w, r)
		}
	case "/userinfo":
		if allow(w, r, http.MethodGet, http.MethodPost) {
			p.userinfo(w, r)
		}
	case "/end_session":
		if allow(w, r, http.MethodGet, http.MethodPost) {
			p.endSession(w, r)
		}
	default:
		http.NotFound(w, r)
	}
}

// allow reports whether r's method is one of methods (GET implies HEAD), and
// answers 405 if not.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) || (r.Method == http.MethodHead && slices.Contains(methods, http.MethodGet)) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func (p *Provider) discovery(w http.ResponseWriter) {
	doc := map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.base + "/authorize",
		"token_endpoint":                        p.base + "/token",
		"jwks_uri":                              p.base + "/jwks",
		"userinfo_endpoint":                     p.base + "/userinfo",
		"end_session_endpoint":                  p.base + "/end_session",
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "name"},
	}
	if !p.opts.NoIssParameter {
		doc["authorization_response_iss_parameter_supported"] = true
	}
	writeJSON(w, http.StatusOK, doc)
}

// iss is the iss parameter of an authorization response (RFC 9207): the
// issuer, or nothing when the provider does not support it.
func (p *Provider) iss() string {
	if p.opts.NoIssParameter {
		return ""
	}
	return p.issuer
}

// authRequest holds the authorize parameters carried from the GET to the
// POST of the login form.
type authRequest struct {
	ClientID            string
	RedirectURI         string
	ResponseType        string
	Scope               string
	State               string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	Audience            string
	Prompt              string
}

func parseAuthRequest(v url.Values) authRequest {
	return authRequest{
		ClientID:            v.Get("client_id"),
		RedirectURI:         v.Get("redirect_uri"),
		ResponseType:        v.Get("response_type"),
		Scope:               strings.Join(strings.Fields(v.Get("scope")), " "),
		State:               v.Get("state"),
		Nonce:               v.Get("nonce"),
		CodeChallenge:       v.Get("code_challenge"),
		CodeChallengeMethod: v.Get("code_challenge_method"),
		Audience:            v.Get("audience"),
		Prompt:              v.Get("prompt"),
	}
}

// hidden lists the non-empty parameters as form fields.
func (a authRequest) hidden() []field {
	all := []field{
		{"client_id", a.ClientID},
		{"redirect_uri", a.RedirectURI},
		{"response_type", a.ResponseType},
		{"scope", a.Scope},
		{"state", a.State},
		{"nonce", a.Nonce},
		{"code_challenge", a.CodeChallenge},
		{"code_challenge_method", a.CodeChallengeMethod},
		{"audience", a.Audience},
	}
	return slices.DeleteFunc(all, func(f field) bool { return f.Value == "" })
}

// problem validates a before anything is sent to its redirect_uri and
// returns what is wrong, for an error page (never a redirect), or "".
func (p *Provider) problem(a authRequest) string {
	switch {
	case a.ClientID != p.opts.ClientID:
		return "Unknown client_id."
	case !isHTTPURL(a.RedirectURI):
		return "redirect_uri must be an absolute http(s) URL without a fragment."
	case a.ResponseType != "code":
		return "response_type must be code."
	case !hasScope(a.Scope, "openid"):
		return "scope must include openid."
	case a.CodeChallengeMethod != "S256" || !isS256Challenge(a.CodeChallenge):
		return "PKCE is required: send code_challenge with code_challenge_method=S256."
	}
	return ""
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	var v url.Values
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			p.render(w, http.StatusBadRequest, page{Title: "Sign-in request rejected", Message: "Malformed form."})
			return
		}
		v = r.PostForm
	} else {
		v = r.URL.Query()
	}
	a := parseAuthRequest(v)
	if msg := p.problem(a); msg != "" {
		p.render(w, http.StatusBadRequest, page{Title: "Sign-in request rejected", Message: msg})
		return
	}
	// No session is kept here, so a silent login can never succeed.
	if a.Prompt == "none" {
		p.redirectError(w, r, a, "login_required", "The development provider keeps no session.")
		return
	}
	if r.Method != http.MethodPost {
		p.renderLogin(w, http.StatusOK, a, v.Get("login_hint"), "")
		return
	}
	if v.Get("cancel") != "" {
		p.redirectError(w, r, a, "access_denied", "The user cancelled sign-in.")
		return
	}
	user := strings.TrimSpace(v.Get("username"))
	if !validUsername(user) {
		p.renderLogin(w, http.StatusBadRequest, a, user,
			fmt.Sprintf("Enter a name of 1 to %d characters, without control characters.", maxUsernameLen))
		return
	}
	now := p.opts.Now()
	code, err := p.storeCode(&authCode{
		grant: grant{
			user:     user,
			clientID: a.ClientID,
			scope:    a.Scope,
			audience: a.Audience,
			sid:      rand.Text(),
			authTime: now,
			expires:  now.Add(codeTTL),
		},
		redirectURI:   a.RedirectURI,
		codeChallenge: a.CodeChallenge,
		nonce:         a.Nonce,
	})
	if err != nil {
		p.render(w, http.StatusServiceUnavailable, page{Title: "Try again later", Message: "Too many sign-ins in progress."})
		return
	}
	redirectWith(w, r, a.RedirectURI, url.Values{"code": {code}, "state": {a.State}, "iss": {p.iss()}})
}

func validUsername(u string) bool {
	n := utf8.RuneCountInString(u)
	return utf8.ValidString(u) && n > 0 && n <= maxUsernameLen &&
		!strings.ContainsFunc(u, unicode.IsControl)
}

func (p *Provider) redirectError(w http.ResponseWriter, r *http.Request, a authRequest, code, desc string) {
	redirectWith(w, r, a.RedirectURI, url.Values{"error": {code}, "error_description": {desc}, "state": {a.State}, "iss": {p.iss()}})
}

// redirectWith sends a 302 to target with params added to its query; empty
// values are left out.
func redirectWith(w http.ResponseWriter, r *http.Request, target string, params url.Values) {
	u, err := url.Parse(target)
	if err != nil { // checked by the caller; be safe anyway
		http.Error(w, "bad redirect target", http.StatusBadRequest)
		return
	}
	q := u.Query()
	for k, vs := range params {
		if len(vs) > 0 && vs[0] != "" {
			q.Set(k, vs[0])
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// storeCode saves c under a new random code, pruning expired codes when full.
func (p *Provider) storeCode(c *authCode) (string, error) {
	code := rand.Text()
	now := p.opts.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.codes) >= maxCodes {
		for k, old := range p.codes {
			if now.After(old.expires) {
				delete(p.codes, k)
			}
		}
		if len(p.codes) >= maxCodes {
			return "", errors.New("oidctest: too many pending codes")
		}
	}
	p.codes[code] = c
	return code, nil
}

// storeRefresh saves g under a new random refresh token, pruning expired
// tokens when full.
func (p *Provider) storeRefresh(g grant) (string, error) {
	tok := rand.Text()
	now := p.opts.Now()
	g.expires = now.Add(p.opts.RefreshTokenTTL)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.refresh) >= maxRefreshTokens {
		for k, old := range p.refresh {
			if now.After(old.expires) {
				delete(p.refresh, k)
			}
		}
		if len(p.refresh) >= maxRefreshTokens {
			return "", errors.New("oidctest: too many refresh tokens")
		}
	}
	p.refresh[tok] = &g
	return tok, nil
}

// oauthError is an RFC 6749 section 5.2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
	basic  bool // client tried HTTP Basic; a 401 then carries a challenge
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func invalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	resp, err := p.tokenGrant(w, r)
	p.mu.Lock()
	refuse := p.refuse
	p.mu.Unlock()
	if err == nil && refuse != "" {
		status := http.StatusBadRequest
		if refuse == "server_error" {
			status = http.StatusInternalServerError
		}
		err = &oauthError{status: status, code: refuse, desc: "refused by RefuseTokens"}
	}
	if err != nil {
		var oe *oauthError
		if !errors.As(err, &oe) {
			oe = &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "internal error"}
		}
		if oe.status == http.StatusUnauthorized && oe.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		}
		p.writeError(w, r, oe.status, oe.code, oe.desc)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeError writes an OAuth error answer; with SetEcho the request too.
func (p *Provider) writeError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	p.mu.Lock()
	echo := p.echo
	p.mu.Unlock()
	body := map[string]any{"error": code, "error_description": desc}
	if echo {
		// r.ParseForm has run (token, userinfo): r.Form holds query and body.
		var hdr strings.Builder
		_ = r.Header.Write(&hdr)
		body["error_description"] = fmt.Sprintf("%s; request was %s %s\n%s\n%s", desc, r.Method, r.URL.String(), hdr.String(), r.PostForm.Encode())
		body["request"] = map[string]any{"url": r.URL.String(), "headers": r.Header, "form": r.Form}
	}
	writeJSON(w, status, body)
}

func (p *Provider) tokenGrant(w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: "malformed form body"}
	}
	form := r.PostForm
	clientID, err := p.authenticateClient(r, form)
	if err != nil {
		return nil, err
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		return p.exchangeCode(clientID, form)
	case "refresh_token":
		return p.refreshGrant(clientID, form)
	default:
		return nil, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "grant_type must be authorization_code or refresh_token"}
	}
}

// authenticateClient accepts client_secret_basic or client_secret_post, not
// both, and returns the client ID.
func (p *Provider) authenticateClient(r *http.Request, form url.Values) (string, error) {
	var clientID, secret string
	u, pw, basic := r.BasicAuth()
	if basic {
		if form.Has("client_secret") {
			return "", &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: "use one client authentication method"}
		}
		// RFC 6749 section 2.3.1 form-encodes both parts before Basic.
		var err1, err2 error
		clientID, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(pw)
		if err1 != nil || err2 != nil {
			return "", &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed client credentials", basic: true}
		}
		if form.Has("client_id") && form.Get("client_id") != clientID {
			return "", &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: "client_id does not match the Authorization header"}
		}
	} else {
		clientID, secret = form.Get("client_id"), form.Get("client_secret")
	}
	idOK := subtle.ConstantTimeCompare([]byte(clientID), []byte(p.opts.ClientID)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(p.opts.ClientSecret)) == 1
	if !idOK || !secretOK {
		return "", &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: basic}
	}
	return clientID, nil
}

func (p *Provider) exchangeCode(clientID string, form url.Values) (*tokenResponse, error) {
	code := form.Get("code")
	now := p.opts.Now()
	p.mu.Lock()
	c, ok := p.codes[code]
	if !ok || now.After(c.expires) {
		p.mu.Unlock()
		return nil, invalidGrant("unknown or expired code")
	}
	if c.used {
		// RFC 6749 section 4.1.2: a replayed code revokes what it issued.
		delete(p.refresh, c.refreshToken)
		p.mu.Unlock()
		return nil, invalidGrant("code already used")
	}
	// Any attempt burns the code, so a verifier cannot be guessed.
	c.used = true
	p.mu.Unlock()

	switch {
	case c.clientID != clientID:
		return nil, invalidGrant("code was issued to another client")
	case form.Get("redirect_uri") != c.redirectURI:
		return nil, invalidGrant("redirect_uri does not match the authorization request")
	case !verifyPKCE(form.Get("code_verifier"), c.codeChallenge):
		return nil, invalidGrant("PKCE verification failed")
	}
	resp, err := p.issue(c.grant, c.nonce)
	if err != nil {
		return nil, err
	}
	if hasScope(c.scope, "offline_access") {
		if resp.RefreshToken, err = p.storeRefresh(c.grant); err != nil {
			return nil, err
		}
		p.mu.Lock()
		c.refreshToken = resp.RefreshToken
		p.mu.Unlock()
	}
	return resp, nil
}

func (p *Provider) refreshGrant(clientID string, form url.Values) (*tokenResponse, error) {
	tok := form.Get("refresh_token")
	now := p.opts.Now()
	p.mu.Lock()
	gp, ok := p.refresh[tok]
	if ok && now.After(gp.expires) {
		delete(p.refresh, tok)
		ok = false
	}
	if !ok {
		p.mu.Unlock()
		return nil, invalidGrant("unknown, expired or revoked refresh token")
	}
	g := *gp
	if g.clientID != clientID {
		p.mu.Unlock()
		return nil, invalidGrant("refresh token was issued to another client")
	}
	if p.opts.RotateRefreshTokens {
		delete(p.refresh, tok)
	}
	p.mu.Unlock()

	issued := g
	if s := strings.Join(strings.Fields(form.Get("scope")), " "); s != "" {
		for _, sc := range strings.Fields(s) {
			if !hasScope(g.scope, sc) {
				return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: "scope exceeds the original grant"}
			}
		}
		issued.scope = s
	}
	resp, err := p.issue(issued, "")
	if err != nil {
		return nil, err
	}
	if p.opts.RotateRefreshTokens {
		if resp.RefreshToken, err = p.storeRefresh(g); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// issue signs an access token and an ID token for g.
func (p *Provider) issue(g grant, nonce string) (*tokenResponse, error) {
	now := p.opts.Now()
	aud := g.audience
	if aud == "" {
		aud = p.base + "/userinfo"
	}
	// RFC 9068 JWT access token; typ at+jwt keeps it apart from ID tokens.
	atClaims := map[string]any{
		"iss":       p.issuer,
		"sub":       g.user,
		"aud":       aud,
		"exp":       now.Add(p.opts.AccessTokenTTL).Unix(),
		"iat":       now.Unix(),
		"scope":     g.scope,
		"client_id": g.clientID,
		"jti":       rand.Text(),
	}
	if p.opts.TokenClaims != nil {
		p.opts.TokenClaims("access_token", atClaims)
	}
	at, err := p.sign("at+jwt", atClaims)
	if err != nil {
		return nil, err
	}
	claims := p.userClaims(g.user)
	maps.Copy(claims, map[string]any{
		"iss":       p.issuer,
		"aud":       g.clientID,
		"exp":       now.Add(p.opts.IDTokenTTL).Unix(),
		"iat":       now.Unix(),
		"auth_time": g.authTime.Unix(),
		"sid":       g.sid,
		"at_hash":   halfHash(at),
	})
	delete(claims, "nonce")
	delete(claims, "azp")
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if p.opts.TokenClaims != nil {
		p.opts.TokenClaims("id_token", claims)
	}
	idt, err := p.sign("JWT", claims)
	if err != nil {
		return nil, err
	}
	return &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(p.opts.AccessTokenTTL / time.Second),
		IDToken:     idt,
		Scope:       g.scope,
	}, nil
}

// userClaims returns name, the Options.Claims extras, then sub, which no
// extra may override.
func (p *Provider) userClaims(user string) map[string]any {
	claims := map[string]any{"name": user}
	if p.opts.Claims != nil {
		maps.Copy(claims, p.opts.Claims(user))
	}
	claims["sub"] = user
	return claims
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	user, err := p.verifyAccessToken(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		_ = r.ParseForm()
		p.writeError(w, r, http.StatusUnauthorized, "invalid_token", "missing, invalid or expired access token")
		return
	}
	writeJSON(w, http.StatusOK, p.userClaims(user))
}

// verifyAccessToken checks the Bearer token against the published keys and
// returns its subject.
func (p *Provider) verifyAccessToken(r *http.Request) (string, error) {
	scheme, raw, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("no bearer token")
	}
	tok, err := jwt.ParseSigned(strings.TrimSpace(raw), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return "", fmt.Errorf("parse access token: %w", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].ExtraHeaders[jose.HeaderType] != "at+jwt" {
		return "", errors.New("not an access token")
	}
	var c jwt.Claims
	keys := p.jwks()
	if err := tok.Claims(&keys, &c); err != nil {
		return "", fmt.Errorf("verify access token: %w", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: p.issuer, Time: p.opts.Now()}, 0); err != nil {
		return "", fmt.Errorf("validate access token: %w", err)
	}
	return c.Subject, nil
}

func (p *Provider) endSession(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		p.render(w, http.StatusBadRequest, page{Title: "Sign-out request rejected", Message: "Malformed request."})
		return
	}
	p.mu.Lock()
	if len(p.endSessions) >= maxEndSessions {
		p.endSessions = slices.Delete(p.endSessions, 0, 1)
	}
	p.endSessions = append(p.endSessions, cloneValues(r.Form))
	p.mu.Unlock()

	target := r.Form.Get("post_logout_redirect_uri")
	if target == "" {
		p.render(w, http.StatusOK, page{Title: "You are signed out", Message: "You can close this window."})
		return
	}
	if !isHTTPURL(target) {
		p.render(w, http.StatusBadRequest, page{Title: "Sign-out request rejected", Message: "post_logout_redirect_uri must be an absolute http(s) URL without a fragment."})
		return
	}
	redirectWith(w, r, target, url.Values{"state": {r.Form.Get("state")}})
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Fragment == "" && !strings.Contains(s, "#")
}

func hasScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

// isS256Challenge reports whether c looks like BASE64URL(SHA256(verifier)).
func isS256Challenge(c string) bool {
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

// verifyPKCE checks an RFC 7636 verifier (43-128 unreserved characters)
// against an S256 challenge.
func verifyPKCE(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for _, r := range verifier {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// halfHash is the at_hash of an RS256-signed token (OIDC Core 3.1.3.6).
func halfHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b) //nolint:errcheck // the client went away
}
