package translate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"trellis.dev/trellis/internal/model"
)

// sidecar builds the inbound mesh listener and the explicit outbound
// listeners of a sidecar.
func (b *builder) sidecar() {
	b.appPorts = map[uint32]model.Protocol{}
	b.inbound()
	b.inboundCapture()
	b.inboundClusters()
	b.outboundCapture()
	for i, u := range b.in.Proxy.Upstreams {
		b.upstream(i, u)
	}
}

// inbound builds the mesh mTLS listener in front of the app: one filter
// chain per (service, port) the workload serves, selected by the SNI the
// client proxy sent, each requiring mesh mTLS (model.MemberAccepts: there
// is no plaintext way in, whatever an MTLSPolicy says).
func (b *builder) inbound() {
	p := b.in.Proxy
	w := &p.Workload
	if !w.HasSidecar() {
		return
	}
	ref := "proxy " + p.ID
	ln := &listenerv3.Listener{
		Name:            InboundListener,
		Address:         socketAddress(w.Address, w.MeshPort),
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector()},
	}
	seenSNI := map[string]bool{}
	services := b.memberOf(w)
	policies := b.accessPolicies(w, services)
	for _, s := range services {
		for _, sp := range s.Ports {
			target, ok := w.TargetPort(sp)
			if !ok {
				b.problem("Service "+s.Key.String(), fmt.Sprintf("spec.ports[%s].targetPort", sp.Name),
					fmt.Sprintf("workload %s has no port named %q", w.Key, sp.TargetPortName))
				continue
			}
			sni := SNI(sp.Port, b.host(s.Key))
			if seenSNI[sni] {
				continue
			}
			seenSNI[sni] = true
			b.useAppPort(target, upstreamProtocol(sp))
			chain := &listenerv3.FilterChain{
				Name:             sni,
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{sni}},
				TransportSocket:  b.downstreamMTLS(),
			}
			if !sp.ProtocolDeclared && !sp.Protocol.IsHTTP() {
				// A port of detected protocol: a client proxy that
				// detected HTTP/2 says so by ALPN, and gets a connection
				// manager that speaks HTTP/2 to the app too; anything else
				// passes through.
				ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
					Name:             sni + "|h2",
					FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{sni}, ApplicationProtocols: []string{"h2"}},
					TransportSocket:  b.downstreamMTLS(),
					Filters:          b.inboundFilters(target, true, b.inboundAccess(policies, target, true), true),
				})
			}
			access := b.inboundAccess(policies, target, sp.Protocol.IsHTTP())
			chain.Filters = b.inboundFilters(target, sp.Protocol.IsHTTP(), access, true)
			ln.FilterChains = append(ln.FilterChains, chain)
		}
	}
	if len(ln.FilterChains) == 0 {
		b.problem(ref, "", fmt.Sprintf("workload %s is a member of no service, so its mesh port accepts nothing", w.Key))
		return
	}
	b.out.Listeners = append(b.out.Listeners, ln)
}

// inboundClusters builds the static clusters that reach the app's ports
// the inbound listeners forward to.
func (b *builder) inboundClusters() {
	appAddr := b.in.Proxy.AppAddress
	if appAddr == "" {
		appAddr = "127.0.0.1"
	}
	for _, port := range slices.Sorted(maps.Keys(b.appPorts)) {
		name := InboundCluster(port)
		b.out.Clusters = append(b.out.Clusters, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(appAddr, port, nil)},
				}},
			},
			TypedExtensionProtocolOptions: httpProtocolOptions(b.appPorts[port], 0),
		})
	}
}

// useAppPort records that an inbound listener forwards to the app's port
// with protocol p; a port served as HTTP/2 by one service port is reached
// over HTTP/2.
func (b *builder) useAppPort(port uint32, p model.Protocol) {
	// HTTP/2 over the downstream's version, over anything else.
	rank := func(p model.Protocol) int {
		switch {
		case speaksHTTP2(p):
			return 2
		case p == protocolDetected:
			return 1
		}
		return 0
	}
	if prev, ok := b.appPorts[port]; !ok || rank(p) > rank(prev) {
		b.appPorts[port] = p
	}
}

// inboundFilters are the filters of an inbound chain toward the app's
// port target: an HTTP connection manager or a TCP proxy, behind the
// chain's access policies. Over mesh mTLS the connection manager passes
// the caller's identity to the app in x-forwarded-client-cert; in
// plaintext it strips the header.
func (b *builder) inboundFilters(target uint32, http bool, access accessRBAC, mtls bool) []*listenerv3.Filter {
	cluster := InboundCluster(target)
	statPrefix := "inbound_" + strconv.FormatUint(uint64(target), 10)
	if !http {
		return append(accessNetworkFilters(access, statPrefix), tcpFilter(statPrefix, cluster))
	}
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:               statPrefix,
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
		HttpFilters:              accessHTTPFilters(access),
		RouteSpecifier: inlineRoutes(&routev3.RouteConfiguration{
			Name: cluster,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    cluster,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{prefixRoute("/", cluster)},
			}},
		}),
	}
	if mtls {
		h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	return []*listenerv3.Filter{httpFilter(inboundPathNormalization(h))}
}

