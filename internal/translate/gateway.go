package translate

import (
	"cmp"
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// A gateway proxy serves one Gateway: one Envoy listener per port, built
// by the transport its listeners share (model.Transport):
//
//	HTTP   one filter chain, an HTTP connection manager whose routes
//	       (http.PORT, over RDS) have a virtual host per hostname, holding
//	       the GRPCRoute and HTTPRoute rules attached there
//	TLS    tls_inspector, then filter chains chosen by SNI: one per HTTPS
//	       listener (mode Terminate), which terminates TLS with the
//	       listener's certificates and serves http.PORT like an HTTP port;
//	       one per hostname of the TLSRoutes attached to TLS listeners
//	       (mode Passthrough), a tcp_proxy to the route's backends that
//	       never decrypts
//	TCP    one tcp_proxy to the backends of the TCPRoute attached
//
// Attachment is model.AttachToListener, the analyzer's own rule; a
// hostname is served only through the most specific listener of its port
// (model.MostSpecificListener), so that a route on a catch-all listener
// cannot take the hostname of another team's listener. Certificates are
// never read here: a certificateRef becomes the name of an SDS secret
// (GatewayCertificateSecret) that the gateway proxy resolves to files of
// its own (--certs-dir), so private keys never pass through the control
// plane. What cannot be served is left out and reported, never pushed
// half-built.

// gateway builds the listeners of the Gateway a gateway proxy serves.
func (b *builder) gateway() {
	p := b.in.Proxy
	g := b.gatewayOf(p.Gateway)
	if g == nil {
		b.problem("proxy "+p.ID, "gateway", fmt.Sprintf("Gateway %s does not exist; the gateway serves nothing until it is applied", p.Gateway))
		return
	}
	ref := "Gateway " + g.Key.String()
	byPort := map[uint32][]int{}
	var ports []uint32
	for i, l := range g.Listeners {
		field := fmt.Sprintf("spec.listeners[%d]", i)
		switch {
		case l.Protocol != model.ProtocolHTTP && l.Protocol != model.ProtocolHTTPS &&
			l.Protocol != model.ProtocolTLS && l.Protocol != model.ProtocolTCP:
			b.problem(ref, field+".protocol", fmt.Sprintf("protocol %s is not served by this version; listener %q is not programmed", l.Protocol, l.Name))
			continue
		case l.Protocol == model.ProtocolHTTPS && (l.TLS == nil || l.TLS.Mode != model.TLSTerminate):
			b.problem(ref, field+".tls", fmt.Sprintf("an HTTPS listener terminates TLS: set tls.mode Terminate and certificateRefs; listener %q is not programmed", l.Name))
			continue
		case l.Protocol == model.ProtocolTLS && l.TLS != nil && l.TLS.Mode == model.TLSTerminate:
			b.problem(ref, field+".tls.mode", fmt.Sprintf("TLS listeners are served in mode Passthrough only (use HTTPS to terminate); listener %q is not programmed", l.Name))
			continue
		}
		if _, ok := byPort[l.Port]; !ok {
			ports = append(ports, l.Port)
		}
		byPort[l.Port] = append(byPort[l.Port], i)
	}
	slices.Sort(ports)
	for _, port := range ports {
		var ls []int
		first := g.Listeners[byPort[port][0]]
		for _, i := range byPort[port] {
			l := g.Listeners[i]
			if model.Transport(l.Protocol) != model.Transport(first.Protocol) {
				b.problem(ref, fmt.Sprintf("spec.listeners[%d].protocol", i),
					fmt.Sprintf("port %d is already %s for listener %q; listener %q (%s) is not programmed", port, first.Protocol, first.Name, l.Name, l.Protocol))
				continue
			}
			ls = append(ls, i)
		}
		switch model.Transport(first.Protocol) {
		case "HTTP":
			b.gatewayHTTP(g, port, ls)
		case "TLS":
			b.gatewayTLS(g, port, ls)
		case "TCP":
			b.gatewayTCP(g, port, ls)
		}
	}
}

// gatewayHCM is the HTTP connection manager of a gateway port.
func gatewayHCM(port uint32, rc *routev3.RouteConfiguration) *listenerv3.Filter {
	return httpFilter(withCORS(&hcmv3.HttpConnectionManager{
		StatPrefix: GatewayListener(port),
		// The gateway faces clients outside the mesh: it trusts no
		// forwarded client certificate and records the peer's address.
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
		UseRemoteAddress:         wrapperspb.Bool(true),
		RouteSpecifier:           rds(rc.Name),
	}, rc))
}

// gatewayHTTP builds a plaintext HTTP port.
func (b *builder) gatewayHTTP(g *model.Gateway, port uint32, ls []int) {
	rc := b.gatewayRoutes(g, port, ls)
	b.out.Routes = append(b.out.Routes, rc)
	b.out.Listeners = append(b.out.Listeners, &listenerv3.Listener{
		Name:         GatewayListener(port),
		Address:      socketAddress(b.in.Proxy.Workload.Address, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{gatewayHCM(port, rc)}}},
	})
}

