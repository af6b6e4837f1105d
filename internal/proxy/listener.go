package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"trellis.dev/trellis/internal/proxy/route"
)

// handshakeTimeout bounds a downstream TLS handshake.
const handshakeTimeout = 10 * time.Second

// listenerConfig is a compiled Listener.
type listenerConfig struct {
	name   string
	addr   string
	chains []*filterChain
	// inspectTLS: connections are TLS and chains are chosen by SNI.
	inspectTLS bool
}

// filterChain is one way to handle a connection.
type filterChain struct {
	name        string
	serverNames []string
	// tls terminates downstream mTLS; nil means plaintext.
	tls *tls.Config
	// connFilters run on each new connection before hcm or tcp
	// (httpfilter.go).
	connFilters []connFilter
	hcm         *httpConnManager
	tcp         *tcpProxy
}

// xfccMode is forward_client_cert_details.
type xfccMode int

const (
	xfccSanitize xfccMode = iota
	xfccSanitizeSet
)

type httpConnManager struct {
	statPrefix string
	// rds names the route configuration; inline is used when it is empty.
	rds              string
	inline           *route.Table
	xfcc             xfccMode
	useRemoteAddress bool
	// paths and filters run before routing (normalize.go, httpfilter.go).
	paths   pathNormalization
	filters []httpFilter
}

// tcpProxy is a compiled tcp_proxy: one cluster, or weighted clusters
// (a TCPRoute's split) of which each connection picks one.
type tcpProxy struct {
	statPrefix string
	cluster    string
	weighted   []weightedTCPCluster
	total      uint32
}

type weightedTCPCluster struct {
	name   string
	weight uint32
}

// pick returns the cluster of a new connection.
func (t *tcpProxy) pick(rnd func(n uint32) uint32) string {
	if len(t.weighted) == 0 {
		return t.cluster
	}
	n := rnd(t.total)
	for _, w := range t.weighted {
		if n < w.weight {
			return w.name
		}
		n -= w.weight
	}
	return t.weighted[len(t.weighted)-1].name
}

// clusters are the clusters connections may go to.
func (t *tcpProxy) clusters() []string {
	if len(t.weighted) == 0 {
		return []string{t.cluster}
	}
	out := make([]string, len(t.weighted))
	for i, w := range t.weighted {
		out[i] = w.name
	}
	return out
}

func compileTCPProxy(f *tcpproxyv3.TcpProxy) (*tcpProxy, error) {
	if err := unsupported(f, "stat_prefix", "cluster", "weighted_clusters"); err != nil {
		return nil, err
	}
	if err := f.ValidateAll(); err != nil { // weights are at least 1
		return nil, err
	}
	t := &tcpProxy{statPrefix: f.GetStatPrefix(), cluster: f.GetCluster()}
	for i, c := range f.GetWeightedClusters().GetClusters() {
		if err := unsupported(c, "name", "weight"); err != nil {
			return nil, fmt.Errorf("weighted_clusters.clusters[%d]: %w", i, err)
		}
		t.weighted = append(t.weighted, weightedTCPCluster{name: c.GetName(), weight: c.GetWeight()})
		t.total += c.GetWeight()
	}
	return t, nil
}

func (p *Proxy) compileListener(l *listenerv3.Listener) (*listenerConfig, error) {
	if err := unsupported(l, "name", "address", "filter_chains", "listener_filters"); err != nil {
		return nil, err
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil || sa.GetPortValue() == 0 {
		return nil, errors.New("address: a socket address with a port is required")
	}
	lc := &listenerConfig{name: l.GetName(), addr: net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))}
	for i, f := range l.GetListenerFilters() {
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("listener_filters[%d]: %w", i, err)
		}
		if _, ok := msg.(*tlsinspectorv3.TlsInspector); !ok {
			return nil, fmt.Errorf("listener_filters[%d]: %T is not supported (TlsInspector is)", i, msg)
		}
		lc.inspectTLS = true
	}
	if len(l.GetFilterChains()) == 0 {
		return nil, errors.New("filter_chains: at least one is required")
	}
	for i, fc := range l.GetFilterChains() {
		ch, err := p.compileChain(fc)
		if err != nil {
			return nil, fmt.Errorf("filter_chains[%d]: %w", i, err)
		}
		if lc.inspectTLS != (ch.tls != nil) {
			return nil, fmt.Errorf("filter_chains[%d]: a listener is either all TLS (with the tls_inspector) or all plaintext", i)
		}
		lc.chains = append(lc.chains, ch)
	}
	if !lc.inspectTLS && len(lc.chains) > 1 {
		return nil, errors.New("filter_chains: a plaintext listener has exactly one chain")
	}
	return lc, nil
}

