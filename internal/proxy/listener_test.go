package proxy

import (
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/xdsclient"
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

// captureListener is shaped as the outbound capture listener of a
// sidecar seeing n workloads: original_dst, and per workload a chain
// matching its address to an HTTP connection manager with an inline
// route to its cluster. The listener binds port on loopback.
func captureListener(t testing.TB, n int, port uint32) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: "outbound_capture",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.original_dst",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &origdstv3.OriginalDst{})}}},
	}
	router := []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}}
	for i := range n {
		cluster := fmt.Sprintf("outbound|8080|pod.svc-%d|svc-%d.fleet.svc.cluster.local", i, i)
		hcm := &hcmv3.HttpConnectionManager{StatPrefix: cluster, HttpFilters: router,
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: cluster, VirtualHosts: []*routev3.VirtualHost{{
				Name: cluster, Domains: []string{"*"}, Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
				}}}}}}}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Name: cluster,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080),
				PrefixRanges: []*corev3.CidrRange{{AddressPrefix: fmt.Sprintf("10.1.%d.%d", i/256, i%256), PrefixLen: wrapperspb.UInt32(32)}}},
			Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}})
	}
	return l
}

// TestListenerUpdateKeepsUnchangedChains updates a capture listener of a
// hundred chains as a workload change does (one chain changed, one gone,
// one new): the other chains are the very chains compiled before, and
// changing what the listener inspects compiles them all again.
func TestListenerUpdateKeepsUnchangedChains(t *testing.T) {
	p := testProxy(t)
	t.Cleanup(func() { p.shutdown(nil) })
	port := freePort(t)
	apply := func(l *listenerv3.Listener) *listenerConfig {
		t.Helper()
		if err := p.Apply(xdsclient.ListenerType, map[string]proto.Message{l.Name: l}); err != nil {
			t.Fatal(err)
		}
		return p.listeners[l.Name].cfg.Load()
	}
	before := apply(captureListener(t, 100, port))
	next := captureListener(t, 101, port)
	next.FilterChains[7].Name = "renamed"
	next.FilterChains = append(next.FilterChains[:42], next.FilterChains[43:]...)
	after := apply(next)
	if after == before || len(after.chains) != 100 {
		t.Fatalf("the listener was not updated: %d chains", len(after.chains))
	}
	old := map[string]*filterChain{}
	for _, ch := range before.chains {
		old[ch.name] = ch
	}
	for _, ch := range after.chains {
		prev, had := old[ch.name]
		switch {
		case ch.name == "renamed" || ch.name == fmt.Sprintf("outbound|8080|pod.svc-%d|svc-%d.fleet.svc.cluster.local", 100, 100):
			if had {
				t.Errorf("chain %s: a new chain has an old one's name", ch.name)
			}
		case !had:
			t.Errorf("chain %s: not in the listener before", ch.name)
		case prev != ch:
			t.Errorf("chain %s was compiled again", ch.name)
		}
	}
	// With the http_inspector every chain compiles again: what its match
	// may ask for depends on the inspectors.
	next = captureListener(t, 101, port)
	next.ListenerFilters = append(next.ListenerFilters, &listenerv3.ListenerFilter{Name: "envoy.filters.listener.http_inspector",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(t, &httpinspectorv3.HttpInspector{})}})
	inspected := apply(next)
	kept := map[*filterChain]bool{}
	for _, ch := range after.chains {
		kept[ch] = true
	}
	for _, ch := range inspected.chains {
		if kept[ch] {
			t.Fatalf("chain %s kept across a change of listener filters", ch.name)
		}
	}
}

// BenchmarkCaptureListenerUpdate compiles the outbound capture listener
// of a sidecar seeing 3,000 workloads when one workload changes
// (go test -bench CaptureListenerUpdate -benchmem ./internal/proxy):
// "whole" compiles every chain, as each update did before; "one_chain"
// takes over the unchanged chains. The ratio is reported as whole/one.
func BenchmarkCaptureListenerUpdate(b *testing.B) {
	p := testProxy(b)
	l := captureListener(b, 3000, 15001)
	prev, err := p.compileListener(l)
	if err != nil {
		b.Fatal(err)
	}
	changed := proto.Clone(l).(*listenerv3.Listener)
	changed.FilterChains[1500].Name = "changed"
	var whole float64
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.compileListener(changed); err != nil {
				b.Fatal(err)
			}
		}
		whole = float64(b.Elapsed()) / float64(b.N)
	})
	b.Run("one_chain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.recompileListener(changed, prev); err != nil {
				b.Fatal(err)
			}
		}
		if one := float64(b.Elapsed()) / float64(b.N); one > 0 && whole > 0 {
			b.ReportMetric(whole/one, "whole/one")
		}
	})
}
