package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The downstream side of an HTTP connection manager for HTTP/1.x, served
// on the connection's own goroutine: requests are read, handed to
// serveHTTP and answered one after the other, with the connection's
// buffers and header map reused. net/http's server, which this replaces
// for HTTP/1.x, starts a goroutine per connection and a background read
// per request; HTTP/2 (ALPN h2, or the h2c preface) still goes to it.
//
//	handle ──► serveHTTPConn ──► TLS with ALPN h2, or "PRI" first ──► net/http (HTTP/2)
//	                         └─► serveH1: read request ─► serveHTTP ─► finish ─► next
//
// What net/http's server did and this keeps: ReadHeaderTimeout and
// IdleTimeout, a 1 MiB header limit (431), 400 for malformed requests and
// Host headers, 417 for an Expect other than 100-continue, "100 Continue"
// sent when the handler first reads the body (or relays one), chunked
// responses of unknown length with trailers, close-delimited ones for
// HTTP/1.0, Hijack for upgrades, the request's context cancelled when the
// client goes away while the answer takes more than clientGoneAfter, a
// request body left unread discarded up to 256 KiB, and the connection
// closed when its framing can no longer be trusted.

const (
	h1ReadHeaderTimeout = 30 * time.Second
	h1IdleTimeout       = 5 * time.Minute
	h1MaxHeaderBytes    = 1 << 20
	// h1MaxDiscard is how much of a request body the handler left unread
	// is read and dropped to keep the connection; more closes it.
	h1MaxDiscard = 256 << 10
	// clientGoneAfter is how long a request waits for its answer before
	// its connection is watched for the client going away: a read, which
	// would cost a goroutine for every request, only for the slow ones.
	clientGoneAfter = 50 * time.Millisecond
)

// errClientGone cancels a request whose client closed its connection.
var errClientGone = errors.New("downstream connection closed")

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// serveHTTPConn serves an HTTP connection of a chain with a connection
// manager until it ends.
func (l *listener) serveHTTPConn(conn net.Conn, m connMatch) {
	if tc, ok := conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
		l.serveNetHTTP(conn, m)
		return
	}
	hc := &h1ServerConn{l: l, conn: conn, lr: &limitedConn{Conn: conn}}
	hc.br = h1ReaderPool.Get().(*bufio.Reader)
	hc.br.Reset(hc.lr)
	release := func() {
		if hc.br != nil {
			hc.br.Reset(nil)
			h1ReaderPool.Put(hc.br)
			hc.br = nil
		}
	}
	// The HTTP/2 connection preface starts with "PRI", which no HTTP/1
	// method does; any HTTP/1 request has three bytes before it needs an
	// answer.
	conn.SetReadDeadline(time.Now().Add(h1IdleTimeout))
	hc.lr.remain = h1MaxHeaderBytes
	head, err := hc.br.Peek(3)
	if err != nil {
		release()
		conn.Close()
		return
	}
	if string(head) == "PRI" {
		conn.SetReadDeadline(time.Time{})
		l.serveNetHTTP(&peekedConn{Conn: conn, r: hc.br}, m)
		return
	}
	defer release()
	if !l.h1.add(hc) {
		conn.Close()
		return
	}
	defer l.h1.remove(hc)
	hc.serve(m)
}

// serveNetHTTP hands a connection to the listener's net/http server.
func (l *listener) serveNetHTTP(conn net.Conn, m connMatch) {
	l.matches.Store(conn, m)
	if !l.httpLn.push(conn) {
		l.matches.Delete(conn)
		conn.Close()
	}
}

// peekedConn reads what was buffered while peeking before the rest of
// its connection.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// limitedConn limits how much a request's header may read.
type limitedConn struct {
	net.Conn
	remain int64 // < 0: no limit
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.remain == 0 {
		return 0, errHeaderTooLarge
	}
	if c.remain > 0 && int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.Conn.Read(p)
	if c.remain > 0 {
		c.remain -= int64(n)
	}
	return n, err
}

var errHeaderTooLarge = errors.New("request header too large")

// h1ServerConns are a listener's HTTP/1 connections, so that closing the
// listener closes the idle ones and waits for the busy ones.
type h1ServerConns struct {
	mu      sync.Mutex
	conns   map[*h1ServerConn]bool // true: a request is being served
	closing bool
}

