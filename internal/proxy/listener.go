package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/route"
)

// handshakeTimeout bounds a downstream TLS handshake.
const handshakeTimeout = 10 * time.Second

// listenerConfig is a compiled Listener.
type listenerConfig struct {
	name   string
	addr   string
	chains []*filterChain
	// defaultChain takes connections no chain matches; nil closes them.
	defaultChain *filterChain
	// The listener filters (inspect.go): origDst recovers the destination
	// of redirected connections; inspectTLS and inspectHTTP peek at the
	// first bytes, for at most filtersTimeout, after which the connection
	// is closed unless continueOnTimeout.
	origDst, inspectTLS, inspectHTTP bool
	filtersTimeout                   time.Duration
	continueOnTimeout                bool
	// tlsOff and httpOff are the inspectors' filter_disabled predicates
	// over the destination port; nil: never disabled.
	tlsOff, httpOff func(port uint32) bool
}

// compilePredicate compiles a ListenerFilterChainMatchPredicate over the
// destination port.
func compilePredicate(pr *listenerv3.ListenerFilterChainMatchPredicate) (func(uint32) bool, error) {
	switch r := pr.GetRule().(type) {
	case *listenerv3.ListenerFilterChainMatchPredicate_AnyMatch:
		return func(uint32) bool { return true }, nil
	case *listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange:
		lo, hi := uint32(r.DestinationPortRange.GetStart()), uint32(r.DestinationPortRange.GetEnd())
		return func(p uint32) bool { return p >= lo && p < hi }, nil
	case *listenerv3.ListenerFilterChainMatchPredicate_NotMatch:
		f, err := compilePredicate(r.NotMatch)
		if err != nil {
			return nil, err
		}
		return func(p uint32) bool { return !f(p) }, nil
	case *listenerv3.ListenerFilterChainMatchPredicate_OrMatch, *listenerv3.ListenerFilterChainMatchPredicate_AndMatch:
		var rules []*listenerv3.ListenerFilterChainMatchPredicate
		and := false
		if o, ok := r.(*listenerv3.ListenerFilterChainMatchPredicate_OrMatch); ok {
			rules = o.OrMatch.GetRules()
		} else {
			rules, and = r.(*listenerv3.ListenerFilterChainMatchPredicate_AndMatch).AndMatch.GetRules(), true
		}
		var fs []func(uint32) bool
		for _, sub := range rules {
			f, err := compilePredicate(sub)
			if err != nil {
				return nil, err
			}
			fs = append(fs, f)
		}
		return func(p uint32) bool {
			for _, f := range fs {
				if f(p) != and {
					return !and
				}
			}
			return and
		}, nil
	default:
		return nil, fmt.Errorf("filter_disabled: %T is not supported (any_match, destination_port_range, not_match, or_match, and_match are)", r)
	}
}

// defaultFiltersTimeout is Envoy's listener_filters_timeout default.
const defaultFiltersTimeout = 15 * time.Second

// chainMatch is a compiled filter_chain_match; zero fields match
// anything.
type chainMatch struct {
	port        uint32
	prefixes    []netip.Prefix
	serverNames []string
	transport   string
	protocols   []string
}

// filterChain is one way to handle a connection.
type filterChain struct {
	// digest identifies what it was compiled from (compileChainOnce).
	digest [sha256.Size]byte
	name   string
	match  chainMatch
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
	return p.recompileListener(l, nil)
}

