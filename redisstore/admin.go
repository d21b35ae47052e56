package redisstore

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/authproxy/authproxy/session"
)

// AdminHandler is the admin API, for the internal listener only:
//
//	GET    /admin/sessions?user=U   the user's active sessions
//	DELETE /admin/sessions?user=U   end all of them (404 if there are none)
//	DELETE /admin/sessions          the same, with the body {"user": U}
//	DELETE /admin/sessions/ID       end one
//
// U is taken exactly as sent: percent-decoded, but a "+" stays a "+" (user
// ids like "ann+ops@example.com" or "auth0|5f7c"), so a user is never
// silently turned into another one.
//
// Every call needs "Authorization: Bearer TOKEN". An empty token disables
// the API (404), so it is off unless configured.
func (s *Store) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/sessions", func(w http.ResponseWriter, r *http.Request) {
		user, err := userParam(r)
		if err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		list, err := s.Sessions(r.Context(), user)
		if err != nil {
			adminError(w, err)
			return
		}
		if list == nil {
			list = []Info{}
		}
		adminJSON(w, http.StatusOK, map[string]any{"user": user, "sessions": list})
	})
	mux.HandleFunc("DELETE /admin/sessions", func(w http.ResponseWriter, r *http.Request) {
		user, err := userParam(r)
		if err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		n, err := s.RevokeUser(r.Context(), user)
		if err != nil {
			adminError(w, err)
			return
		}
		if n == 0 {
			// Most often a misspelt or mis-encoded user: say so, do not
			// let a 200 suggest that something was ended.
			adminJSON(w, http.StatusNotFound, map[string]any{"error": "the user has no sessions", "user": user, "revoked": 0})
			return
		}
		adminJSON(w, http.StatusOK, map[string]any{"user": user, "revoked": n})
	})
	mux.HandleFunc("DELETE /admin/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Revoke(r.Context(), r.PathValue("id")); err != nil {
			adminError(w, err)
			return
		}
		adminJSON(w, http.StatusOK, map[string]any{"revoked": 1})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			http.NotFound(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="authproxy-admin"`)
			adminJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// maxAdminBody bounds a JSON request body.
const maxAdminBody = 64 << 10

// userParam is the user named by the request: the query's one user
// parameter, taken exactly as sent, or a JSON body {"user": U}, not both.
func userParam(r *http.Request) (string, error) {
	var users []string
	for _, kv := range strings.Split(r.URL.RawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "user" {
			continue
		}
		// PathUnescape, not QueryUnescape: "+" is not a space here.
		u, err := url.PathUnescape(v)
		if err != nil {
			return "", errors.New("user is not validly percent-encoded")
		}
		users = append(users, u)
	}
	if r.Body != nil && r.ContentLength != 0 {
		var body struct {
			User *string `json:"user"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.User == nil {
			return "", errors.New(`the body must be JSON {"user": "..."}`)
		}
		users = append(users, *body.User)
	}
	switch {
	case len(users) > 1:
		return "", errors.New("name the user once")
	case len(users) == 0 || users[0] == "":
		return "", errors.New("user is required")
	}
	return users[0], nil
}

func adminError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		adminJSON(w, http.StatusNotFound, map[string]string{"error": "no such session"})
	case errors.Is(err, session.ErrUnavailable):
		adminJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "redis unavailable"})
	default:
		adminJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
	}
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
