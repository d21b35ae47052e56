package proxy

import (
	"strings"
	"testing"
)

// clSpellings are Content-Length (and Transfer-Encoding) spellings in a
// first request, followed by a pipelined request with both framing fields
// that hides smuggledGET. For the spellings Go's server takes, the check
// must follow the first request's body (not stop watching, which would
// let the second head through unchecked); for the ones Go refuses it may
// stop watching, because the server closes the connection itself.
var clSpellings = []struct {
	name     string
	goTakes  bool // Go's server serves the first request and reads on
	firstReq string
}{
	{"leading zeros", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0004\r\n\r\nabcd"},
	{"OWS around", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \t 4 \t\r\n\r\nabcd"},
	{"no space after colon", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:4\r\n\r\nabcd"},
	{"name in upper case", true, "POST /a HTTP/1.1\r\nHost: x\r\nCONTENT-LENGTH: 4\r\n\r\nabcd"},
	{"name in odd case", true, "POST /a HTTP/1.1\r\nHost: x\r\ncOnTeNt-lEnGtH: 4\r\n\r\nabcd"},
	{"duplicate equal", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"},
	{"duplicate equal after trim", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\ncontent-length:4 \t\r\n\r\nabcd"},
	{"duplicate zeros equal", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 04\r\nContent-Length: 04\r\n\r\nabcd"},
	{"folded value", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 4\r\n\r\nabcd"},
	{"folded twice", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n \r\n\t4\r\n\r\nabcd"},
	{"folded after value", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n \t\r\n\r\nabcd"},
	{"bare LF", true, "POST /a HTTP/1.1\nHost: x\nContent-Length: 4\n\nabcd"},
	{"zero", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
	{"zeros", true, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 00000000000000000000000000000\r\n\r\n"},
	{"TE chunked upper case", true, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"},
	{"TE folded", true, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\n\r\n"},
	{"TE chunk size with zeros", true, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0004\r\nabcd\r\n000\r\n\r\n"},
	{"HTTP/1.0 keep-alive CL", true, "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 04\r\n\r\nabcd"},
	// Go refuses these (the head, or the body and then the connection):
	// the check may stop watching after them.
	{"CL list", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd"},
	{"CL plus", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd"},
	{"CL inner space", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4 4\r\n\r\nabcd"},
	{"CL folded into two numbers", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n 4\r\n\r\nabcd"},
	{"CL duplicate other spelling", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 04\r\n\r\nabcd"},
	{"CL empty", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\nabcd"},
	{"CL hex", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd"},
	{"CL underscore", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0_4\r\n\r\nabcd"},
	{"CL past int63", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\nabcd"},
	{"CL with CR inside", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r4\r\n\r\nabcd"},
	{"CL name with CR", false, "POST /a HTTP/1.1\r\nHost: x\r\nContent-\rLength: x\r\n\r\nabcd"},
	{"TE gzip", false, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"},
	{"TE twice", false, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"},
	{"chunk size with CR inside", false, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r0\r\nabcd\r\n0\r\n\r\n"},
	{"chunk data ends in LF", false, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\n0\r\n\r\n"},
}

// ambiguousSecond is the pipelined head with both framing fields: Go reads
// its body as chunked (empty), then serves smuggledGET.
const ambiguousSecond = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggledGET

// TestFramingContentLengthSpellings sends every spelling, then the
// ambiguous head, in pieces of every small size against Go's reader, and
// whole to a real server with and without the check.
func TestFramingContentLengthSpellings(t *testing.T) {
	for _, tt := range clSpellings {
		t.Run(tt.name, func(t *testing.T) {
			stream := tt.firstReq + ambiguousSecond
			// Go reads on past the first request (to the second, which
			// it serves) only where it takes the first.
			if reads := len(goRequests(stream)) > 1; reads != tt.goTakes {
				t.Fatalf("Go's reader reads past the first request: %v, want %v", reads, tt.goTakes)
			}
			for size := 1; size <= len(stream); size++ {
				checkAgainstGo(t, stream, size)
			}
			if tt.goTakes {
				if bad := refusedAt(stream, len(stream)); bad < len(tt.firstReq) {
					t.Errorf("refused at %d, want the second head (from %d)", bad, len(tt.firstReq))
				}
			}
			if seen := serveStream(t, stream, true); contains(seen, "/smuggled") || contains(seen, "/b") {
				t.Errorf("behind the check the handler saw %q", seen)
			} else if tt.goTakes && !contains(seen, "/a") {
				t.Errorf("behind the check the handler saw %q, want /a only", seen)
			}
			if bare := serveStream(t, stream, false); tt.goTakes != contains(bare, "/smuggled") {
				t.Errorf("without the check the handler saw %q: the stream does not prove what it claims", bare)
			}
		})
	}
}

// TestFramingSpellingsAreDistinct keeps the table honest: no two cases the
// same stream.
func TestFramingSpellingsAreDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, tt := range clSpellings {
		if other, ok := seen[tt.firstReq]; ok {
			t.Errorf("%q and %q are the same stream", tt.name, other)
		}
		seen[tt.firstReq] = tt.name
		if !strings.HasPrefix(tt.firstReq, "POST /a ") {
			t.Errorf("%q: the first request must be POST /a", tt.name)
		}
	}
}