func (s *h1ServerConns) add(c *h1ServerConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = map[*h1ServerConn]bool{}
	}
	s.conns[c] = false
	return true
}

func (s *h1ServerConns) remove(c *h1ServerConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// setActive marks a connection busy or idle; it reports false when the
// listener is closing, and the connection should end.
func (s *h1ServerConns) setActive(c *h1ServerConn, active bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = active
	return true
}

// shutdown closes the idle connections and makes the busy ones close after
// their request; it returns how many are busy still.
func (s *h1ServerConns) shutdown() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	busy := 0
	for c, active := range s.conns {
		if active {
			busy++
		} else {
			c.conn.Close()
		}
	}
	return busy
}

// busy counts the connections serving a request.
func (s *h1ServerConns) busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, active := range s.conns {
		if active {
			n++
		}
	}
	return n
}

// closeAll closes every connection, busy or not.
func (s *h1ServerConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.conn.Close()
	}
}

// h1ServerConn is one HTTP/1 downstream connection.
type h1ServerConn struct {
	l    *listener
	conn net.Conn
	lr   *limitedConn
	br   *bufio.Reader
	bw   *bufio.Writer
	// header is the response header map, reused by every request.
	header http.Header
	keys   []string

	// The watch for the client going away (watchClient).
	watchMu  sync.Mutex
	watching bool
	watchEnd chan struct{}
}

func (hc *h1ServerConn) serve(m connMatch) {
	conn := hc.conn
	hc.bw = h1WriterPool.Get().(*bufio.Writer)
	hc.bw.Reset(conn)
	defer func() {
		hc.bw.Reset(nil)
		h1WriterPool.Put(hc.bw)
		hc.bw = nil
	}()
	base := withConnPeer(context.Background())
	base = context.WithValue(base, connMatchKey{}, &connState{match: m})
	base = context.WithValue(base, http.LocalAddrContextKey, conn.LocalAddr())
	remote := conn.RemoteAddr().String()
	var tlsState *tls.ConnectionState
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		tlsState = &st
	}
	hc.header = http.Header{}
	first := true
	for {
		if !first {
			conn.SetReadDeadline(time.Now().Add(h1IdleTimeout))
			hc.lr.remain = h1MaxHeaderBytes
			if _, err := hc.br.Peek(1); err != nil {
				conn.Close()
				return
			}
		}
		first = false
		if !hc.l.h1.setActive(hc, true) {
			conn.Close()
			return
		}
		conn.SetReadDeadline(time.Now().Add(h1ReadHeaderTimeout))
		// http.ReadRequest keeps one Host header and drops the rest:
		// count them in what is buffered first.
		hosts, counted := countHostHeaders(hc.br)
		req, err := http.ReadRequest(hc.br)
		if err != nil {
			hc.badRequest(err)
			conn.Close()
			return
		}
		hc.lr.remain = -1
		conn.SetReadDeadline(time.Time{})
		if code, msg := checkRequest(req, hosts, counted); code != 0 {
			hc.reply(code, msg)
			conn.Close()
			return
		}
		req.RemoteAddr = remote
		req.TLS = tlsState
		switch hc.serveRequest(base, req) {
		case connHandedOff:
			return
		case connClose:
			conn.Close()
			return
		}
		if !hc.l.h1.setActive(hc, false) {
			conn.Close()
			return
		}
	}
}

