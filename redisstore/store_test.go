package redisstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/redis/go-redis/v9"

	"github.com/authproxy/authproxy/cookie"
	"github.com/authproxy/authproxy/session"
)

// clock is a settable Config.Now shared by a test's stores.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func secret(seed byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

// replica is what one authproxy process holds: its own Store and Redis
// client, sharing the server (and the secret, unless a test says not).
type replica struct {
	*Store
}

type replicaOpts struct {
	idle    time.Duration
	secret  []byte
	clock   func() time.Time
	timeout time.Duration
	client  redis.UniversalClient
	// cache is Config.CacheSize (0: no cache), cacheTTL Config.CacheTTL.
	cache    int
	cacheTTL time.Duration
}

// cookieName is the ticket cookie's name in these tests, the cookie
// store's default.
const cookieName = "_authproxy"

// config is the Config of a replica, client aside.
func (o replicaOpts) config() Config {
	if o.secret == nil {
		o.secret = secret(1)
	}
	return Config{Client: o.client, Policy: session.Policy{Lifetime: 12 * time.Hour, Idle: o.idle},
		Name: cookieName, Secrets: [][]byte{o.secret}, Now: o.clock, Timeout: o.timeout,
		CacheSize: o.cache, CacheTTL: o.cacheTTL}
}

func newReplica(tb testing.TB, r *testRedis, o replicaOpts) replica {
	tb.Helper()
	if o.client == nil {
		o.client = r.Client(tb)
	}
	s, err := New(context.Background(), o.config())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return replica{Store: s}
}

// idToken is shaped like a real RS256 ID token, padded to size bytes.
func idToken(size int) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	payload := enc.EncodeToString([]byte(`{"sub":"auth0|ada","email":"ada.lovelace@example.com"}`))
	tok := header + "." + payload + "."
	return tok + strings.Repeat("S", max(0, size-len(tok)))
}

func groups(n int) []any {
	g := make([]any, n)
	for i := range g {
		g[i] = fmt.Sprintf("team-%03d-engineering", i)
	}
	return g
}

// bigSession has a 4 kB ID token and 300 groups: far beyond one cookie.
func bigSession(now time.Time) session.Session {
	return session.Session{
		User: "auth0|ada", Email: "ada.lovelace@example.com", Name: "Ada Lovelace",
		IDToken: idToken(4096), AccessToken: "access-" + strings.Repeat("a", 1000),
		SID:    "provider-sid-1",
		Expiry: now.Add(8 * time.Hour),
		Claims: map[string]any{"groups": groups(300), "email_verified": true},
	}
}

func smallSession(user string, now time.Time) session.Session {
	return session.Session{User: user, Expiry: now.Add(time.Hour)}
}

// save saves sess through s for a request carrying from's cookies, and
// returns a request carrying what the browser would then send.
func save(tb testing.TB, s *Store, from *http.Request, sess session.Session) *http.Request {
	tb.Helper()
	if from == nil {
		from = httptest.NewRequest("GET", "/auth/callback", nil)
	}
	w := httptest.NewRecorder()
	if err := s.Save(w, from, sess); err != nil {
		tb.Fatalf("Save: %v", err)
	}
	return browserAfter(from, w)
}

// browserAfter applies w's Set-Cookie headers to the cookies of r, as a
// browser would, and returns the next request.
func browserAfter(r *http.Request, w *httptest.ResponseRecorder) *http.Request {
	jar := map[string]string{}
	var order []string
	for _, c := range r.Cookies() {
		jar[c.Name] = c.Value
		order = append(order, c.Name)
	}
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(jar, c.Name)
			continue
		}
		if _, ok := jar[c.Name]; !ok {
			order = append(order, c.Name)
		}
		jar[c.Name] = c.Value
	}
	next := httptest.NewRequest("GET", "/app", nil)
	for _, name := range order {
		if v, ok := jar[name]; ok {
			next.AddCookie(&http.Cookie{Name: name, Value: v})
		}
	}
	return next
}

// normalized is sess as it comes back from JSON (Claims as any-typed values).
func normalized(tb testing.TB, sess session.Session) session.Session {
	tb.Helper()
	b, err := json.Marshal(sess)
	if err != nil {
		tb.Fatal(err)
	}
	var out session.Session
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatal(err)
	}
	return out
}

func isNoSession(err error) bool {
	return errors.Is(err, session.ErrNoSession) && !errors.Is(err, session.ErrUnavailable)
}

func isUnavailable(err error) bool {
	return errors.Is(err, session.ErrUnavailable) && !errors.Is(err, session.ErrNoSession)
}

