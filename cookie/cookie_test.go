package cookie

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authproxy/authproxy/session"
)

var (
	keyA = bytes.Repeat([]byte{'a'}, 32)
	keyB = bytes.Repeat([]byte{'b'}, 64)
	t0   = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
)

func newStore(t testing.TB, now *time.Time, secrets ...[]byte) *Store {
	t.Helper()
	s, err := NewStore(Config{Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: secrets, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// save runs Save and returns the cookies a browser would now send.
func save(t testing.TB, s *Store, prior []*http.Cookie, sess session.Session) []*http.Cookie {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range prior {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	if err := s.Save(w, r, sess); err != nil {
		t.Fatal(err)
	}
	return jar(prior, w.Result().Cookies())
}

// jar applies Set-Cookie headers to a browser's cookie list.
func jar(have, set []*http.Cookie) []*http.Cookie {
	byName := map[string]*http.Cookie{}
	var order []string
	for _, c := range append(append([]*http.Cookie{}, have...), set...) {
		if _, ok := byName[c.Name]; !ok {
			order = append(order, c.Name)
		}
		byName[c.Name] = c
	}
	var out []*http.Cookie
	for _, n := range order {
		if c := byName[n]; c.MaxAge >= 0 && c.Value != "" {
			out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	return out
}

func load(s *Store, cookies []*http.Cookie) (session.Session, error) {
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return s.Load(r)
}

func TestSessionRoundTrip(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	want := session.Session{User: "alice", Email: "a@example.com", IDToken: "tok", Expiry: now.Add(time.Hour)}
	got, err := load(s, save(t, s, nil, want))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != want.User || got.Email != want.Email || got.IDToken != want.IDToken || !got.Expiry.Equal(want.Expiry) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestSessionRejected(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	valid := save(t, s, nil, session.Session{User: "alice", Expiry: now.Add(time.Hour)})
	other := save(t, newStore(t, &now, keyB), nil, session.Session{User: "mallory", Expiry: now.Add(time.Hour)})
	flip := func(v string, i int) string {
		b := []byte(v)
		b[i] ^= 1
		return string(b)
	}
	v := valid[0].Value
	tests := []struct {
		name    string
		cookies []*http.Cookie
		advance time.Duration
	}{
		{"no cookie", nil, 0},
		{"empty value", []*http.Cookie{{Name: DefaultName, Value: ""}}, 0},
		{"garbage", []*http.Cookie{{Name: DefaultName, Value: "not-a-cookie"}}, 0},
		{"flipped first byte", []*http.Cookie{{Name: DefaultName, Value: flip(v, 0)}}, 0},
		{"flipped middle byte", []*http.Cookie{{Name: DefaultName, Value: flip(v, len(v)/2)}}, 0},
		{"flipped last byte", []*http.Cookie{{Name: DefaultName, Value: flip(v, len(v)-1)}}, 0},
		{"truncated", []*http.Cookie{{Name: DefaultName, Value: v[:len(v)-4]}}, 0},
		{"doubled", []*http.Cookie{{Name: DefaultName, Value: v + v}}, 0},
		{"other secret", other, 0},
		{"session expired", valid, time.Hour},
		{"cookie older than lifetime", valid, 13 * time.Hour},
		{"login cookie as session", []*http.Cookie{{Name: DefaultName, Value: loginValue(t, s)}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = t0.Add(tt.advance)
			defer func() { now = t0 }()
			sess, err := load(s, tt.cookies)
			if !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load = %+v, %v; want session.ErrNoSession", sess, err)
			}
		})
	}
}

func loginValue(t *testing.T, s *Store) string {
	w := httptest.NewRecorder()
	if err := s.SaveLogin(w, httptest.NewRequest("GET", "/auth/login", nil), Login{State: strings.Repeat("s", 43), Nonce: "n"}); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()[0].Value
}

func TestKeyRotation(t *testing.T) {
	now := t0
	old := newStore(t, &now, keyA)
	cookies := save(t, old, nil, session.Session{User: "alice", Expiry: now.Add(time.Hour)})

	rotated := newStore(t, &now, keyB, keyA)
	if got, err := load(rotated, cookies); err != nil || got.User != "alice" {
		t.Errorf("rotated store: Load = %+v, %v; want alice", got, err)
	}
	resaved := save(t, rotated, cookies, session.Session{User: "alice", Expiry: now.Add(time.Hour)})
	if _, err := load(newStore(t, &now, keyB), resaved); err != nil {
		t.Errorf("cookie re-saved after rotation not readable with the new key alone: %v", err)
	}
	if _, err := load(newStore(t, &now, keyB), cookies); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("old-key cookie after the key was removed: err = %v, want session.ErrNoSession", err)
	}
}

func TestChunking(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	big := session.Session{User: "alice", IDToken: strings.Repeat("x", 9000), Expiry: now.Add(time.Hour)}
	chunked := save(t, s, nil, big)
	if len(chunked) < 3 {
		t.Fatalf("a 9 kB session was written as %d cookies, want chunks", len(chunked))
	}
	for _, c := range chunked {
		if len(c.Name)+len(c.Value) > 4000 {
			t.Errorf("chunk %s is %d bytes, over the browser limit", c.Name, len(c.Name)+len(c.Value))
		}
	}
	if got, err := load(s, chunked); err != nil || got.IDToken != big.IDToken {
		t.Fatalf("Load chunked = %v", err)
	}

	// A smaller session replaces the chunk set and expires every old chunk.
	small := save(t, s, chunked, session.Session{User: "bob", Expiry: now.Add(time.Hour)})
	if len(small) != 1 || small[0].Name != DefaultName {
		t.Errorf("after shrinking, browser holds %v, want only %s", names(small), DefaultName)
	}
	if got, err := load(s, small); err != nil || got.User != "bob" {
		t.Errorf("Load after shrink = %+v, %v", got, err)
	}

	// And growing again expires the whole cookie.
	again := save(t, s, small, big)
	for _, c := range again {
		if c.Name == DefaultName {
			t.Errorf("whole cookie left behind next to chunks: %v", names(again))
		}
	}

	// A missing chunk is a broken session, not a crash.
	if _, err := load(s, chunked[1:]); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("missing first chunk: err = %v", err)
	}
	if _, err := load(s, chunked[:len(chunked)-1]); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("missing last chunk: err = %v", err)
	}
}

func TestClearExpiresEverything(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	cookies := save(t, s, nil, session.Session{User: "alice", IDToken: strings.Repeat("x", 9000), Expiry: now.Add(time.Hour)})
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	s.Clear(w, r)
	if left := jar(cookies, w.Result().Cookies()); len(left) != 0 {
		t.Errorf("after Clear the browser still holds %v", names(left))
	}
}

func TestLoginCookies(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	stateA, stateB := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	w := httptest.NewRecorder()
	for _, st := range []string{stateA, stateB} {
		if err := s.SaveLogin(w, httptest.NewRequest("GET", "/auth/login", nil), Login{State: st, Nonce: "nonce-" + st[:1], Verifier: "v", ReturnTo: "/" + st[:1]}); err != nil {
			t.Fatal(err)
		}
	}
	cookies := jar(nil, w.Result().Cookies())
	r := httptest.NewRequest("GET", "/auth/callback", nil)
	for _, c := range cookies {
		r.AddCookie(c)
		if !s.IsOwn(c.Name) {
			t.Errorf("IsOwn(%q) = false for a login cookie", c.Name)
		}
	}
	// Two tabs: each state finds its own login.
	for _, st := range []string{stateA, stateB} {
		l, err := s.LoadLogin(r, st)
		if err != nil || l.Nonce != "nonce-"+st[:1] || l.ReturnTo != "/"+st[:1] {
			t.Errorf("LoadLogin(%s) = %+v, %v", st[:1], l, err)
		}
	}
	hostile := []string{
		"", "short", stateA[:16] + "X", // same cookie name, other state
		strings.Repeat("A", 200), "AAAAAAAAAAAAAAAA;x=y", "AAAAAAAAAAAAAAAA AAA", "../../AAAAAAAAAAAAAAAA",
	}
	for _, st := range hostile {
		if _, err := s.LoadLogin(r, st); !errors.Is(err, ErrNoLogin) {
			t.Errorf("LoadLogin(%q): err = %v, want ErrNoLogin", st, err)
		}
	}
	now = t0.Add(DefaultLoginTTL + time.Second)
	if _, err := s.LoadLogin(r, stateA); !errors.Is(err, ErrNoLogin) {
		t.Errorf("expired login accepted: %v", err)
	}
}

func TestIsOwn(t *testing.T) {
	now := t0
	s := newStore(t, &now, keyA)
	for name, want := range map[string]bool{
		"_authproxy": true, "_authproxy_0": true, "_authproxy_login_abc": true,
		"_authproxyx": false, "session": false, "_auth": false, "x_authproxy": false,
	} {
		if got := s.IsOwn(name); got != want {
			t.Errorf("IsOwn(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNewStoreRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no secret":       {Policy: session.Policy{Lifetime: time.Hour}},
		"short secret":    {Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{make([]byte, 16)}},
		"no lifetime":     {Secrets: [][]byte{keyA}},
		"bad cookie name": {Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{keyA}, Name: "a b;"},
	} {
		if _, err := NewStore(cfg); err == nil {
			t.Errorf("%s: NewStore succeeded", name)
		}
	}
}

func names(cs []*http.Cookie) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// FuzzLoad feeds arbitrary cookie values to the decoder: it must never panic
// and never return a session other than the one this key sealed. (The seed is
// sealed anew in each fuzz worker, so "equal to the seed" is not the test.)
func FuzzLoad(f *testing.F) {
	now := t0
	s := newStore(f, &now, keyA)
	valid := save(f, s, nil, session.Session{User: "alice", Expiry: now.Add(time.Hour)})[0].Value
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add("")
	f.Add("MTcwMDAwMDAwMHx8")
	f.Fuzz(func(t *testing.T, value string) {
		for _, cookies := range [][]*http.Cookie{
			{{Name: DefaultName, Value: value}},
			{{Name: DefaultName + "_0", Value: value}, {Name: DefaultName + "_1", Value: value}},
		} {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Cookie", cookies[0].Name+"="+value)
			for _, c := range cookies[1:] {
				r.Header.Set("Cookie", r.Header.Get("Cookie")+"; "+c.Name+"="+value)
			}
			sess, err := s.Load(r)
			if err == nil && (sess.User != "alice" || !sess.Expiry.Equal(now.Add(time.Hour))) {
				t.Fatalf("Load accepted a forged value: %q -> %+v", value, sess)
			}
			if err != nil && !errors.Is(err, session.ErrNoSession) {
				t.Fatalf("Load error %v does not wrap session.ErrNoSession", err)
			}
		}
	})
}

func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{false, true} {
		s, err := NewStore(Config{Policy: session.Policy{Lifetime: time.Hour}, Secrets: [][]byte{keyA}, Domain: "example.test",
			Secure: func(*http.Request) bool { return secure }})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		if err := s.Save(w, r, session.Session{User: "alice", Expiry: time.Now().Add(30 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveLogin(w, r, Login{State: strings.Repeat("s", 43)}); err != nil {
			t.Fatal(err)
		}
		for _, c := range w.Result().Cookies() {
			if c.Secure != secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "example.test" {
				t.Errorf("secure=%v: cookie %s has Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q",
					secure, c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
			}
			if c.Name == DefaultName && (c.MaxAge < 29*60 || c.MaxAge > 30*60) {
				t.Errorf("session cookie Max-Age %d, want the session's remaining 30 min", c.MaxAge)
			}
		}
	}
}
