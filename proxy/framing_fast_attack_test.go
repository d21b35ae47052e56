package proxy

import (
	"slices"
	"strings"
	"testing"
)

// What a framing reader must do with a whole stream.
const (
	passed  = -1 // no refusal, still watching at the end
	stopped = -2 // no refusal, stopped watching (the server refuses or re-frames)
)

// fastAttacks are byte streams aimed at the head fast path (headBytes) and
// at the gap between Go's server and a front end that frames by
// Content-Length or Transfer-Encoding as nginx or HAProxy do. want is the
// offset of the refused head, passed or stopped. Every row is also sent to
// a real server behind RefuseAmbiguousFraming: guarded is what its handler
// must see; and goSmuggles whether a server without the check serves
// smuggledGET (the row is an attack on Go, not just a quirk it refuses).
var fastAttacks = []struct {
	name       string
	stream     string
	want       int
	guarded    []string
	goSmuggles bool
}{
	// Framing field spellings Go takes.
	{name: "TE odd case", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "TE value with OWS", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\t chunked \t\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "TE value CHUNKED, no OWS", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:CHUNKED\r\nContent-Length:4\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "TE obs-fold tab", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "CL obs-fold space, bare LF", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Length:\n \n 4\n\n0\r\n\r\n" + smuggledGET},
	{name: "mixed line ends", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\nHost: x\r\nContent-Length: 4\nTransfer-Encoding: chunked\r\n\n0\r\n\r\n" + smuggledGET},
	{name: "fields after a folded value", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n \r\n\tc:d\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "equal duplicate CLs and TE", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\ncontent-length:4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "names starting c and t before CL and TE", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nC: 1\r\nT: 2\r\nContent-Type: x\r\nTransfer-Encodinx: y\r\nContent-Lengt: 3\r\nTE: trailers\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "TE in HTTP/1.0", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggledGET},
	{name: "TE in HTTP/1.0, long target", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a?" + strings.Repeat("q", 4085) + " HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggledGET},
	{name: "CL and TE after a value across 4096", want: 0, guarded: []string{}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", 4096-len("POST /a HTTP/1.1\r\nHost: x\r\nCookie: ")-1) + "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},

	// Pipelined: the ambiguous head after a body, after empty lines. (Go
	// refuses trailers with a "\r" line, but serves /a first.)
	{name: "after a CL body", want: 52, guarded: []string{"/a"}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd" + ambiguousB},
	{name: "after a CL folded with a tab", want: 54, guarded: []string{"/a"}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\t4\r\n\r\nabcd" + ambiguousB},
	{name: "after a CL name folded into its value", want: 51, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length\r\n\t: 4\r\n\r\nabcd" + ambiguousB},
	{name: "after a chunked body with extensions and trailers", want: 94, guarded: []string{"/a"}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"b\\\";c\"\r\nab\r\n1 \r\nc\r\n0;z\r\nX: y\r\n\r\n" + ambiguousB},
	{name: "after a POST and the empty lines Go skips", want: 53, guarded: []string{"/a"}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r\n\r\n" + ambiguousB},
	{name: "after a POST, CR LF CR", want: 51, guarded: []string{"/a"}, goSmuggles: true,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r\n\r" + ambiguousB},
	{name: "after a GET with a long cookie", want: 4138, guarded: []string{"/a"}, goSmuggles: true,
		stream: "GET /a HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("k=v; ", 820) + "\r\n\r\n" + ambiguousB},
	{name: "after trailers ending in CR CR LF", want: 69, guarded: []string{"/a"}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n\r\r\n" + ambiguousB},

	// Line ends Go does not take: a CR alone, a CR before the CR LF.
	{name: "CR-only line end inside CL", want: stopped, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "CR-only line end inside TE", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\rContent-Length: 4\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "CR before TE name", want: 0, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "CR CR LF ends the head for the reader only", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "HTTP/1.0 with CR inside the version", want: 0, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.\r0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},

	// Names and values Go refuses: the reader may miss the field, since
	// the server answers 400 and closes.
	{name: "space before TE colon", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "tab before CL colon", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length\t: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "NUL in TE name", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "VT in CL value", want: 0, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\x0b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "NUL in TE value", want: 0, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "TE name folded", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-\r\n Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "TE name then folded colon", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding\r\n : chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "HTTP/1.0 with a trailing space", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.0 \r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "empty lines before the head, after a GET", want: 31, guarded: []string{"/a"}, goSmuggles: false,
		stream: "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n\n" + ambiguousB},

	{name: "CL comma list, then the ambiguous head", want: stopped, guarded: []string{}, goSmuggles: false,
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4,4\r\n\r\nabcd" + ambiguousB},
	{name: "version in lower case with TE", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a http/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "NUL before the version with TE", want: passed, guarded: []string{}, goSmuggles: false,
		stream: "POST /a\x00 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET},
	{name: "empty lines before the first head", want: 3, guarded: []string{}, goSmuggles: false,
		stream: "\r\n\n" + ambiguousB},

	// Legitimate streams: framing field names in values, bodies and
	// trailers, and look-alike names, all passed whole.
	{name: "legit: CL in a folded value", want: passed, guarded: []string{"/a", "/b"},
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + lastB},
	{name: "legit: CL and TE in trailers", want: passed, guarded: []string{"/a", "/b"},
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + lastB},
	{name: "legit: a head in a chunk across 4096", want: passed, guarded: []string{"/a", "/b"},
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" + strings.Repeat("\n", 4000) + ambiguousB[:96] + "\r\n0\r\n\r\n" + lastB},
	{name: "legit: look-alike names, long", want: passed, guarded: []string{"/a", "/b"},
		stream: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Lengths: 9\r\nTransfer-Encodings: x\r\nX-Transfer-Encoding: chunked\r\n" + strings.Repeat("Transfer-Encodin", 300) + ": y\r\nContent-Length: 2\r\n\r\nab" + lastB},
	{name: "legit: HTTP/1.0 in the target", want: passed, guarded: []string{"/a HTTP/1.0", "/b"},
		stream: "POST /a%20HTTP/1.0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + lastB},
}

// ambiguousB is a head with both framing fields hiding smuggledGET, for
// the pipelined rows.
const ambiguousB = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET

// lastB ends the legitimate streams.
const lastB = "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

// TestFramingFastAttacks feeds each stream to the fast path and to the
// byte-wise reader, whole, in every split into two reads (around line ends
// and 4096 for long streams) and in pieces of several sizes: both must
// give the row's outcome, and the same one.
func TestFramingFastAttacks(t *testing.T) {
	for _, tt := range fastAttacks {
		t.Run(tt.name, func(t *testing.T) {
			for _, sizes := range attackSplits(tt.stream) {
				fast := runFraming(tt.stream, sizes, false)
				slow := runFraming(tt.stream, sizes, true)
				if fast != slow {
					t.Fatalf("pieces %v: fast path gives %+v, byte-wise %+v", sizes, fast, slow)
				}
				if !fast.matches(tt.want) {
					t.Fatalf("pieces %v: got %+v, want %d", sizes, fast, tt.want)
				}
			}
		})
	}
}

// TestFramingFastAttacksRealServer sends the rows to a real server behind
// RefuseAmbiguousFraming, and without it.
func TestFramingFastAttacksRealServer(t *testing.T) {
	for _, tt := range fastAttacks {
		t.Run(tt.name, func(t *testing.T) {
			if seen := serveStream(t, tt.stream, true); !slices.Equal(seen, tt.guarded) {
				t.Errorf("behind the check the handler saw %q, want %q", seen, tt.guarded)
			}
			if strings.HasPrefix(tt.name, "legit: ") {
				return
			}
			if bare := serveStream(t, tt.stream, false); contains(bare, "/smuggled") != tt.goSmuggles {
				t.Errorf("without the check the handler saw %q, want /smuggled: %v", bare, tt.goSmuggles)
			}
		})
	}
}

// framingResult is what a reader did with a stream: the offset where it
// put badRequest (-1: nowhere), the start of the read that offset fell
// in, and whether it stopped watching.
type framingResult struct {
	at, pieceAt int
	off         bool
}

// matches reports whether r is the outcome want: a refusal of the head
// at want (reported at the start of the read when the head began in an
// earlier one), passed or stopped.
func (r framingResult) matches(want int) bool {
	switch want {
	case passed:
		return r.at < 0 && !r.off
	case stopped:
		return r.at < 0 && r.off
	}
	return r.at == max(want, r.pieceAt)
}

// runFraming feeds stream to a reader in pieces of sizes[0], sizes[1]...
// bytes (the last size repeats; 0: the rest of the stream).
func runFraming(stream string, sizes []int, byteWise bool) framingResult {
	f := framing{byteWise: byteWise}
	for i, j := 0, 0; i < len(stream); j++ {
		n := sizes[min(j, len(sizes)-1)]
		if n == 0 {
			n = len(stream)
		}
		end := min(i+n, len(stream))
		if bad := f.scan([]byte(stream[i:end])); bad >= 0 {
			return framingResult{at: i + bad, pieceAt: i, off: f.off}
		}
		i = end
	}
	return framingResult{at: -1, pieceAt: -1, off: f.off}
}

// attackSplits are the splits to try on stream: whole; into two reads at
// every offset (for long streams, near line ends and multiples of 4096
// only); in pieces of a few sizes.
func attackSplits(stream string) [][]int {
	splits := [][]int{{0}}
	for at := 1; at < len(stream); at++ {
		if len(stream) <= 600 || nearLineEndOr4096(stream, at) {
			splits = append(splits, []int{at, 0})
		}
	}
	for _, n := range []int{1, 2, 3, 5, 8, 13, 4096} {
		if n < len(stream) && (n > 2 || len(stream) <= 1<<13) {
			splits = append(splits, []int{n})
		}
	}
	return splits
}

func nearLineEndOr4096(stream string, at int) bool {
	if at%4096 <= 3 || at%4096 >= 4093 {
		return true
	}
	lo, hi := max(at-3, 0), min(at+3, len(stream))
	return strings.ContainsAny(stream[lo:hi], "\r\n")
}

// FuzzFramingFastAttacks mutates the hostile streams: split into two
// reads at at (0 or past the end: whole), the fast path and the byte-wise
// reader must agree; in pieces of at bytes, the refusal must match Go's
// own reader (checkAgainstGo).
func FuzzFramingFastAttacks(f *testing.F) {
	for _, tt := range fastAttacks {
		if len(tt.stream) < 1<<12 {
			f.Add(tt.stream, uint16(0))
			f.Add(tt.stream, uint16(len(tt.stream)/2))
		}
	}
	f.Fuzz(func(t *testing.T, stream string, at uint16) {
		n := int(at)
		if n == 0 || n > len(stream) {
			n = len(stream) + 1
		}
		if fast, slow := runFraming(stream, []int{n, 0}, false), runFraming(stream, []int{n, 0}, true); fast != slow {
			t.Fatalf("%q, split at %d: fast path gives %+v, byte-wise %+v", stream, n, fast, slow)
		}
		checkAgainstGo(t, stream, n)
	})
}
