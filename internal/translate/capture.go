package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// Transparent capture: a sidecar whose workload's traffic the capture
// rules (trellis-proxy init) redirect gets two more listeners.
//
//	outbound_capture (15001): original_dst, http_inspector on ports with
//	  no declared protocol; a chain per service port on its ClusterIPs,
//	  routed as an explicit upstream is (GAMMA routes, TCPRoutes, the
//	  service's cluster); a chain per mesh workload address and port
//	  (destination_port + prefix_ranges) to a cluster of that one workload,
//	  over mTLS with its identity and the SNI of its service port, to its
//	  mesh port; anything else to PassthroughCluster (ORIGINAL_DST), or
//	  BlackHoleCluster with Options.RegistryOnly.
//	inbound_capture (15006): original_dst, tls_inspector (off on DISABLE
//	  ports), http_inspector on ports with no declared protocol; per app
//	  port, by its MTLSPolicy mode:
//	    STRICT      tls: mesh mTLS     raw_buffer: refused (RBAC denies all)
//	    PERMISSIVE  tls: mesh mTLS     raw_buffer: plaintext to the app
//	    DISABLE     anything: to the app as it is
//	  other ports to the app through PassthroughCluster, unless the
//	  workload's default mode is STRICT.
//
// Mesh traffic between proxies still goes to the destination's mesh port
// (15008), which the capture rules leave alone, straight to the pod IP.

// Names of the capture listeners and clusters.
const (
	OutboundCaptureListener = "outbound_capture"
	InboundCaptureListener  = "inbound_capture"
	// PassthroughCluster sends a connection where it was headed.
	PassthroughCluster = "PassthroughCluster"
	// BlackHoleCluster has no endpoints: connections sent there fail.
	BlackHoleCluster = "BlackHoleCluster"
)

// OutboundPodCluster names the cluster of one workload's port, reached
// directly by its address (a headless service's endpoint, a StatefulSet
// peer): the pod's name fills the subset field.
func OutboundPodCluster(port uint32, w model.Key, host string) string {
	return fmt.Sprintf("outbound|%d|pod.%s|%s", port, w.Name, host)
}

// AllServicesKey is the dependency key of the set of every Service: a
// capturing sidecar matches on every mesh workload's address.
const AllServicesKey = "services"

// protocolsHTTP are what the http_inspector reports for HTTP.
var protocolsHTTP = []string{"http/1.1", "h2c"}

func originalDstFilter() *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:       wellknown.OriginalDestination,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: typed(&origdstv3.OriginalDst{})},
	}
}

// httpInspector returns the http_inspector, on only the given ports.
func httpInspector(ports []uint32) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{
		Name:           wellknown.HTTPInspector,
		ConfigType:     &listenerv3.ListenerFilter_TypedConfig{TypedConfig: typed(&httpinspectorv3.HttpInspector{})},
		FilterDisabled: &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: portsPredicate(ports)}},
	}
}

// portsPredicate matches connections to one of ports.
func portsPredicate(ports []uint32) *listenerv3.ListenerFilterChainMatchPredicate {
	rule := func(p uint32) *listenerv3.ListenerFilterChainMatchPredicate {
		return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: int32(p), End: int32(p) + 1},
		}}
	}
	if len(ports) == 1 {
		return rule(ports[0])
	}
	set := &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{}
	for _, p := range ports {
		set.Rules = append(set.Rules, rule(p))
	}
	return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{OrMatch: set}}
}

// captureListener starts a capture listener.
func (b *builder) captureListener(name string, port uint32) *listenerv3.Listener {
	// The wildcard address of both families: the capture rules redirect
	// to the primary address of the receiving interface (inbound) or to
	// the loopback address (outbound), of IPv4 or IPv6.
	addr := socketAddress("::", port)
	addr.GetSocketAddress().Ipv4Compat = true
	return &listenerv3.Listener{
		Name:            name,
		Address:         addr,
		ListenerFilters: []*listenerv3.ListenerFilter{originalDstFilter()},
		// The inspectors wait this long for the client's first bytes;
		// a client that sends nothing (a server-first protocol) then goes
		// on as plaintext TCP.
		ListenerFiltersTimeout:           durationpb.New(b.opts.ProtocolDetectionTimeout),
		ContinueOnListenerFiltersTimeout: true,
	}
}

// hostPrefix is the /32 or /128 of an address.
func hostPrefix(addr string) *corev3.CidrRange {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	return &corev3.CidrRange{AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))}
}

// directHCM is a connection manager that sends everything to cluster.
func directHCM(statPrefix, cluster string) *listenerv3.Filter {
	return httpFilter(&hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: inlineRoutes(&routev3.RouteConfiguration{
			Name: cluster,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    cluster,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{prefixRoute("/", cluster)},
			}},
		}),
	})
}

