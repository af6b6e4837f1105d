package translate

import (
	"fmt"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// gateway builds the listeners of the Gateway a gateway proxy serves: one
// listener per port, whose virtual hosts are the hostnames of the
// HTTPRoutes attached to the Gateway's listeners on that port.
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
		if l.Protocol != model.ProtocolHTTP {
			b.problem(ref, fmt.Sprintf("spec.listeners[%d].protocol", i), fmt.Sprintf("protocol %s is not served by this version; listener %q is not programmed", l.Protocol, l.Name))
			continue
		}
		if _, ok := byPort[l.Port]; !ok {
			ports = append(ports, l.Port)
		}
		byPort[l.Port] = append(byPort[l.Port], i)
	}
	slices.Sort(ports)
	for _, port := range ports {
		rc := b.gatewayRoutes(g, port, byPort[port])
		b.out.Routes = append(b.out.Routes, rc)
		b.out.Listeners = append(b.out.Listeners, &listenerv3.Listener{
			Name:    GatewayListener(port),
			Address: socketAddress(p.Workload.Address, port),
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{httpFilter(withCORS(&hcmv3.HttpConnectionManager{
				StatPrefix: GatewayListener(port),
				// The gateway faces clients outside the mesh: it trusts no
				// forwarded client certificate and records the peer's
				// address.
				ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE,
				UseRemoteAddress:         wrapperspb.Bool(true),
				RouteSpecifier:           rds(rc.Name),
			}, rc))}}},
		})
	}
}

// gatewayRoutes builds the route configuration of one gateway port: a
// virtual host per effective hostname.
func (b *builder) gatewayRoutes(g *model.Gateway, port uint32, listeners []int) *routev3.RouteConfiguration {
	byHost := map[string][]attachedRule{}
	for _, r := range b.httpRoutesOf(model.ParentGateway, g.Key) {
		for _, li := range listeners {
			l := g.Listeners[li]
			if !attaches(r, g, l) {
				continue
			}
			for _, h := range model.IntersectHostnames(l.Hostname, r.Hostnames) {
				byHost[h] = append(byHost[h], rulesOf(r)...)
			}
		}
	}
	// Gateway API hostnames never carry a port; clients' Host headers may.
	rc := &routev3.RouteConfiguration{Name: GatewayRoute(port), IgnorePortInHostMatching: true}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    fmt.Sprintf("%s:%d", h, port),
			Domains: []string{h},
			Routes:  b.routes(dedupeRules(byHost[h]), port),
		})
	}
	return rc
}

// attaches reports whether route r attaches to listener l of gateway g.
// Routes attach from the Gateway's own namespace (the Gateway API default
// for allowedRoutes).
func attaches(r *model.HTTPRoute, g *model.Gateway, l model.Listener) bool {
	if r.Namespace != g.Namespace {
		return false
	}
	for _, p := range r.Parents {
		if p.Kind != model.ParentGateway || p.Key != g.Key {
			continue
		}
		if p.SectionName != "" && p.SectionName != l.Name {
			continue
		}
		if p.Port != 0 && p.Port != l.Port {
			continue
		}
		return true
	}
	return false
}

// dedupeRules drops repeats of the same route rule, which arise when a
// route attaches to several listeners sharing a port and hostname.
func dedupeRules(rules []attachedRule) []attachedRule {
	type key struct {
		route       model.Key
		rule, match int
	}
	seen := map[key]bool{}
	return slices.DeleteFunc(rules, func(a attachedRule) bool {
		k := key{a.route.Key, a.rule, a.match}
		if seen[k] {
			return true
		}
		seen[k] = true
		return false
	})
}
