package translate

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
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

// A gateway proxy serves one Gateway: its listeners and those of the
// ListenerSets it admits (spec.allowedListeners), which let a team bring
// a listener, and the routes that attach to it, without editing the
// Gateway. One Envoy listener per port, built by the transport its
// listeners share (model.Transport):
//
//	HTTP   one filter chain, an HTTP connection manager whose routes
//	       (http.PORT, over RDS) have a virtual host per hostname, holding
//	       the GRPCRoute and HTTPRoute rules attached there
//	TLS    tls_inspector, then filter chains chosen by SNI: one per HTTPS
//	       listener (mode Terminate), which terminates TLS with the
//	       listener's certificates and serves, like an HTTP port, the
//	       hostnames of that listener alone (https.PORT.HOSTNAME);
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

// gwListener is a listener the gateway serves: one of the Gateway's own,
// or of a ListenerSet attached to it.
type gwListener struct {
	*model.Listener
	// parentKind and parent are what routes name in parentRefs to attach
	// to it: the Gateway or the ListenerSet.
	parentKind model.ParentKind
	parent     model.Key
	// ref names the resource that declares it, for problems; index is its
	// place in that resource's spec.listeners.
	ref   string
	index int
}

func (l gwListener) field(sub string) string {
	return fmt.Sprintf("spec.listeners[%d]%s", l.index, sub)
}

// from is the kind and namespace references of the listener's are made
// from (certificateRefs need a grant to another namespace); its
// namespace is also the one allowedRoutes Same admits.
func (l gwListener) from() from {
	return from{kind: model.GroupKind{Group: model.GatewayGroup, Kind: string(l.parentKind)}, namespace: l.parent.Namespace}
}

// gatewayListeners are the listeners of g: its own, then those of the
// ListenerSets it admits (spec.allowedListeners), oldest set first, as
// Gateway API listener precedence orders them. The sets it does not
// admit are reported.
func (b *builder) gatewayListeners(g *model.Gateway) []gwListener {
	var out []gwListener
	for i := range g.Listeners {
		out = append(out, gwListener{Listener: &g.Listeners[i], parentKind: model.ParentGateway, parent: g.Key, ref: "Gateway " + g.Key.String(), index: i})
	}
	sets := b.listenerSetsOf(g.Key)
	slices.SortStableFunc(sets, func(x, y *model.ListenerSet) int {
		return cmp.Or(cmp.Compare(x.Source.CreationUnix, y.Source.CreationUnix), x.Key.Compare(y.Key))
	})
	for _, set := range sets {
		ref := "ListenerSet " + set.Key.String()
		if g.AllowListenerSets == nil {
			b.problem(ref, "spec.parentRef", fmt.Sprintf("Gateway %s does not allow ListenerSets (spec.allowedListeners); its listeners are not programmed", g.Key))
			continue
		}
		if ok, known := g.AllowListenerSets.Admits(g.Namespace, set.Namespace, b.namespaceLabels()); !ok || !known {
			b.problem(ref, "spec.parentRef", fmt.Sprintf("Gateway %s does not admit ListenerSets from namespace %s (spec.allowedListeners); its listeners are not programmed", g.Key, set.Namespace))
			continue
		}
		for i := range set.Listeners {
			out = append(out, gwListener{Listener: &set.Listeners[i], parentKind: model.ParentListenerSet, parent: set.Key, ref: ref, index: i})
		}
	}
	return out
}

