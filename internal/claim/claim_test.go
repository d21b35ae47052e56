package claim

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckRefuses: every value an HTTP header, a log line or an upstream's
// trimming could turn into another value is refused, with the rule it broke.
func TestCheckRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		v    any
		want error
	}{
		{"absent", nil, ErrMissing},
		{"number", 42.0, ErrNotString},
		{"bool", true, ErrNotString},
		{"list", []any{"admin"}, ErrNotString},
		{"object", map[string]any{"sub": "admin"}, ErrNotString},
		{"empty", "", ErrEmpty},
		{"leading space", " admin", ErrSpace},
		{"trailing space", "admin ", ErrSpace},
		{"only spaces", "   ", ErrSpace},
		{"leading tab", "\tadmin", ErrSpace},
		{"trailing newline", "admin\n", ErrSpace},
		{"leading CR LF", "\r\nadmin", ErrSpace},
		{"no-break space", "admin\u00a0", ErrSpace},
		{"ideographic space", "\u3000admin", ErrSpace},
		{"next line", "admin\u0085", ErrSpace},
		{"byte order mark", "\ufeffadmin", ErrSpace},
		{"zero-width space", "admin\u200b", ErrSpace},
		{"word joiner", "\u2060admin", ErrSpace},
		{"file separator", "admin\x1c", ErrSpace},
		{"NUL at the end", "admin\x00", ErrSpace},
		{"inner NUL", "ad\x00min", ErrControl},
		{"inner LF (header injection)", "admin\nX-Admin: 1", ErrControl},
		{"inner CR", "ad\rmin", ErrControl},
		{"inner tab", "ad\tmin", ErrControl},
		{"inner DEL", "ad\x7fmin", ErrControl},
		{"inner C1 control", "ad\u009bmin", ErrControl},
		{"line separator", "ad\u2028min", ErrControl},
		{"paragraph separator", "ad\u2029min", ErrControl},
		{"invalid UTF-8", "ad\xffmin", ErrEncoding},
		{"replacement character", "ad\ufffdmin", ErrEncoding},
		{"too long", strings.Repeat("a", MaxBytes+1), ErrTooLong},
		{"too long in multibyte runes", strings.Repeat("é", MaxBytes/2+1), ErrTooLong},
	} {
		if err := Check(tt.v); !errors.Is(err, tt.want) {
			t.Errorf("%s (%q): %v, want %v", tt.name, tt.v, err, tt.want)
		}
	}
}

func TestCheckAccepts(t *testing.T) {
	for _, v := range []string{
		"admin", "auth0|5f7c8ec7", "google-oauth2|1234", "ann+ops@example.com", "Ann Lovelace",
		"Zoë Ñúñez", "李小龍", "محمد\u200cرضا", // a zero-width non-joiner inside a Persian name
		"a", strings.Repeat("a", MaxBytes), "00u1abcd", "248289761001",
	} {
		if err := Check(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// FuzzCheck: whatever passes survives every trimming and is one header
// line.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"admin", " admin", "a\nb", "\ufeffa", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckString(s) != nil {
			return
		}
		if strings.TrimSpace(s) != s || strings.Trim(s, " \t\r\n\x00\ufeff\u200b\u00a0") != s {
			t.Errorf("%q passed but trims to another value", s)
		}
		if strings.ContainsAny(s, "\r\n\x00") || len(s) == 0 || len(s) > MaxBytes {
			t.Errorf("%q passed", s)
		}
	})
}
