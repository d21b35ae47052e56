package proxy

import (
	"bytes"
	"crypto/tls"
	"math"
	"net"
)

// RefuseAmbiguousFraming wraps a listener so that a request carrying both
// Content-Length and Transfer-Encoding is answered with 400 by the server
// and the connection closed, before any handler sees it. Go's server
// would accept it, drop Content-Length and read the body as chunked (RFC
// 9112 allows that for an intermediary), but a front end that believed
// Content-Length has framed the stream differently: the message is a
// request-smuggling attempt, and RFC 9112 advises handling it as an error.
// So is an HTTP/1.0 request with Transfer-Encoding (see endHead).
//
// The connection's bytes are followed by a small HTTP/1.1 framing reader
// (request heads, Content-Length and chunked bodies), which only ever
// refuses such a head; on anything it cannot follow (a head the server
// refuses, a broken chunk) it stops watching and leaves the bytes to the
// server, whose own parser refuses or re-frames them. It stops too when the
// proxy hijacks the connection to tunnel a protocol switch (a WebSocket):
// the handler's response writer tells it.
//
// A *tls.Conn that negotiated HTTP/2 (ALPN h2) is passed through as it is:
// HTTP/2 frames messages itself, and the server speaks it only on a
// *tls.Conn it holds. So a TLS listener below must hand out connections
// whose handshake is done. Any other connection is wrapped, and the
// wrapper's NetConn returns it (for the server's ConnContext to find a TLS
// connection's state).
func RefuseAmbiguousFraming(ln net.Listener) net.Listener { return framingListener{ln} }

type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
		return c, nil
	}
	return &framingConn{Conn: c}, nil
}

// badRequest replaces a refused head: a NUL makes the server's own parser
// refuse the request (400, connection closed) wherever it lands, in the
// request line, a field name or a field value. Failing the read instead
// would end the connection without an answer, and cancel the request
// before it (the server reads ahead while a handler runs).
const badRequest = "\x00\r\n\r\n"

// framingConn follows the framing of the requests read from it. The
// server never reads a connection from two goroutines at once.
type framingConn struct {
	net.Conn
	refused []byte // what is left of badRequest to hand over
	framing
}

// tunnel stops the check for good: the connection was hijacked (see
// statusWriter.Hijack), and what it carries now is not HTTP/1.1. The
// server no longer reads it, so no Read runs meanwhile.
func (c *framingConn) tunnel() { c.off = true }

// NetConn returns the connection the check reads.
func (c *framingConn) NetConn() net.Conn { return c.Conn }

