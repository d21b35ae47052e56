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

// TestKeyRotation: a token signed with a key the proxy has not seen yet is
// accepted after one JWKS refetch, and tokens with unknown key ids cannot
// make the proxy fetch the JWKS more than once per interval.
func TestKeyRotation(t *testing.T) {
	var clock atomic.Int64 // seconds added to the real time
	f := newFixture(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	})
	login := func(user string) int {
		b := &browser{}
		cb := f.authorize(t, f.startLogin(t, b, "/"), user)
		return b.do(f.h, callbackPath(cb)).StatusCode
	}
	if got := login("before"); got != http.StatusFound {
		t.Fatalf("login before rotation: %d", got)
	}
	jwksBefore := f.idp.Requests("/jwks")
	if err := f.idp.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(DefaultKeyRefetchInterval / time.Second)) // the rotation happens a while after the last fetch
	if got := login("after"); got != http.StatusFound {
		t.Fatalf("login with the rotated key: %d", got)
	}
	if n := f.idp.Requests("/jwks") - jwksBefore; n != 1 {
		t.Errorf("rotation cost %d JWKS fetches, want 1", n)
	}

	// A flood of tokens with made-up key ids, straight at the verifier.
	p := f.h.provider.Load()
	before := f.idp.Requests("/jwks")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := forgeWithKid(t, f, fmt.Sprintf("unknown-%d", i))
			if _, err := p.verifier.Verify(context.Background(), tok); err == nil {
				t.Error("token with an unknown key id verified")
			}
		}()
	}
	wg.Wait()
	if n := f.idp.Requests("/jwks") - before; n > 1 {
		t.Errorf("50 garbage tokens caused %d JWKS fetches, want at most 1 per interval", n)
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
			idp.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/token") {
					return false
				}
				tt.fault(w, r)
				return true
			})
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
