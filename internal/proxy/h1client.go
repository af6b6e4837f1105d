package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Transport sends HTTP/1.1 requests to a cluster's endpoints over pooled
// keep-alive connections, on the calling goroutine: the request is
// written, and its response read, by the goroutine that serves the
// downstream request. net/http's Transport hands every request to a
// connection's write loop and its response back from a read loop, two
// goroutine wake-ups per request and per proxy that cost as much CPU and
// latency as the rest of the proxy's work for small requests.
//
//	RoundTrip ──► idle connection (LIFO per endpoint, checked alive) or dial (+ TLS)
//	          ──► request line, headers, body (a large or unknown-length body is
//	              written by a goroutine, so that a server answering early is read)
//	          ──► response (1xx passed to the client trace) ──► body
//	body EOF and Close ──► the connection back to the pool, or to a waiting request
//
// The client trace hooks GetConn, GotConn, WroteHeaders and Got1xxResponse
// are called as net/http's Transport calls them: the circuit breakers
// (circuitbreaker.go), retries (forward.go) and ReverseProxy rely on them.
// Requests that upgrade the connection (WebSocket) go to net/http's
// Transport, whose response body is the upgraded connection.
type h1Transport struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	tls         *tls.Config // nil for plaintext
	handshake   time.Duration
	idleTimeout time.Duration // 0: no limit
	upgrades    *http.Transport

	mu      sync.Mutex
	idle    map[string][]*h1Conn // by endpoint address, most recently used last
	waiting map[string][]*h1Waiter
	closed  bool
}

// maxIdlePerEndpoint bounds the idle connections kept per endpoint.
const maxIdlePerEndpoint = 256

// syncBodyLimit is the largest request body written on the calling
// goroutine, before the response is read: one that fits in the socket
// buffers, so that a server that answers without reading it cannot block
// the write.
const syncBodyLimit = 16 << 10

// h1Conn is one upstream connection.
type h1Conn struct {
	t      *h1Transport
	addr   string
	conn   net.Conn  // the TLS connection, or the TCP one
	live   *liveness // of the TCP connection under it
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	timer  *time.Timer // closes it after idleTimeout in the pool
}

// h1Waiter is a request that dials because no connection was idle: a
// connection released meanwhile is handed to it (a dial may wait for a
// max_connections slot that only a closing connection frees).
type h1Waiter struct {
	pc    *h1Conn
	trace *httptrace.ClientTrace
}

func newH1Transport(dial func(context.Context, string, string) (net.Conn, error), cfg *tls.Config, handshake, idle time.Duration, upgrades *http.Transport) *h1Transport {
	return &h1Transport{dial: dial, tls: cfg, handshake: handshake, idleTimeout: idle, upgrades: upgrades,
		idle: map[string][]*h1Conn{}, waiting: map[string][]*h1Waiter{}}
}

// errH1ConnGone is a reused connection that the server had closed.
var errH1ConnGone = errors.New("proxy: upstream closed a kept-alive connection")

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if isUpgrade(req.Header) {
		return t.upgrades.RoundTrip(req)
	}
	ctx := req.Context()
	trace := httptrace.ContextClientTrace(ctx)
	for {
		pc, reused, err := t.conn(ctx, req.URL.Host, trace)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := pc.roundTrip(req, trace)
		if err == nil {
			return resp, nil
		}
		if reused && errors.Is(err, errH1ConnGone) && replayable(req) && ctx.Err() == nil {
			// The server closed the connection as the request went out on
			// it: nothing of the request reached it; try a new one.
			if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
				body, gerr := req.GetBody()
				if gerr != nil {
					return nil, err
				}
				r := *req
				r.Body = body
				req = &r
			}
			continue
		}
		closeBody(req)
		return nil, err
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// replayable is net/http's rule for sending a request again after a
// kept-alive connection failed under it: it is idempotent and its body can
// be read again.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

func isUpgrade(h http.Header) bool {
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// conn returns an idle connection to addr that is still open, or a new
// one.
func (t *h1Transport) conn(ctx context.Context, addr string, trace *httptrace.ClientTrace) (*h1Conn, bool, error) {
	if trace != nil && trace.GetConn != nil {
		trace.GetConn(addr)
	}
	if pc := t.popIdle(addr); pc != nil {
		if trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{Conn: pc.conn, Reused: true, WasIdle: true, IdleTime: time.Since(pc.idleAt)})
		}
		return pc, true, nil
	}
	w := &h1Waiter{trace: trace}
	t.mu.Lock()
	t.waiting[addr] = append(t.waiting[addr], w)
	t.mu.Unlock()
	pc, err := t.dialConn(ctx, addr)
	t.mu.Lock()
	handed := w.pc
	t.removeWaiterLocked(addr, w)
	t.mu.Unlock()
	if handed != nil {
		// Another request released a connection while this one dialed.
		if pc != nil {
			t.put(pc)
		}
		return handed, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: pc.conn})
	}
	return pc, false, nil
}