// upstream builds the explicit outbound listener of one declared upstream.
func (b *builder) upstream(i int, u model.Upstream) {
	p := b.in.Proxy
	ref := "proxy " + p.ID
	field := fmt.Sprintf("upstreams[%d]", i)
	s := b.service(u.Service)
	if s == nil {
		b.problem(ref, field, fmt.Sprintf("service %s does not exist; local port %d is not served", u.Service, u.LocalPort))
		return
	}
	sp, ok := s.Port(u.Port)
	if !ok {
		b.problem(ref, field, fmt.Sprintf("service %s has no port %d; local port %d is not served", u.Service, u.Port, u.LocalPort))
		return
	}
	addr := p.OutboundAddress
	if addr == "" {
		addr = "127.0.0.1"
	}
	ln := &listenerv3.Listener{
		Name:    OutboundListener(addr, u.LocalPort),
		Address: socketAddress(addr, u.LocalPort),
	}
	host := b.host(s.Key)
	if sp.Protocol.IsHTTP() {
		routeName := OutboundCluster(sp.Port, host)
		rc := b.meshRoutes(routeName, s, sp)
		ln.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{httpFilter(withCORS(&hcmv3.HttpConnectionManager{
			StatPrefix:     "outbound_" + strconv.FormatUint(uint64(u.LocalPort), 10),
			RouteSpecifier: rds(routeName),
		}, rc))}}}
	} else {
		f := b.meshTCP("outbound_"+strconv.FormatUint(uint64(u.LocalPort), 10), s, sp)
		if f == nil {
			return
		}
		ln.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{f}}}
	}
	b.out.Listeners = append(b.out.Listeners, ln)
}

// meshRoutes builds the routes toward service port sp: the GRPCRoutes and
// HTTPRoutes attached to the service (GAMMA) when there are any, else
// everything to the service itself. GRPCRoute rules, ordered by their own
// precedence, come before HTTPRoute rules. Routes are not duplicated when
// two upstreams name the same service port. It returns the route
// configuration.
func (b *builder) meshRoutes(name string, s *model.Service, sp model.ServicePort) *routev3.RouteConfiguration {
	for _, rc := range b.out.Routes {
		if rc.Name == name {
			return rc
		}
	}
	scope := b.routeScope(s, sp)
	var grpcAttached []grpcRule
	for _, r := range b.grpcRoutesOf(model.ParentService, s.Key) {
		if r.Namespace == scope && attachesToService(r.Parents, s, sp) {
			grpcAttached = append(grpcAttached, grpcRulesOf(r)...)
		}
	}
	var attached []attachedRule
	for _, r := range b.httpRoutesOf(model.ParentService, s.Key) {
		if r.Namespace == scope && attachesToService(r.Parents, s, sp) {
			attached = append(attached, rulesOf(r)...)
		}
	}
	vh := &routev3.VirtualHost{
		Name:    fmt.Sprintf("%s:%d", b.host(s.Key), sp.Port),
		Domains: []string{"*"},
	}
	if len(attached) == 0 && len(grpcAttached) == 0 {
		vh.Routes = []*routev3.Route{b.defaultRoute(b.useCluster(s, sp))}
	} else {
		vh.Routes = append(b.grpcRoutes(grpcAttached, sp.Port), b.routes(attached, sp.Port)...)
	}
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
	b.out.Routes = append(b.out.Routes, rc)
	return rc
}

// routeScope is the namespace whose routes on port sp of Service s apply
// to this proxy's calls (GEP-1294): the proxy's own, when it is not the
// Service's and a route there (a consumer route) attaches to the port;
// else the Service's (its producer routes). Routes of any other
// namespace change only their own namespace's calls.
func (b *builder) routeScope(s *model.Service, sp model.ServicePort) string {
	ns := b.in.Proxy.Workload.Namespace
	if ns == "" || ns == s.Namespace {
		return s.Namespace
	}
	consumer := func(r *model.Route) bool { return r.Namespace == ns && attachesToService(r.Parents, s, sp) }
	if b.anyServiceRoute(s, true, true, consumer) {
		return ns
	}
	return s.Namespace
}

// anyServiceRoute reports whether a route attached to Service s satisfies
// pred: an HTTPRoute or GRPCRoute when http is set, a TCPRoute when tcp is.
func (b *builder) anyServiceRoute(s *model.Service, http, tcp bool, pred func(*model.Route) bool) bool {
	if http {
		for _, r := range b.httpRoutesOf(model.ParentService, s.Key) {
			if pred(&r.Route) {
				return true
			}
		}
		for _, r := range b.grpcRoutesOf(model.ParentService, s.Key) {
			if pred(&r.Route) {
				return true
			}
		}
	}
	if tcp {
		for _, r := range b.tcpRoutesOf(model.ParentService, s.Key) {
			if pred(&r.Route) {
				return true
			}
		}
	}
	return false
}

// attachesToService reports whether a route with parents attaches to port
// sp of service s (GAMMA).
func attachesToService(parents []model.ParentRef, s *model.Service, sp model.ServicePort) bool {
	for _, parent := range parents {
		if parent.Kind != model.ParentService || parent.Key != s.Key {
			continue
		}
		if parent.Port != 0 && parent.Port != sp.Port {
			continue
		}
		if parent.SectionName != "" && parent.SectionName != sp.Name {
			continue
		}
		return true
	}
	return false
}

func (b *builder) workloadID(w *model.Workload) string {
	sa := w.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	return "spiffe://" + b.opts.TrustDomain + "/ns/" + w.Namespace + "/sa/" + sa
}

func lbEndpoint(addr string, port uint32, md *corev3.Metadata) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, port)}},
		HealthStatus:   corev3.HealthStatus_HEALTHY,
		Metadata:       md,
	}
}

// parseLocality reads region/zone/subzone; nil when empty.
func parseLocality(s string) *corev3.Locality {
	if s == "" {
		return nil
	}
	var parts [3]string
	copy(parts[:], strings.SplitN(s, "/", 3))
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}
