package lines

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRead(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []string // "N:text" for a line, "N:too long" for a long one
	}{
		{"empty", "", nil},
		{"no final newline", "a\nb", []string{"1:a\n", "2:b"}},
		{"final newline", "a\nb\n", []string{"1:a\n", "2:b\n"}},
		{"long line in the middle", "a\n" + strings.Repeat("x", 40) + "\nb\n", []string{"1:a\n", "2:too long", "3:b\n"}},
		{"long last line", "a\n" + strings.Repeat("x", 40), []string{"1:a\n", "2:too long"}},
		{"exactly max", strings.Repeat("x", 16) + "\n", []string{"1:" + strings.Repeat("x", 16) + "\n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := Read(strings.NewReader(tt.in), 16,
				func(n int, text []byte) { got = append(got, fmt.Sprintf("%d:%s", n, text)) },
				func(n int) { got = append(got, fmt.Sprintf("%d:too long", n)) })
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	err := Read(iotest.ErrReader(boom), 16, func(int, []byte) { t.Error("a line from a failing reader") }, func(int) {})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
}

func TestPrefix(t *testing.T) {
	for _, tt := range []struct{ path, prefix, problem string }{
		{"/", "/", ""},
		{"/api/", "/api", ""},
		{"/api", "/api", ""},
		{"/a/b/", "/a/b", ""},
		{"//", "/", ""},
		{"/a//b", "/a//b", "has an empty segment (//)"},
		{"//a", "//a", "has an empty segment (//)"},
		{"/a/./b", "/a/./b", "has a . segment"},
		{"/a/..", "/a/..", "has a .. segment"},
		{"/../", "/..", "has a .. segment"},
		{"/a/...", "/a/...", ""},
	} {
		if prefix, problem := Prefix(tt.path); prefix != tt.prefix || problem != tt.problem {
			t.Errorf("Prefix(%q) = %q, %q; want %q, %q", tt.path, prefix, problem, tt.prefix, tt.problem)
		}
	}
}
