package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// condKind is the kind of a condition.
type condKind int

const (
	condAny         condKind = iota + 1 // any
	condEmail                           // email:ADDR
	condEmailDomain                     // email-domain:DOMAIN or *.DOMAIN
	condClaim                           // claim:NAME=VALUE and group:NAME
)

// condition is one condition of an allow rule. It is comparable; equal
// conditions mean the same.
type condition struct {
	kind condKind
	// name is the claim a condClaim reads ("groups" for group:NAME).
	name string
	// value is the address or domain (ASCII lowercased), or the claim value.
	value string
}

// String returns the condition as written in a normalized rules file.
func (c condition) String() string {
	switch c.kind {
	case condAny:
		return "any"
	case condEmail:
		return "email:" + escape(c.value, false)
	case condEmailDomain:
		return "email-domain:" + escape(c.value, false)
	case condClaim:
		if c.name == "groups" {
			return "group:" + escape(c.value, false)
		}
		return "claim:" + escape(c.name, true) + "=" + escape(c.value, false)
	}
	return fmt.Sprintf("condition(%d)", int(c.kind))
}

// parseCondition parses one condition field.
func parseCondition(f string) (condition, error) {
	if f == "any" {
		return condition{kind: condAny}, nil
	}
	kw, arg, _ := strings.Cut(f, ":")
	switch kw {
	case "email":
		v, err := unescape(arg)
		if err != nil {
			return condition{}, fmt.Errorf("%s: %w", f, err)
		}
		at := strings.LastIndexByte(v, '@')
		if at <= 0 {
			return condition{}, fmt.Errorf("%s: want email:NAME@DOMAIN", f)
		}
		if strings.Contains(v[:at], "*") {
			return condition{}, fmt.Errorf("%s: no wildcards in addresses; for a whole domain write email-domain:%s", f, v[at+1:])
		}
		if err := checkDomain(v[at+1:], false); err != nil {
			return condition{}, fmt.Errorf("%s: %w", f, err)
		}
		return condition{kind: condEmail, value: asciiLower(v)}, nil
	case "email-domain":
		v, err := unescape(arg)
		if err != nil {
			return condition{}, fmt.Errorf("%s: %w", f, err)
		}
		if strings.HasPrefix(v, "@") {
			return condition{}, fmt.Errorf("%s: write the domain without @: email-domain:%s", f, arg[1:])
		}
		if err := checkDomain(v, true); err != nil {
			return condition{}, fmt.Errorf("%s: %w", f, err)
		}
		return condition{kind: condEmailDomain, value: asciiLower(v)}, nil
	case "group":
		v, err := unescape(arg)
		if err != nil {
			return condition{}, fmt.Errorf("%s: %w", f, err)
		}
		if v == "" {
			return condition{}, fmt.Errorf("%s: want group:NAME", f)
		}
		return condition{kind: condClaim, name: "groups", value: v}, nil
	case "claim":
		// The name ends at the first =: values (LDAP DNs, base64) hold = far
		// more often than claim names do, and a name can still write %3D.
		rawName, rawValue, ok := strings.Cut(arg, "=")
		if !ok || rawName == "" || rawValue == "" {
			return condition{}, fmt.Errorf("%s: want claim:NAME=VALUE", f)
		}
		name, err := unescape(rawName)
		if err != nil {
			return condition{}, fmt.Errorf("%s: claim name: %w", f, err)
		}
		value, err := unescape(rawValue)
		if err != nil {
			return condition{}, fmt.Errorf("%s: claim value: %w", f, err)
		}
		if name == "email" {
			return condition{}, fmt.Errorf("%s: write email:%s, which also checks email_verified", f, rawValue)
		}
		return condition{kind: condClaim, name: name, value: value}, nil
	}
	if strings.HasPrefix(f, "unverified") {
		return condition{}, fmt.Errorf("unknown flag %q (want %s)", f, flagUnverifiedEmailOK)
	}
	return condition{}, fmt.Errorf("unknown condition %q (want any, email:ADDR, email-domain:DOMAIN, group:NAME or claim:NAME=VALUE)", f)
}

