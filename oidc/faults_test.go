package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/oidc/oidctest"
	"github.com/authproxy/authproxy/session"
)

// TestKeyRotation: an ID token from the token endpoint signed with a key
// the proxy has not seen yet makes it refetch the JWKS at once, whenever the
// last fetch was, and concurrent logins share that one fetch.
func TestKeyRotation(t *testing.T) {
	for _, keepOld := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepOld=%v", keepOld), func(t *testing.T) {
			f := newFixture(t)
			login := func(user string) int {
				b := &browser{}
				cb := f.authorize(t, f.startLogin(t, b, "/"), user)
				return b.do(f.h, callbackPath(cb)).StatusCode
			}
			if got := login("before"); got != http.StatusFound {
				t.Fatalf("login before rotation: %d", got)
			}
			// Rotate right after the proxy fetched the old key, well within
			// the refetch interval.
			jwksBefore := f.idp.Requests("/jwks")
			if err := f.idp.RotateKey(keepOld); err != nil {
				t.Fatal(err)
			}
			if got := login("after"); got != http.StatusFound {
				t.Fatalf("first login with the rotated key: %d", got)
			}
			if n := f.idp.Requests("/jwks") - jwksBefore; n != 1 {
				t.Errorf("rotation cost %d JWKS fetches, want 1", n)
			}

			// Rotate again: ten logins at once share one fetch.
			if err := f.idp.RotateKey(keepOld); err != nil {
				t.Fatal(err)
			}
			callbacks := make([]string, 10)
			browsers := make([]*browser, 10)
			for i := range callbacks {
				browsers[i] = &browser{}
				callbacks[i] = callbackPath(f.authorize(t, f.startLogin(t, browsers[i], "/"), fmt.Sprint("u", i)))
			}
			jwksBefore = f.idp.Requests("/jwks")
			var wg sync.WaitGroup
			for i := range callbacks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if got := browsers[i].do(f.h, callbacks[i]).StatusCode; got != http.StatusFound {
						t.Errorf("concurrent login %d after rotation: %d", i, got)
					}
				}()
			}
			wg.Wait()
			if n := f.idp.Requests("/jwks") - jwksBefore; n != 1 {
				t.Errorf("10 concurrent logins after a rotation cost %d JWKS fetches, want 1", n)
			}
		})
	}
}

