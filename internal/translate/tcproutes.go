package translate

import (
	"fmt"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"trellis.dev/trellis/internal/model"
)

// meshTCP is the tcp_proxy of an outbound TCP listener toward service port
// sp: the TCPRoute attached to it (GAMMA) splits connections among its
// backends by weight; without one, every connection goes to the service.
// Of several TCPRoutes on one port, the oldest is in effect, as Gateway
// API precedence picks between conflicting routes; the others are
// reported. nil (reported) when the route leaves no usable backend: the
// local port is then not served, as a TCP client sees a route that fails.
func (b *builder) meshTCP(statPrefix string, s *model.Service, sp model.ServicePort) *listenerv3.Filter {
	for _, r := range b.tlsRoutesOf(model.ParentService, s.Key) {
		if attachesToService(r.Parents, s, sp) {
			b.problem("TLSRoute "+r.Key.String(), "spec.parentRefs",
				fmt.Sprintf("TLSRoutes on Services are not served by sidecars; connections to %s port %d go to the Service", s.Key, sp.Port))
		}
	}
	scope := b.routeScope(s, sp)
	var attached []*model.TCPRoute
	for _, r := range b.tcpRoutesOf(model.ParentService, s.Key) {
		if r.Namespace == scope && attachesToService(r.Parents, s, sp) {
			attached = append(attached, r)
		}
	}
	if len(attached) == 0 {
		return tcpFilter(statPrefix, b.useCluster(s, sp))
	}
	slices.SortStableFunc(attached, func(x, y *model.TCPRoute) int { return olderRoute(&x.Route, &y.Route) })
	r := attached[0]
	for _, other := range attached[1:] {
		b.problem("TCPRoute "+other.Key.String(), "spec.parentRefs",
			fmt.Sprintf("TCPRoute %s, older, already routes %s port %d; this route is not in effect there", r.Key, s.Key, sp.Port))
	}
	return b.l4Filter(statPrefix, fmt.Sprintf("%s port %d", s.Key, sp.Port), "TCPRoute", &r.Route, r.Rules)
}

// l4Filter is the tcp_proxy of a TCPRoute or TLSRoute: connections split
// among its rules' backends by weight. nil (reported) when the route
// leaves no usable backend for what it routes (what).
func (b *builder) l4Filter(statPrefix, what, kind string, r *model.Route, rules []model.L4Rule) *listenerv3.Filter {
	routeRef := kind + " " + r.Key.String()
	var clusters []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight
	for i, rule := range rules {
		for j, be := range rule.Backends {
			field := fmt.Sprintf("spec.rules[%d].backendRefs[%d]", i, j)
			cluster, ok := b.backendCluster(routeFrom(kind, r), routeRef, field, be.Kind, be.Service, be.Port)
			if !ok || be.Weight == 0 {
				continue
			}
			clusters = append(clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: cluster, Weight: be.Weight})
		}
	}
	switch len(clusters) {
	case 0:
		b.problem("proxy "+b.in.Proxy.ID, "", fmt.Sprintf("%s leaves no usable backend for %s: connections to it are refused", routeRef, what))
		return nil
	case 1:
		return tcpFilter(statPrefix, clusters[0].Name)
	}
	return &listenerv3.Filter{
		Name: wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed(&tcpproxyv3.TcpProxy{
			StatPrefix: statPrefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{
				Clusters: clusters,
			}},
		})},
	}
}