// portHostnames are the hostnames of listeners ls of g (one port).
func portHostnames(g *model.Gateway, ls []int) []string {
	out := make([]string, 0, len(ls))
	for _, i := range ls {
		out = append(out, g.Listeners[i].Hostname)
	}
	return out
}

// attachedHosts returns the hostnames route r, of kind, serves on the
// listeners ls of g (one port) whose protocol is one of protocols:
// attached through a parentRef to g, admitted by the listener, and the
// listener the most specific of the port for the hostname. Listeners
// without hostnames (TCP) give "".
func (b *builder) attachedHosts(kind string, r *model.Route, g *model.Gateway, ls []int, protocols ...model.Protocol) []string {
	all := portHostnames(g, ls)
	labels := b.namespaceLabels()
	var out []string
	for _, p := range r.Parents {
		if p.Kind != model.ParentGateway || p.Key != g.Key {
			continue
		}
		for _, i := range ls {
			l := &g.Listeners[i]
			if !slices.Contains(protocols, l.Protocol) {
				continue
			}
			hosts, why := model.AttachToListener(kind, r, p, l, g.Namespace, labels)
			if why != model.Attached {
				continue
			}
			for _, h := range hosts {
				if !model.HasHostnames(l.Protocol) {
					out = append(out, h)
					continue
				}
				if best, _ := model.MostSpecificListener(all, h); best == l.Hostname {
					out = append(out, h)
				}
			}
		}
	}
	return sortedUnique(out)
}

// gatewayRoutes builds the route configuration of one HTTP or HTTPS port:
// a virtual host per hostname, with the GRPCRoute rules attached there
// (in GRPCRoute precedence) before the HTTPRoute rules (in HTTPRoute
// precedence), as on mesh routes.
func (b *builder) gatewayRoutes(g *model.Gateway, port uint32, ls []int) *routev3.RouteConfiguration {
	httpByHost := map[string][]attachedRule{}
	grpcByHost := map[string][]grpcRule{}
	hostSet := map[string]bool{}
	for _, r := range b.httpRoutesOf(model.ParentGateway, g.Key) {
		for _, h := range b.attachedHosts(model.KindHTTPRoute, &r.Route, g, ls, model.ProtocolHTTP, model.ProtocolHTTPS) {
			httpByHost[h] = append(httpByHost[h], rulesOf(r)...)
			hostSet[h] = true
		}
	}
	for _, r := range b.grpcRoutesOf(model.ParentGateway, g.Key) {
		for _, h := range b.attachedHosts(model.KindGRPCRoute, &r.Route, g, ls, model.ProtocolHTTP, model.ProtocolHTTPS) {
			grpcByHost[h] = append(grpcByHost[h], grpcRulesOf(r)...)
			hostSet[h] = true
		}
	}
	// Gateway API hostnames never carry a port; clients' Host headers may.
	rc := &routev3.RouteConfiguration{Name: GatewayRoute(port), IgnorePortInHostMatching: true}
	for _, h := range slices.Sorted(func(yield func(string) bool) {
		for h := range hostSet {
			if !yield(h) {
				return
			}
		}
	}) {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    fmt.Sprintf("%s:%d", h, port),
			Domains: []string{h},
			Routes:  append(b.grpcRoutes(grpcByHost[h], port), b.routes(httpByHost[h], port)...),
		})
	}
	return rc
}

