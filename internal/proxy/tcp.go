package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// closeWriter is a connection that can half-close: *net.TCPConn and
// *tls.Conn.
type closeWriter interface {
	CloseWrite() error
}

// proxyTCP forwards a downstream connection to an endpoint of the chain's
// cluster (one of its weighted clusters, picked per connection), trying
// the next endpoint when one refuses the connection. It counts the
// connection and its bytes and logs it when it ends.
func (p *Proxy) proxyTCP(l *listener, down net.Conn, t *tcpProxy) {
	defer down.Close()
	start := time.Now()
	name := t.pick(randUint32n)
	var received, sent int64
	var flags respFlags
	var upstream string
	k := p.tel.tcpOpen(l, down, name)
	defer func() { p.tel.tcpClose(k, down, name, upstream, start, received, sent, flags) }()
	c := (*p.clusters.Load())[name]
	if c == nil {
		flags = flagNoCluster
		p.log.Warn("tcp proxy: cluster not found", "cluster", name)
		return
	}
	var up net.Conn
	var err error
	if c.origDst {
		up, err = p.dialOriginal(down, c)
		if err != nil {
			flags = flagUpstreamConnectFailure
			p.log.Debug("tcp proxy: original destination unreachable", "cluster", name, "err", err)
			return
		}
	} else {
		c.waitWarm(context.Background())
		var release func()
		up, release, err = c.connectTCP(context.Background())
		if err != nil {
			flags = flagUpstreamConnectFailure
			if len(c.hosts.Load().all) == 0 {
				flags = flagNoHealthyUpstream
			}
			if name != blackHoleCluster { // refused on purpose: the access log has it
				p.log.Warn("tcp proxy: no upstream reachable", "cluster", name, "err", err)
			}
			return
		}
		defer release()
	}
	upstream = up.RemoteAddr().String()
	defer up.Close()
	// Bytes the listener filters peeked at go first; then the plain
	// connection, so that the copy can splice.
	if dc, ok := down.(*downConn); ok {
		if len(dc.buf) > 0 {
			if _, err := up.Write(dc.buf); err != nil {
				return
			}
			dc.buf = nil
		}
		down = dc.Conn
	}
	var wg sync.WaitGroup
	wg.Add(2)
	// io.Copy between two *net.TCPConn uses splice; no wrapper in between.
	go func() { defer wg.Done(); received = pipe(up, down) }()
	go func() { defer wg.Done(); sent = pipe(down, up) }()
	wg.Wait()
}

// errLoop refuses a passthrough connection whose destination is the
// listener itself: the connection was not redirected.
var errLoop = errors.New("the original destination is the listener itself")

// dialOriginal connects to the destination a redirected connection was
// headed for (an ORIGINAL_DST cluster): the downstream connection's local
// address, which the original_dst listener filter restored.
func (p *Proxy) dialOriginal(down net.Conn, c *cluster) (net.Conn, error) {
	dst := down.LocalAddr()
	if dc, ok := down.(*downConn); ok && dst.String() == dc.Conn.LocalAddr().String() {
		return nil, errLoop
	}
	d := &net.Dialer{Timeout: c.connectTimeout, Control: markControl(p.opts.SocketMark)}
	return d.Dial("tcp", dst.String())
}

// pipe copies src to dst, then half-closes dst so that the peer sees the
// end of the stream while the other direction continues. It returns the
// bytes copied.
func pipe(dst, src net.Conn) int64 {
	n, _ := io.Copy(dst, src)
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
	return n
}
