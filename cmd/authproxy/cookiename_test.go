package main

import "testing"

// TestCookieNameDefault: the session cookie gets the __Host- prefix by
// default exactly when browsers will accept it (https, host-only, Secure),
// and never overrides a name the operator chose.
func TestCookieNameDefault(t *testing.T) {
	tests := []struct {
		name             string
		env              map[string]string
		wantName, legacy string
	}{
		{"https", map[string]string{"AUTHPROXY_REDIRECT_URL": "https://app.example/auth/callback"}, "__Host-authproxy", "_authproxy"},
		{"http", map[string]string{"AUTHPROXY_REDIRECT_URL": "http://127.0.0.1:9001/auth/callback"}, "_authproxy", ""},
		{"no redirect URL (origin per request)", nil, "_authproxy", ""},
		{"https with a cookie domain", map[string]string{"AUTHPROXY_REDIRECT_URL": "https://app.example/auth/callback",
			"AUTHPROXY_COOKIE_DOMAIN": ".example"}, "_authproxy", ""},
		{"https, Secure off", map[string]string{"AUTHPROXY_REDIRECT_URL": "https://app.example/auth/callback",
			"AUTHPROXY_COOKIE_SECURE": "false"}, "_authproxy", ""},
		{"https, explicit name", map[string]string{"AUTHPROXY_REDIRECT_URL": "https://app.example/auth/callback",
			"AUTHPROXY_COOKIE_NAME": "_authproxy"}, "_authproxy", ""},
		{"http, explicit name", map[string]string{"AUTHPROXY_COOKIE_NAME": "sess"}, "sess", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"AUTHPROXY_UPSTREAM": "http://127.0.0.1:8080", "AUTH0_DOMAIN": "tenant.eu.auth0.com",
				"AUTH0_CLIENT_ID": "cid", "AUTH0_CLIENT_SECRET": "csecret"}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := loadConfig(envFrom(t, env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Cookie.Name != tt.wantName || cfg.Cookie.Legacy != tt.legacy {
				t.Errorf("cookie name %q (legacy %q), want %q (legacy %q)", cfg.Cookie.Name, cfg.Cookie.Legacy, tt.wantName, tt.legacy)
			}
		})
	}
}
