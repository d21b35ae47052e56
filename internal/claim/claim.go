// Package claim holds the one rule for token claim values that say who
// someone is (the user claim, and email, name and group names forwarded in
// headers): such a value is used exactly as the provider sent it, or not at
// all. A value a header, a log line or an upstream could read as another
// value (" admin", "admin\n", "a\u00a0") never passes.
package claim

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBytes bounds a value; longer ones are refused, never cut.
const MaxBytes = 256

// The reasons a value is refused. Each names the rule, never the value, so
// it may be logged.
var (
	ErrMissing   = errors.New("is missing")
	ErrNotString = errors.New("is not a JSON string")
	ErrEmpty     = errors.New("is empty")
	ErrTooLong   = errors.New("is longer than 256 bytes")
	ErrEncoding  = errors.New("is not valid UTF-8")
	ErrSpace     = errors.New("has leading or trailing white space or invisible characters")
	ErrControl   = errors.New("contains a control character or line break")
)

// Check reports why v, a claim as decoded from JSON (nil when absent), cannot
// name someone, or nil if it can.
func Check(v any) error {
	if v == nil {
		return ErrMissing
	}
	s, ok := v.(string)
	if !ok {
		return ErrNotString
	}
	return CheckString(s)
}

// CheckString is Check for a value known to be a string.
func CheckString(s string) error {
	switch {
	case s == "":
		return ErrEmpty
	case len(s) > MaxBytes:
		return ErrTooLong
	// encoding/json turns invalid UTF-8 into U+FFFD, so two different
	// byte strings from the provider would read as one value here.
	case !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError):
		return ErrEncoding
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if trimmable(first) || trimmable(last) {
		return ErrSpace
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
	}) {
		return ErrControl
	}
	return nil
}

// trimmable reports whether some reader of a header or an upstream's string
// trimming may drop r at either end of a value: white space (HTTP drops SP and
// HTAB, Python and Java more), format characters such as U+FEFF and U+200B
// (JavaScript's trim drops U+FEFF), and controls.
func trimmable(r rune) bool {
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || unicode.IsControl(r)
}