// recompileListener compiles a listener that replaces prev (nil: none),
// taking over prev's compiled filter chains whose bytes have not changed,
// as Envoy updates a listener's filter chains in place: a capture
// listener has a chain per mesh workload, and a workload that comes or
// goes changes one of thousands.
func (p *Proxy) recompileListener(l *listenerv3.Listener, prev *listenerConfig) (*listenerConfig, error) {
	if err := unsupported(l, "name", "address", "filter_chains", "listener_filters", "listener_filters_timeout",
		"continue_on_listener_filters_timeout", "default_filter_chain"); err != nil {
		return nil, err
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil || sa.GetPortValue() == 0 {
		return nil, errors.New("address: a socket address with a port is required")
	}
	lc := &listenerConfig{
		name: l.GetName(), addr: net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)),
		filtersTimeout: defaultFiltersTimeout, continueOnTimeout: l.GetContinueOnListenerFiltersTimeout(),
	}
	if sa.GetIpv4Compat() {
		if a, err := netip.ParseAddr(sa.GetAddress()); err != nil || !a.IsUnspecified() || !a.Is6() {
			return nil, errors.New("address: ipv4_compat is supported on :: only")
		}
		// Both families where the host has IPv6, IPv4 where it has not.
		lc.addr = ":" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
	}
	if d := l.GetListenerFiltersTimeout(); d != nil {
		// Zero disables the timeout in Envoy; here it is bounded anyway.
		if lc.filtersTimeout = d.AsDuration(); lc.filtersTimeout <= 0 {
			lc.filtersTimeout = defaultFiltersTimeout
		}
	}
	for i, f := range l.GetListenerFilters() {
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("listener_filters[%d]: %w", i, err)
		}
		if err := unsupported(f, "name", "typed_config", "filter_disabled"); err != nil {
			return nil, fmt.Errorf("listener_filters[%d]: %w", i, err)
		}
		var off func(uint32) bool
		if d := f.GetFilterDisabled(); d != nil {
			if off, err = compilePredicate(d); err != nil {
				return nil, fmt.Errorf("listener_filters[%d]: %w", i, err)
			}
		}
		switch msg.(type) {
		case *tlsinspectorv3.TlsInspector:
			lc.inspectTLS, lc.tlsOff = true, off
		case *httpinspectorv3.HttpInspector:
			lc.inspectHTTP, lc.httpOff = true, off
		case *origdstv3.OriginalDst:
			if off != nil {
				return nil, fmt.Errorf("listener_filters[%d]: filter_disabled is not supported on original_dst", i)
			}
			lc.origDst = true
		default:
			return nil, fmt.Errorf("listener_filters[%d]: %T is not supported (TlsInspector, HttpInspector and OriginalDst are)", i, msg)
		}
		if err := unsupported(msg); err != nil {
			return nil, fmt.Errorf("listener_filters[%d]: %w", i, err)
		}
	}
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		return nil, errors.New("filter_chains: at least one is required")
	}
	// Matches are told apart by their deterministic encoding (equal
	// messages without maps encode equally): one lookup per chain, where
	// comparing every pair would cost a capture listener's thousands of
	// chains millions of comparisons.
	seen := make(map[string]int, len(l.GetFilterChains()))
	reuse := prev.chainsByDigest()
	var buf []byte
	for i, fc := range l.GetFilterChains() {
		ch, err := p.compileChainOnce(fc, lc, reuse, &buf)
		if err != nil {
			return nil, fmt.Errorf("filter_chains[%d]: %w", i, err)
		}
		key, err := proto.MarshalOptions{Deterministic: true}.Marshal(fc.GetFilterChainMatch())
		if err != nil {
			return nil, fmt.Errorf("filter_chains[%d]: %w", i, err)
		}
		if j, dup := seen[string(key)]; dup {
			return nil, fmt.Errorf("filter_chains[%d]: the same filter_chain_match as filter_chains[%d]", i, j)
		}
		seen[string(key)] = i
		lc.chains = append(lc.chains, ch)
	}
	if d := l.GetDefaultFilterChain(); d != nil {
		if d.GetFilterChainMatch() != nil {
			return nil, errors.New("default_filter_chain: filter_chain_match is not allowed")
		}
		ch, err := p.compileChainOnce(d, lc, reuse, &buf)
		if err != nil {
			return nil, fmt.Errorf("default_filter_chain: %w", err)
		}
		lc.defaultChain = ch
	}
	return lc, nil
}

