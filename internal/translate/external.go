package translate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"trellis.dev/trellis/internal/model"
)

// Services outside the mesh, and what a capturing sidecar may reach.
//
//   - A Service of type ExternalName is a DNS name: its cluster is
//     STRICT_DNS over externalName:port (the Service port: Kubernetes
//     ignores targetPort for ExternalName), resolved by the proxy itself
//     and reached in plaintext (the app or the route's client does its own
//     TLS, if any). The capture listener has no chain for it: an app's
//     connection to the name's address is not known to be the service's.
//   - A Service whose members are Workloads without a sidecar (MeshPort 0),
//     such as hosts outside the mesh, is an EDS cluster of plaintext
//     endpoints, as for any member without a sidecar (cluster.go). On the
//     capture listener the members' address and port are the service's
//     when routes attach to the service (GAMMA: an HTTPRoute or TCPRoute
//     whose parentRef is the Service, which can send the traffic to an
//     egress gateway) or when the proxy's outbound traffic policy is
//     registry-only (so that registered external hosts stay reachable);
//     otherwise they pass through as any address does.
//   - Registry-only: destinations the mesh does not know go to
//     BlackHoleCluster instead of PassthroughCluster. The mesh's setting
//     (Options.RegistryOnly) is overridden per namespace by the label
//     OutboundTrafficPolicyLabel on the proxy's Namespace.

// OutboundTrafficPolicyLabel on a Namespace sets the outbound traffic
// policy of its capturing sidecars: allow-any or registry-only.
const OutboundTrafficPolicyLabel = "trellis.dev/outbound-traffic-policy"

// Outbound traffic policies.
const (
	AllowAny     = "allow-any"
	RegistryOnly = "registry-only"
)

// ParseOutboundTrafficPolicy reads an outbound traffic policy: allow-any or
// registry-only (Istio's ALLOW_ANY and REGISTRY_ONLY are accepted too).
// It reports whether the policy is registry-only.
func ParseOutboundTrafficPolicy(s string) (registryOnly bool, err error) {
	switch strings.ReplaceAll(strings.ToLower(s), "_", "-") {
	case AllowAny:
		return false, nil
	case RegistryOnly:
		return true, nil
	}
	return false, fmt.Errorf("outbound traffic policy %q: want %s or %s", s, AllowAny, RegistryOnly)
}

// registryOnly reports whether the proxy's captured outbound traffic to
// unknown destinations is blocked: its namespace's label, else the mesh's
// setting. A label of another value is reported and ignored.
func (b *builder) registryOnly() bool {
	ns := b.in.Proxy.Workload.Namespace
	v, ok := b.namespaceLabels()[ns][OutboundTrafficPolicyLabel]
	if !ok {
		return b.opts.RegistryOnly
	}
	on, err := ParseOutboundTrafficPolicy(v)
	if err != nil {
		b.problem("Namespace "+ns, "metadata.labels["+OutboundTrafficPolicyLabel+"]",
			fmt.Sprintf("%v; the mesh's setting is in effect", err))
		return b.opts.RegistryOnly
	}
	return on
}

// plainMemberChains adds to the capture listener the chains of the
// members of s without a sidecar, on their port of sp: routed as the
// service is, when routes attach to the service port or the proxy is
// registry-only. Addresses already claimed (seen) are left to their first
// claimant.
func (b *builder) plainMemberChains(ln *listenerv3.Listener, s *model.Service, sp model.ServicePort, members []*model.Workload, seen map[string]bool, sniff map[uint32]bool) {
	if !b.registryOnly() && !b.serviceRouted(s, sp) {
		return
	}
	byPort := map[uint32][]*corev3.CidrRange{}
	for _, w := range members {
		target, ok := w.TargetPort(sp)
		prefix := hostPrefix(w.Address)
		if !ok || w.HasSidecar() || prefix == nil || seen[model.HostPort(w.Address, target)] {
			continue
		}
		seen[model.HostPort(w.Address, target)] = true
		byPort[target] = append(byPort[target], prefix)
	}
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		chain := fmt.Sprintf("%s|members|%d", OutboundCluster(sp.Port, b.host(s.Key)), port)
		b.serviceChains(ln, s, sp, port, byPort[port], chain, sniff)
	}
}

// serviceRouted reports whether a GAMMA route in effect for this proxy
// (routeScope) attaches to port sp of s: an HTTPRoute or GRPCRoute on a
// port that may carry HTTP, a TCPRoute on one that may carry TCP.
func (b *builder) serviceRouted(s *model.Service, sp model.ServicePort) bool {
	mayHTTP := sp.Protocol.IsHTTP() || !sp.ProtocolDeclared
	mayTCP := !sp.Protocol.IsHTTP()
	scope := b.routeScope(s, sp)
	attached := func(r *model.Route) bool { return r.Namespace == scope && attachesToService(r.Parents, s, sp) }
	return b.anyServiceRoute(s, mayHTTP, mayTCP, attached)
}

// externalNameCluster builds the cluster of port sp of an ExternalName
// Service: STRICT_DNS over the name and the Service port, in plaintext,
// shaped by the port's BackendPolicy as an EDS cluster is (but for its
// TLS mode: there is no mesh to speak of).
func (b *builder) externalNameCluster(name string, s *model.Service, sp model.ServicePort) {
	b.dependOn(ServiceKey(s.Key), NamespaceKey(s.Namespace))
	if b.proxyless {
		b.problem("Service "+s.Key.String(), "spec.externalName",
			fmt.Sprintf("proxyless gRPC does not resolve ExternalName services (%s); %s is not sent", s.ExternalName, name))
		return
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(s.ExternalName, sp.Port, nil)},
			}},
		},
	}
	if bp := b.backendPolicy(s, sp); bp != nil {
		if bp.TLS == model.BackendTLSRequireMesh {
			// No sidecar there to speak mesh mTLS with: nothing to reach.
			b.problem("BackendPolicy "+bp.Key.String(), "spec.tls.mode",
				fmt.Sprintf("RequireMesh: %s (ExternalName %s) is outside the mesh; %s has no endpoint", s.Key, s.ExternalName, name))
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.DnsLookupFamily = clusterv3.Cluster_AUTO
			c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name}
		}
		b.applyBackendPolicy(c, bp, sp)
	}
	if c.TypedExtensionProtocolOptions == nil {
		c.TypedExtensionProtocolOptions = httpProtocolOptions(b.clusterProtocol(name, sp), 0)
	}
	b.out.Clusters = append(b.out.Clusters, c)
}