func TestRoundTrip(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	now := time.Now()
	tests := []struct {
		name string
		sess session.Session
	}{
		{"user only", smallSession("auth0|bob", now)},
		{"4 kB ID token and 300 groups", bigSession(now)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if err := s.Save(w, httptest.NewRequest("GET", "/", nil), tt.sess); err != nil {
				t.Fatal(err)
			}
			var set []*http.Cookie
			for _, c := range w.Result().Cookies() {
				if c.MaxAge > 0 {
					set = append(set, c)
				}
			}
			if len(set) != 1 || set[0].Name != s.name {
				t.Fatalf("Save set %v, want the one session cookie", set)
			}
			// What the browser stores and sends back: name=value.
			n := len(set[0].Name) + 1 + len(set[0].Value)
			t.Logf("ticket cookie: %d bytes (value %d)", n, len(set[0].Value))
			if n >= 300 {
				t.Errorf("ticket cookie name=value is %d bytes, want < 300", n)
			}
			if !set[0].HttpOnly || set[0].Path != "/" {
				t.Errorf("cookie attributes: %+v", set[0])
			}
			req := browserAfter(httptest.NewRequest("GET", "/", nil), w)
			got, err := s.Load(req)
			if err != nil {
				t.Fatal(err)
			}
			want := normalized(t, tt.sess)
			if tk, _ := s.ticket(req); got.ID != tk.id {
				t.Errorf("Load's ID = %q, want the session id %q", got.ID, tk.id)
			}
			want.ID = got.ID
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load = %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	s := newReplica(t, r, replicaOpts{clock: clk.Now})
	other := newReplica(t, r, replicaOpts{secret: secret(2), clock: clk.Now})
	raw := r.Client(t)
	name := s.name

	good := save(t, s.Store, nil, smallSession("auth0|ada", clk.Now()))
	goodValue := func() string {
		c, err := good.Cookie(name)
		if err != nil {
			t.Fatal(err)
		}
		return c.Value
	}()
	goodTicket := func() ticket {
		tk, err := s.ticket(good)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}()

	// withTicket seals an arbitrary ticket string with the right secret, as
	// only a bug or a key holder could.
	withTicket := func(tk string) *http.Request {
		v, err := securecookie.EncodeMulti(name, ticketCookie{Ticket: tk, Expiry: clk.Now().Add(time.Hour)}, s.keys.Load().codecs...)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: name, Value: v})
		return req
	}
	withCookie := func(v string) *http.Request {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: name, Value: v})
		return req
	}
	tampered := []byte(goodValue)
	tampered[len(tampered)/2] ^= 1

	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{"no cookie", func() *http.Request { return httptest.NewRequest("GET", "/", nil) }},
		{"garbage", func() *http.Request { return withCookie("garbage") }},
		{"tampered", func() *http.Request { return withCookie(string(tampered)) }},
		{"sealed with another secret", func() *http.Request {
			return save(t, other.Store, nil, smallSession("auth0|ada", clk.Now()))
		}},
		{"cookie-store session", func() *http.Request {
			return cookieStoreSession(t, clk.Now, smallSession("auth0|ada", clk.Now()))
		}},
		{"empty ticket", func() *http.Request { return withTicket("") }},
		{"malformed ticket", func() *http.Request { return withTicket("not-a-ticket") }},
		{"unknown id", func() *http.Request { return withTicket(newTicket().String()) }},
		{"right id, wrong key", func() *http.Request {
			tk := newTicket()
			tk.id = goodTicket.id
			return withTicket(tk.String())
		}},
		{"entry moved to another id", func() *http.Request {
			v, err := raw.Get(context.Background(), s.sessionKey(goodTicket.id)).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			tk := newTicket()
			tk.key = goodTicket.key
			raw.Set(context.Background(), s.sessionKey(tk.id), v, time.Hour)
			return withTicket(tk.String())
		}},
		{"entry header altered", func() *http.Request {
			req := save(t, s.Store, nil, smallSession("auth0|eve", clk.Now()))
			tk, _ := s.ticket(req)
			v, _ := raw.Get(context.Background(), s.sessionKey(tk.id)).Bytes()
			v[16] ^= 1 // expiry
			raw.Set(context.Background(), s.sessionKey(tk.id), v, time.Hour)
			return req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, err := s.Load(tt.req())
			if !isNoSession(err) {
				t.Fatalf("Load = %+v, %v; want ErrNoSession", sess, err)
			}
		})
	}
	if _, err := s.Load(good); err != nil {
		t.Fatalf("the good ticket after all that: %v", err)
	}
	t.Run("expired by Now", func(t *testing.T) {
		req := save(t, s.Store, nil, smallSession("auth0|old", clk.Now()))
		clk.Add(time.Hour)
		defer clk.Add(-time.Hour)
		if _, err := s.Load(req); !isNoSession(err) {
			t.Fatalf("Load = %v, want ErrNoSession", err)
		}
	})
	t.Run("idle by Now, cookie still fresh", func(t *testing.T) {
		// The entry's own check: the ticket cookie lives to the Expiry.
		idle := newReplica(t, r, replicaOpts{clock: clk.Now, idle: 10 * time.Minute})
		sess := smallSession("auth0|old", clk.Now())
		sess.Seen = clk.Now()
		req := save(t, idle.Store, nil, sess)
		clk.Add(10 * time.Minute)
		defer clk.Add(-10 * time.Minute)
		if _, err := idle.readCookie(req); err != nil {
			t.Fatalf("ticket cookie: %v", err)
		}
		if _, err := idle.Load(req); !isNoSession(err) {
			t.Fatalf("Load = %v, want ErrNoSession", err)
		}
	})
}

// TestExpiredByRedis lets Redis expire the entry while the ticket cookie (on
// a frozen clock) and the store's clock would both still accept it.
func TestExpiredByRedis(t *testing.T) {
	r := startRedis(t)
	frozen := time.Now()
	s := newReplica(t, r, replicaOpts{clock: func() time.Time { return frozen }})
	sess := smallSession("auth0|ada", frozen)
	// Long enough for the save and the first Load on a loaded machine.
	const ttl = 3 * time.Second
	sess.Expiry = time.Now().Add(ttl)
	req := save(t, s.Store, nil, sess)
	tk, err := s.ticket(req)
	if err != nil {
		t.Fatal(err)
	}
	raw := r.Client(t)
	// The entry lives until the expiry by the store's (frozen) clock: a
	// little over ttl when the machine was slow between the two clock reads.
	pttl, err := raw.PTTL(context.Background(), s.sessionKey(tk.id)).Result()
	if max := sess.Expiry.Sub(frozen); err != nil || pttl <= 0 || pttl > max {
		t.Fatalf("PTTL = %v, %v; want (0, %v]", pttl, err, max)
	}
	if _, err := s.Load(req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(sess.Expiry.Add(100 * time.Millisecond)))
	if n := raw.Exists(context.Background(), s.sessionKey(tk.id)).Val(); n != 0 {
		t.Fatal("Redis kept the entry past its TTL")
	}
	// The clock is before the expiry, so only Redis's TTL refuses it.
	if _, err := s.Load(req); !isNoSession(err) {
		t.Fatalf("Load = %v, want ErrNoSession", err)
	}
}

