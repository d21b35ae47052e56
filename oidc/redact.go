package oidc

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// redacted replaces what redact removes. Shorter than any value replaced
// literally (minKnown), so that repeated replacement ends.
const redacted = "***"

// minKnown is the shortest known secret redact replaces literally: shorter
// ones would garble the message and are no secret.
const minKnown = 8

// secretNames are the parameters whose values never reach a log.
var secretNames = []string{
	"client_secret", "code_verifier", "refresh_token", "access_token", "id_token", "logout_token",
	"client_assertion", "password", "code",
}

var (
	// jwtLike is anything shaped like a JWS or JWE: base64url segments joined
	// by dots, the first two long enough not to be a host name.
	jwtLike = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){1,3}`)
	// authScheme is a credential in an echoed Authorization header.
	authScheme = regexp.MustCompile(`(?i)\b(Basic|Bearer|DPoP)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]+`)
)

// redact is the one function every error from the provider (token
// exchange, refresh, discovery, JWKS) passes through before it is logged or
// wrapped: providers echo requests in their error answers, and ours carry
// the client secret, the code, the PKCE verifier and tokens. It removes
//
//   - the known secrets, as sent and in their URL, JSON and base64 forms;
//   - the value of every parameter named in secretNames, form-encoded
//     (name=value), in JSON ("name": "value", also when the JSON is itself
//     escaped inside a JSON string or percent-encoded) and in URLs;
//   - Basic, Bearer and DPoP credentials;
//   - anything that looks like a JWT.
//
// It errs on the side of removing too much.
func redact(s string, known ...string) string {
	for _, k := range known {
		if len(k) < minKnown {
			continue
		}
		b := []byte(k)
		q, _ := json.Marshal(k)
		for _, form := range []string{k, url.QueryEscape(k), url.PathEscape(k), string(q[1 : len(q)-1]),
			base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
			base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)} {
			s = replaceAllRepeated(s, form)
		}
	}
	s = truncateRedacted(s)
	s = authScheme.ReplaceAllString(s, "$1 "+redacted)
	s = redactNamed(s)
	return jwtLike.ReplaceAllString(s, redacted)
}

// maxRedacted bounds the text redact looks at and returns: a provider may
// answer with a megabyte, and a log line needs far less.
const maxRedacted = 4 << 10

// truncateRedacted cuts s to maxRedacted bytes, and then drops the
// token-like characters the cut may have left at its end, so that no part of
// a token or value survives without what marks it as one.
func truncateRedacted(s string) string {
	if len(s) <= maxRedacted {
		return s
	}
	s = strings.TrimRightFunc(s[:maxRedacted], func(r rune) bool {
		return r == utf8.RuneError || isWordByte(byte(r)) && r < utf8.RuneSelf || strings.ContainsRune(".-~%+/=\\", r)
	})
	return s + " …(truncated)"
}

// replaceAllRepeated replaces old until it no longer occurs, in case a
// replacement joins two halves into a new occurrence.
func replaceAllRepeated(s, old string) string {
	for strings.Contains(s, old) {
		s = strings.ReplaceAll(s, old, redacted)
	}
	return s
}

// redactNamed replaces the values of the parameters in secretNames. Names
// are looked for inside values too, and overlapping values merge, so a
// value that swallows the next parameter's name cannot shield its value.
func redactNamed(s string) string {
	// ASCII only: strings.ToLower would change the length of invalid UTF-8
	// and of some runes, and the indexes must match s.
	lb := []byte(s)
	for i, c := range lb {
		if c >= 'A' && c <= 'Z' {
			lb[i] = c + 'a' - 'A'
		}
	}
	lower := string(lb)
	type span struct{ from, to int }
	var spans []span
	for i := 0; i < len(s); i++ {
		name := nameAt(lower, i)
		if name == "" {
			continue
		}
		j := i + len(name)
		// An optional closing quote of the name, in any escaping.
		j = skipQuote(s, j)
		j = skipSpace(s, j)
		sep := false
		for _, t := range []string{"=", ":", "%3D", "%3d", "%3A", "%3a"} {
			if strings.HasPrefix(s[j:], t) {
				j, sep = j+len(t), true
				break
			}
		}
		if !sep {
			continue
		}
		j = skipSpace(s, j)
		if end := valueEnd(s, j); end > j {
			if n := len(spans); n > 0 && j <= spans[n-1].to {
				spans[n-1].to = max(spans[n-1].to, end)
			} else {
				spans = append(spans, span{j, end})
			}
		}
	}
	var out strings.Builder
	last := 0
	for _, sp := range spans {
		out.WriteString(s[last:sp.from])
		out.WriteString(redacted)
		last = sp.to
	}
	out.WriteString(s[last:])
	return out.String()
}

// nameAt returns the secret parameter name at lower[i:], if one starts
// there and is not the tail of a longer word ("error_code").
func nameAt(lower string, i int) string {
	// A percent escape ("%3Fcode", "%22code") ends a word too.
	escaped := i >= 3 && lower[i-3] == '%' && isHex(lower[i-2]) && isHex(lower[i-1])
	if i > 0 && isWordByte(lower[i-1]) && !escaped {
		return ""
	}
	for _, n := range secretNames {
		if strings.HasPrefix(lower[i:], n) && (i+len(n) == len(lower) || !isWordByte(lower[i+len(n)])) {
			return n
		}
	}
	return ""
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func skipSpace(s string, j int) int {
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	return j
}

// skipQuote skips a quote at s[j:]: ", ', %22, %27, or a quote escaped with
// backslashes.
func skipQuote(s string, j int) int {
	k := j
	for k < len(s) && s[k] == '\\' {
		k++
	}
	switch {
	case k < len(s) && (s[k] == '"' || s[k] == '\''):
		return k + 1
	case strings.HasPrefix(s[k:], "%22") || strings.HasPrefix(s[k:], "%27"):
		return k + 3
	}
	return j
}

// valueEnd returns where the value starting at s[j:] ends. A quoted value
// (", ', %22, or " escaped n times) runs to its closing quote at the same
// level of escaping; an unquoted one to the next delimiter.
func valueEnd(s string, j int) int {
	k := j
	for k < len(s) && s[k] == '\\' {
		k++
	}
	level := k - j // backslashes before the opening quote
	switch {
	case k < len(s) && s[k] == '"':
		// At escaping level n (level = 2^n - 1), a quote inside the value
		// is preceded by more backslashes than the closing one: the
		// closing quote's run r satisfies r mod 2(level+1) == level.
		for i := k + 1; i < len(s); i++ {
			if s[i] != '"' {
				continue
			}
			r := 0
			for r < i-k-1 && s[i-1-r] == '\\' {
				r++
			}
			if r%(2*(level+1)) == level {
				return i + 1
			}
		}
		return len(s)
	case k < len(s) && s[k] == '\'':
		if e := strings.IndexByte(s[k+1:], '\''); e >= 0 {
			return k + 1 + e + 1
		}
		return len(s)
	case strings.HasPrefix(s[k:], "%22") || strings.HasPrefix(s[k:], "%27"):
		// Percent-encoded JSON inside a parameter; or a value that starts
		// with an encoded quote. Past the closing quote, on to the end of
		// the parameter: the quote may have been part of the value.
		q := s[k : k+3]
		e := strings.Index(strings.ToUpper(s[k+3:]), q)
		if e < 0 {
			return len(s)
		}
		return unquotedEnd(s, k+3+e+3)
	}
	return unquotedEnd(s, j)
}

// unquotedEnd returns where an unquoted value (form, URL, a JSON number)
// starting at s[i:] ends: at white space, the next parameter or a quote;
// anything else may be part of the value (encoded separators of a URL nested
// in it included).
func unquotedEnd(s string, i int) int {
	for i < len(s) && !strings.ContainsRune(" \t\r\n&\"'", rune(s[i])) &&
		!(s[i] == '\\' && i+1 < len(s) && s[i+1] == '"') {
		i++
	}
	return i
}

// redactedError is an error from the provider whose text went through
// redact. It unwraps to the original, so errors.Is and errors.As still
// classify it; only its text changes.
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// fromProvider redacts err, an error that may carry a provider's answer,
// with the client secret and the other known secrets of the call.
func (h *Handler) fromProvider(err error, known ...string) error {
	if err == nil {
		return nil
	}
	return &redactedError{err: err, msg: redact(err.Error(), append(known, h.cfg.ClientSecret)...)}
}