// gateway builds the listeners of the Gateway a gateway proxy serves.
func (b *builder) gateway() {
	p := b.in.Proxy
	g := b.gatewayOf(p.Gateway)
	if g == nil {
		b.problem("proxy "+p.ID, "gateway", fmt.Sprintf("Gateway %s does not exist; the gateway serves nothing until it is applied", p.Gateway))
		return
	}
	if g.ParametersRef != "" {
		b.problem("Gateway "+g.Key.String(), "spec.infrastructure.parametersRef",
			fmt.Sprintf("%s: Trellis has no parameters kind; the Gateway is not accepted and serves nothing until the reference is removed", g.ParametersRef))
		return
	}
	byPort := map[uint32][]gwListener{}
	var ports []uint32
	var eastWest []gwListener
	for _, l := range b.gatewayListeners(g) {
		if l.IsEastWest() {
			eastWest = append(eastWest, l)
			continue
		}
		switch {
		case l.Protocol != model.ProtocolHTTP && l.Protocol != model.ProtocolHTTPS &&
			l.Protocol != model.ProtocolTLS && l.Protocol != model.ProtocolTCP:
			b.problem(l.ref, l.field(".protocol"), fmt.Sprintf("protocol %s is not served by this version; listener %q is not programmed", l.Protocol, l.Name))
			continue
		case l.Protocol == model.ProtocolHTTPS && (l.TLS == nil || l.TLS.Mode != model.TLSTerminate):
			b.problem(l.ref, l.field(".tls"), fmt.Sprintf("an HTTPS listener terminates TLS: set tls.mode Terminate and certificateRefs; listener %q is not programmed", l.Name))
			continue
		case l.Protocol == model.ProtocolTLS && l.TLS != nil && l.TLS.Mode == model.TLSTerminate:
			b.problem(l.ref, l.field(".tls.mode"), fmt.Sprintf("TLS listeners are served in mode Passthrough only (use HTTPS to terminate); listener %q is not programmed", l.Name))
			continue
		}
		if _, ok := byPort[l.Port]; !ok {
			ports = append(ports, l.Port)
		}
		byPort[l.Port] = append(byPort[l.Port], l)
	}
	slices.Sort(ports)
	for _, port := range ports {
		var ls []gwListener
		first := byPort[port][0]
		for _, l := range byPort[port] {
			if model.Transport(l.Protocol) != model.Transport(first.Protocol) {
				b.problem(l.ref, l.field(".protocol"),
					fmt.Sprintf("port %d is already %s for listener %q; listener %q (%s) is not programmed", port, first.Protocol, first.Name, l.Name, l.Protocol))
				continue
			}
			ls = append(ls, l)
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
	b.eastWest(g, eastWest, byPort)
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
func (b *builder) gatewayHTTP(g *model.Gateway, port uint32, ls []gwListener) {
	rc := b.gatewayRoutes(GatewayRoute(port), port, ls, ls)
	b.out.Routes = append(b.out.Routes, rc)
	b.out.Listeners = append(b.out.Listeners, &listenerv3.Listener{
		Name:         GatewayListener(port),
		Address:      socketAddress(b.in.Proxy.Workload.Address, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{gatewayHCM(port, rc)}}},
	})
}

// parentID is a Gateway or ListenerSet routes attach to.
type parentID struct {
	kind model.ParentKind
	key  model.Key
}

// listenerParents are the distinct parents of listeners ls, in order.
func listenerParents(ls []gwListener) []parentID {
	var out []parentID
	for _, l := range ls {
		if id := (parentID{l.parentKind, l.parent}); !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// routesOf returns the routes attached to any of parents, each once, in
// key order; get is the builder's recording accessor of the route kind.
func routesOf[R any](parents []parentID, get func(model.ParentKind, model.Key) []*R, key func(*R) model.Key) []*R {
	var out []*R
	for _, p := range parents {
		for _, r := range get(p.kind, p.key) {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(x, y *R) int { return key(x).Compare(key(y)) })
	return out
}

// attachedHosts returns the hostnames route r, of kind, serves on the
// listeners attach whose protocol is one of protocols: attached through a
// parentRef to the listener's Gateway or ListenerSet, admitted by the
// listener, and the listener the most specific for the hostname among
// all, the listeners of the port. Listeners without hostnames (TCP) give
// "".
func (b *builder) attachedHosts(kind string, r *model.Route, attach, all []gwListener, protocols ...model.Protocol) []string {
	hostnames := make([]string, 0, len(all))
	for _, l := range all {
		hostnames = append(hostnames, l.Hostname)
	}
	labels := b.namespaceLabels()
	var out []string
	for _, p := range r.Parents {
		for _, l := range attach {
			if p.Kind != l.parentKind || p.Key != l.parent || !slices.Contains(protocols, l.Protocol) {
				continue
			}
			hosts, why := model.AttachToListener(kind, r, p, l.Listener, l.parent.Namespace, labels)
			if why != model.Attached {
				continue
			}
			for _, h := range hosts {
				if !model.HasHostnames(l.Protocol) {
					out = append(out, h)
					continue
				}
				if best, _ := model.MostSpecificListener(hostnames, h); best == l.Hostname {
					out = append(out, h)
				}
			}
		}
	}
	return sortedUnique(out)
}

// gatewayRoutes builds the route configuration name of the listeners
// attach, of the HTTP or HTTPS port whose listeners are all: a virtual host
// per hostname, with the GRPCRoute rules attached there (in GRPCRoute
// precedence) before the HTTPRoute rules (in HTTPRoute precedence), as on
// mesh routes.
func (b *builder) gatewayRoutes(name string, port uint32, attach, all []gwListener) *routev3.RouteConfiguration {
	parents := listenerParents(attach)
	httpByHost := map[string][]attachedRule{}
	grpcByHost := map[string][]grpcRule{}
	hostSet := map[string]bool{}
	for _, r := range routesOf(parents, b.httpRoutesOf, func(r *model.HTTPRoute) model.Key { return r.Key }) {
		for _, h := range b.attachedHosts(model.KindHTTPRoute, &r.Route, attach, all, model.ProtocolHTTP, model.ProtocolHTTPS) {
			httpByHost[h] = append(httpByHost[h], rulesOf(r)...)
			hostSet[h] = true
		}
	}
	for _, r := range routesOf(parents, b.grpcRoutesOf, func(r *model.GRPCRoute) model.Key { return r.Key }) {
		for _, h := range b.attachedHosts(model.KindGRPCRoute, &r.Route, attach, all, model.ProtocolHTTP, model.ProtocolHTTPS) {
			grpcByHost[h] = append(grpcByHost[h], grpcRulesOf(r)...)
			hostSet[h] = true
		}
	}
	// Gateway API hostnames never carry a port; clients' Host headers may.
	rc := &routev3.RouteConfiguration{Name: name, IgnorePortInHostMatching: true}
	for _, h := range slices.Sorted(maps.Keys(hostSet)) {
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
func (b *builder) gatewayTLS(g *model.Gateway, port uint32, ls []gwListener) {
	ln := &listenerv3.Listener{
		Name:            GatewayListener(port),
		Address:         socketAddress(b.in.Proxy.Workload.Address, port),
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector()},
	}
	// claimed maps each server name ("" for none) to who serves it:
	// one filter chain per name.
	claimed := map[string]string{}
	var https []gwListener
	for _, l := range ls {
		if l.Protocol == model.ProtocolHTTPS {
			https = append(https, l)
		}
	}
	var served []gwListener // the HTTPS listeners with a chain, and their routes
	var routes []*routev3.RouteConfiguration
	for _, l := range https {
		if who, ok := claimed[l.Hostname]; ok {
			b.problem(l.ref, l.field(".hostname"), fmt.Sprintf("port %d hostname %s is already served by %s; listener %q is not programmed", port, orAnyHost(l.Hostname), who, l.Name))
			continue
		}
		certs := b.listenerCertificates(l)
		if len(certs) == 0 {
			b.problem(l.ref, l.field(".tls.certificateRefs"), fmt.Sprintf("no usable certificate; listener %q is not programmed", l.Name))
			continue
		}
		claimed[l.Hostname] = fmt.Sprintf("listener %q", l.Name)
		// Each listener's chain routes only the hostnames that listener
		// serves: a client cannot reach another listener's routes by
		// sending its Host header with this listener's SNI.
		rc := b.gatewayRoutes(GatewayHTTPSRoute(port, l.Hostname), port, []gwListener{l}, ls)
		served = append(served, l)
		routes = append(routes, rc)
		b.out.Routes = append(b.out.Routes, rc)
		ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
			Name:             fmt.Sprintf("https|%s", orAnyHost(l.Hostname)),
			FilterChainMatch: sniMatch(l.Hostname),
			TransportSocket:  gatewayTerminateTLS(certs),
			Filters:          []*listenerv3.Filter{gatewayHCM(port, rc)},
		})
	}
	for i, l := range served {
		misdirected(routes[i], port, l, served)
	}
	b.passthroughChains(g, port, ls, ln, claimed)
	if len(ln.FilterChains) == 0 {
		b.problem("Gateway "+g.Key.String(), "spec.listeners", fmt.Sprintf("nothing to serve on port %d: no listener there has a usable certificate or an attached TLSRoute", port))
		return
	}
	b.out.Listeners = append(b.out.Listeners, ln)
}

// misdirected adds to rc, the routes of HTTPS listener l's filter chain,
// the answer 421 Misdirected Request for Host headers that another
// listener of the port serves (RFC 9110 15.5.20; Gateway API
// GatewayHTTPSListenerDetectMisdirectedRequests): an HTTP/2 client that
// reuses a connection opened with one name for another (connection
// coalescing, when the certificate covers both) is told to open a
// connection of its own, with the SNI that selects the right listener and
// certificate. Every chain refuses the hostnames of the port's other HTTPS
// listeners (a wildcard listener's chain, a more specific listener's name
// under it); a listener with a hostname also refuses every Host outside
// it, while one inside it that no route serves is 404, as before. The
// catch-all listener (no hostname) serves the rest.
func misdirected(rc *routev3.RouteConfiguration, port uint32, l gwListener, https []gwListener) {
	has := map[string]bool{}
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			has[d] = true
		}
	}
	refuse := func(domain string) {
		if has[domain] {
			return
		}
		has[domain] = true
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    fmt.Sprintf("misdirected|%s:%d", domain, port),
			Domains: []string{domain},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: http.StatusMisdirectedRequest,
					Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{
						InlineString: fmt.Sprintf("trellis: this connection's server name selects listener %q, which does not serve this host; open a connection with the host as server name\n", l.Name),
					}},
				}},
			}},
		})
	}
	// Another listener's hostname under this one's (a name of a wildcard
	// listener's that a more specific listener has), or any other for the
	// catch-all: refused ahead of this listener's own, less specific, names.
	for _, o := range https {
		if o.Hostname != "" && o.Hostname != l.Hostname && (l.Hostname == "" || model.HostnameMatches(l.Hostname, o.Hostname)) {
			refuse(o.Hostname)
		}
	}
	if l.Hostname != "" {
		// The listener's own names, served or 404; everything else is
		// misdirected.
		if !has[l.Hostname] {
			has[l.Hostname] = true
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: fmt.Sprintf("%s:%d", l.Hostname, port), Domains: []string{l.Hostname}})
		}
		refuse("*")
	}
}