// chainsByDigest indexes a compiled listener's chains by digest; nil for
// none.
func (lc *listenerConfig) chainsByDigest() map[[sha256.Size]byte]*filterChain {
	if lc == nil {
		return nil
	}
	m := make(map[[sha256.Size]byte]*filterChain, len(lc.chains)+1)
	for _, ch := range lc.chains {
		m[ch.digest] = ch
	}
	if lc.defaultChain != nil {
		m[lc.defaultChain.digest] = lc.defaultChain
	}
	return m
}

// compileChainOnce returns the chain of reuse with fc's digest, or
// compiles fc. The digest covers the chain's bytes and what of the
// listener its compilation reads (which inspectors run); buf is scratch
// space for the bytes.
func (p *Proxy) compileChainOnce(fc *listenerv3.FilterChain, lc *listenerConfig, reuse map[[sha256.Size]byte]*filterChain, buf *[]byte) (*filterChain, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend((*buf)[:0], fc)
	if err != nil {
		return nil, err
	}
	*buf = b
	var flags byte
	if lc.inspectTLS {
		flags |= 1
	}
	if lc.inspectHTTP {
		flags |= 2
	}
	digest := sha256.Sum256(append(b, flags))
	if ch := reuse[digest]; ch != nil {
		return ch, nil
	}
	ch, err := p.compileChain(fc, lc)
	if err != nil {
		return nil, err
	}
	ch.digest = digest
	return ch, nil
}

// compileMatch reads a filter_chain_match; what it matches on must be
// something the listener's filters find out.
func compileMatch(m *listenerv3.FilterChainMatch, lc *listenerConfig) (chainMatch, error) {
	var out chainMatch
	if m == nil {
		return out, nil
	}
	if err := unsupported(m, "destination_port", "prefix_ranges", "server_names", "transport_protocol", "application_protocols"); err != nil {
		return out, err
	}
	out.port = m.GetDestinationPort().GetValue()
	for i, r := range m.GetPrefixRanges() {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return out, fmt.Errorf("prefix_ranges[%d]: %w", i, err)
		}
		bits := a.BitLen()
		if r.GetPrefixLen() != nil {
			bits = int(r.GetPrefixLen().GetValue())
		}
		pfx, err := a.Prefix(bits)
		if err != nil {
			return out, fmt.Errorf("prefix_ranges[%d]: %w", i, err)
		}
		out.prefixes = append(out.prefixes, pfx)
	}
	out.serverNames = m.GetServerNames()
	out.transport = m.GetTransportProtocol()
	out.protocols = m.GetApplicationProtocols()
	switch {
	case out.transport != "" && out.transport != transportTLS && out.transport != transportRaw:
		return out, fmt.Errorf("transport_protocol %q: want %q or %q", out.transport, transportTLS, transportRaw)
	case (len(out.serverNames) > 0 || out.transport != "") && !lc.inspectTLS:
		return out, errors.New("server_names and transport_protocol need the tls_inspector listener filter")
	case len(out.protocols) > 0 && !lc.inspectTLS && !lc.inspectHTTP:
		return out, errors.New("application_protocols need the tls_inspector or http_inspector listener filter")
	}
	return out, nil
}

