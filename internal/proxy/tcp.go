package proxy

import (
	"context"
	"io"
	"net"
	"sync"
)

// closeWriter is a connection that can half-close: *net.TCPConn and
// *tls.Conn.
type closeWriter interface {
	CloseWrite() error
}

// proxyTCP forwards a downstream connection to an endpoint of the chain's
// cluster (one of its weighted clusters, picked per connection), trying
// the next endpoint when one refuses the connection.
func (p *Proxy) proxyTCP(down net.Conn, t *tcpProxy) {
	defer down.Close()
	name := t.pick(randUint32n)
	c := (*p.clusters.Load())[name]
	if c == nil {
		p.log.Warn("tcp proxy: cluster not found", "cluster", name)
		return
	}
	c.waitWarm(context.Background())
	up, release, err := c.connectTCP(context.Background())
	if err != nil {
		p.log.Warn("tcp proxy: no upstream reachable", "cluster", name, "err", err)
		return
	}
	defer release()
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	// io.Copy between two *net.TCPConn uses splice; no wrapper in between.
	go func() { defer wg.Done(); pipe(up, down) }()
	go func() { defer wg.Done(); pipe(down, up) }()
	wg.Wait()
}

// pipe copies src to dst, then half-closes dst so that the peer sees the
// end of the stream while the other direction continues.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(closeWriter); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}
