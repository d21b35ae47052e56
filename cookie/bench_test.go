package cookie_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/session"
)

// The benchmarks in this file measure the session cookie on the proxy's hot
// path: every proxied request runs Load; Save runs once per login. See
// BENCHMARKS.md for how they are run and what they showed.

// benchSecret returns a fixed 32-byte key, different per seed.
func benchSecret(seed byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func benchStore(b *testing.B, secrets ...[]byte) *cookie.Store {
	b.Helper()
	return benchStoreCache(b, 0, secrets...)
}

// benchStoreCache is benchStore with a verified-session cache of the given
// size (negative: none, so every Load decrypts).
func benchStoreCache(b *testing.B, size int, secrets ...[]byte) *cookie.Store {
	b.Helper()
	s, err := cookie.NewStore(cookie.Config{Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: secrets, CacheSize: size})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchIDToken returns a string shaped and sized like an RS256 ID token from
// Auth0 or the development provider (about 900 bytes): what the session keeps
// as id_token_hint for logout.
func benchIDToken() string {
	enc := base64.RawURLEncoding
	header := `{"alg":"RS256","kid":"Qm9vdHN0cmFwS2V5SWQtMDEyMzQ1Njc4OWFiY2RlZg","typ":"JWT"}`
	payload := `{"iss":"https://tenant.eu.auth0.com/","sub":"auth0|64f1c2a9e4b0d7c3a1b2c3d4","aud":"authproxy-client-id-0123456789",` +
		`"exp":1767225600,"iat":1767189600,"auth_time":1767189600,"nonce":"n-0S6_WzA2Mj-9f8e7d6c5b4a3","sid":"6f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",` +
		`"email":"ada.lovelace@example.com","email_verified":true,"name":"Ada Lovelace","nickname":"ada","picture":"https://example.com/a.png"}`
	sig := strings.Repeat("s", 342) // base64url of a 256-byte RSA signature
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + sig
}

// Sessions of the sizes authproxy writes: the user alone, and what a login
// through the oidc package leaves (user, email, name, raw ID token).
func minimalSession() session.Session {
	return session.Session{User: "auth0|64f1c2a9e4b0d7c3a1b2c3d4", Expiry: time.Now().Add(12 * time.Hour)}
}

func loginSession() session.Session {
	s := minimalSession()
	s.Email, s.Name, s.IDToken = "ada.lovelace@example.com", "Ada Lovelace", benchIDToken()
	return s
}

// sessionRequest returns a GET carrying the session cookies that s saves for
// sess, next to an unrelated app cookie, as a browser would send them.
func sessionRequest(b *testing.B, s *cookie.Store, sess session.Session) *http.Request {
	b.Helper()
	w := httptest.NewRecorder()
	if err := s.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/app/page", nil)
	r.Header.Set("Cookie", "theme=dark")
	for _, c := range w.Result().Cookies() {
		if c.MaxAge > 0 {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return r
}

// BenchmarkLoad reads and validates a session cookie: from the cache of
// verified sessions (a user's every request after the first), uncached
// (securecookie HMAC, AES-CTR, JSON, expiry), and the failures that lead to
// a login redirect.
func BenchmarkLoad(b *testing.B) {
	store := benchStore(b, benchSecret(1))
	uncached := benchStoreCache(b, -1, benchSecret(1))
	rotated := benchStoreCache(b, -1, benchSecret(2), benchSecret(1)) // new key first; cookie sealed by the old one
	tampered := sessionRequest(b, store, loginSession())
	v, _ := tampered.Cookie(cookie.DefaultName)
	tampered.Header.Set("Cookie", cookie.DefaultName+"="+v.Value[:len(v.Value)-4]+"AAAA")
	tests := []struct {
		name    string
		store   *cookie.Store
		req     *http.Request
		wantErr bool
	}{
		{"minimal", store, sessionRequest(b, store, minimalSession()), false},
		{"login", store, sessionRequest(b, store, loginSession()), false},
		{"minimal-uncached", uncached, sessionRequest(b, store, minimalSession()), false},
		{"login-uncached", uncached, sessionRequest(b, store, loginSession()), false},
		{"login-old-key-uncached", rotated, sessionRequest(b, store, loginSession()), false},
		{"no-cookie", store, httptest.NewRequest("GET", "/app/page", nil), true},
		{"tampered", store, tampered, true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			if _, err := tt.store.Load(tt.req); (err != nil) != tt.wantErr {
				b.Fatalf("Load: %v, want error %v", err, tt.wantErr)
			}
			b.SetBytes(int64(len(tt.req.Header.Get("Cookie"))))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = tt.store.Load(tt.req)
			}
		})
	}
}

// BenchmarkLoadParallel is Load from every core at once, as under load.
func BenchmarkLoadParallel(b *testing.B) {
	store := benchStore(b, benchSecret(1))
	req := sessionRequest(b, store, loginSession())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := store.Load(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// headerWriter is a ResponseWriter that keeps only headers, reused across
// iterations so that the benchmark counts Save's allocations, not its own.
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerWriter) WriteHeader(int)             {}

// BenchmarkSave encodes a session and writes its Set-Cookie headers, as the
// callback does once per login.
func BenchmarkSave(b *testing.B) {
	store := benchStore(b, benchSecret(1))
	r := httptest.NewRequest("GET", "/auth/callback", nil)
	for _, tt := range []struct {
		name string
		sess session.Session
	}{{"minimal", minimalSession()}, {"login", loginSession()}} {
		b.Run(tt.name, func(b *testing.B) {
			w := &headerWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				if err := store.Save(w, r, tt.sess); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
