package ascii

import "testing"

func TestIsName(t *testing.T) {
	for _, tt := range []struct {
		s, extra string
		want     bool
	}{
		{"", "", false},
		{"", ".", false},
		{"_authproxy", "", true},
		{"X-User_2", "", true},
		{"a.b", "", false},
		{"a.b", ".", true},
		{"a b", "", false},
		{"a:b", "", false},
		{"a\x00", "", false},
		{"é", "", false},
		{"a=b", "", false},
		{"...", ".", true},
	} {
		if got := IsName(tt.s, tt.extra); got != tt.want {
			t.Errorf("IsName(%q, %q) = %v, want %v", tt.s, tt.extra, got, tt.want)
		}
	}
}

// FuzzIsName: every byte outside the alphabet is refused.
func FuzzIsName(f *testing.F) {
	f.Add("a-b_C9")
	f.Fuzz(func(t *testing.T, s string) {
		want := s != ""
		for _, c := range []byte(s) {
			want = want && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
		}
		if got := IsName(s, ""); got != want {
			t.Errorf("IsName(%q) = %v", s, got)
		}
	})
}