// countHostHeaders counts the Host header lines of the request at the
// start of br's buffer, when its header is there whole (it usually is:
// it arrives in one segment); counted is false otherwise.
func countHostHeaders(br *bufio.Reader) (n int, counted bool) {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, false
	}
	head := buf[:end+2]
	for {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return n, true
		}
		head = head[i+1:]
		if len(head) >= 5 && head[4] == ':' && asciiEqualFold(head[:4], "host") {
			n++
		}
	}
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range len(b) {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// checkRequest applies the checks net/http's server makes after parsing:
// a code and message to answer with, or 0. hosts is the number of Host
// header lines when counted.
func checkRequest(req *http.Request, hosts int, counted bool) (int, string) {
	missing := req.Host == ""
	if counted {
		missing = hosts == 0
	}
	if req.ProtoAtLeast(1, 1) && missing && req.Method != http.MethodConnect {
		return http.StatusBadRequest, "missing required Host header"
	}
	if hosts > 1 {
		return http.StatusBadRequest, "too many Host headers"
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	if ex := req.Header.Get("Expect"); ex != "" && !strings.EqualFold(ex, "100-continue") {
		return http.StatusExpectationFailed, "unsupported Expect header"
	}
	return 0, ""
}

// badRequest answers a request that could not be parsed, unless the
// connection simply ended.
func (hc *h1ServerConn) badRequest(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return
	case errors.As(err, &ne) && ne.Timeout():
		return
	case errors.Is(err, errHeaderTooLarge):
		hc.reply(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
	default:
		hc.reply(http.StatusBadRequest, "malformed request")
	}
}

// reply answers on the connection itself, before any handler ran, and the
// connection closes after it.
func (hc *h1ServerConn) reply(code int, msg string) {
	hc.conn.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(hc.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(msg)+1, msg+"\n")
	hc.bw.Flush()
}

// What becomes of a connection after a request.
type connNext int

const (
	connKeep      connNext = iota // it carries the next request
	connClose                     // it closes
	connHandedOff                 // the handler took it (Hijack)
)

// serveRequest runs one request through the connection manager and
// finishes its response.
func (hc *h1ServerConn) serveRequest(base context.Context, req *http.Request) (next connNext) {
	ctx, cancel := context.WithCancelCause(base)
	defer cancel(nil)
	clear(hc.header)
	w := &h1Response{hc: hc, req: req, header: hc.header, contentLength: -1}
	expect := req.Header.Get("Expect") != ""
	w.expectContinue = expect && req.ContentLength != 0 && req.Body != nil && req.Body != http.NoBody
	if req.Body == nil || req.Body == http.NoBody {
		req.Body = http.NoBody
		w.bodyDone.Store(true)
	} else {
		w.body = &h1RequestBody{rc: req.Body, w: w}
		req.Body = w.body
	}
	req = req.WithContext(ctx)
	w.startWatch(cancel)
	defer func() {
		if r := recover(); r != nil {
			next = connClose
			if w.hijacked {
				next = connHandedOff
			}
			w.stopWatch()
			if r != http.ErrAbortHandler {
				hc.l.p.log.Error("panic serving an HTTP request", "listener", hc.l.name, "panic", r)
			}
		}
	}()
	hc.l.serveHTTP(w, req)
	w.stopWatch()
	if w.hijacked {
		return connHandedOff
	}
	if !w.finish() {
		return connClose
	}
	return connKeep
}

// startWatch arranges for the request's context to be cancelled if the
// client closes its connection while the answer takes longer than
// clientGoneAfter; the watch starts only once the request body has been
// read whole, as nothing else may read the connection then.
func (w *h1Response) startWatch(cancel context.CancelCauseFunc) {
	w.cancel = cancel
	if w.bodyDone.Load() {
		w.armWatch()
	}
}

func (w *h1Response) armWatch() {
	hc := w.hc
	hc.watchMu.Lock()
	defer hc.watchMu.Unlock()
	if w.watchStopped {
		return
	}
	w.watchTimer = time.AfterFunc(clientGoneAfter, func() {
		hc.watchMu.Lock()
		defer hc.watchMu.Unlock()
		if w.watchStopped || w.hijacked || hc.br.Buffered() > 0 {
			return
		}
		hc.watching = true
		hc.watchEnd = make(chan struct{})
		go func() {
			defer close(hc.watchEnd)
			if _, err := hc.br.Peek(1); err != nil {
				var ne net.Error
				if !(errors.As(err, &ne) && ne.Timeout()) {
					w.cancel(errClientGone)
				}
			}
		}()
	})
}

// stopWatch ends the watch, leaving the connection's reader as it was.
func (w *h1Response) stopWatch() {
	hc := w.hc
	hc.watchMu.Lock()
	w.watchStopped = true
	if w.watchTimer != nil {
		w.watchTimer.Stop()
	}
	watching := hc.watching
	hc.watching = false
	hc.watchMu.Unlock()
	if watching {
		hc.conn.SetReadDeadline(aLongTimeAgo)
		<-hc.watchEnd
		hc.conn.SetReadDeadline(time.Time{})
	}
}

// h1RequestBody is a request's body: it sends "100 Continue" first when the
// client waits for it, and notes when it has been read whole. The
// forwarder may read it on a goroutine of its own while the handler
// answers: reads and the discarding of what is left (discard) take mu.
type h1RequestBody struct {
	rc     io.ReadCloser
	w      *h1Response
	mu     sync.Mutex
	closed bool
}

func (b *h1RequestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.w.expectContinue && !b.w.sentContinue.Load() {
		b.w.sendContinue()
	}
	n, err := b.rc.Read(p)
	if err == io.EOF && !b.w.bodyDone.Swap(true) {
		b.w.armWatch()
	}
	return n, err
}

// Close ends the handler's reading; what is left is discarded when the
// answer starts.
func (b *h1RequestBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// discard reads what is left of the body, up to h1MaxDiscard, so that the
// connection can carry the next request: false when it cannot.
func (b *h1RequestBody) discard() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.w.bodyDone.Load() {
		return true
	}
	if b.w.expectContinue && !b.w.sentContinue.Load() {
		// Not asked for, the body may or may not come: the connection's
		// framing is unknown.
		return false
	}
	n, err := io.CopyN(io.Discard, b.rc, h1MaxDiscard+1)
	if n > h1MaxDiscard || err != io.EOF {
		return false
	}
	b.w.bodyDone.Store(true)
	return true
}

// h1Response is the http.ResponseWriter of one HTTP/1 request.
type h1Response struct {
	hc     *h1ServerConn
	req    *http.Request
	header http.Header
	body   *h1RequestBody

	status        int
	wroteHeader   bool
	bodyAllowed   bool
	chunked       bool
	contentLength int64 // -1: not declared
	written       int64
	closeAfter    bool
	hijacked      bool
	trailers      []string // declared in the Trailer header

	// mu orders "100 Continue", which a body read may send, and the
	// response header.
	mu             sync.Mutex
	expectContinue bool
	sentContinue   atomic.Bool
	bodyDone       atomic.Bool

	cancel       context.CancelCauseFunc
	watchTimer   *time.Timer
	watchStopped bool // under hc.watchMu
}

func (w *h1Response) Header() http.Header { return w.header }

// sendContinue sends "100 Continue" once, unless the answer has started;
// the body may be read on another goroutine than the handler's.
func (w *h1Response) sendContinue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sentContinue.Load() || w.wroteHeader {
		return
	}
	w.sentContinue.Store(true)
	w.hc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	w.hc.bw.Flush()
}

func (w *h1Response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code == http.StatusContinue {
		if w.expectContinue {
			w.sendContinue()
		}
		return
	}
	final := code >= 200 || code == http.StatusSwitchingProtocols
	// Before a final answer, what the handler left of the body is read
	// (as net/http does), or the connection closes after the answer.
	if final && w.body != nil && code != http.StatusSwitchingProtocols && !w.body.discard() {
		w.closeAfter = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: sent now with the headers set so far, which the
		// handler clears itself (as ReverseProxy does).
		w.writeStatus(code)
		w.writeHeaderLines(false)
		w.hc.bw.WriteString("\r\n")
		w.hc.bw.Flush()
		return
	}
	w.status, w.wroteHeader = code, true
	h := w.header
	w.bodyAllowed = code != http.StatusNoContent && code != http.StatusNotModified && code != http.StatusSwitchingProtocols
	head := w.req.Method == http.MethodHead
	delete(h, "Transfer-Encoding")
	w.trailers = w.trailers[:0]
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
			}
		}
	}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			delete(h, "Content-Length")
		}
	}
	if len(w.trailers) > 0 && w.req.ProtoAtLeast(1, 1) && w.bodyAllowed && !head {
		delete(h, "Content-Length")
		w.contentLength = -1
	}
	switch {
	case code == http.StatusSwitchingProtocols:
		w.closeAfter = true
	case !w.bodyAllowed || head || w.contentLength >= 0:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		// HTTP/1.0 without a length: the end of the body is the end of
		// the connection.
		w.closeAfter = true
	}
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") || w.req.Close {
		w.closeAfter = true
	}
	if w.closeAfter {
		if code != http.StatusSwitchingProtocols {
			h["Connection"] = []string{"close"}
		}
	} else if !w.req.ProtoAtLeast(1, 1) {
		h["Connection"] = []string{"keep-alive"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate()}
	}
	w.writeStatus(code)
	w.writeHeaderLines(true)
	w.hc.bw.WriteString("\r\n")
}