func (t *h1Transport) removeWaiterLocked(addr string, w *h1Waiter) {
	ws := t.waiting[addr]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(t.waiting, addr)
	} else {
		t.waiting[addr] = ws
	}
}

func (t *h1Transport) dialConn(ctx context.Context, addr string) (*h1Conn, error) {
	raw, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tcp := raw
	if cc, ok := raw.(*countedConn); ok {
		tcp = cc.Conn
	}
	pc := &h1Conn{t: t, addr: addr, conn: raw, live: newLiveness(tcp)}
	if t.tls != nil {
		tc := tls.Client(raw, t.tls)
		hctx, cancel := ctx, context.CancelFunc(func() {})
		if t.handshake > 0 {
			hctx, cancel = context.WithTimeout(ctx, t.handshake)
		}
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, err
		}
		pc.conn = tc
	}
	pc.br = bufio.NewReaderSize(pc.conn, 4<<10)
	pc.bw = bufio.NewWriterSize(pc.conn, 4<<10)
	return pc, nil
}

// popIdle takes the most recently used idle connection to addr that is
// still open.
func (t *h1Transport) popIdle(addr string) *h1Conn {
	for {
		t.mu.Lock()
		conns := t.idle[addr]
		if len(conns) == 0 {
			t.mu.Unlock()
			return nil
		}
		pc := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		t.idle[addr] = conns[:len(conns)-1]
		t.mu.Unlock()
		if pc.timer != nil && !pc.timer.Stop() {
			// Its idle timeout fired: it is being closed.
			continue
		}
		if pc.live.peerClosed() {
			pc.conn.Close()
			continue
		}
		return pc
	}
}

// put returns a connection whose exchange ended cleanly: to a request
// waiting for one, else to the pool.
func (t *h1Transport) put(pc *h1Conn) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		pc.conn.Close()
		return
	}
	if ws := t.waiting[pc.addr]; len(ws) > 0 {
		w := ws[0]
		t.removeWaiterLocked(pc.addr, w)
		w.pc = pc
		t.mu.Unlock()
		if w.trace != nil && w.trace.GotConn != nil {
			// Ends the waiter's wait for a connection slot (attempt.release).
			w.trace.GotConn(httptrace.GotConnInfo{Conn: pc.conn, Reused: true})
		}
		return
	}
	conns := t.idle[pc.addr]
	if len(conns) >= maxIdlePerEndpoint {
		t.mu.Unlock()
		pc.conn.Close()
		return
	}
	pc.idleAt = time.Now()
	// The timer is set before the lock is released: a request may take
	// the connection from the pool, and read pc.timer, at once after.
	// expire waits for the lock, and finds the connection in the pool.
	if t.idleTimeout > 0 {
		if pc.timer == nil {
			pc.timer = time.AfterFunc(t.idleTimeout, pc.expire)
		} else {
			pc.timer.Reset(t.idleTimeout)
		}
	}
	t.idle[pc.addr] = append(conns, pc)
	t.mu.Unlock()
}

// expire closes a connection left idle for the idle timeout.
func (pc *h1Conn) expire() {
	t := pc.t
	t.mu.Lock()
	conns := t.idle[pc.addr]
	for i, x := range conns {
		if x == pc {
			t.idle[pc.addr] = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(t.idle[pc.addr]) == 0 {
		delete(t.idle, pc.addr)
	}
	t.mu.Unlock()
	pc.conn.Close()
}

// close closes the idle connections; connections in use are closed when
// their exchange ends.
func (t *h1Transport) close() {
	t.mu.Lock()
	t.closed = true
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, conns := range idle {
		for _, pc := range conns {
			if pc.timer != nil {
				pc.timer.Stop()
			}
			pc.conn.Close()
		}
	}
	t.upgrades.CloseIdleConnections()
}

// aLongTimeAgo is a deadline in the past: it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip sends req on pc and reads the response's headers. The
// connection belongs to the response body from then on, and goes back to
// the pool when the body has been read to its end and closed.
func (pc *h1Conn) roundTrip(req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	ctx := req.Context()
	// A request cancelled while its connection is busy ends the
	// connection's I/O at once.
	stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.conn.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	length := outgoingLength(req)
	chunked := length < 0
	if err := pc.writeHeader(req, length); err != nil {
		return fail(errH1ConnGone)
	}
	var bodyDone chan error
	switch {
	case length == 0:
		if err := pc.bw.Flush(); err != nil {
			return fail(errH1ConnGone)
		}
		if trace != nil && trace.WroteHeaders != nil {
			trace.WroteHeaders()
		}
	case !chunked && length <= syncBodyLimit:
		if err := pc.bw.Flush(); err != nil {
			return fail(errH1ConnGone)
		}
		if trace != nil && trace.WroteHeaders != nil {
			trace.WroteHeaders()
		}
		if err := pc.writeBody(req, length, false); err != nil {
			return fail(err)
		}
	default:
		if err := pc.bw.Flush(); err != nil {
			return fail(errH1ConnGone)
		}
		if trace != nil && trace.WroteHeaders != nil {
			trace.WroteHeaders()
		}
		bodyDone = make(chan error, 1)
		go func() { bodyDone <- pc.writeBody(req, length, chunked) }()
	}

	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			if bodyDone != nil {
				pc.conn.Close()
				<-bodyDone
			}
			// io.EOF (not io.ErrUnexpectedEOF): not one byte of a
			// response came.
			if err == io.EOF || isConnReset(err) {
				return fail(fmt.Errorf("%w: %w", errH1ConnGone, err))
			}
			return fail(err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					return fail(err)
				}
			}
			continue
		}
		break
	}
	keep := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody || resp.Body == nil {
		pc.done(stop, keep, bodyDone, true)
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, pc: pc, stop: stop, keep: keep, bodyDone: bodyDone}
	return resp, nil
}