// TestKeyRefetchUntrusted: tokens anyone can send (bearer, logout) with
// unknown key ids refetch at most once per interval; a fetch is not tied to
// the request that asked for it; a failed fetch starts no quiet interval.
func TestKeyRefetchUntrusted(t *testing.T) {
	var clock atomic.Int64 // seconds added to the real time
	f := newFixture(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	})
	p := f.h.provider.Load()
	clock.Add(int64(DefaultKeyRefetchInterval / time.Second))

	// A flood of tokens with made-up key ids.
	before := f.idp.Requests("/jwks")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := forgeWithKid(t, f, fmt.Sprintf("unknown-%d", i))
			if _, err := p.keys.VerifySignature(context.Background(), tok); err == nil {
				t.Error("token with an unknown key id verified")
			}
		}()
	}
	wg.Wait()
	if n := f.idp.Requests("/jwks") - before; n != 1 {
		t.Errorf("50 garbage tokens caused %d JWKS fetches, want 1 per interval", n)
	}

	// A rotated key seen first on an untrusted channel waits for the
	// interval; within it, the token is refused without a fetch.
	if err := f.idp.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	good := f.sign(t, map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sub": "x",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	before = f.idp.Requests("/jwks")
	if _, err := p.keys.VerifySignature(context.Background(), good); err == nil {
		t.Error("untrusted token verified within the quiet interval: it must not cause a fetch")
	}
	if n := f.idp.Requests("/jwks") - before; n != 0 {
		t.Errorf("untrusted token within the interval caused %d fetches", n)
	}

	// After the interval: a junk request whose context is already cancelled
	// still completes the fetch (detached), so the next real token verifies
	// without another one.
	clock.Add(int64(DefaultKeyRefetchInterval / time.Second))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = p.keys.VerifySignature(cancelled, forgeWithKid(t, f, "junk"))
	if n := f.idp.Requests("/jwks") - before; n != 1 {
		t.Fatalf("fetch for a cancelled request: %d fetches, want 1", n)
	}
	if _, err := p.keys.VerifySignature(context.Background(), good); err != nil {
		t.Errorf("rotated key after a cancelled request's fetch: %v", err)
	}

	// A failed fetch starts no quiet interval: the next token refetches.
	clock.Add(int64(DefaultKeyRefetchInterval / time.Second))
	if err := f.idp.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	good = f.sign(t, map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sub": "x",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	f.idp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/jwks" {
			return false
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	if _, err := p.keys.VerifySignature(context.Background(), good); err == nil {
		t.Fatal("verified while the JWKS endpoint fails")
	}
	f.idp.SetFault(nil)
	if _, err := p.keys.VerifySignature(context.Background(), good); err != nil {
		t.Errorf("a failed fetch blocked the next one: %v", err)
	}
}

// forgeWithKid returns a validly shaped RS256 token whose header names kid,
// signed with the provider's real key so only the kid is wrong.
func forgeWithKid(t *testing.T, f *fixture, kid string) string {
	tok, err := f.idp.SignIDToken(map[string]any{"iss": f.idp.Issuer(), "aud": clientID, "sub": "x",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	if err != nil {
		t.Error(err)
		return ""
	}
	parts := strings.SplitN(tok, ".", 3)
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": kid, "typ": "JWT"})
	return base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1] + "." + parts[2]
}

// TestProviderFaults injects provider failures in the middle of a login.
// Each ends in a readable page, never a session and never a hang.
func TestProviderFaults(t *testing.T) {
	idp, err := oidctest.Start(oidctest.Options{ClientID: clientID, ClientSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	store, _ := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h, err := New(ctx, Config{Issuer: idp.Issuer(), ClientID: clientID, ClientSecret: secret, RedirectURL: callbackURL,
		Scopes: []string{"openid"}, SessionLifetime: time.Hour,
		HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}}, store, store)
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, h)
	f := &fixture{idp: idp, store: store, h: h}

	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}
	tests := []struct {
		name   string
		fault  func(w http.ResponseWriter, r *http.Request)
		status int
	}{
		{"token endpoint hangs 30s", hang, http.StatusServiceUnavailable},
		{"token endpoint refuses", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
		}, http.StatusBadRequest},
		{"token endpoint 500s", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, http.StatusBadRequest},
		{"token endpoint answers garbage", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":`)
		}, http.StatusBadRequest},
		{"token without id_token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"a","token_type":"Bearer"}`)
		}, http.StatusBadGateway},
		{"token endpoint closes the connection", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &browser{}
			authz := f.startLogin(t, b, "/")
			cb := f.authorize(t, authz, "alice")
			atTokenEndpoint(idp, tt.fault)
			defer idp.SetFault(nil)
			r := httptest.NewRequest("GET", callbackPath(cb), nil)
			r.Header.Set("Accept", "text/html")
			for _, c := range b.cookies {
				r.AddCookie(c)
			}
			w := httptest.NewRecorder()
			h.Callback(w, r)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d; body %q", w.Code, tt.status, w.Body.String())
			}
			if !strings.Contains(w.Body.String(), "<h1>") {
				t.Errorf("not a readable page: %q", w.Body.String())
			}
			if strings.Contains(w.Body.String(), "boom") || strings.Contains(w.Body.String(), "dial") {
				t.Errorf("page leaks internals: %q", w.Body.String())
			}
		})
	}
}

// TestDiscoveryFaults: garbage or hanging discovery never makes the proxy
// ready and never crashes it; it recovers once the provider does.
func TestDiscoveryFaults(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request)
	}{
		{"garbage JSON", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "{{{{") }},
		{"HTML page", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>maintenance</html>") }},
		{"wrong issuer", func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]string{"issuer": "https://evil.example/", "jwks_uri": "https://evil.example/jwks"})
		}},
		{"no jwks_uri", func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]string{"issuer": "ISSUER"})
		}},
		{"hangs", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp, err := oidctest.Start(oidctest.Options{ClientID: clientID, ClientSecret: secret})
			if err != nil {
				t.Fatal(err)
			}
			defer idp.Close()
			var mu sync.Mutex
			broken := true
			idp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				mu.Lock()
				defer mu.Unlock()
				if !broken || !strings.HasSuffix(r.URL.Path, "/openid-configuration") {
					return false
				}
				if tt.name == "no jwks_uri" {
					json.NewEncoder(w).Encode(map[string]string{"issuer": idp.Issuer()})
					return true
				}
				tt.fault(w, r)
				return true
			})
			store, _ := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 32)}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h, err := New(ctx, Config{Issuer: idp.Issuer(), ClientID: clientID, ClientSecret: secret, RedirectURL: callbackURL,
				Scopes: []string{"openid"}, SessionLifetime: time.Hour, HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}}, store, store)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(deadline) {
				if h.Ready() {
					t.Fatal("ready with a broken discovery document")
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			broken = false
			mu.Unlock()
			waitReady(t, h)
		})
	}
}