func (p *Proxy) compileChain(fc *listenerv3.FilterChain) (*filterChain, error) {
	if err := unsupported(fc, "name", "filter_chain_match", "filters", "transport_socket"); err != nil {
		return nil, err
	}
	ch := &filterChain{name: fc.GetName()}
	if m := fc.GetFilterChainMatch(); m != nil {
		if err := unsupported(m, "server_names"); err != nil {
			return nil, err
		}
		ch.serverNames = m.GetServerNames()
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		msg, err := ts.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("transport_socket: %w", err)
		}
		dtc, ok := msg.(*tlsv3.DownstreamTlsContext)
		if !ok {
			return nil, fmt.Errorf("transport_socket: %T is not supported (DownstreamTlsContext is)", msg)
		}
		if err := unsupported(dtc, "common_tls_context", "require_client_certificate"); err != nil {
			return nil, err
		}
		if !dtc.GetRequireClientCertificate().GetValue() {
			return nil, errors.New("transport_socket: require_client_certificate must be true (mesh mTLS)")
		}
		allow, err := p.compileCommonTLS(dtc.GetCommonTlsContext())
		if err != nil {
			return nil, fmt.Errorf("transport_socket: %w", err)
		}
		ch.tls = p.secrets.ServerConfig(allow)
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return nil, errors.New("filters: a terminal filter (http_connection_manager or tcp_proxy) is required")
	}
	last := len(filters) - 1
	connFilters, err := compileConnFilters(filters[:last])
	if err != nil {
		return nil, err
	}
	ch.connFilters = connFilters
	msg, err := filters[last].GetTypedConfig().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("filters[%d]: %w", last, err)
	}
	switch f := msg.(type) {
	case *hcmv3.HttpConnectionManager:
		h, err := compileHCM(f)
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", last, err)
		}
		ch.hcm = h
	case *tcpproxyv3.TcpProxy:
		t, err := compileTCPProxy(f)
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", last, err)
		}
		ch.tcp = t
	default:
		return nil, fmt.Errorf("filters[%d]: %T is not supported", last, msg)
	}
	return ch, nil
}

func compileHCM(h *hcmv3.HttpConnectionManager) (*httpConnManager, error) {
	if err := unsupported(h, "stat_prefix", "rds", "route_config", "http_filters", "forward_client_cert_details",
		"set_current_client_cert_details", "use_remote_address", "codec_type",
		"normalize_path", "merge_slashes", "path_with_escaped_slashes_action"); err != nil {
		return nil, err
	}
	out := &httpConnManager{statPrefix: h.GetStatPrefix(), useRemoteAddress: h.GetUseRemoteAddress().GetValue()}
	if h.GetCodecType() != hcmv3.HttpConnectionManager_AUTO && h.GetCodecType() != hcmv3.HttpConnectionManager_HTTP1 {
		return nil, fmt.Errorf("codec_type %s is not supported yet", h.GetCodecType())
	}
	var err error
	if out.paths, err = compilePathNormalization(h); err != nil {
		return nil, err
	}
	if out.filters, err = compileHTTPFilters(h.GetHttpFilters()); err != nil {
		return nil, err
	}
	switch h.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE:
		out.xfcc = xfccSanitize
	case hcmv3.HttpConnectionManager_SANITIZE_SET:
		if d := h.GetSetCurrentClientCertDetails(); d == nil || !d.GetUri() {
			return nil, errors.New("forward_client_cert_details SANITIZE_SET needs set_current_client_cert_details.uri")
		}
		out.xfcc = xfccSanitizeSet
	default:
		return nil, fmt.Errorf("forward_client_cert_details %s is not supported", h.GetForwardClientCertDetails())
	}
	switch {
	case h.GetRds() != nil:
		if h.GetRds().GetConfigSource().GetAds() == nil {
			return nil, errors.New("rds: routes must come from ADS")
		}
		out.rds = h.GetRds().GetRouteConfigName()
	case h.GetRouteConfig() != nil:
		t, err := route.Compile(h.GetRouteConfig())
		if err != nil {
			return nil, err
		}
		out.inline = t
	default:
		return nil, errors.New("either rds or route_config is required")
	}
	return out, nil
}

// chainFor returns the chain the listener's current config gives a
// connection accepted with serverName.
func (lc *listenerConfig) chainFor(serverName string) *filterChain {
	if lc.inspectTLS {
		return lc.match(serverName)
	}
	return lc.chains[0]
}

