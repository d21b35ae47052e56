// Package lines reads the line-oriented files an operator writes (the
// access rules, the routes): both must bound a line's length and report a
// too-long line by its number without stopping, so that every problem of
// the file is listed at once, and both read path prefixes alike. It exists
// so that the two parsers share that code instead of each keeping a copy.
package lines

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Read calls line for each line of r, numbered from 1, with its text up to
// and including the newline. A line longer than max bytes is not passed to
// line: tooLong gets its number, and reading goes on with the next line.
// Read returns only read errors of r.
func Read(r io.Reader, max int, line func(n int, text []byte), tooLong func(n int)) error {
	br := bufio.NewReaderSize(r, max+2)
	for n := 1; ; n++ {
		text, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			tooLong(n)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			text = nil
		}
		if err != nil && err != io.EOF {
			return err
		}
		if len(text) > 0 {
			line(n, text)
		}
		if err == io.EOF {
			return nil
		}
	}
}

// Fields checks one line (at most max bytes, valid UTF-8, no control
// characters but white space) and returns its white-space separated fields
// before any field starting with "#" (a comment). A blank or comment line
// has none. The error says what is wrong, without quoting the line.
func Fields(text []byte, max int) ([]string, error) {
	if len(text) > max {
		return nil, fmt.Errorf("line too long (more than %d bytes)", max)
	}
	if !utf8.Valid(text) {
		return nil, errors.New("not valid UTF-8")
	}
	if i := bytes.IndexFunc(text, func(r rune) bool { return unicode.IsControl(r) && !unicode.IsSpace(r) }); i >= 0 {
		return nil, fmt.Errorf("control character %U", []rune(string(text[i:]))[0])
	}
	fields := strings.Fields(string(text))
	for i, f := range fields {
		if strings.HasPrefix(f, "#") {
			return fields[:i], nil
		}
	}
	return fields, nil
}

// Prefix returns the prefix a path field such as /api/ matches by (the
// path without its final slash; / stays /), and, when the path has an empty,
// "." or ".." segment, which a request path never matches once cleaned,
// what is wrong with it, worded to follow `path "..."`. The path starts
// with "/".
func Prefix(path string) (prefix, problem string) {
	prefix = path
	if path != "/" {
		prefix = strings.TrimSuffix(path, "/")
	}
	for seg := range strings.SplitSeq(prefix[1:], "/") {
		switch seg {
		case "":
			if prefix != "/" {
				return prefix, "has an empty segment (//)"
			}
		case ".", "..":
			return prefix, "has a " + seg + " segment"
		}
	}
	return prefix, ""
}
