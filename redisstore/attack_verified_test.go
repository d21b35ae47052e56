package redisstore

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

// TestCachedTicketsRefuseHostileCookies attacks the two caches a Load
// passes: the verified-cookie cache (keys.verified, the opened ticket by
// the cookie's exact value) and the session cache (a shared entry per
// session id, checked against the ticket's key). With both warm for a
// good session, each hostile cookie is loaded three times (a first Load
// that cached it would let the next ones through) and must be refused
// every time; the good session must stay as it was. Then the good cookie
// itself, once verified, must be refused after its key is removed, its
// session revoked, or its expiry passed.
func TestCachedTicketsRefuseHostileCookies(t *testing.T) {
	r := startRedis(t)
	clk := newClock()
	s := newReplica(t, r, replicaOpts{clock: clk.Now, cache: 100})
	waitTrusted(t, s)
	name := s.name
	// A ticket with a "-" or "_" in it (about 7 in 8 are), so that its
	// standard-base64 spelling below is another string, not the ticket.
	var good *http.Request
	var goodTicket ticket
	for try := 0; !strings.ContainsAny(goodTicket.String(), "-_"); try++ {
		if try == 100 {
			t.Fatal("100 tickets without a - or _")
		}
		good = save(t, s.Store, nil, smallSession("auth0|ada", clk.Now()))
		var err error
		if goodTicket, err = s.ticket(good); err != nil {
			t.Fatal(err)
		}
	}
	goodCookie, err := good.Cookie(name)
	if err != nil {
		t.Fatal(err)
	}
	// Warm: the cookie verified, the session cached.
	waitFor(t, "the good session was not cached", func() bool {
		_, err := s.Load(good)
		return err == nil && s.cache.get(goodTicket) != nil
	})

	withCookie := func(v string) *http.Request {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: name, Value: v})
		return req
	}
	withTicket := func(tk string, expiry time.Time) *http.Request {
		v, err := securecookie.EncodeMulti(name, ticketCookie{Ticket: tk, Expiry: expiry}, s.keys.Load().codecs...)
		if err != nil {
			t.Fatal(err)
		}
		return withCookie(v)
	}
	flip := func(i int) string {
		b := []byte(goodCookie.Value)
		b[i] ^= 1
		return string(b)
	}
	hour := clk.Now().Add(time.Hour)
	tk := goodTicket.String()
	// A different base64url character for the ticket's last one: a
	// non-canonical spelling of the same id or key bytes, or another key.
	lastTwin := tk[:len(tk)-1] + string(tk[len(tk)-1]^1)
	idTwin := tk[:idLen-1] + string(tk[idLen-1]^1) + tk[idLen:]
	wrongKey := newTicket()
	wrongKey.id = goodTicket.id
	tests := []struct {
		name string
		req  *http.Request
	}{
		{"tampered first byte", withCookie(flip(0))},
		{"tampered middle", withCookie(flip(len(goodCookie.Value) / 2))},
		{"tampered last byte", withCookie(flip(len(goodCookie.Value) - 1))},
		{"truncated", withCookie(goodCookie.Value[:len(goodCookie.Value)-1])},
		{"extended", withCookie(goodCookie.Value + "A")},
		{"upper-cased", withCookie(strings.ToUpper(goodCookie.Value))},
		{"sealed: empty ticket", withTicket("", hour)},
		{"sealed: malformed ticket", withTicket("not-a-ticket", hour)},
		{"sealed: ticket with padding", withTicket(tk+"=", hour)},
		{"sealed: ticket, std base64", withTicket(strings.NewReplacer("-", "+", "_", "/").Replace(tk), hour)},
		{"sealed: ticket, last character changed", withTicket(lastTwin, hour)},
		{"sealed: id's last character changed", withTicket(idTwin, hour)},
		{"sealed: right id, wrong key", withTicket(wrongKey.String(), hour)},
		{"sealed: unknown id, right key", withTicket(func() string { n := newTicket(); n.key = goodTicket.key; return n.String() }(), hour)},
		{"sealed: good ticket, expired cookie", withTicket(tk, clk.Now().Add(-time.Second))},
		{"sealed: good ticket, cookie expiring now", withTicket(tk, clk.Now())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 {
				if sess, err := s.Load(tt.req); !isNoSession(err) {
					t.Fatalf("Load %d = %+v, %v; want ErrNoSession", i+1, sess, err)
				}
			}
		})
	}
	got, err := s.Load(good)
	if err != nil || got.User != "auth0|ada" || got.ID != goodTicket.id {
		t.Fatalf("the good session after the attacks: %+v, %v", got, err)
	}

	// The good cookie, verified and its session cached, once it no longer
	// holds. Each undoes itself but revocation, which comes last.
	t.Run("past its expiry", func(t *testing.T) {
		clk.Add(time.Hour + time.Second)
		defer clk.Add(-time.Hour - time.Second)
		for i := range 3 {
			if _, err := s.Load(good); !isNoSession(err) {
				t.Fatalf("Load %d: %v; want ErrNoSession", i+1, err)
			}
		}
	})
	t.Run("cookie past its own expiry, session alive", func(t *testing.T) {
		short := withTicket(tk, clk.Now().Add(time.Minute))
		if _, err := s.Load(short); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Minute)
		defer clk.Add(-2 * time.Minute)
		for i := range 3 {
			if _, err := s.Load(short); !isNoSession(err) {
				t.Fatalf("Load %d: %v; want ErrNoSession", i+1, err)
			}
		}
	})
	t.Run("key removed", func(t *testing.T) {
		if _, err := s.Load(good); err != nil {
			t.Fatal(err)
		}
		if err := s.SetSecrets([][]byte{secret(9)}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := s.Load(good); !isNoSession(err) {
				t.Fatalf("Load %d: %v; want ErrNoSession", i+1, err)
			}
		}
		if err := s.SetSecrets([][]byte{secret(1)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		if _, err := s.Load(good); err != nil {
			t.Fatal(err)
		}
		if err := s.Revoke(context.Background(), goodTicket.id); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := s.Load(good); !isNoSession(err) {
				t.Fatalf("Load %d: %v; want ErrNoSession", i+1, err)
			}
		}
	})
}

// TestParseTicketOneSpelling: parseTicket takes a ticket only as newTicket
// spells it. Every other character in the last place of the id or of the
// key (a non-canonical spelling of the same bytes, another value, or no
// base64 at all) is refused, as are other lengths and padding.
func TestParseTicketOneSpelling(t *testing.T) {
	for range 20 {
		tk := newTicket()
		s := tk.String()
		if got, err := parseTicket(s); err != nil || got != tk {
			t.Fatalf("parseTicket(%q) = %v, %v; want the ticket", s, got, err)
		}
		for _, last := range []int{idLen - 1, ticketLen - 1} {
			for c := range 256 {
				if byte(c) == s[last] {
					continue
				}
				other := s[:last] + string(rune(c)) + s[last+1:]
				if c >= 0x80 {
					other = s[:last] + string([]byte{byte(c)}) + s[last+1:]
				}
				if got, err := parseTicket(other); err == nil && got == tk {
					t.Fatalf("parseTicket(%q) gives the ticket of %q", other, s)
				} else if err == nil && got.String() != other {
					t.Fatalf("parseTicket(%q) = %q: a second spelling", other, got.String())
				}
			}
		}
		for _, bad := range []string{s + "=", s[:ticketLen-1], s + "A", "=" + s[1:], strings.ToUpper(s)} {
			if got, err := parseTicket(bad); err == nil && got.String() != bad {
				t.Fatalf("parseTicket(%q) = %q", bad, got.String())
			}
		}
	}
}