// match chooses the filter chain for a server name, as Envoy does: an
// exact server name, else the longest matching wildcard (*.example.com),
// else a chain with no server names.
func (lc *listenerConfig) match(serverName string) *filterChain {
	var best *filterChain
	bestLen := -1
	for _, ch := range lc.chains {
		if len(ch.serverNames) == 0 {
			if bestLen < 0 {
				best, bestLen = ch, 0
			}
			continue
		}
		for _, n := range ch.serverNames {
			switch {
			case n == serverName:
				return ch
			case len(n) > 1 && n[0] == '*' && len(serverName) > len(n)-1 && serverName[len(serverName)-len(n)+1:] == n[1:]:
				if len(n) > bestLen {
					best, bestLen = ch, len(n)
				}
			}
		}
	}
	return best
}

// listener is a bound socket and the config its connections follow.
type listener struct {
	p    *Proxy
	name string
	addr string
	ln   net.Listener
	cfg  atomic.Pointer[listenerConfig]

	http   *http.Server
	httpLn *connQueue
	// serverNames maps a connection to the server name it was accepted
	// with, until the HTTP server takes it.
	serverNames sync.Map
	mu          sync.Mutex
	tcp         map[net.Conn]struct{}
	closing     bool
	done        chan struct{}
}

// serverNameKey carries a connection's TLS server name into its requests'
// context.
type serverNameKey struct{}

func (p *Proxy) startListener(lc *listenerConfig) (*listener, error) {
	ln, err := net.Listen("tcp", lc.addr)
	if err != nil {
		return nil, err
	}
	l := &listener{p: p, name: lc.name, addr: lc.addr, ln: ln, tcp: map[net.Conn]struct{}{}, done: make(chan struct{})}
	l.cfg.Store(lc)
	l.httpLn = newConnQueue(ln.Addr())
	l.http = &http.Server{
		Handler:           http.HandlerFunc(l.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          nil,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ctx = withConnPeer(ctx)
			if sn, ok := l.serverNames.LoadAndDelete(c); ok {
				return context.WithValue(ctx, serverNameKey{}, sn)
			}
			return ctx
		},
	}
	go func() { _ = l.http.Serve(l.httpLn) }()
	go l.accept()
	p.log.Info("listening", "listener", lc.name, "address", lc.addr)
	return l, nil
}

func (l *listener) accept() {
	defer close(l.done)
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go l.handle(conn)
	}
}

// handle runs one downstream connection: the TLS handshake when the
// listener terminates mTLS, then the chosen chain's filter.
func (l *listener) handle(conn net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			l.p.log.Error("panic handling a connection", "listener", l.name, "panic", r, "stack", string(debug.Stack()))
			conn.Close()
		}
	}()
	lc := l.cfg.Load()
	var chain *filterChain
	var serverName string
	if lc.inspectTLS {
		tconn := tls.Server(conn, &tls.Config{
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				chain = lc.match(hello.ServerName)
				if chain == nil {
					return nil, fmt.Errorf("no filter chain for server name %q", hello.ServerName)
				}
				return chain.tls, nil
			},
		})
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tconn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.p.log.Debug("downstream TLS handshake failed", "listener", l.name, "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tconn
		serverName = tconn.ConnectionState().ServerName
	} else {
		chain = lc.chainFor("")
	}
	if !l.connAllowed(chain, connInfoOf(conn)) {
		if chain.tcp != nil {
			l.p.tel.tcpDenied(l, conn, chain.tcp)
		}
		conn.Close()
		return
	}
	switch {
	case chain.hcm != nil:
		l.serverNames.Store(conn, serverName)
		if !l.httpLn.push(conn) {
			l.serverNames.Delete(conn)
			conn.Close()
		}
	case chain.tcp != nil:
		if !l.track(conn, true) {
			conn.Close()
			return
		}
		defer l.track(conn, false)
		l.p.proxyTCP(l, conn, chain.tcp)
	}
}

// track adds or removes a TCP connection from the set closed on shutdown;
// it refuses new ones once the listener is closing.
func (l *listener) track(c net.Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !add {
		delete(l.tcp, c)
		return true
	}
	if l.closing {
		return false
	}
	l.tcp[c] = struct{}{}
	return true
}

// close stops accepting, lets HTTP requests in flight finish until ctx is
// done (nil: the drain timeout), then closes what remains.
func (l *listener) close(ctx context.Context) {
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), l.p.opts.DrainTimeout)
		defer cancel()
	}
	l.ln.Close()
	<-l.done
	l.httpLn.Close()
	if err := l.http.Shutdown(ctx); err != nil {
		l.http.Close()
	}
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	// Opaque TCP carries no request boundary to drain at: wait for the
	// connections to end on their own until ctx is done, then close them.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		l.mu.Lock()
		n := len(l.tcp)
		if n > 0 && ctx.Err() != nil {
			for c := range l.tcp {
				c.Close()
			}
		}
		l.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	l.p.log.Info("listener closed", "listener", l.name)
}

// connQueue is a net.Listener fed with connections accepted elsewhere, so
// that an http.Server can serve connections after their TLS handshake and
// chain selection.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
