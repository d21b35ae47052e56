package redisstore

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/authproxy/authproxy/session"
)

// TestMigrateLegacyName: a ticket cookie under the legacy name is moved to
// the current one, with the same session behind it; anything the legacy
// cookie cannot vouch for (tampered, expired, sealed under another name, a
// cookie-store session, chunks) is only expired.
func TestMigrateLegacyName(t *testing.T) {
	const newName = "__Host-authproxy"
	r := startRedis(t)
	clock := newClock()
	old := newReplica(t, r, replicaOpts{clock: clock.Now}) // cookieName, as before the default changed
	cfg := replicaOpts{client: r.Client(t), clock: clock.Now}.config()
	cfg.Name, cfg.Legacy = newName, cookieName
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	legacyTicket := save(t, old.Store, nil, smallSession("ada", now)).Cookies()
	current := save(t, s, nil, smallSession("carol", now)).Cookies()
	adaReq := httptest.NewRequest("GET", "/", nil)
	adaReq.AddCookie(legacyTicket[0])
	tk, err := old.ticket(adaReq)
	if err != nil {
		t.Fatal(err)
	}
	// The format before ticket cookies had keys of their own.
	earlier, err := securecookie.EncodeMulti(cookieName, ticketCookie{Ticket: tk.String(), Expiry: ceilSecond(now.Add(time.Hour))}, s.keys.Load().legacy...)
	if err != nil {
		t.Fatal(err)
	}
	shortLived := save(t, old.Store, nil, session.Session{User: "ada", Expiry: now.Add(time.Second)}).Cookies()
	cookieStore := cookieStoreSession(t, clock.Now, bigSession(now)).Cookies()
	tests := []struct {
		name     string
		cookies  []*http.Cookie
		wantUser string // what the next handler loads; "" for no session
	}{
		{"legacy ticket", legacyTicket, "ada"},
		{"legacy ticket, earlier format", []*http.Cookie{{Name: cookieName, Value: earlier}}, "ada"},
		{"legacy and current ticket: the current one wins", append(legacyTicket[:1:1], current...), "carol"},
		{"tampered legacy ticket", []*http.Cookie{{Name: cookieName, Value: legacyTicket[0].Value + "x"}}, ""},
		{"expired legacy ticket", shortLived, ""},
		{"a current-name value under the legacy name", []*http.Cookie{{Name: cookieName, Value: current[0].Value}}, ""},
		{"a cookie-store session under the legacy name", cookieStore, ""},
		{"legacy chunks alone", cookieStore[1:], ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Add(2 * time.Second)
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range tt.cookies {
				req.AddCookie(c)
			}
			var got session.Session
			var loadErr error
			w := httptest.NewRecorder()
			s.Migrate(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				got, loadErr = s.Load(r)
			})).ServeHTTP(w, req)
			if got.User != tt.wantUser || (tt.wantUser == "") != (loadErr != nil) {
				t.Errorf("next loads %+v, %v; want user %q", got, loadErr, tt.wantUser)
			}
			next := browserAfter(req, w)
			for _, c := range next.Cookies() {
				if c.Name == cookieName || strings.HasPrefix(c.Name, cookieName+"_") {
					t.Errorf("legacy cookie %s survives", c.Name)
				}
			}
			// The browser now holds the ticket under the new name only.
			if sess, err := s.Load(next); sess.User != tt.wantUser {
				t.Errorf("next request loads %+v, %v; want user %q", sess, err, tt.wantUser)
			}
		})
	}
	plain := newReplica(t, r, replicaOpts{})
	h := http.NotFoundHandler()
	if fmt.Sprint(plain.Migrate(h)) != fmt.Sprint(h) {
		t.Error("Migrate wraps the handler without a legacy name")
	}
}