// isConnReset reports whether the server reset the connection or had
// closed it as the request was written.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// outgoingLength is the request body's length: 0 without a body, -1 when
// unknown.
func outgoingLength(req *http.Request) int64 {
	if req.Body == nil || req.Body == http.NoBody {
		return 0
	}
	if req.ContentLength != 0 {
		return req.ContentLength
	}
	return -1
}

// reqExcluded are the headers the request line and framing write.
var reqExcluded = map[string]bool{"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Connection": true,
	"User-Agent": true}

func (pc *h1Conn) writeHeader(req *http.Request, length int64) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if strings.ContainsAny(host, "\r\n ") {
		return fmt.Errorf("proxy: invalid Host %q", host)
	}
	bw := pc.bw
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	switch {
	case length > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(length, 10))
		bw.WriteString("\r\n")
	case length < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			first := true
			for k := range req.Trailer {
				if !first {
					bw.WriteString(",")
				}
				first = false
				bw.WriteString(k)
			}
			bw.WriteString("\r\n")
		}
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	// An empty User-Agent (as ReverseProxy sets one the client did not
	// send) is not sent.
	if ua := req.Header.Get("User-Agent"); ua != "" {
		if strings.ContainsAny(ua, "\r\n") {
			ua = strings.NewReplacer("\r", " ", "\n", " ").Replace(ua)
		}
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua)
		bw.WriteString("\r\n")
	}
	if err := req.Header.WriteSubset(bw, reqExcluded); err != nil {
		return err
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeBody writes the request body and closes it.
func (pc *h1Conn) writeBody(req *http.Request, length int64, chunked bool) error {
	defer req.Body.Close()
	if !chunked {
		n, err := io.Copy(pc.bw, io.LimitReader(req.Body, length))
		if err == nil && n != length {
			err = fmt.Errorf("proxy: request body ended after %d of its %d bytes", n, length)
		}
		if err != nil {
			return err
		}
		return pc.bw.Flush()
	}
	cw := httputil.NewChunkedWriter(pc.bw)
	buf := copyBuffers.Get()
	_, err := io.CopyBuffer(flushingWriter{cw, pc.bw}, req.Body, buf)
	copyBuffers.Put(buf)
	if err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := req.Trailer.Write(pc.bw); err != nil {
		return err
	}
	if _, err := pc.bw.WriteString("\r\n"); err != nil {
		return err
	}
	return pc.bw.Flush()
}

// flushingWriter sends each chunk of a streamed body as it comes: a body
// of unknown length may be a stream whose reader waits for answers.
type flushingWriter struct {
	w  io.Writer
	bw *bufio.Writer
}

func (f flushingWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.bw.Flush()
	}
	return n, err
}

// done ends an exchange: the connection is kept when the response was
// read to its end, the request body was written whole and nothing
// cancelled the exchange.
func (pc *h1Conn) done(stop func() bool, keep bool, bodyDone chan error, eof bool) {
	if !stop() {
		keep = false // cancelled: the connection's deadline is in the past
	}
	if bodyDone != nil {
		select {
		case err := <-bodyDone:
			keep = keep && err == nil
			bodyDone = nil
		default:
			// The server answered before reading the whole body.
			keep = false
		}
	}
	if keep && eof {
		pc.t.put(pc)
		return
	}
	pc.conn.Close()
	if bodyDone != nil {
		<-bodyDone
	}
}

// h1Body is a response body: its connection is released when it is
// closed.
type h1Body struct {
	rc       io.ReadCloser
	pc       *h1Conn
	stop     func() bool
	keep     bool
	bodyDone chan error

	mu     sync.Mutex
	eof    bool
	closed bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.mu.Lock()
		b.eof = true
		b.mu.Unlock()
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	eof := b.eof
	b.mu.Unlock()
	if !eof {
		// Not read to its end: the rest cannot be told from the next
		// response; the connection goes.
		b.pc.conn.Close()
	}
	b.rc.Close()
	b.pc.done(b.stop, b.keep, b.bodyDone, eof)
	return nil
}