func TestClearThenReplay(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	ctx := context.Background()
	req := save(t, s.Store, nil, bigSession(time.Now()))
	if _, err := s.Load(req); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.Clear(w, req)
	expired := false
	for _, c := range w.Result().Cookies() {
		if c.Name == s.name && c.MaxAge < 0 {
			expired = true
		}
	}
	if !expired {
		t.Error("Clear did not expire the ticket cookie")
	}
	if _, err := s.Load(req); !isNoSession(err) {
		t.Fatalf("replayed cookie after Clear: %v, want ErrNoSession", err)
	}
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count = %d, %v; want 0", n, err)
	}
	// Logout without a ticket is not an error.
	if err := s.Logout(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Errorf("Logout without a cookie: %v", err)
	}
}

func TestReplicas(t *testing.T) {
	r := startRedis(t)
	a := newReplica(t, r, replicaOpts{})
	b := newReplica(t, r, replicaOpts{})
	now := time.Now()
	sess := bigSession(now)

	req := save(t, a.Store, nil, sess)
	got, err := b.Load(req)
	if err != nil {
		t.Fatalf("load via b: %v", err)
	}
	if got.IDToken != sess.IDToken {
		t.Error("b loaded another session")
	}
	// A refresh through b keeps the cookie a wrote.
	sess = got
	sess.IDToken = idToken(1000)
	w := httptest.NewRecorder()
	if err := b.Save(w, req, sess); err != nil {
		t.Fatal(err)
	}
	if len(w.Result().Cookies()) != 0 {
		t.Errorf("refresh with the same expiry wrote cookies: %v", w.Result().Cookies())
	}
	if got, err := a.Load(req); err != nil || got.IDToken != sess.IDToken {
		t.Fatalf("a after b's refresh: %v, token updated %v", err, got.IDToken == sess.IDToken)
	}
	b.Clear(httptest.NewRecorder(), req)
	for name, s := range map[string]replica{"a": a, "b": b} {
		if _, err := s.Load(req); !isNoSession(err) {
			t.Errorf("%s after clear via b: %v, want ErrNoSession", name, err)
		}
	}

	// A replica started with another cookie secret: log in again, never a
	// server error, and it cannot delete the others' sessions.
	c := newReplica(t, r, replicaOpts{secret: secret(9)})
	sess.ID = ""
	req = save(t, a.Store, nil, sess)
	if _, err := c.Load(req); !isNoSession(err) {
		t.Errorf("other secret Load: %v, want ErrNoSession", err)
	}
	if err := c.Logout(httptest.NewRecorder(), req); err != nil {
		t.Errorf("other secret Logout: %v", err)
	}
	next := save(t, c.Store, req, sess)
	if _, err := c.Load(next); err != nil {
		t.Errorf("login on the other-secret replica: %v", err)
	}
	if _, err := a.Load(req); err != nil {
		t.Errorf("a's session after the other replica's logout and login: %v", err)
	}
}