// gatewayTLS builds a port of HTTPS and TLS (passthrough) listeners:
// filter chains chosen by SNI.
func (b *builder) gatewayTLS(g *model.Gateway, port uint32, ls []int) {
	ref := "Gateway " + g.Key.String()
	ln := &listenerv3.Listener{
		Name:            GatewayListener(port),
		Address:         socketAddress(b.in.Proxy.Workload.Address, port),
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector()},
	}
	// claimed maps each server name ("" for none) to who serves it:
	// one filter chain per name.
	claimed := map[string]string{}
	var https []int
	for _, i := range ls {
		if g.Listeners[i].Protocol == model.ProtocolHTTPS {
			https = append(https, i)
		}
	}
	if len(https) > 0 {
		rc := b.gatewayRoutes(g, port, ls)
		hcm := gatewayHCM(port, rc)
		served := false
		for _, i := range https {
			l := g.Listeners[i]
			field := fmt.Sprintf("spec.listeners[%d]", i)
			if who, ok := claimed[l.Hostname]; ok {
				b.problem(ref, field+".hostname", fmt.Sprintf("port %d hostname %s is already served by %s; listener %q is not programmed", port, orAnyHost(l.Hostname), who, l.Name))
				continue
			}
			certs := b.listenerCertificates(g, i)
			if len(certs) == 0 {
				b.problem(ref, field+".tls.certificateRefs", fmt.Sprintf("no usable certificate; listener %q is not programmed", l.Name))
				continue
			}
			claimed[l.Hostname] = fmt.Sprintf("listener %q", l.Name)
			ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
				Name:             fmt.Sprintf("https|%s", orAnyHost(l.Hostname)),
				FilterChainMatch: sniMatch(l.Hostname),
				TransportSocket:  gatewayTerminateTLS(certs),
				Filters:          []*listenerv3.Filter{hcm},
			})
			served = true
		}
		if served {
			b.out.Routes = append(b.out.Routes, rc)
		}
	}
	b.passthroughChains(g, port, ls, ln, claimed)
	if len(ln.FilterChains) == 0 {
		b.problem(ref, "spec.listeners", fmt.Sprintf("nothing to serve on port %d: no listener there has a usable certificate or an attached TLSRoute", port))
		return
	}
	b.out.Listeners = append(b.out.Listeners, ln)
}

// passthroughChains adds to ln a filter chain per hostname of the
// TLSRoutes attached to the port's TLS listeners: connections whose SNI
// names it go, still encrypted, to the route's backends. Of two routes
// claiming one hostname the older is in effect (Gateway API precedence);
// the other is reported.
func (b *builder) passthroughChains(g *model.Gateway, port uint32, ls []int, ln *listenerv3.Listener, claimed map[string]string) {
	type claim struct {
		host  string
		route *model.TLSRoute
	}
	var claims []claim
	for _, r := range b.tlsRoutesOf(model.ParentGateway, g.Key) {
		for _, h := range b.attachedHosts(model.KindTLSRoute, &r.Route, g, ls, model.ProtocolTLS) {
			if h == "*" {
				h = ""
			}
			claims = append(claims, claim{h, r})
		}
	}
	slices.SortStableFunc(claims, func(x, y claim) int {
		return cmp.Or(cmp.Compare(x.host, y.host), olderRoute(&x.route.Route, &y.route.Route))
	})
	for _, c := range claims {
		routeRef := "TLSRoute " + c.route.Key.String()
		if who, ok := claimed[c.host]; ok {
			b.problem(routeRef, "spec.hostnames", fmt.Sprintf("port %d hostname %s is already served by %s; this route is not in effect there", port, orAnyHost(c.host), who))
			continue
		}
		f := b.l4Filter(GatewayListener(port), fmt.Sprintf("hostname %s on port %d of Gateway %s", orAnyHost(c.host), port, g.Key), "TLSRoute", &c.route.Route, c.route.Rules)
		if f == nil {
			continue
		}
		claimed[c.host] = routeRef
		ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
			Name:             fmt.Sprintf("passthrough|%s", orAnyHost(c.host)),
			FilterChainMatch: sniMatch(c.host),
			Filters:          []*listenerv3.Filter{f},
		})
	}
}