// serviceAddressChains adds the chains of a service port's virtual
// addresses (ClusterIPs): like an explicit upstream listener, HTTP by the
// routes attached to the service (GAMMA), TCP by its TCPRoute, to the
// service's cluster.
func (b *builder) serviceAddressChains(ln *listenerv3.Listener, s *model.Service, sp model.ServicePort, sniff map[uint32]bool) {
	var prefixes []*corev3.CidrRange
	for _, ip := range s.ClusterIPs {
		if p := hostPrefix(ip); p != nil {
			prefixes = append(prefixes, p)
		}
	}
	if len(prefixes) == 0 {
		return
	}
	b.dependOn(ServiceKey(s.Key))
	b.serviceChains(ln, s, sp, sp.Port, prefixes, OutboundCluster(sp.Port, b.host(s.Key)), sniff)
}

// serviceChains adds the chains of connections to prefixes on port that
// are routed as service port sp (GAMMA routes, TCPRoute, the service's
// cluster); chainName names them.
func (b *builder) serviceChains(ln *listenerv3.Listener, s *model.Service, sp model.ServicePort, port uint32, prefixes []*corev3.CidrRange, chainName string, sniff map[uint32]bool) {
	name := OutboundCluster(sp.Port, b.host(s.Key))
	match := func() *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), PrefixRanges: prefixes}
	}
	httpChain := func(m *listenerv3.FilterChainMatch, chainName string) *listenerv3.FilterChain {
		rc := b.meshRoutes(name, s, sp)
		return &listenerv3.FilterChain{Name: chainName, FilterChainMatch: m, Filters: []*listenerv3.Filter{httpFilter(withCORS(&hcmv3.HttpConnectionManager{
			StatPrefix:     name,
			RouteSpecifier: rds(name),
		}, rc))}}
	}
	if sp.Protocol.IsHTTP() {
		ln.FilterChains = append(ln.FilterChains, httpChain(match(), chainName))
		return
	}
	tcp := b.meshTCP(name, s, sp)
	if tcp == nil {
		return
	}
	if !sp.ProtocolDeclared {
		sniff[port] = true
		m := match()
		m.ApplicationProtocols = protocolsHTTP
		ln.FilterChains = append(ln.FilterChains, httpChain(m, chainName+"|http"))
	}
	ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{Name: chainName, FilterChainMatch: match(), Filters: []*listenerv3.Filter{tcp}})
}

// outboundCapture builds the outbound capture listener.
func (b *builder) outboundCapture() {
	p := b.in.Proxy
	if p.OutboundCapturePort == 0 {
		return
	}
	b.dependOn(AllServicesKey)
	ln := b.captureListener(OutboundCaptureListener, p.OutboundCapturePort)
	sniff := map[uint32]bool{}
	seen := map[string]bool{}
	// Pods of other networks are not reachable by address: only their
	// services are, through east-west gateways (network.go).
	local := b.proxyNetwork()
	for _, s := range b.in.Config.Services {
		if s.ExternalName != "" {
			continue
		}
		host := b.host(s.Key)
		members := b.clusterMembers(s)
		for _, sp := range s.Ports {
			if sp.Protocol == model.ProtocolUDP {
				continue
			}
			b.serviceAddressChains(ln, s, sp, sniff)
			b.plainMemberChains(ln, s, sp, members, seen, sniff)
			for _, w := range members {
				target, ok := w.TargetPort(sp)
				prefix := hostPrefix(w.Address)
				// Workloads without a sidecar are reached as they are, by
				// the passthrough, or as plainMemberChains says; those of
				// other networks only through their east-west gateway.
				if !ok || w.MeshPort == 0 || prefix == nil || seen[model.HostPort(w.Address, target)] || model.NetworkOf(b.in.Config, w) != local {
					continue
				}
				seen[model.HostPort(w.Address, target)] = true
				cluster := OutboundPodCluster(sp.Port, w.Key, host)
				b.out.Clusters = append(b.out.Clusters, &clusterv3.Cluster{
					Name:                 cluster,
					ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
					ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
					LoadAssignment: &endpointv3.ClusterLoadAssignment{
						ClusterName: cluster,
						Endpoints: []*endpointv3.LocalityLbEndpoints{{
							LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(w.Address, w.MeshPort, nil)},
						}},
					},
					TransportSocket:               b.upstreamMTLS(SNI(sp.Port, host), []string{b.workloadID(w)}),
					TypedExtensionProtocolOptions: httpProtocolOptions(upstreamProtocol(sp), 0),
				})
				match := func() *listenerv3.FilterChainMatch {
					return &listenerv3.FilterChainMatch{
						DestinationPort: wrapperspb.UInt32(target),
						PrefixRanges:    []*corev3.CidrRange{prefix},
					}
				}
				statPrefix := cluster
				switch {
				case sp.Protocol.IsHTTP():
					ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
						Name: cluster, FilterChainMatch: match(), Filters: []*listenerv3.Filter{directHCM(statPrefix, cluster)},
					})
				case !sp.ProtocolDeclared:
					sniff[target] = true
					m := match()
					m.ApplicationProtocols = protocolsHTTP
					ln.FilterChains = append(ln.FilterChains,
						&listenerv3.FilterChain{Name: cluster + "|http", FilterChainMatch: m, Filters: []*listenerv3.Filter{directHCM(statPrefix, cluster)}},
						&listenerv3.FilterChain{Name: cluster, FilterChainMatch: match(), Filters: []*listenerv3.Filter{tcpFilter(statPrefix, cluster)}})
				default:
					ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
						Name: cluster, FilterChainMatch: match(), Filters: []*listenerv3.Filter{tcpFilter(statPrefix, cluster)},
					})
				}
			}
		}
	}
	if len(sniff) > 0 {
		ln.ListenerFilters = append(ln.ListenerFilters, httpInspector(sortedPorts(sniff)))
	}
	unknown := PassthroughCluster
	if b.registryOnly() {
		unknown = BlackHoleCluster
	}
	ln.DefaultFilterChain = &listenerv3.FilterChain{Name: unknown, Filters: []*listenerv3.Filter{tcpFilter(unknown, unknown)}}
	b.captureCluster(unknown)
	b.out.Listeners = append(b.out.Listeners, ln)
}

