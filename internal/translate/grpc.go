package translate

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"trellis.dev/trellis/internal/model"
)

// A proxyless gRPC application is its own xDS client: grpc-go (or another
// gRPC) with the xDS resolver and xDS-enabled servers, and no proxy. Its
// xDS client validates every resource strictly and rejects (NACKs) a whole
// response for one field it does not support, so what it gets is built for
// it: API listeners instead of network listeners, no transport socket
// matches, no TLS parameters, no SDS, no path_separated_prefix, and
// endpoint assignments with an explicit, weighted locality.

// GRPCServerListenerTemplate is the server_listener_resource_name_template
// a gRPC application's xDS bootstrap must carry: its xDS-enabled servers
// ask for the Listener of each address they listen on by this name, %s
// being the listening address (host:port, IPv6 in brackets).
const GRPCServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"

// GRPCServerListener names the Listener of an xDS-enabled gRPC server
// listening on addr:port.
func GRPCServerListener(addr string, port uint32) string {
	return strings.Replace(GRPCServerListenerTemplate, "%s", model.HostPort(addr, port), 1)
}

// GRPCTargets are the names of the API listeners, and so the xds:///
// targets, under which a gRPC client in namespace clientNamespace reaches
// port of the service k: name.namespace.svc.<domain>:port, name.namespace:port
// and, from the service's own namespace, name:port. The port is always
// part of the target.
func GRPCTargets(k model.Key, port uint32, clusterDomain, clientNamespace string) []string {
	p := ":" + strconv.FormatUint(uint64(port), 10)
	out := []string{model.ServiceHost(k, clusterDomain) + p, k.Name + "." + k.Namespace + p}
	if k.Namespace == clientNamespace {
		out = append(out, k.Name+p)
	}
	return out
}

// grpc builds the config of a gRPC application: server Listeners for its
// ports and API listeners for the services it may call.
func (b *builder) grpc() {
	b.grpcServers()
	b.grpcClients()
}

// grpcClients builds an API listener per target form of every service port
// the application may call: every GRPC and HTTP2 service port of its
// namespace, and the upstreams it registered. Each listener's connection
// manager takes its routes over RDS, the same route configuration a
// sidecar gets for that service port.
func (b *builder) grpcClients() {
	p := b.in.Proxy
	ref := "proxy " + p.ID
	type target struct {
		s  *model.Service
		sp model.ServicePort
	}
	var targets []target
	seen := map[string]bool{}
	add := func(s *model.Service, sp model.ServicePort) {
		name := OutboundCluster(sp.Port, b.host(s.Key))
		if !seen[name] {
			seen[name] = true
			targets = append(targets, target{s, sp})
		}
	}
	for _, s := range b.namespaceServices(p.Workload.Namespace) {
		for _, sp := range s.Ports {
			if sp.Protocol == model.ProtocolGRPC || sp.Protocol == model.ProtocolHTTP2 {
				add(s, sp)
			}
		}
	}
	for i, u := range p.Upstreams {
		field := fmt.Sprintf("upstreams[%d]", i)
		s := b.service(u.Service)
		if s == nil {
			b.problem(ref, field, fmt.Sprintf("service %s does not exist", u.Service))
			continue
		}
		sp, ok := s.Port(u.Port)
		if !ok {
			b.problem(ref, field, fmt.Sprintf("service %s has no port %d", u.Service, u.Port))
			continue
		}
		// An undeclared protocol is taken on the application's word; a
		// declared one that is not HTTP cannot carry gRPC.
		if sp.ProtocolDeclared && !sp.Protocol.IsHTTP() {
			b.problem(ref, field, fmt.Sprintf("port %d of service %s is %s, which cannot carry gRPC", u.Port, u.Service, sp.Protocol))
			continue
		}
		add(s, sp)
	}
	for _, t := range targets {
		routeName := OutboundCluster(t.sp.Port, b.host(t.s.Key))
		b.meshRoutes(routeName, t.s, t.sp)
		for _, name := range GRPCTargets(t.s.Key, t.sp.Port, b.opts.ClusterDomain, p.Workload.Namespace) {
			b.out.Listeners = append(b.out.Listeners, &listenerv3.Listener{
				Name: name,
				ApiListener: &listenerv3.ApiListener{ApiListener: typed(withRouter(&hcmv3.HttpConnectionManager{
					StatPrefix:     "outbound_" + strconv.FormatUint(uint64(t.sp.Port), 10),
					RouteSpecifier: rds(routeName),
				}))},
			})
		}
	}
}

