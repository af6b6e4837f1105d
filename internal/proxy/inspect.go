package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"
)

// The listener filters: what a listener learns about a connection before
// it picks a filter chain, as Envoy's original_dst, tls_inspector and
// http_inspector do.
//
//	accept ──► original_dst: SO_ORIGINAL_DST, the address the client dialed
//	       ──► peek (bounded by listener_filters_timeout):
//	             tls_inspector:  a ClientHello? transport "tls", its SNI and ALPN;
//	                             else transport "raw_buffer"
//	             http_inspector: an HTTP/1 method? "http/1.1"; the HTTP/2
//	                             preface? "h2c"; else nothing
//	       ──► filter chain match ──► the chain, with the peeked bytes replayed

// connMatch is what filter chain matching looks at.
type connMatch struct {
	// dst is the destination: the original one for a redirected
	// connection, else the local address.
	dst net.Addr
	// transport is "tls" or "raw_buffer" once the tls_inspector ran, else
	// empty.
	transport  string
	serverName string
	// protocols are the ALPN protocols of a ClientHello, or what the
	// http_inspector found.
	protocols []string
}

// Transport protocols and application protocols the inspectors set.
const (
	transportTLS = "tls"
	transportRaw = "raw_buffer"
	protoHTTP11  = "http/1.1"
	protoH2C     = "h2c"
)

// maxPeek bounds how much the inspectors read: a ClientHello fits in one
// record of at most 16 KiB.
const maxPeek = 5 + 16384

// http2Preface opens every HTTP/2 connection with prior knowledge (h2c).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// httpMethods are the request methods the http_inspector recognizes.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"}

// downConn is a downstream connection whose first bytes the inspectors
// read (they are replayed), and whose local address is the destination
// the client dialed.
type downConn struct {
	net.Conn
	buf   []byte
	local net.Addr
}

func (c *downConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *downConn) LocalAddr() net.Addr { return c.local }

// CloseWrite half-closes the underlying connection.
func (c *downConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// errInspectTimeout: the inspectors could not decide in time.
var errInspectTimeout = errors.New("listener filters timed out")

// inspect reads the first bytes of conn, at most until deadline, for the
// tls_inspector (tls) and the http_inspector (http). It returns what they
// found; err is errInspectTimeout when they could not decide in time
// (what was found so far is still returned), or a read error.
func inspect(conn *downConn, tlsOn, httpOn bool, deadline time.Time) (m connMatch, err error) {
	if !tlsOn && !httpOn {
		return m, nil
	}
	_ = conn.Conn.SetReadDeadline(deadline)
	defer conn.Conn.SetReadDeadline(time.Time{})
	var chunk [4096]byte
	for {
		if done := decide(conn.buf, tlsOn, httpOn, &m); done {
			return m, nil
		}
		if len(conn.buf) >= maxPeek {
			return m, nil
		}
		n, rerr := conn.Conn.Read(chunk[:min(len(chunk), maxPeek-len(conn.buf))])
		conn.buf = append(conn.buf, chunk[:n]...)
		if rerr != nil {
			decide(conn.buf, tlsOn, httpOn, &m)
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				return m, errInspectTimeout
			}
			if rerr == io.EOF {
				return m, nil
			}
			return m, rerr
		}
	}
}

// decide fills m from the bytes read so far and reports whether the
// inspectors need nothing more.
func decide(b []byte, tlsOn, httpOn bool, m *connMatch) bool {
	if len(b) == 0 {
		return false
	}
	if tlsOn && m.transport == "" {
		if b[0] != 0x16 { // not a TLS handshake record
			m.transport = transportRaw
		} else {
			if len(b) < 5 {
				return false
			}
			if n := int(binary.BigEndian.Uint16(b[3:5])); len(b) < 5+n {
				return false
			}
			m.transport = transportTLS
			if hello, ok := parseClientHello(b); ok {
				m.serverName = hello.ServerName
				m.protocols = hello.SupportedProtos
			}
			return true
		}
	}
	if !httpOn || m.transport == transportTLS {
		return true
	}
	if len(b) >= len(http2Preface) && string(b[:len(http2Preface)]) == http2Preface {
		m.protocols = []string{protoH2C}
		return true
	}
	maybe := bytes.HasPrefix([]byte(http2Preface), b)
	for _, meth := range httpMethods {
		want := meth + " "
		if len(b) >= len(want) && string(b[:len(want)]) == want {
			m.protocols = []string{protoHTTP11}
			return true
		}
		if len(b) < len(want) && want[:len(b)] == string(b) {
			maybe = true
		}
	}
	return !maybe
}

// parseClientHello reads the server name and ALPN protocols of a TLS
// ClientHello record, with crypto/tls's own parser: a handshake that
// stops as soon as the hello has been read.
func parseClientHello(record []byte) (*tls.ClientHelloInfo, bool) {
	var hello *tls.ClientHelloInfo
	errStop := errors.New("stop")
	_ = tls.Server(replayConn{r: bytes.NewReader(record)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = &tls.ClientHelloInfo{ServerName: h.ServerName, SupportedProtos: append([]string(nil), h.SupportedProtos...)}
			return nil, errStop
		},
	}).Handshake()
	return hello, hello != nil
}

// replayConn reads from r and writes nowhere.
type replayConn struct{ r io.Reader }

func (c replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c replayConn) Write(p []byte) (int, error)      { return 0, io.ErrClosedPipe }
func (c replayConn) Close() error                     { return nil }
func (c replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c replayConn) SetDeadline(time.Time) error      { return nil }
func (c replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c replayConn) SetWriteDeadline(time.Time) error { return nil }