func (w *h1Response) writeStatus(code int) {
	bw := w.hc.bw
	bw.WriteString("HTTP/1.1 ")
	var b [3]byte
	bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// writeHeaderLines writes the header map, sorted, leaving out what goes in
// the trailers; for a 1xx the framing headers are left out.
func (w *h1Response) writeHeaderLines(final bool) {
	hc := w.hc
	keys := hc.keys[:0]
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if !final && (k == "Content-Length" || k == "Transfer-Encoding") {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	hc.keys = keys
	bw := hc.bw
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		writeField(bw, k, w.header[k])
	}
}

// writeField writes a header or trailer line per value of name.
func writeField(bw *bufio.Writer, name string, values []string) {
	for _, v := range values {
		bw.WriteString(name)
		bw.WriteString(": ")
		writeHeaderValue(bw, v)
		bw.WriteString("\r\n")
	}
}

// writeHeaderValue writes v with line breaks turned into spaces, as
// net/http does, so that no value can start a header of its own.
func writeHeaderValue(bw *bufio.Writer, v string) {
	if !strings.ContainsAny(v, "\r\n") {
		bw.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		bw.WriteByte(c)
	}
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.hc.bw
	if w.contentLength >= 0 {
		if rest := w.contentLength - w.written; int64(len(p)) > rest {
			n, err := bw.Write(p[:rest])
			w.written += int64(n)
			if err != nil {
				return n, err
			}
			return n, http.ErrContentLength
		}
	}
	if w.chunked {
		var b [18]byte
		hdr := strconv.AppendInt(b[:0], int64(len(p)), 16)
		hdr = append(hdr, '\r', '\n')
		if _, err := bw.Write(hdr); err != nil {
			return 0, err
		}
	}
	n, err := bw.Write(p)
	w.written += int64(n)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	return n, err
}

// WriteString saves io.WriteString a conversion.
func (w *h1Response) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// FlushError sends what was written so far (http.ResponseController).
func (w *h1Response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.hc.bw.Flush()
}

func (w *h1Response) Flush() { _ = w.FlushError() }

// Hijack hands the connection to the handler (upgrades): reads return what
// the connection's reader still holds first.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		return nil, nil, errors.New("proxy: hijack after the response header was written")
	}
	hc := w.hc
	w.stopWatch()
	if err := hc.bw.Flush(); err != nil {
		return nil, nil, err
	}
	hc.watchMu.Lock()
	w.hijacked = true
	hc.watchMu.Unlock()
	hc.lr.remain = -1
	// What the connection's reader holds goes to the new owner, which
	// reads it through c; the reader is not pooled again.
	c := &peekedConn{Conn: hc.conn, r: hc.br}
	hc.br = nil
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(hc.conn)), nil
}