// gatewayTCP builds a TCP port: one listener, one route (the oldest of
// those attached; the others are reported), a tcp_proxy to its backends.
func (b *builder) gatewayTCP(g *model.Gateway, port uint32, ls []int) {
	ref := "Gateway " + g.Key.String()
	for _, i := range ls[1:] {
		b.problem(ref, fmt.Sprintf("spec.listeners[%d].port", i), fmt.Sprintf("TCP port %d is already used by listener %q; listener %q is not programmed",
			port, g.Listeners[ls[0]].Name, g.Listeners[i].Name))
	}
	ls = ls[:1]
	l := g.Listeners[ls[0]]
	var attached []*model.TCPRoute
	for _, r := range b.tcpRoutesOf(model.ParentGateway, g.Key) {
		if len(b.attachedHosts(model.KindTCPRoute, &r.Route, g, ls, model.ProtocolTCP)) > 0 {
			attached = append(attached, r)
		}
	}
	if len(attached) == 0 {
		b.problem(ref, fmt.Sprintf("spec.listeners[%d]", ls[0]), fmt.Sprintf("no TCPRoute is attached to listener %q; port %d is not served", l.Name, port))
		return
	}
	slices.SortStableFunc(attached, func(x, y *model.TCPRoute) int { return olderRoute(&x.Route, &y.Route) })
	r := attached[0]
	for _, other := range attached[1:] {
		b.problem("TCPRoute "+other.Key.String(), "spec.parentRefs",
			fmt.Sprintf("TCPRoute %s, older, already routes listener %q (port %d) of Gateway %s; this route is not in effect there", r.Key, l.Name, port, g.Key))
	}
	f := b.l4Filter(GatewayListener(port), fmt.Sprintf("port %d of Gateway %s", port, g.Key), "TCPRoute", &r.Route, r.Rules)
	if f == nil {
		return
	}
	b.out.Listeners = append(b.out.Listeners, &listenerv3.Listener{
		Name:         GatewayListener(port),
		Address:      socketAddress(b.in.Proxy.Workload.Address, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{f}}},
	})
}

// olderRoute orders routes as the Gateway API breaks ties: the oldest
// first, then by namespace/name.
func olderRoute(x, y *model.Route) int {
	return cmp.Or(cmp.Compare(x.Source.CreationUnix, y.Source.CreationUnix), x.Key.Compare(y.Key))
}

// listenerCertificates are the SDS secret names of the usable
// certificateRefs of listener i of g: Secrets (core group), of another
// namespace only when a ReferenceGrant there allows it. The others are
// reported.
func (b *builder) listenerCertificates(g *model.Gateway, i int) []string {
	ref := "Gateway " + g.Key.String()
	var out []string
	for j, c := range g.Listeners[i].TLS.CertificateRefs {
		field := fmt.Sprintf("spec.listeners[%d].tls.certificateRefs[%d]", i, j)
		switch {
		case c.Kind != "Secret" || (c.Group != "" && c.Group != "core"):
			b.problem(ref, field, fmt.Sprintf("certificate %s is not a Secret", c))
		case !b.granted(model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, g.Namespace, model.Ref{Kind: "Secret", Key: c.Key}):
			b.problem(ref, field, fmt.Sprintf("no ReferenceGrant in namespace %s allows Gateway of namespace %s to reference Secret %s",
				c.Namespace, g.Namespace, c.Key))
		default:
			out = append(out, GatewayCertificateSecret(c.Key))
		}
	}
	return out
}

// gatewayTerminateTLS terminates clients' TLS with the certificates named
// (the one that suits the client's ClientHello is chosen), offering HTTP/2
// and HTTP/1.1. Clients are not asked for certificates.
func gatewayTerminateTLS(secrets []string) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}}
	for _, s := range secrets {
		ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = append(ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs, sdsSecret(s))
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: typed(ctx)},
	}
}

// sniMatch matches TLS connections whose SNI falls under host ("" or "*":
// any, or none).
func sniMatch(host string) *listenerv3.FilterChainMatch {
	m := &listenerv3.FilterChainMatch{TransportProtocol: "tls"}
	if host != "" && host != "*" {
		m.ServerNames = []string{host}
	}
	return m
}

func orAnyHost(h string) string {
	if h == "" || h == "*" {
		return "(any)"
	}
	return h
}