// TestSaveRotation: a refresh keeps the ticket, a login never does.
func TestSaveRotation(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	s := newReplica(t, r, replicaOpts{clock: clk.Now})
	ctx := context.Background()
	login := func(user string) session.Session {
		return session.Session{User: user, SID: "sid-1", Expiry: clk.Now().Add(time.Hour)}
	}
	load := func(req *http.Request) session.Session {
		t.Helper()
		sess, err := s.Load(req)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	tests := []struct {
		name string
		next func(loaded session.Session) session.Session
		keep bool // same ticket
	}{
		{"refresh: new tokens", func(l session.Session) session.Session { l.IDToken = "new"; return l }, true},
		{"refresh: expiry moves", func(l session.Session) session.Session { l.Expiry = l.Expiry.Add(time.Hour); return l }, true},
		{"login again, same user", func(session.Session) session.Session { return login("ada") }, false},
		{"login, another user", func(session.Session) session.Session { return login("mallory") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := login("ada")
			req := save(t, s.Store, nil, first)
			before, _ := s.ticket(req)
			clk.Add(time.Minute)
			defer clk.Add(-time.Minute)
			next := tt.next(load(req))
			w := httptest.NewRecorder()
			if err := s.Save(w, req, next); err != nil {
				t.Fatal(err)
			}
			if wrote := len(w.Result().Cookies()) > 0; wrote != (!next.Expiry.Equal(first.Expiry) || !tt.keep) {
				t.Errorf("Save wrote cookies: %v", w.Result().Cookies())
			}
			after := browserAfter(req, w)
			tk, err := s.ticket(after)
			if err != nil {
				t.Fatal(err)
			}
			if (tk == before) != tt.keep {
				t.Fatalf("ticket kept = %v, want %v", tk == before, tt.keep)
			}
			if got := load(after); got.User != next.User || got.IDToken != next.IDToken {
				t.Fatalf("Load after Save = %+v", got)
			}
			list, _ := s.Sessions(ctx, next.User)
			if len(list) != 1 {
				t.Fatalf("Sessions = %+v, want one", list)
			}
			if _, err := s.Load(req); tt.keep {
				if err != nil {
					t.Errorf("late request with the pre-refresh cookie: %v", err)
				}
				if !list[0].Created.Equal(first.Expiry.Add(-time.Hour).Truncate(time.Millisecond)) {
					t.Errorf("refresh changed the creation time: %+v", list)
				}
			} else if !isNoSession(err) {
				t.Errorf("replaced ticket still loads: %v", err)
			}
			s.Clear(httptest.NewRecorder(), after)
		})
	}

	countBefore, _ := s.Count(ctx)
	refused := []struct {
		name string
		run  func() error
	}{
		{"refresh after revocation", func() error {
			req := save(t, s.Store, nil, login("ada"))
			sess := load(req)
			if err := s.Revoke(ctx, sess.ID); err != nil {
				t.Fatal(err)
			}
			sess.IDToken = "refreshed"
			return s.Save(httptest.NewRecorder(), req, sess)
		}},
		{"refresh racing a revocation", func() error {
			// Save reads the entry, then Revoke runs, then Save writes:
			// SET XX must not bring the session back.
			req := save(t, s.Store, nil, login("ada"))
			sess := load(req)
			var once sync.Once
			s.rdb.AddHook(revokeBeforeSet{once: &once, revoke: func() { _ = s.Revoke(ctx, sess.ID) }})
			sess.IDToken = "refreshed"
			return s.Save(httptest.NewRecorder(), req, sess)
		}},
		{"refresh without the ticket", func() error {
			sess := load(save(t, s.Store, nil, login("ada")))
			defer s.Revoke(ctx, sess.ID)
			return s.Save(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), sess)
		}},
		{"refresh with another session's ticket", func() error {
			sess := load(save(t, s.Store, nil, login("ada")))
			defer s.Revoke(ctx, sess.ID)
			other := save(t, s.Store, nil, login("ada"))
			defer s.Clear(httptest.NewRecorder(), other)
			return s.Save(httptest.NewRecorder(), other, sess)
		}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !isNoSession(err) {
				t.Errorf("Save = %v, want ErrNoSession", err)
			}
			if n, _ := s.Count(ctx); n != countBefore {
				t.Errorf("Count = %d, want %d: a refused refresh left a session", n, countBefore)
			}
		})
	}

	t.Run("refresh cannot change the user", func(t *testing.T) {
		req := save(t, s.Store, nil, login("ada"))
		sess := load(req)
		sess.User = "mallory"
		if err := s.Save(httptest.NewRecorder(), req, sess); err == nil || errors.Is(err, session.ErrNoSession) {
			t.Errorf("Save = %v, want a plain error", err)
		}
		if got := load(req); got.User != "ada" {
			t.Errorf("session now belongs to %q", got.User)
		}
	})
	t.Run("expired or userless", func(t *testing.T) {
		for _, sess := range []session.Session{
			{User: "auth0|ada", Expiry: clk.Now().Add(-time.Second)},
			{Expiry: clk.Now().Add(time.Hour)},
		} {
			if err := s.Save(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), sess); err == nil {
				t.Errorf("Save(%+v) succeeded", sess)
			}
		}
	})
}

// revokeBeforeSet runs revoke once, just before the pipeline carrying a SET
// is sent.
type revokeBeforeSet struct {
	once   *sync.Once
	revoke func()
}

func (h revokeBeforeSet) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h revokeBeforeSet) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h revokeBeforeSet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "set" {
			h.once.Do(h.revoke)
		}
		return next(ctx, cmds)
	}
}

// TestRedisHoldsNoSecrets reads everything the store wrote, keys and values,
// as someone with a dump of Redis would.
func TestRedisHoldsNoSecrets(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	sess := bigSession(time.Now())
	sess.User = "ada.lovelace@example.com" // a deployment whose user claim is the e-mail
	save(t, s.Store, nil, sess)

	ctx := context.Background()
	raw := r.Client(t)
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("keys = %q, want entry, user, sid and count indexes", keys)
	}
	var dump strings.Builder
	for _, k := range keys {
		dump.WriteString(k + "\n")
		switch typ := raw.Type(ctx, k).Val(); typ {
		case "string":
			dump.WriteString(raw.Get(ctx, k).Val())
		case "zset":
			dump.WriteString(strings.Join(raw.ZRange(ctx, k, 0, -1).Val(), "\n"))
		default:
			t.Errorf("key %s has type %s", k, typ)
		}
		if ttl := raw.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
	for what, secret := range map[string]string{
		"ID token": sess.IDToken, "ID token signature": sess.IDToken[len(sess.IDToken)-100:],
		"access token": sess.AccessToken, "e-mail": "ada.lovelace@example.com", "name": "Ada Lovelace",
		"sid": sess.SID, "group": "team-042-engineering",
	} {
		if strings.Contains(dump.String(), secret) {
			t.Errorf("Redis holds the %s in clear", what)
		}
	}
}

