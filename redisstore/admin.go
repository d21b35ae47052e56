package redisstore

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/authproxy/authproxy/session"
)

// AdminHandler is the admin API, for the internal listener only:
//
//	GET    /admin/sessions?user=U   the user's active sessions
//	DELETE /admin/sessions?user=U   end all of them
//	DELETE /admin/sessions/ID       end one
//
// Every call needs "Authorization: Bearer TOKEN". An empty token disables
// the API (404), so it is off unless configured.
func (s *Store) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/sessions", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": "user is required"})
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
		user := r.URL.Query().Get("user")
		if user == "" {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": "user is required"})
			return
		}
		n, err := s.RevokeUser(r.Context(), user)
		if err != nil {
			adminError(w, err)
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