// checkDomain checks an email domain, with a leading "*." if wildcard.
func checkDomain(d string, wildcard bool) error {
	if wildcard {
		d = strings.TrimPrefix(d, "*.")
	}
	if d == "" {
		return errors.New("empty domain")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return fmt.Errorf("domain %q has an empty label", d)
		}
		if i := strings.IndexFunc(label, func(r rune) bool {
			return r == '@' || r == '*' || unicode.IsSpace(r) || unicode.IsControl(r)
		}); i >= 0 {
			r, _ := utf8.DecodeRuneInString(label[i:])
			if r == '*' {
				return fmt.Errorf("domain %q: * only as a leading *. in email-domain", d)
			}
			return fmt.Errorf("domain %q must not contain %q", d, r)
		}
	}
	return nil
}

// match reports whether the condition holds for claims; unverified is set
// when an email condition would hold but the address is not verified.
func (c condition) match(claims map[string]any, unverifiedOK bool) (ok, unverified bool) {
	switch c.kind {
	case condAny:
		return true, false
	case condEmail, condEmailDomain:
		email, _ := claims["email"].(string)
		at := strings.LastIndexByte(email, '@')
		if at <= 0 {
			return false, false
		}
		if c.kind == condEmail {
			ok = asciiLower(email) == c.value
		} else {
			domain := asciiLower(email[at+1:])
			if base, wild := strings.CutPrefix(c.value, "*."); wild {
				ok = len(domain) > len(base)+1 && strings.HasSuffix(domain, "."+base)
			} else {
				ok = domain == c.value
			}
		}
		if ok && !unverifiedOK && !verified(claims["email_verified"]) {
			return false, true
		}
		return ok, false
	case condClaim:
		v, found := claims[c.name]
		if !found {
			return false, false
		}
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				if scalarIs(e, c.value) {
					return true, false
				}
			}
			return false, false
		case []string:
			for _, e := range v {
				if e == c.value {
					return true, false
				}
			}
			return false, false
		}
		return scalarIs(v, c.value), false
	}
	return false, false
}

// verified reports whether an email_verified claim says yes. Some providers
// (Cognito) send the string "true".
func verified(v any) bool {
	return v == true || v == "true"
}

// scalarIs reports whether a claim value is a string, boolean or number
// written as want.
func scalarIs(v any, want string) bool {
	switch v := v.(type) {
	case string:
		return v == want
	case bool:
		return want == strconv.FormatBool(v)
	case float64:
		f, err := strconv.ParseFloat(want, 64)
		return err == nil && f == v
	case float32:
		f, err := strconv.ParseFloat(want, 32)
		return err == nil && float32(f) == v
	case json.Number:
		if i, err := v.Int64(); err == nil {
			if w, err := strconv.ParseInt(want, 10, 64); err == nil {
				return w == i
			}
		}
		f, err := v.Float64()
		return err == nil && scalarIs(f, want)
	case int:
		return scalarIs(int64(v), want)
	case int32:
		return scalarIs(int64(v), want)
	case int64:
		w, err := strconv.ParseInt(want, 10, 64)
		return err == nil && w == v
	case uint64:
		w, err := strconv.ParseUint(want, 10, 64)
		return err == nil && w == v
	}
	return false
}

// asciiLower lowercases ASCII letters only: Unicode case folding would make
// the Kelvin sign K (U+212A) equal k.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// unescape decodes the %XX escapes of a condition value.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", fmt.Errorf("bad %%-escape in %q (write %%25 for a %%)", s)
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	if !utf8.ValidString(b.String()) {
		return "", fmt.Errorf("%q decodes to invalid UTF-8", s)
	}
	return b.String(), nil
}

// escape writes s so that a rules file reads it back: %, spaces and control
// characters (and = in claim names) become %XX.
func escape(s string, eq bool) string {
	var b strings.Builder
	for _, r := range s {
		if r == '%' || eq && r == '=' || unicode.IsSpace(r) || unicode.IsControl(r) {
			var buf [utf8.UTFMax]byte
			for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
				fmt.Fprintf(&b, "%%%02X", c)
			}
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
