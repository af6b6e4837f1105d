package proxy

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestDuplicateChainMatch: two filter chains with the same match are
// refused, as Envoy refuses them; different matches are not.
func TestDuplicateChainMatch(t *testing.T) {
	p := testProxy(t)
	chain := func(port uint32) *listenerv3.FilterChain {
		return &listenerv3.FilterChain{
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
			Filters: []*listenerv3.Filter{{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: mustAny(t, &tcpproxyv3.TcpProxy{StatPrefix: "s", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}})}}},
		}
	}
	l := &listenerv3.Listener{Name: "l",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}},
		FilterChains: []*listenerv3.FilterChain{chain(80), chain(81), chain(80)},
	}
	if _, err := p.compileListener(l); err == nil || !strings.Contains(err.Error(), "filter_chains[2]: the same filter_chain_match as filter_chains[0]") {
		t.Fatalf("compileListener = %v, want the duplicate match refused", err)
	}
	l.FilterChains = l.FilterChains[:2]
	if _, err := p.compileListener(l); err != nil {
		t.Fatalf("distinct matches: %v", err)
	}
}
