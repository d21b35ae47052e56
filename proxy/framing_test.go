package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestFramingRefusesContentLengthWithTransferEncoding feeds byte streams
// to the framing reader in pieces of every size and checks where it stops
// the stream: at the start of the first head with both framing fields, and
// never inside a body, however much a body looks like such a head.
func TestFramingRefusesContentLengthWithTransferEncoding(t *testing.T) {
	const (
		get     = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
		clte    = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		fakeCT  = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
		smuggle = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	)
	bodyLike := "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(fakeCT)) + "\r\n\r\n" + fakeCT
	chunked := "POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + hex(len(fakeCT)) + "\r\n" + fakeCT + "\r\n0\r\n\r\n"
	tests := []struct {
		name   string
		stream string
		bad    int // offset of the refused head; -1: none
	}{
		{"CL and TE", clte, 0},
		{"TE and CL", "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 0},
		{"lower case", "POST /b HTTP/1.1\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n", 0},
		{"upper case", "POST /b HTTP/1.1\r\nCONTENT-LENGTH: 4\r\nTRANSFER-ENCODING: chunked\r\n\r\n", 0},
		{"bare LF", "POST /b HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n\n", 0},
		{"TE identity", "POST /b HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: identity\r\n\r\nabcd", 0},
		{"empty CL", "POST /b HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
		{"CL folded", "POST /b HTTP/1.1\r\nContent-Length:\r\n 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
		{"CL folded, tab, bare LF", "POST /b HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length:\n\t4\n\n0\n\n", 0},
		{"CL folded twice", "POST /b HTTP/1.1\r\nContent-Length:\r\n \r\n 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0},
		{"TE in HTTP/1.0", "POST /b HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
		{"after a GET", get + clte, len(get)},
		{"after a folded CL", "POST /e HTTP/1.1\r\nContent-Length:\r\n 2\r\n\r\nab" + clte, len("POST /e HTTP/1.1\r\nContent-Length:\r\n 2\r\n\r\nab")},
		{"after two GETs", get + get + clte, 2 * len(get)},
		{"after a body that looks like it", bodyLike + clte, len(bodyLike)},
		{"after a chunked body that looks like it", chunked + clte, len(chunked)},
		{"after a chunked body with trailers", "POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" + clte, len("POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")},
		{"after equal duplicate CLs", "POST /e HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab" + clte, len("POST /e HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab")},
		{"after a zero-length body", "POST /e HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + clte, len("POST /e HTTP/1.1\r\nContent-Length: 0\r\n\r\n")},
		{"a body that looks like it", bodyLike + smuggle, -1},
		{"a chunked body that looks like it", chunked + smuggle, -1},
		{"a folded CL body that looks like it", "POST /c HTTP/1.1\r\nContent-Length:\r\n " + itoa(len(fakeCT)) + "\r\n\r\n" + fakeCT + smuggle, -1},
		{"TE folded", "POST /f HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + get, -1},
		{"CL alone, HTTP/1.0", "POST /f HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc" + get, -1},
		{"TE alone, HTTP/1.0 in the path", "POST /HTTP/1.0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, -1},
		{"CL alone", "POST /f HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + get, -1},
		{"TE alone", "POST /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, -1},
		{"look-alike names", "POST /f HTTP/1.1\r\nContent-Length2: 3\r\nX-Content-Length: 3\r\nContent-Lengt: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, -1},
		{"field name in a value", "POST /f HTTP/1.1\r\nX-Note: Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, -1},
		{"field name in the request line", "GET /Content-Length:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, -1},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 2, 3, 7, 16, len(tt.stream)} {
			var f framing
			delivered, refused := 0, false
			for i := 0; i < len(tt.stream) && !refused; i += size {
				piece := tt.stream[i:min(i+size, len(tt.stream))]
				if bad := f.scan([]byte(piece)); bad >= 0 {
					delivered, refused = delivered+bad, true
				} else {
					delivered += len(piece)
				}
			}
			switch {
			case tt.bad < 0 && refused:
				t.Errorf("%s, pieces of %d: refused at %d, want no refusal", tt.name, size, delivered)
			case tt.bad >= 0 && !refused:
				t.Errorf("%s, pieces of %d: not refused, want refusal at %d", tt.name, size, tt.bad)
			case refused && (delivered < tt.bad || delivered > headEnd(tt.stream, tt.bad)):
				// Everything before the bad head is delivered, and none of
				// what follows it.
				t.Errorf("%s, pieces of %d: delivered %d bytes, want %d to %d", tt.name, size, delivered, tt.bad, headEnd(tt.stream, tt.bad))
			}
		}
	}
}

// headEnd is the offset of the end of the head starting at start.
func headEnd(stream string, start int) int {
	rest := strings.ReplaceAll(stream[start:], "\r", "")
	end := strings.Index(rest, "\n\n") + 2
	return start + end + strings.Count(stream[start:], "\r") // an upper bound is enough
}

func itoa(n int) string { return fmtInt(n, 10) }
func hex(n int) string  { return fmtInt(n, 16) }

func fmtInt(n, base int) string {
	const digits = "0123456789abcdef"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= base {
		b = append([]byte{digits[n%base]}, b...)
	}
	return string(b)
}

// FuzzFramingMatchesServer checks the framing reader against Go's own
// request parser: whenever Go reads a request (head and body) and then
// finds a head with both framing fields, the framing reader refuses that
// head, or the first one. A reader that lost track of the first request
// (a field form Go accepts and it does not follow) would let the second
// through.
func FuzzFramingMatchesServer(f *testing.F) {
	for _, first := range []string{
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 2\r\n\r\nab",
		"POST /a HTTP/1.1\nHost: x\nContent-Length:\n\t\n 2\n\nab",
		"POST /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\nContent-Length: 02\r\n\r\nab",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n2;x=\"y\"\r\nab\r\n0\r\nX: y\r\n\r\n",
		"\r\nPOST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n",
	} {
		f.Add(first)
	}
	const clte = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	f.Fuzz(func(t *testing.T, first string) {
		br := bufio.NewReader(strings.NewReader(first + clte))
		req, err := http.ReadRequest(br)
		if err != nil || req.ProtoMajor != 1 { // the server refuses other versions
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		if rest, _ := io.ReadAll(br); string(rest) != clte {
			return // Go framed the stream otherwise: no second head there
		}
		var fr framing
		if bad := fr.scan([]byte(first + clte)); bad != 0 && bad != len(first) {
			t.Errorf("%q then a head with both fields: refused at %d (off %v), want %d", first, bad, fr.off, len(first))
		}
	})
}

// FuzzFramingSkipMatchesByteWise checks the reader's fast paths (skipped
// field values and names, the request line taken from its end, line ends
// without a call per byte) against following every byte: the same stream
// in the same pieces is refused at the same offset, or not at all, and
// leaves the reader watching (or not) alike. sizes gives the pieces'
// lengths in turn (0: the rest of the stream), so any split into reads.
func FuzzFramingSkipMatchesByteWise(f *testing.F) {
	for _, s := range skipSeeds() {
		f.Add(s, []byte{1})
		f.Add(s, []byte{5})
		f.Add(s, []byte{0})
		f.Add(s, []byte{3, 1, 7, 2})
	}
	// The request line, CRs in it and the head before and after it, split
	// at every position into two reads.
	for _, s := range []string{
		"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\r\n\nPOST /a?b=c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\rPOST /a HTTP/1.\r0\r\r\n Transfer-Encoding: chunked\r\n\r\n",
	} {
		for i := 1; i <= len(s); i++ {
			f.Add(s, []byte{byte(i), 0})
		}
	}
	f.Fuzz(func(t *testing.T, stream string, sizes []byte) {
		checkSkipMatchesByteWise(t, stream, func(j int) int {
			if len(sizes) == 0 || sizes[j%len(sizes)] == 0 {
				return len(stream)
			}
			return int(sizes[j%len(sizes)])
		})
	})
}

// TestFramingSkipMatchesByteWiseEverySplit checks FuzzFramingSkipMatchesByteWise's
// seeds in every split into two reads and in pieces of every size, so a
// plain test run covers each fast path cut short at every byte.
func TestFramingSkipMatchesByteWiseEverySplit(t *testing.T) {
	for _, s := range skipSeeds() {
		for at := 1; at < len(s); at++ {
			checkSkipMatchesByteWise(t, s, func(j int) int {
				if j == 0 {
					return at
				}
				return len(s)
			})
		}
		for size := 1; size < len(s); size++ {
			checkSkipMatchesByteWise(t, s, func(int) int { return size })
		}
	}
}

// checkSkipMatchesByteWise feeds stream, in pieces of size(0), size(1)...
// bytes, to a skipping reader and a byte-wise one, and fails where they
// differ.
func checkSkipMatchesByteWise(t *testing.T, stream string, size func(int) int) {
	t.Helper()
	fast, slow := framing{}, framing{byteWise: true}
	for i, j := 0, 0; i < len(stream); i, j = i+size(j), j+1 {
		piece := []byte(stream[i:min(i+size(j), len(stream))])
		a, b := fast.scan(piece), slow.scan(piece)
		if a != b || fast.off != slow.off {
			t.Fatalf("%q, piece %d at %d (%d bytes): skipping gives %d (off %v), byte-wise %d (off %v)", stream, j, i, len(piece), a, fast.off, b, slow.off)
		}
		if a >= 0 {
			return
		}
	}
}

// skipSeeds are streams for the fast paths' edge cases.
func skipSeeds() []string {
	const clte = "POST /z HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	return []string{
		"GET /a HTTP/1.1\r\nHost: x\r\nCookie: a=b; c=d\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a HTTP/1.1\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nabPOST /b HTTP/1.1\r\nX: Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a HTTP/1.1\nX: \r\r\n\tContent-Length: 1\nTransfer-Encoding:\n chunked\n\n0\n\n",
		"POST /a HTTP/1.0\r\nX:" + strings.Repeat("v", 300) + "\r\nTransfer-Encoding: chunked\r\n\r\n",
		// Line ends: LF only, CR only (not a line end), bare CRs.
		"POST /a HTTP/1.0\nHost: x\nTransfer-Encoding: chunked\n\n",
		"POST /a HTTP/1.0\rTransfer-Encoding: chunked\r\r\r\n\r\n" + clte,
		"POST /a HTTP/1.1\r\nHo\rst: x\r\nX\r: y\r\n\rContent-Length: 1\r\n\r\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\r\n" + clte,
		// Empty lines before the request line, and a head of nothing else.
		"\r\n\n\r\r\nPOST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\n\r\n" + clte,
		"\r\r\r\n\r\n\r\n\r",
		// HTTP/1.0 with CRs inside the version; request lines shorter than it.
		"POST /a HTTP/1.\r0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a H\rT\rT\rP\r/\r1\r.\r0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\rHTTP/1.0\nTransfer-Encoding: chunked\n\n",
		"P 1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + clte,
		"\r\nX\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + clte,
		"POST /HTTP/1.0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + clte,
		// Folded lines right after the request line and after a field.
		"POST /a HTTP/1.1\r\n Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + clte,
		"POST /a HTTP/1.0\r\n\tX: y\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a HTTP/1.1\r\nContent-Length:\r\n \r\n\t4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
		"POST /a HTTP/1.1\r\nX: a\r\n b\r\n\tc\r\nContent-Length: 2\r\n\r\nab" + clte,
		"POST /a HTTP/1.1\r\nContent-Length:\r\n\t2\r\nX: y\r\n\r\nab" + clte,
		"POST /a HTTP/1.1\r\nX\r\n : y\r\nContent-Length\r\n: 2\r\n\r\nab" + clte,
		// Names: framing fields' prefixes, a colon first, no colon.
		"POST /a HTTP/1.1\r\nContent-Type: x\r\nTransfer-Encodin: x\r\n: y\r\nC\r\nT:\r\ncontent-length:3\r\n\r\nabc" + clte,
		"POST /a HTTP/1.1\r\nContent-Length: 1 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /a HTTP/1.1\r\nXy\r\nContent-Length: 2\r\nC\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n" + clte,
		// Very long request lines.
		"GET /" + strings.Repeat("a", 1000) + " HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /" + strings.Repeat("\r", 700) + "?q=" + strings.Repeat("b\r", 300) + " HTTP/1.1\r\nContent-Length: 1\r\n\r\nx" + clte,
	}
}

// BenchmarkFramingHead is the framing reader's cost for a browser's
// request head with a session cookie, the per-request work of the check.
func BenchmarkFramingHead(b *testing.B) {
	head := []byte("GET /app/items?page=2 HTTP/1.1\r\nHost: app.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\nCookie: _authproxy_session=" + strings.Repeat("A", 1800) + "\r\n\r\n")
	b.SetBytes(int64(len(head)))
	var f framing
	for b.Loop() {
		if f.scan(head) >= 0 || f.off {
			b.Fatal("refused or stopped watching")
		}
	}
}