func (p *Proxy) compileChain(fc *listenerv3.FilterChain, lc *listenerConfig) (*filterChain, error) {
	if err := unsupported(fc, "name", "filter_chain_match", "filters", "transport_socket"); err != nil {
		return nil, err
	}
	ch := &filterChain{name: fc.GetName()}
	m, err := compileMatch(fc.GetFilterChainMatch(), lc)
	if err != nil {
		return nil, fmt.Errorf("filter_chain_match: %w", err)
	}
	ch.match = m
	if ts := fc.GetTransportSocket(); ts != nil {
		msg, err := ts.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("transport_socket: %w", err)
		}
		dtc, ok := msg.(*tlsv3.DownstreamTlsContext)
		if !ok {
			return nil, fmt.Errorf("transport_socket: %T is not supported (DownstreamTlsContext is)", msg)
		}
		if isGatewayTLS(dtc) {
			if ch.tls, err = p.compileGatewayTLS(dtc); err != nil {
				return nil, fmt.Errorf("transport_socket: %w", err)
			}
		} else {
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
	if ch.tls != nil && ch.hcm != nil {
		// The connection manager speaks HTTP/2 or HTTP/1.1, as the client
		// negotiates.
		ch.tls.NextProtos = []string{"h2", "http/1.1"}
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
		// HTTP/1.1 and HTTP/2 are told apart per connection (ALPN, the
		// HTTP/2 preface).
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

// match chooses the filter chain of a connection as Envoy does, narrowing
// the candidates by one criterion after another: destination port,
// destination address (longest prefix), server name (exact, then longest
// wildcard such as *.example.com), transport protocol, application
// protocols. At each step the chains that name a matching value win over
// those that leave the criterion unset; a connection no chain matches
// goes to the default chain, if there is one.
func (lc *listenerConfig) match(m connMatch) *filterChain {
	var dst netip.AddrPort
	if m.dst != nil {
		dst, _ = netip.ParseAddrPort(m.dst.String())
	}
	addr := dst.Addr().Unmap()
	cands := lc.chains
	cands = narrow(cands, func(c chainMatch) (int, bool) {
		if c.port == 0 {
			return -1, false
		}
		return 0, c.port == uint32(dst.Port())
	})
	cands = narrow(cands, func(c chainMatch) (int, bool) {
		if len(c.prefixes) == 0 {
			return -1, false
		}
		best, ok := -2, false
		for _, p := range c.prefixes {
			if addr.IsValid() && p.Contains(addr) && p.Bits() > best {
				best, ok = p.Bits(), true
			}
		}
		return best, ok
	})
	cands = narrow(cands, func(c chainMatch) (int, bool) {
		if len(c.serverNames) == 0 {
			return -1, false
		}
		best, ok := -2, false
		for _, n := range c.serverNames {
			switch {
			case n == m.serverName:
				return 1 << 20, true
			case len(n) > 1 && n[0] == '*' && len(m.serverName) > len(n)-1 && m.serverName[len(m.serverName)-len(n)+1:] == n[1:]:
				if len(n) > best {
					best, ok = len(n), true
				}
			}
		}
		return best, ok
	})
	cands = narrow(cands, func(c chainMatch) (int, bool) {
		if c.transport == "" {
			return -1, false
		}
		return 0, c.transport == m.transport
	})
	cands = narrow(cands, func(c chainMatch) (int, bool) {
		if len(c.protocols) == 0 {
			return -1, false
		}
		for _, p := range c.protocols {
			if slices.Contains(m.protocols, p) {
				return 0, true
			}
		}
		return 0, false
	})
	if len(cands) == 0 {
		return lc.defaultChain
	}
	return cands[0]
}

// narrow keeps the chains whose criterion matches with the best score, or
// when none does, those that leave it unset (score -1, not ok); a chain
// that sets the criterion to something else reports another score, not
// ok.
func narrow(chains []*filterChain, score func(chainMatch) (int, bool)) []*filterChain {
	var matched, unset []*filterChain
	best := -1
	for _, ch := range chains {
		s, ok := score(ch.match)
		switch {
		case ok && s > best:
			matched, best = []*filterChain{ch}, s
		case ok && s == best:
			matched = append(matched, ch)
		case !ok && s == -1:
			unset = append(unset, ch)
		}
	}
	if len(matched) > 0 {
		return matched
	}
	return unset
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
	// h1 are the HTTP/1 connections this listener serves itself
	// (h1server.go); HTTP/2 goes to http.
	h1 h1ServerConns
	// matches maps a connection to what its filter chain was chosen by,
	// until the HTTP server takes it.
	matches sync.Map
	mu      sync.Mutex
	tcp     map[net.Conn]struct{}
	closing bool
	done    chan struct{}
}

// connMatchKey carries a connection's *connState into its requests'
// context.
type connMatchKey struct{}

// connState is what an HTTP connection's requests share: what its filter
// chain is chosen by, and the chain chosen last, with the listener config
// it was chosen in. The chain is chosen again only when the config
// changed, not for every request.
type connState struct {
	match connMatch
	last  atomic.Pointer[chosenChain]
}

type chosenChain struct {
	cfg   *listenerConfig
	chain *filterChain
}

// chain returns the connection's filter chain in cfg.
func (cs *connState) chain(cfg *listenerConfig) *filterChain {
	if c := cs.last.Load(); c != nil && c.cfg == cfg {
		return c.chain
	}
	ch := cfg.match(cs.match)
	cs.last.Store(&chosenChain{cfg: cfg, chain: ch})
	return ch
}

func (p *Proxy) startListener(lc *listenerConfig) (*listener, error) {
	ln, err := net.Listen("tcp", lc.addr)
	if err != nil {
		return nil, err
	}
	l := &listener{p: p, name: lc.name, addr: lc.addr, ln: ln, tcp: map[net.Conn]struct{}{}, done: make(chan struct{})}
	l.cfg.Store(lc)
	l.httpLn = newConnQueue(ln.Addr())
	// HTTP/1.1 and HTTP/2: over TLS as ALPN negotiates it, in plaintext
	// with prior knowledge (h2c).
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	l.http = &http.Server{
		Protocols:         &protos,
		Handler:           http.HandlerFunc(l.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          nil,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ctx = withConnPeer(ctx)
			if m, ok := l.matches.LoadAndDelete(c); ok {
				return context.WithValue(ctx, connMatchKey{}, &connState{match: m.(connMatch)})
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

// handle runs one downstream connection: the listener filters (the
// original destination, peeking at the first bytes), the filter chain
// match, the TLS handshake when the chain terminates mTLS, then the
// chain's filters.
func (l *listener) handle(conn net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			l.p.log.Error("panic handling a connection", "listener", l.name, "panic", r, "stack", string(debug.Stack()))
			conn.Close()
		}
	}()
	lc := l.cfg.Load()
	m := connMatch{dst: conn.LocalAddr(), transport: transportRaw}
	if lc.origDst || lc.inspectTLS || lc.inspectHTTP {
		dc := &downConn{Conn: conn, local: conn.LocalAddr()}
		if lc.origDst {
			if d, ok := originalDst(conn); ok {
				dc.local = net.TCPAddrFromAddrPort(d)
			}
		}
		port := uint32(0)
		if a, ok := dc.local.(*net.TCPAddr); ok {
			port = uint32(a.Port)
		}
		tlsOn := lc.inspectTLS && (lc.tlsOff == nil || !lc.tlsOff(port))
		httpOn := lc.inspectHTTP && (lc.httpOff == nil || !lc.httpOff(port))
		found, err := inspect(dc, tlsOn, httpOn, time.Now().Add(lc.filtersTimeout))
		if err != nil && !(errors.Is(err, errInspectTimeout) && lc.continueOnTimeout) {
			l.p.log.Debug("listener filters failed", "listener", l.name, "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		m = found
		m.dst = dc.local
		if m.transport == "" {
			// As in Envoy: what the tls_inspector did not find TLS is raw.
			m.transport = transportRaw
		}
		conn = dc
	}
	chain := lc.match(m)
	if chain == nil {
		l.p.log.Debug("no filter chain matches", "listener", l.name, "remote", conn.RemoteAddr().String(),
			"destination", m.dst.String(), "serverName", m.serverName, "transport", m.transport)
		conn.Close()
		return
	}
	if chain.tls != nil {
		tconn := tls.Server(conn, chain.tls)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tconn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.p.log.Debug("downstream TLS handshake failed", "listener", l.name, "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tconn
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
		l.serveHTTPConn(conn, m)
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
	busy := l.h1.shutdown()
	if err := l.http.Shutdown(ctx); err != nil {
		l.http.Close()
	}
	// HTTP/1 connections close after their request in flight.
	for busy > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		busy = l.h1.busy()
	}
	l.h1.closeAll()
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