// inboundCapture builds the inbound capture listener: plaintext or mTLS
// to the app's ports, by their mTLS mode.
func (b *builder) inboundCapture() {
	p := b.in.Proxy
	w := &p.Workload
	if p.InboundCapturePort == 0 || w.MeshPort == 0 {
		return
	}
	ln := b.captureListener(InboundCaptureListener, p.InboundCapturePort)
	services := b.memberOf(w)
	policies := b.accessPolicies(w, services)
	type appPort struct {
		http, declared bool
	}
	ports := map[uint32]*appPort{}
	for _, s := range services {
		for _, sp := range s.Ports {
			target, ok := w.TargetPort(sp)
			if !ok || sp.Protocol == model.ProtocolUDP {
				continue
			}
			ap := ports[target]
			if ap == nil {
				ap = &appPort{}
				ports[target] = ap
			}
			ap.http = ap.http || sp.Protocol.IsHTTP()
			ap.declared = ap.declared || sp.ProtocolDeclared
			b.useAppPort(target, upstreamProtocol(sp))
		}
	}
	sniff, disabled := map[uint32]bool{}, map[uint32]bool{}
	for _, port := range sortedPorts(ports) {
		ap := ports[port]
		mode := model.MTLSModeFor(b.in.Config, b.in.Index, w, port)
		name := "inbound|" + strconv.FormatUint(uint64(port), 10)
		match := func(transport string) *listenerv3.FilterChainMatch {
			return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transport}
		}
		if mode != model.MTLSDisable {
			ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
				Name:             name + "|mtls",
				FilterChainMatch: match("tls"),
				TransportSocket:  b.downstreamMTLS(),
				Filters:          b.inboundFilters(port, ap.http, b.inboundAccess(policies, port, ap.http), true),
			})
		}
		plain := func(transport string) {
			if !ap.http && !ap.declared {
				sniff[port] = true
				m := match(transport)
				m.ApplicationProtocols = protocolsHTTP
				ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
					Name: name + "|plaintext|http", FilterChainMatch: m,
					Filters: b.inboundFilters(port, true, b.inboundAccess(policies, port, true), false),
				})
			}
			ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
				Name: name + "|plaintext", FilterChainMatch: match(transport),
				Filters: b.inboundFilters(port, ap.http, b.inboundAccess(policies, port, ap.http), false),
			})
		}
		switch mode {
		case model.MTLSStrict:
			// Plaintext is refused: an ALLOW policy with no rule denies
			// every connection.
			deny := accessRBAC{allow: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}}
			ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
				Name: name + "|plaintext-refused", FilterChainMatch: match("raw_buffer"),
				Filters: b.inboundFilters(port, false, deny, false),
			})
		case model.MTLSPermissive:
			plain("raw_buffer")
		default:
			disabled[port] = true
			plain("")
		}
	}
	ti := tlsInspector()
	if len(disabled) > 0 {
		ti.FilterDisabled = portsPredicate(sortedPorts(disabled))
	}
	ln.ListenerFilters = append(ln.ListenerFilters, ti)
	if len(sniff) > 0 {
		ln.ListenerFilters = append(ln.ListenerFilters, httpInspector(sortedPorts(sniff)))
	}
	if model.MTLSModeFor(b.in.Config, b.in.Index, w, 0) != model.MTLSStrict {
		// Ports no service names reach the app as they are.
		ln.DefaultFilterChain = &listenerv3.FilterChain{Name: PassthroughCluster, Filters: []*listenerv3.Filter{tcpFilter("inbound_passthrough", PassthroughCluster)}}
		b.captureCluster(PassthroughCluster)
	}
	if len(ln.FilterChains) == 0 && ln.DefaultFilterChain == nil {
		return
	}
	b.out.Listeners = append(b.out.Listeners, ln)
}

// captureCluster adds PassthroughCluster or BlackHoleCluster once.
func (b *builder) captureCluster(name string) {
	for _, c := range b.out.Clusters {
		if c.Name == name {
			return
		}
	}
	c := &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(b.opts.ConnectTimeout)}
	if name == PassthroughCluster {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name}
	}
	b.out.Clusters = append(b.out.Clusters, c)
}

func sortedPorts[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
