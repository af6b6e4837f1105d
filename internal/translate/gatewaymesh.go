package translate

import (
	"cmp"
	"fmt"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
)

// A gateway as a mesh workload (an egress gateway, or any gateway that
// mesh clients call): registered with a mesh port (trellis-proxy
// --gateway NS/NAME --mesh-port 15008), it is a member of the Services
// that select it, like a sidecar's workload, and accepts mesh mTLS there.
//
//	inbound_mesh (its mesh port): a filter chain per service port whose
//	  target port is an HTTP or TCP port of the Gateway, chosen by the SNI
//	  the client proxy sends (SNI: the service port), terminating mesh
//	  mTLS and then serving exactly as the Gateway's listener on that port
//	  does (its routes, its TCPRoute)
//
// AccessPolicies that target the Gateway are enforced on every chain of
// the gateway, as on a sidecar's inbound chains (access.go): AUDIT, DENY,
// then ALLOW, with the listener's port as the port rules name. On the mesh
// chains principals are the client proxy's SPIFFE ID; on the Gateway's own
// listeners, whose clients present no mesh certificate, a rule naming
// identities or namespaces never matches, so an ALLOW policy admits only
// mesh clients coming through the mesh port. So an AccessPolicy on an
// egress gateway decides, by identity or namespace, who may leave.
// HTTP chains then normalize the path, as inbound ones do.
//
// TLS (passthrough) ports are not served over the mesh port: the SNI that
// chooses their route is inside the mesh mTLS the gateway would have to
// terminate first. Mesh clients reach them on the Gateway's listener.

// gatewayAccess enforces the AccessPolicies that target the Gateway on
// every filter chain built so far, then adds the mesh listener.
func (b *builder) gatewayAccess() {
	g := b.in.Proxy.Gateway
	b.dependOn(AccessGatewayKey(g))
	var policies []*model.AccessPolicy
	for _, ap := range b.in.Config.AccessPolicies {
		if ap.TargetsGateway(g) {
			policies = append(policies, ap)
		}
	}
	if len(policies) > 0 {
		for _, ln := range b.out.Listeners {
			port := ln.GetAddress().GetSocketAddress().GetPortValue()
			for _, ch := range ln.FilterChains {
				b.chainAccess(ch, policies, port)
			}
		}
	}
	b.gatewayMesh()
}

// chainAccess puts the RBAC filters of policies, for port, in front of a
// chain's connection manager or tcp_proxy.
func (b *builder) chainAccess(ch *listenerv3.FilterChain, policies []*model.AccessPolicy, port uint32) {
	if len(ch.Filters) == 0 {
		return
	}
	last := ch.Filters[len(ch.Filters)-1]
	if last.Name != wellknown.HTTPConnectionManager {
		stat := fmt.Sprintf("gateway_%d", port)
		ch.Filters = append(accessNetworkFilters(b.inboundAccess(policies, port, false), stat), ch.Filters...)
		return
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := last.GetTypedConfig().UnmarshalTo(h); err != nil {
		b.problem("proxy "+b.in.Proxy.ID, "", fmt.Sprintf("chain %q: %v", ch.Name, err))
		return
	}
	h.HttpFilters = append(accessHTTPFilters(b.inboundAccess(policies, port, true)), h.HttpFilters...)
	inboundPathNormalization(h)
	last.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: typed(h)}
}

// gatewayMesh builds the mesh listener of a gateway registered with a
// mesh port.
func (b *builder) gatewayMesh() {
	p := b.in.Proxy
	w := &p.Workload
	if !w.HasSidecar() {
		return
	}
	g := p.Gateway
	served := map[uint32]*listenerv3.Listener{}
	for _, ln := range b.out.Listeners {
		served[ln.GetAddress().GetSocketAddress().GetPortValue()] = ln
	}
	if served[w.MeshPort] != nil {
		b.problem("proxy "+p.ID, "meshPort", fmt.Sprintf("Gateway %s has a listener on the mesh port %d; mesh clients are not served", g, w.MeshPort))
		return
	}
	ln := &listenerv3.Listener{
		Name:            InboundListener,
		Address:         socketAddress(w.Address, w.MeshPort),
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector()},
	}
	seen := map[string]bool{}
	for _, s := range b.memberOf(w) {
		for i, sp := range s.Ports {
			field := fmt.Sprintf("spec.ports[%d]", i)
			target, ok := w.TargetPort(sp)
			if !ok {
				b.problem("Service "+s.Key.String(), field+".targetPort", fmt.Sprintf("gateway %s has no port named %q", w.Key, sp.TargetPortName))
				continue
			}
			sni := SNI(sp.Port, b.host(s.Key))
			if seen[sni] {
				continue
			}
			seen[sni] = true
			gl := served[target]
			switch {
			case gl == nil:
				b.problem("Service "+s.Key.String(), field, fmt.Sprintf("Gateway %s serves nothing on port %d; mesh clients of port %d are refused", g, target, sp.Port))
				continue
			case len(gl.ListenerFilters) > 0 || len(gl.FilterChains) != 1:
				b.problem("Service "+s.Key.String(), field, fmt.Sprintf("port %d of Gateway %s is a TLS port, which is not served over mesh mTLS; mesh clients reach it on the Gateway's own address", target, g))
				continue
			}
			ch := proto.Clone(gl.FilterChains[0]).(*listenerv3.FilterChain)
			ch.Name = sni
			ch.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{sni}}
			ch.TransportSocket = b.downstreamMTLS()
			ln.FilterChains = append(ln.FilterChains, ch)
		}
	}
	if len(ln.FilterChains) == 0 {
		b.problem("proxy "+p.ID, "meshPort", fmt.Sprintf("gateway %s is a member of no Service whose ports reach a listener of Gateway %s; its mesh port accepts nothing", w.Key, g))
		return
	}
	slices.SortFunc(ln.FilterChains, func(x, y *listenerv3.FilterChain) int { return cmp.Compare(x.Name, y.Name) })
	b.out.Listeners = append(b.out.Listeners, ln)
}
