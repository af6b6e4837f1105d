package proxy

import (
	"context"
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
	c.waitWarm(context.Background())
	up, release, err := c.connectTCP(context.Background())
	if err != nil {
		flags = flagUpstreamConnectFailure
		if len(c.hosts.Load().all) == 0 {
			flags = flagNoHealthyUpstream
		}
		p.log.Warn("tcp proxy: no upstream reachable", "cluster", name, "err", err)
		return
	}
	upstream = up.RemoteAddr().String()
	defer release()
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	// io.Copy between two *net.TCPConn uses splice; no wrapper in between.
	go func() { defer wg.Done(); received = pipe(up, down) }()
	go func() { defer wg.Done(); sent = pipe(down, up) }()
	wg.Wait()
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