func (c *framingConn) Read(p []byte) (int, error) {
	if len(c.refused) > 0 {
		n := copy(p, c.refused)
		c.refused = c.refused[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if bad := c.scan(p[:n]); bad >= 0 {
		// Hand over what precedes the bad head (earlier, pipelined
		// requests), then badRequest in its place. What follows is read
		// on unwatched (the server stops at badRequest); an end of
		// input here would cancel the request before it.
		m := copy(p[bad:], badRequest)
		c.refused = []byte(badRequest[m:])
		c.off = true
		return bad + m, nil
	}
	return n, err
}

// framing is the state of the framing reader.
type framing struct {
	state     int
	off       bool   // stopped watching
	headLen   int    // bytes of the current head so far (0: none yet)
	lineLen   int    // bytes of the current line so far ("\r" not counted)
	lineNo    int    // lines of the current head so far
	name      int    // header names the current line may still be (nameCL, nameTE)
	colon     bool   // the current line's name has ended
	folded    bool   // a field line ended; the next may continue it (obs-fold)
	isCL      bool   // the current line is a Content-Length field
	val       int64  // the current Content-Length line's value, -1 if unparsable
	digits    bool   // digits seen in val, or in the chunk size
	hasCL     bool   // the head has a Content-Length field
	badCL     bool   // the head has a Content-Length field the server refuses
	hasTE     bool   // the head has a Transfer-Encoding field
	reqTail   uint64 // the last 8 bytes of the request line (its version)
	cl        int64  // the head's Content-Length
	remaining int64  // body or chunk bytes left to skip
	byteWise  bool   // never skip field values (the tests' reference)
}

const (
	stHead        = iota // in a request head
	stBody               // skipping Content-Length bytes
	stChunkSize          // in a chunk-size line
	stChunkExt           // in a chunk extension (after ';')
	stChunkData          // skipping a chunk's bytes
	stChunkDataLF        // after a chunk's data: its line end
	stTrailer            // in the trailer section after the last chunk
)

const (
	nameCL = 1 << iota
	nameTE
)

const (
	contentLength    = "content-length"
	transferEncoding = "transfer-encoding"
)

// scan follows b and returns the offset in b where a head with both
// Content-Length and Transfer-Encoding begins (0 if it began in an earlier
// buffer), or -1.
func (f *framing) scan(b []byte) int {
	if f.off {
		return -1
	}
	headAt := -1 // where the current head began in b; -1: before b
	if f.state == stHead && f.headLen == 0 {
		headAt = 0
	}
	for i := 0; i < len(b); i++ {
		switch f.state {
		case stBody, stChunkData:
			skip := min(int64(len(b)-i), f.remaining)
			f.remaining -= skip
			i += int(skip) - 1
			if f.remaining == 0 {
				if f.state == stBody {
					f.reset(stHead, 0)
				} else {
					f.state = stChunkDataLF
				}
			}
		case stChunkDataLF:
			switch b[i] {
			case '\r':
			case '\n':
				f.reset(stChunkSize, 0)
			default:
				f.off = true
				return -1
			}
		case stChunkSize, stChunkExt:
			f.chunkSizeByte(b[i])
		case stTrailer:
			switch b[i] {
			case '\r':
			case '\n':
				if f.lineLen == 0 {
					f.reset(stHead, 0)
				}
				f.lineLen = 0
			default:
				f.lineLen++
			}
		case stHead:
			if !f.byteWise {
				if k := f.headBytes(b[i:]); k > 0 {
					i += k - 1
					continue
				}
			}
			// No bound on the head's length: the server's bound is
			// MaxHeaderBytes plus slack (4 KiB and what it had buffered),
			// and a reader that stopped watching below it let a head with
			// both fields through.
			f.headLen++
			if f.headByte(b[i]) {
				return max(headAt, 0)
			}
		}
		if f.off {
			return -1
		}
		if f.state == stHead && f.headLen == 0 {
			headAt = i + 1
		}
	}
	return -1
}

// headBytes follows b within a head, up to the end of b or to the "\n" of
// an empty line (left to scan: it ends the head, or restarts it before the
// request line), and returns how many bytes it took. It leaves the reader
// as headByte would byte by byte, but calls it only for the bytes of names
// that may be framing fields and of Content-Length values. One difference:
// lineLen counts "\r" after a colon and in a name that is neither framing
// field, where only lineLen > 0 matters.
func (f *framing) headBytes(b []byte) int {
	i := 0
loop:
	for i < len(b) {
		c := b[i]
		switch {
		case f.folded:
			f.folded = false
			if c == ' ' || c == '\t' { // obs-fold, as in headByte
				f.lineLen++
				i++
			} else {
				f.endField()
			}
		case c == '\r':
			i++
		case c == '\n':
			if f.lineLen == 0 {
				break loop // for scan: the head ends or restarts here
			}
			if f.lineNo == 0 {
				f.endField()
			} else {
				f.folded = true
			}
			i++
		case f.lineNo == 0:
			// The request line: only its last 8 bytes other than "\r"
			// (the version) matter, so take them from its end, however
			// long the target.
			k := bytes.IndexByte(b[i:], '\n')
			if k < 0 {
				k = len(b) - i
			}
			line := b[i : i+k]
			i += k
			f.lineLen += len(line) - bytes.Count(line, []byte{'\r'})
			tail, shift := uint64(0), 0
			for j := len(line) - 1; j >= 0 && shift < 64; j-- {
				if line[j] != '\r' {
					tail |= uint64(line[j]) << shift
					shift += 8
				}
			}
			f.reqTail = f.reqTail<<shift | tail // <<64 is 0
		case f.colon && !f.isCL:
			// The value of a field other than Content-Length (a
			// Cookie, most of a head): only its line end matters, so
			// go there at memchr speed.
			k := bytes.IndexByte(b[i:], '\n')
			if k < 0 {
				k = len(b) - i
			}
			f.lineLen += k
			i += k
		case !f.colon && f.name == 0 && c == ':':
			// The end of a name that is neither framing field.
			f.colon, f.isCL, f.val, f.digits = true, false, 0, false
			f.lineLen++
			i++
		case !f.colon && f.name == 0 && (f.lineLen > 0 || c|0x20 != contentLength[0] && c|0x20 != transferEncoding[0]):
			// A field name that is neither framing field (any more):
			// only where it ends matters.
			j := i
			for j < len(b) && b[j] != ':' && b[j] != '\n' {
				j++
			}
			f.lineLen += j - i
			i = j
		default:
			// A Content-Length value, or a name that may still be a
			// framing field. Never the end of a head: c is not "\n".
			f.headByte(c)
			i++
		}
	}
	f.headLen += i
	return i
}

// reset starts the reader on the next part of the stream: a head, a body
// of remaining bytes, a chunk-size line or a trailer section.
func (f *framing) reset(state int, remaining int64) {
	*f = framing{state: state, remaining: remaining, byteWise: f.byteWise}
}

// chunkSizeByte takes one byte of a chunk-size line.
func (f *framing) chunkSizeByte(c byte) {
	switch {
	case c == '\r':
	case c == '\n':
		switch {
		case !f.digits:
			f.off = true
		case f.remaining == 0:
			f.reset(stTrailer, 0)
		default:
			f.state = stChunkData
		}
	case f.state == stChunkExt:
	case c == ';' || c == ' ' || c == '\t':
		f.state = stChunkExt
	default:
		d, ok := hexDigit(c)
		if !ok || f.remaining >= 1<<59 {
			f.off = true // the server refuses it too
			return
		}
		f.remaining, f.digits = f.remaining<<4|int64(d), true
	}
}

// headByte takes one byte of a head and reports whether the head, now
// complete, carries both framing fields.
func (f *framing) headByte(c byte) bool {
	if f.folded {
		f.folded = false
		if c == ' ' || c == '\t' {
			// Go's server joins a line starting with white space to the
			// field before it (obs-fold): "Content-Length:" then " 4"
			// is Content-Length 4. Follow the field on.
			f.lineLen++
			return false
		}
		f.endField()
	}
	switch {
	case c == '\r':
		return false
	case c == '\n':
		return f.endLine()
	case f.lineNo == 0: // the request line
		f.reqTail = f.reqTail<<8 | uint64(c)
	case !f.colon && c == ':':
		f.colon = true
		f.isCL = f.name&nameCL != 0 && f.lineLen == len(contentLength)
		f.val, f.digits = 0, false
		f.hasTE = f.hasTE || f.name&nameTE != 0 && f.lineLen == len(transferEncoding)
	case !f.colon:
		if f.lineLen == 0 {
			f.name = nameCL | nameTE
		}
		l := c | 0x20 // ASCII lower case; other bytes never match
		if f.lineLen >= len(contentLength) || contentLength[f.lineLen] != l {
			f.name &^= nameCL
		}
		if f.lineLen >= len(transferEncoding) || transferEncoding[f.lineLen] != l {
			f.name &^= nameTE
		}
	case f.isCL && f.val >= 0:
		switch {
		case c >= '0' && c <= '9' && f.val <= (math.MaxInt64-int64(c-'0'))/10:
			// Up to what the server takes (strconv.ParseUint(v, 10, 63)).
			f.val, f.digits = f.val*10+int64(c-'0'), true
		case c == ' ' || c == '\t':
		default:
			f.val = -1
		}
	}
	f.lineLen++
	return false
}

// endLine ends a line of a head, and the head at an empty line. A field
// line ends at the first byte of the next line that does not continue it.
func (f *framing) endLine() bool {
	switch {
	case f.lineLen == 0 && f.lineNo == 0: // empty lines before the request line
		f.headLen = 0
		return false
	case f.lineLen == 0:
		return f.endHead()
	case f.lineNo > 0:
		f.folded = true
		return false
	}
	f.endField()
	return false
}

// endField ends the request line or a field line, folded lines included.
func (f *framing) endField() {
	switch {
	case f.isCL:
		switch {
		case f.val < 0 || !f.digits || f.hasCL && f.val != f.cl:
			// Unparsable or conflicting: the server refuses the head,
			// unless Transfer-Encoding follows, so endHead decides.
			f.badCL = true
		default:
			f.hasCL, f.cl = true, f.val
		}
	}
	f.lineNo++
	f.lineLen, f.colon, f.isCL, f.name = 0, false, false, 0
}

// http10 is the end of an HTTP/1.0 request line, as reqTail holds it.
const http10 = 'H'<<56 | 'T'<<48 | 'T'<<40 | 'P'<<32 | '/'<<24 | '1'<<16 | '.'<<8 | '0'

// endHead decides what follows the head. An HTTP/1.0 request with
// Transfer-Encoding is refused too: Go's server ignores the field and
// reads no body (Content-Length absent), where a front end may read a
// chunked one; RFC 9112 6.1 calls its framing faulty.
func (f *framing) endHead() bool {
	switch {
	case f.hasTE && (f.hasCL || f.badCL || f.reqTail == http10):
		return true
	case f.badCL:
		f.off = true // the server refuses the head
	case f.hasTE:
		f.reset(stChunkSize, 0)
	case f.cl > 0:
		f.reset(stBody, f.cl)
	default:
		f.reset(stHead, 0)
	}
	return false
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