func (w *h1Response) SetReadDeadline(t time.Time) error  { return w.hc.conn.SetReadDeadline(t) }
func (w *h1Response) SetWriteDeadline(t time.Time) error { return w.hc.conn.SetWriteDeadline(t) }

// EnableFullDuplex: the handler may read the body while writing the
// answer; nothing else reads the connection meanwhile.
func (w *h1Response) EnableFullDuplex() error { return nil }

// finish ends the response and reports whether the connection can carry
// another request.
func (w *h1Response) finish() bool {
	if !w.wroteHeader {
		if _, ok := w.header["Content-Length"]; !ok && w.req.Method != http.MethodHead {
			w.header["Content-Length"] = []string{"0"}
		}
		w.WriteHeader(http.StatusOK)
	}
	bw := w.hc.bw
	switch {
	case w.chunked:
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			writeField(bw, k, w.header[k])
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				writeField(bw, http.CanonicalHeaderKey(name), vv)
			}
		}
		bw.WriteString("\r\n")
	case w.contentLength >= 0 && w.bodyAllowed && w.req.Method != http.MethodHead && w.written < w.contentLength:
		// Fewer bytes than declared: the client cannot tell where this
		// answer ends but by the connection closing.
		w.closeAfter = true
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	if w.closeAfter || w.req.Close {
		return false
	}
	return true
}

// httpDate is the Date header value of this second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.value
	}
	d := &cachedDate{sec: now, value: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.value
}

type cachedDate struct {
	sec   int64
	value string
}

var dateCache atomic.Pointer[cachedDate]
