// Package ascii checks names byte by byte, without allocating. It is the
// one such check for cookie names and login states (cookie), request ids
// (proxy) and configured header names (cmd/authproxy); cookie imports no
// other authproxy package, so the check cannot live in proxy or cmd.
package ascii

import "strings"

// IsName reports whether s is not empty and each of its bytes is an ASCII
// letter or digit, '-', '_', or one of the bytes in extra.
func IsName(s, extra string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' ||
			extra != "" && strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}