// grpcServers builds the Listener an xDS-enabled gRPC server asks for,
// for each port the application registered, on its address and on the
// unspecified addresses (a server listening on all interfaces). The
// listener accepts plaintext (no transport socket: the server's fallback
// credentials apply) and allows every call: its one route has the
// non-forwarding action gRPC servers require.
func (b *builder) grpcServers() {
	w := &b.in.Proxy.Workload
	addrs := sortedUnique([]string{w.Address, "0.0.0.0", "::"})
	for _, wp := range w.Ports {
		if !wp.Protocol.IsHTTP() {
			continue
		}
		port := strconv.FormatUint(uint64(wp.Port), 10)
		for _, addr := range addrs {
			b.out.Listeners = append(b.out.Listeners, &listenerv3.Listener{
				Name:    GRPCServerListener(addr, wp.Port),
				Address: socketAddress(addr, wp.Port),
				FilterChains: []*listenerv3.FilterChain{{
					Name: "inbound_" + port,
					Filters: []*listenerv3.Filter{httpFilter(&hcmv3.HttpConnectionManager{
						StatPrefix: "inbound_" + port,
						RouteSpecifier: inlineRoutes(&routev3.RouteConfiguration{
							Name: InboundCluster(wp.Port),
							VirtualHosts: []*routev3.VirtualHost{{
								Name:    InboundCluster(wp.Port),
								Domains: []string{"*"},
								Routes: []*routev3.Route{{
									Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
									Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
								}},
							}},
						}),
					})},
				}},
			})
		}
	}
}

// grpcRule is one match of one rule of a GRPCRoute, the unit GRPCRoute
// precedence orders.
type grpcRule struct {
	route *model.GRPCRoute
	rule  int
	match int // index into rule.Matches; -1 when the rule has none
}

func grpcRulesOf(r *model.GRPCRoute) []grpcRule {
	var out []grpcRule
	for i, rule := range r.Rules {
		if len(rule.Matches) == 0 {
			out = append(out, grpcRule{route: r, rule: i, match: -1})
			continue
		}
		for j := range rule.Matches {
			out = append(out, grpcRule{route: r, rule: i, match: j})
		}
	}
	return out
}

func (g grpcRule) m() model.GRPCMatch {
	if g.match < 0 {
		return model.GRPCMatch{Type: model.MatchExact}
	}
	return g.route.Rules[g.rule].Matches[g.match]
}

// compareGRPCPrecedence orders matches by GRPCRoute precedence: more
// characters of service, then of method, then more header matches; exact
// before regular expression; then the oldest route, then namespace/name;
// then rule and match order.
func compareGRPCPrecedence(a, b grpcRule) int {
	ma, mb := a.m(), b.m()
	if c := cmp.Compare(len(mb.Service), len(ma.Service)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(mb.Method), len(ma.Method)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(mb.Headers), len(ma.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(boolRank(ma.Type != model.MatchRegularExpression), boolRank(mb.Type != model.MatchRegularExpression)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.route.Source.CreationUnix, b.route.Source.CreationUnix); c != 0 {
		return c
	}
	if c := a.route.Key.Compare(b.route.Key); c != 0 {
		return c
	}
	if c := cmp.Compare(a.rule, b.rule); c != 0 {
		return c
	}
	return cmp.Compare(a.match, b.match)
}

// grpcRoutes translates attached GRPCRoute rules into routes in
// precedence order, for a route configuration served on port.
func (b *builder) grpcRoutes(rules []grpcRule, port uint32) []*routev3.Route {
	slices.SortStableFunc(rules, compareGRPCPrecedence)
	out := make([]*routev3.Route, 0, len(rules))
	for _, g := range rules {
		gr := g.route.Rules[g.rule]
		r := &routev3.Route{
			Name:  fmt.Sprintf("%s/%s.rules[%d]", g.route.Namespace, g.route.Name, g.rule),
			Match: grpcRouteMatch(g.m()),
		}
		b.ruleRoute(r, rule{
			ref:      "GRPCRoute " + g.route.Key.String(),
			from:     routeFrom("GRPCRoute", &g.route.Route),
			index:    g.rule,
			filters:  gr.Filters,
			backends: gr.Backends,
		}, port)
		out = append(out, r)
	}
	return out
}

// grpcRouteMatch matches the path /<service>/<method> of gRPC calls, and
// headers. Only prefix, path and safe_regex path matches are used: they
// are what every gRPC xDS client implements.
func grpcRouteMatch(m model.GRPCMatch) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{}
	regex := func(re string) {
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
	}
	svc, method := m.Service, m.Method
	switch {
	case svc == "" && method == "":
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	case m.Type == model.MatchRegularExpression:
		regex("/(?:" + cmp.Or(svc, "[^/]+") + ")/(?:" + cmp.Or(method, "[^/]+") + ")")
	case method == "":
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/" + svc + "/"}
	case svc == "":
		regex("/[^/]+/" + regexp.QuoteMeta(method))
	default:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: "/" + svc + "/" + method}
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatch(h.Name, h.Type, h.Value))
	}
	return rm
}