func TestRevocation(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	a := newReplica(t, r, replicaOpts{clock: clk.Now})
	b := newReplica(t, r, replicaOpts{clock: clk.Now})
	ctx := context.Background()
	login := func(user, sid string) *http.Request {
		clk.Add(time.Second) // distinct creation times
		return save(t, a.Store, nil, session.Session{User: user, SID: sid, Expiry: clk.Now().Add(time.Hour)})
	}
	ada1, ada2, ada3 := login("ada", "sid-a1"), login("ada", "sid-a2"), login("ada", "sid-a1")
	bob := login("bob", "sid-b")
	id := func(req *http.Request) string {
		tk, err := a.ticket(req)
		if err != nil {
			t.Fatal(err)
		}
		return tk.id
	}
	alive := func(req *http.Request) bool {
		_, err := b.Load(req)
		if err != nil && !isNoSession(err) {
			t.Fatalf("Load: %v", err)
		}
		return err == nil
	}
	count := func() int {
		n, err := b.Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	list, err := b.Sessions(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != id(ada1) || list[1].ID != id(ada2) || list[2].ID != id(ada3) {
		t.Fatalf("Sessions(ada) = %+v", list)
	}
	for _, in := range list {
		if in.User != "ada" || !in.Created.Before(in.Expiry) || in.Expiry.Sub(in.Created) != time.Hour {
			t.Errorf("Info %+v", in)
		}
	}
	if n := count(); n != 4 {
		t.Errorf("Count = %d, want 4", n)
	}

	if err := b.Revoke(ctx, id(ada2)); err != nil {
		t.Fatal(err)
	}
	if alive(ada2) || !alive(ada1) || !alive(ada3) {
		t.Error("Revoke ended the wrong sessions")
	}
	// The same 16 bytes with a non-canonical last character (one of A, Q, g,
	// w, whose 4 unused bits are zero, becomes B, R, h or x).
	alias := []byte(id(ada1))
	alias[idLen-1]++
	for _, bad := range []string{id(ada2), "nope", newTicket().id, "", string(alias)} {
		if err := b.Revoke(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revoke(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	if list, _ := b.Sessions(ctx, "ada"); len(list) != 2 {
		t.Errorf("Sessions after Revoke = %+v", list)
	}

	if n, err := b.RevokeSID(ctx, "sid-a1"); err != nil || n != 2 {
		t.Errorf("RevokeSID = %d, %v; want 2", n, err)
	}
	if alive(ada1) || alive(ada3) || !alive(bob) {
		t.Error("RevokeSID ended the wrong sessions")
	}
	if n, err := b.RevokeSID(ctx, "sid-a1"); err != nil || n != 0 {
		t.Errorf("RevokeSID again = %d, %v; want 0", n, err)
	}
	if _, err := b.RevokeSID(ctx, ""); err == nil {
		t.Error("RevokeSID(\"\") succeeded")
	}

	ada4 := login("ada", "")
	if n, err := b.RevokeUser(ctx, "ada"); err != nil || n != 1 {
		t.Errorf("RevokeUser = %d, %v; want 1", n, err)
	}
	if alive(ada4) || !alive(bob) {
		t.Error("RevokeUser ended the wrong sessions")
	}
	if list, _ := b.Sessions(ctx, "ada"); len(list) != 0 {
		t.Errorf("Sessions after RevokeUser = %+v", list)
	}
	if n := count(); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
	clk.Add(2 * time.Hour)
	if n := count(); n != 0 {
		t.Errorf("Count after expiry = %d, want 0", n)
	}
}

// TestRevokeMany crosses the batch size and the listing bound.
func TestRevokeMany(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	ctx := context.Background()
	const n = MaxListed + 100
	var first *http.Request
	for i := range n {
		req := save(t, s.Store, nil, session.Session{User: "ada", Expiry: time.Now().Add(time.Hour)})
		if i == 0 {
			first = req
		}
	}
	if list, err := s.Sessions(ctx, "ada"); err != nil || len(list) != MaxListed {
		t.Errorf("Sessions: %d, %v; want %d", len(list), err, MaxListed)
	}
	if got, err := s.RevokeUser(ctx, "ada"); err != nil || got != n {
		t.Errorf("RevokeUser = %d, %v; want %d", got, err, n)
	}
	if _, err := s.Load(first); !isNoSession(err) {
		t.Errorf("first session after RevokeUser: %v", err)
	}
	if c, _ := s.Count(ctx); c != 0 {
		t.Errorf("Count = %d", c)
	}
}

// TestIdle: a session unused for Idle ends, in Load and in Redis; Touch
// and Save record a use without rewriting the cookie.
func TestIdle(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	const idle = 30 * time.Minute
	s := newReplica(t, r, replicaOpts{clock: clk.Now, idle: idle})
	raw := r.Client(t)
	ctx := context.Background()
	sess := smallSession("ada", clk.Now())
	sess.Expiry = clk.Now().Add(8 * time.Hour)
	sess.Seen = clk.Now()
	req := save(t, s.Store, nil, sess)
	loaded, err := s.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	if ttl := raw.PTTL(ctx, s.sessionKey(loaded.ID)).Val(); ttl > idle || ttl < idle-time.Minute {
		t.Errorf("PTTL = %v, want the idle timeout", ttl)
	}
	clk.Add(idle / 8)
	if s.Touch(&loaded) {
		t.Error("Touch asked for a save after idle/8")
	}
	clk.Add(idle / 2)
	if !s.Touch(&loaded) || !loaded.Seen.Equal(clk.Now()) {
		t.Fatal("Touch did not record the use after 5/8 idle")
	}
	w := httptest.NewRecorder()
	if err := s.Save(w, req, loaded); err != nil {
		t.Fatal(err)
	}
	if c := w.Result().Cookies(); len(c) != 0 {
		t.Errorf("recording a use rewrote cookies: %v", c)
	}
	if ttl := raw.PTTL(ctx, s.sessionKey(loaded.ID)).Val(); ttl < idle-time.Minute {
		t.Errorf("PTTL after the use = %v, want the idle timeout again", ttl)
	}
	clk.Add(idle - time.Second)
	if _, err := s.Load(req); err != nil {
		t.Fatalf("Load just inside the idle timeout: %v", err)
	}
	clk.Add(time.Second)
	if _, err := s.Load(req); !isNoSession(err) {
		t.Errorf("Load after the idle timeout = %v, want ErrNoSession", err)
	}
	if n, _ := s.Count(ctx); n != 0 {
		t.Errorf("Count = %d, want 0", n)
	}
	noIdle := newReplica(t, r, replicaOpts{clock: clk.Now})
	if noIdle.Touch(&loaded) {
		t.Error("Touch without Idle asked for a save")
	}
}

// TestIndexTTL: indexes live as long as their latest member, no longer.
func TestIndexTTL(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	raw := r.Client(t)
	ctx := context.Background()
	now := time.Now()
	save(t, s.Store, nil, session.Session{User: "ada", SID: "x", Expiry: now.Add(3 * time.Hour)})
	save(t, s.Store, nil, session.Session{User: "ada", SID: "x", Expiry: now.Add(time.Hour)})
	for _, k := range []string{s.userKey("ada"), s.sidKey("x"), s.allKey()} {
		ttl := raw.PTTL(ctx, k).Val()
		if ttl < 3*time.Hour-time.Minute || ttl > 3*time.Hour {
			t.Errorf("PTTL(%s) = %v, want about 3h", k, ttl)
		}
	}
}

// TestCookieStoresDoNotMix: the ticket cookie and the cookie store's
// session cookie share a name and secrets, but not keys: neither opens the
// other, so switching stores means logging in again, never a half-read
// session. A ticket cookie of the earlier format, sealed with the cookie
// store's keys, still opens here.
func TestCookieStoresDoNotMix(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	now := time.Now()
	cookies, err := cookie.NewStore(cookie.Config{Name: cookieName, Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: [][]byte{secret(1)}})
	if err != nil {
		t.Fatal(err)
	}
	value := func(req *http.Request) string {
		c, err := req.Cookie(cookieName)
		if err != nil {
			t.Fatal(err)
		}
		return c.Value
	}

	ticketReq := save(t, s.Store, nil, smallSession("auth0|ada", now))
	if got, err := cookies.Load(ticketReq); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("cookie store loaded a ticket cookie: %+v, %v", got, err)
	}
	sessionReq := cookieStoreSession(t, time.Now, smallSession("auth0|ada", now))
	if got, err := s.Load(sessionReq); !isNoSession(err) {
		t.Errorf("redis store loaded a cookie-store session: %+v, %v", got, err)
	}
	// Not merely refused: neither value decodes under the other's keys.
	var tc ticketCookie
	if err := securecookie.DecodeMulti(cookieName, value(sessionReq), &tc, s.keys.Load().codecs...); err == nil {
		t.Errorf("a cookie-store session decoded as a ticket cookie: %+v", tc)
	}
	var legacy session.Session
	if err := securecookie.DecodeMulti(cookieName, value(ticketReq), &legacy, s.keys.Load().legacy...); err == nil {
		t.Errorf("a ticket cookie decoded under the cookie store's keys: %+v", legacy)
	}

	// The earlier format: the cookie store sealed {"k": ticket, "x": expiry}.
	tk, err := s.ticket(ticketReq)
	if err != nil {
		t.Fatal(err)
	}
	old, err := securecookie.EncodeMulti(cookieName, ticketCookie{Ticket: tk.String(), Expiry: ceilSecond(now.Add(time.Hour))}, s.keys.Load().legacy...)
	if err != nil {
		t.Fatal(err)
	}
	oldReq := httptest.NewRequest("GET", "/", nil)
	oldReq.AddCookie(&http.Cookie{Name: cookieName, Value: old})
	if got, err := s.Load(oldReq); err != nil || got.ID != tk.id {
		t.Errorf("earlier-format ticket cookie: %+v, %v", got, err)
	}
	if got, err := cookies.Load(oldReq); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("cookie store loaded an earlier-format ticket cookie: %+v, %v", got, err)
	}
}

// TestChunksOfCookieStoreExpired: a browser still holding a chunked session
// of the cookie store (before the switch to Redis) loses those chunks at its
// login, and at logout, so they stop riding along every request.
func TestChunksOfCookieStoreExpired(t *testing.T) {
	r := startRedis(t)
	s := newReplica(t, r, replicaOpts{})
	chunked := cookieStoreSession(t, time.Now, bigSession(time.Now()))
	if len(chunked.Cookies()) < 2 {
		t.Fatalf("want a chunked cookie-store session, got %d cookies", len(chunked.Cookies()))
	}
	chunked.AddCookie(&http.Cookie{Name: cookieName + "_login_0123456789abcdef", Value: "x"})
	chunked.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
	names := func(req *http.Request) []string {
		var n []string
		for _, c := range req.Cookies() {
			n = append(n, c.Name)
		}
		return n
	}
	after := save(t, s.Store, chunked, smallSession("auth0|ada", time.Now()))
	if got, want := names(after), []string{cookieName + "_login_0123456789abcdef", "theme", cookieName}; !reflect.DeepEqual(got, want) {
		t.Errorf("cookies after login = %q, want %q", got, want)
	}
	w := httptest.NewRecorder()
	s.Clear(w, chunked)
	if got, want := names(browserAfter(chunked, w)), []string{cookieName + "_login_0123456789abcdef", "theme"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cookies after logout = %q, want %q", got, want)
	}
}

// cookieStoreSession is a request carrying sess in a cookie of the cookie
// store, with the replicas' secret.
func cookieStoreSession(t *testing.T, now func() time.Time, sess session.Session) *http.Request {
	t.Helper()
	cookies, err := cookie.NewStore(cookie.Config{Name: cookieName, Policy: session.Policy{Lifetime: 12 * time.Hour}, Secrets: [][]byte{secret(1)}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := cookies.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
		t.Fatal(err)
	}
	return browserAfter(httptest.NewRequest("GET", "/", nil), w)
}

func TestNewErrors(t *testing.T) {
	r := startRedis(t)
	good := replicaOpts{client: r.Client(t)}.config()
	for name, change := range map[string]func(*Config){
		"no client":                        func(c *Config) { c.Client = nil },
		"no lifetime":                      func(c *Config) { c.Policy.Lifetime = 0 },
		"no cookie name":                   func(c *Config) { c.Name = "" },
		"no secret":                        func(c *Config) { c.Secrets = nil },
		"short secret":                     func(c *Config) { c.Secrets = [][]byte{make([]byte, 16)} },
		"legacy name overlapping the name": func(c *Config) { c.Legacy = c.Name + "_x" },
	} {
		cfg := good
		change(&cfg)
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("New with %s succeeded", name)
		}
	}
	addr := "127.0.0.1:" + fmt.Sprint(freePort(t)) // nothing listens there
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer c.Close()
	start := time.Now()
	cfg := good
	cfg.Client = c
	_, err := New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("New with Redis down = %v, want an error naming %s", err, addr)
	}
	// New bounds its checks by max(Timeout, 5 s); the bound here only
	// catches a New that waits for Redis without end.
	if d := time.Since(start); d > time.Minute {
		t.Errorf("New took %v", d)
	}
}

// TestRedisDown: a Redis that is killed or hangs gives temporary errors in
// bounded time, never ErrNoSession and never a panic, and the same Store
// works again once Redis is back.
func TestRedisDown(t *testing.T) {
	r := startRedis(t)
	const timeout = 300 * time.Millisecond
	// The client's own read and write timeouts are far longer than the
	// store's, so that a call to a hung server ends within callBound only
	// if the store's timeout ends it. The bound is then generous for a
	// loaded machine and still fails a store without its timeout.
	const clientTimeout = 30 * time.Second
	const callBound = clientTimeout / 3
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{r.Addr()},
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           clientTimeout,
		WriteTimeout:          clientTimeout,
	})
	t.Cleanup(func() { client.Close() })
	s := newReplica(t, r, replicaOpts{timeout: timeout, client: client})
	ctx := context.Background()
	sess := smallSession("auth0|ada", time.Now())
	req := save(t, s.Store, nil, sess)
	loaded, err := s.Load(req)
	if err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		call func() error
	}{
		{"Load", func() error { _, err := s.Load(req); return err }},
		{"Save (refresh)", func() error { return s.Save(httptest.NewRecorder(), req, loaded) }},
		{"Save (login)", func() error {
			return s.Save(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), sess)
		}},
		{"Logout", func() error { return s.Logout(httptest.NewRecorder(), req) }},
		{"Sessions", func() error { _, err := s.Sessions(ctx, "auth0|ada"); return err }},
		{"Revoke", func() error { return s.Revoke(ctx, newTicket().id) }},
		{"RevokeUser", func() error { _, err := s.RevokeUser(ctx, "auth0|ada"); return err }},
		{"RevokeSID", func() error { _, err := s.RevokeSID(ctx, "sid"); return err }},
		{"Count", func() error { _, err := s.Count(ctx); return err }},
	}
	check := func(t *testing.T) {
		for _, c := range calls {
			start := time.Now()
			err := c.call()
			t.Logf("%s: %v", c.name, time.Since(start).Round(time.Millisecond))
			if d := time.Since(start); d > callBound {
				t.Errorf("%s took %v, want < %v (the store's timeout is %v; the client's own, %v)", c.name, d, callBound, timeout, clientTimeout)
			}
			if !isUnavailable(err) {
				t.Errorf("%s = %v, want an unavailable error", c.name, err)
			}
		}
	}

	// eventually retries f until it stops failing temporarily: go-redis
	// reconnects by itself, within about a second after too many failed
	// dials. The deadline only bounds a store that never recovers.
	eventually := func(t *testing.T, f func() error) error {
		t.Helper()
		start := time.Now()
		for {
			err := f()
			if !isUnavailable(err) {
				t.Logf("recovered in %v", time.Since(start).Round(time.Millisecond))
				return err
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("still failing a minute after Redis came back: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	load := func() error { _, err := s.Load(req); return err }

	t.Run("hung, then the same session works", func(t *testing.T) {
		r.Pause()
		start := time.Now()
		if err := load(); !isUnavailable(err) {
			t.Errorf("Load = %v, want an unavailable error", err)
		}
		if d := time.Since(start); d > callBound {
			t.Errorf("Load took %v, want < %v", d, callBound)
		}
		r.Resume()
		if err := eventually(t, load); err != nil {
			t.Fatalf("Load after resume: %v", err)
		}
	})
	t.Run("hung, every call", func(t *testing.T) {
		r.Pause()
		check(t)
		r.Resume()
		// What the frozen server had received (Logout, revocations) may run
		// when it resumes, so use a new session.
		again := save(t, s.Store, nil, sess)
		if err := eventually(t, func() error { _, err := s.Load(again); return err }); err != nil {
			t.Fatalf("Load after resume: %v", err)
		}
	})
	t.Run("killed and restarted", func(t *testing.T) {
		req = save(t, s.Store, nil, sess)
		if loaded, err = s.Load(req); err != nil {
			t.Fatal(err)
		}
		r.Stop()
		check(t)
		c := redis.NewClient(&redis.Options{Addr: r.Addr()})
		defer c.Close()
		if _, err := New(ctx, replicaOpts{client: c}.config()); err == nil || !strings.Contains(err.Error(), r.Addr()) {
			t.Errorf("New with Redis down = %v", err)
		}
		r.Restart() // empty: nothing was persisted
		if err := eventually(t, load); !isNoSession(err) {
			t.Errorf("Load of a session the restart lost = %v, want ErrNoSession", err)
		}
		again := save(t, s.Store, nil, sess)
		if got, err := s.Load(again); err != nil || got.User != sess.User {
			t.Fatalf("Load after restart = %+v, %v", got, err)
		}
	})
}

// TestConcurrent runs logins, refreshes, loads, logouts and revocations of
// several users on two replicas at once (run with -race), and checks that
// no one ever loads someone else's session, without and with the cache.
func TestConcurrent(t *testing.T) {
	for _, size := range []int{0, 100} {
		t.Run(fmt.Sprintf("cache %d", size), func(t *testing.T) { testConcurrent(t, size) })
	}
}

func testConcurrent(t *testing.T, cache int) {
	r := startRedis(t)
	reps := []replica{newReplica(t, r, replicaOpts{cache: cache}), newReplica(t, r, replicaOpts{cache: cache})}
	ctx := context.Background()
	const workers, rounds = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user-%d", w%4) // two workers per user
			fail := func(format string, args ...any) { errs <- fmt.Errorf(user+": "+format, args...) }
			for i := range rounds {
				rep := reps[i%2]
				sess := session.Session{User: user, SID: fmt.Sprintf("%s-%d", user, i%3), Email: user + "@example.com", Expiry: time.Now().Add(time.Hour)}
				rw := httptest.NewRecorder()
				if err := rep.Save(rw, httptest.NewRequest("GET", "/", nil), sess); err != nil {
					fail("login: %v", err)
					return
				}
				req := browserAfter(httptest.NewRequest("GET", "/", nil), rw)
				for j := range 5 {
					got, err := reps[j%2].Load(req)
					if err == nil {
						sess = got
					}
					switch {
					case err == nil && got.User != user:
						fail("loaded %q's session", got.User)
						return
					case err != nil && !isNoSession(err): // revoked by the other worker is fine
						fail("load: %v", err)
						return
					}
				}
				// A refresh needs a loaded session (one with its ID): a
				// session value without one would be saved as a new login,
				// whose cookie this test throws away.
				if sess.ID != "" {
					sess.IDToken = fmt.Sprint(i)
					if err := reps[(i+1)%2].Save(httptest.NewRecorder(), req, sess); err != nil && !isNoSession(err) {
						fail("refresh: %v", err)
						return
					}
				}
				switch i % 10 {
				case 3:
					if _, err := rep.RevokeUser(ctx, user); err != nil {
						fail("RevokeUser: %v", err)
						return
					}
				case 7:
					if _, err := rep.RevokeSID(ctx, sess.SID); err != nil {
						fail("RevokeSID: %v", err)
						return
					}
				default:
					if err := rep.Logout(httptest.NewRecorder(), req); err != nil {
						fail("logout: %v", err)
						return
					}
				}
				// A logout deletes this very session through rep, which
				// refuses it at once. RevokeUser and RevokeSID find it only
				// if the other worker has not already revoked it, possibly
				// through the other replica, whose announcement reaches
				// rep's cache a moment later: then rep refuses it once that
				// has arrived (the cache's own promise), not necessarily at
				// once.
				if i%10 == 3 || i%10 == 7 {
					deadline := time.Now().Add(hang)
					for _, err := rep.Load(req); err == nil && time.Now().Before(deadline); _, err = rep.Load(req) {
						time.Sleep(time.Millisecond)
					}
				}
				if _, err := rep.Load(req); !isNoSession(err) {
					fail("session alive after logout/revocation: %v", err)
					return
				}
				if _, err := rep.Sessions(ctx, user); err != nil {
					fail("Sessions: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, err := reps[0].Count(ctx); err != nil || n != 0 {
		t.Errorf("Count after everyone left = %d, %v", n, err)
	}
}

// TestVerifiedCookieCache: the cache of opened ticket cookies saves work
// only: a revoked session is refused at once, an expired cookie is refused
// and dropped, and what did not open is never added.
func TestVerifiedCookieCache(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	s := newReplica(t, r, replicaOpts{clock: clk.Now})
	req := save(t, s.Store, nil, smallSession("auth0|ada", clk.Now()))
	c, err := req.Cookie(cookieName)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := s.Load(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.keys.Load().verified.Get(c.Value, clk.Now()); !ok {
		t.Fatal("an opened ticket cookie was not cached")
	}
	tampered := []byte(c.Value)
	tampered[len(tampered)/2] ^= 1
	bad := httptest.NewRequest("GET", "/", nil)
	bad.AddCookie(&http.Cookie{Name: cookieName, Value: string(tampered)})
	if _, err := s.Load(bad); !isNoSession(err) {
		t.Errorf("tampered cookie: %v", err)
	}
	if _, ok := s.keys.Load().verified.Get(string(tampered), clk.Now()); ok {
		t.Error("a tampered cookie was cached")
	}

	clk.Add(time.Hour + time.Second) // past the cookie's expiry (a whole second)
	if _, err := s.Load(req); !isNoSession(err) {
		t.Errorf("expired cookie, cached: %v", err)
	}
	if _, ok := s.keys.Load().verified.Get(c.Value, clk.Now()); ok {
		t.Error("an expired cookie stayed cached")
	}
	clk.Add(-time.Hour - time.Second)

	if _, err := s.Load(req); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(context.Background(), loaded.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(req); !isNoSession(err) {
		t.Errorf("revoked session with a cached cookie: %v", err)
	}
}