// passthroughChains adds to ln a filter chain per hostname of the
// TLSRoutes attached to the port's TLS listeners: connections whose SNI
// names it go, still encrypted, to the route's backends. Of two routes
// claiming one hostname the older is in effect (Gateway API precedence);
// the other is reported.
func (b *builder) passthroughChains(g *model.Gateway, port uint32, ls []gwListener, ln *listenerv3.Listener, claimed map[string]string) {
	type claim struct {
		host  string
		route *model.TLSRoute
	}
	var claims []claim
	for _, r := range routesOf(listenerParents(ls), b.tlsRoutesOf, func(r *model.TLSRoute) model.Key { return r.Key }) {
		for _, h := range b.attachedHosts(model.KindTLSRoute, &r.Route, ls, ls, model.ProtocolTLS) {
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
func (b *builder) gatewayTCP(g *model.Gateway, port uint32, ls []gwListener) {
	l := ls[0]
	for _, other := range ls[1:] {
		b.problem(other.ref, other.field(".port"), fmt.Sprintf("TCP port %d is already used by listener %q; listener %q is not programmed",
			port, l.Name, other.Name))
	}
	ls = ls[:1]
	var attached []*model.TCPRoute
	for _, r := range routesOf(listenerParents(ls), b.tcpRoutesOf, func(r *model.TCPRoute) model.Key { return r.Key }) {
		if len(b.attachedHosts(model.KindTCPRoute, &r.Route, ls, ls, model.ProtocolTCP)) > 0 {
			attached = append(attached, r)
		}
	}
	if len(attached) == 0 {
		b.problem(l.ref, l.field(""), fmt.Sprintf("no TCPRoute is attached to listener %q; port %d is not served", l.Name, port))
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
// certificateRefs of listener l: Secrets (core group), of another
// namespace only when a ReferenceGrant there allows it. The others are
// reported.
func (b *builder) listenerCertificates(l gwListener) []string {
	f := l.from()
	var out []string
	for j, c := range l.TLS.CertificateRefs {
		field := l.field(fmt.Sprintf(".tls.certificateRefs[%d]", j))
		switch {
		case c.Kind != "Secret" || (c.Group != "" && c.Group != "core"):
			b.problem(l.ref, field, fmt.Sprintf("certificate %s is not a Secret", c))
		case !b.granted(f.kind, f.namespace, model.Ref{Kind: "Secret", Key: c.Key}):
			b.problem(l.ref, field, fmt.Sprintf("no ReferenceGrant in namespace %s allows %s of namespace %s to reference Secret %s",
				c.Namespace, f.kind.Kind, f.namespace, c.Key))
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
