package translate

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"trellis.dev/trellis/internal/model"
)

// An east-west gateway (model.EastWestListener: a Gateway listener of
// protocol TLS, mode Passthrough, tls.options
// trellis.dev/listener-mode: auto-passthrough) serves, with no routes,
// every mesh service port of its Gateway's network:
//
//	gateway_PORT: tls_inspector; one filter chain per service port with
//	  members of the network that have a sidecar, matching the SNI a
//	  client proxy sends for it (SNI), a tcp_proxy to the cluster of that
//	  name; no chain for any other SNI, so that it is refused
//	outbound_.PORT_._.HOST: EDS, no transport socket (the client's TLS
//	  passes through untouched: the member's sidecar terminates it and
//	  sees the client's certificate), endpoints the members' mesh ports
//
// The listener's hostname, when set, narrows the services served to the
// hosts it matches. TLSRoutes attached to it are reported, not served. Which services have members there changes the
// listener, so the config of such a gateway is always translated whole
// (RefreshEndpoints declines it).

// eastWest builds the east-west listeners ls of Gateway g. Those sharing
// a port with another listener of the Gateway (taken, by port) are
// reported and left out.
func (b *builder) eastWest(g *model.Gateway, ls []gwListener, taken map[uint32][]gwListener) {
	served := map[uint32]string{}
	for _, l := range ls {
		switch {
		case !l.EastWestValid():
			b.problem(l.ref, l.field(".tls"), fmt.Sprintf("an east-west listener (tls.options %s: %s) has protocol TLS and tls.mode Passthrough; listener %q is not programmed",
				model.EastWestOption, model.AutoPassthrough, l.Name))
			continue
		case len(taken[l.Port]) > 0:
			b.problem(l.ref, l.field(".port"), fmt.Sprintf("port %d is also used by listener %q; an east-west listener needs a port of its own; listener %q is not programmed",
				l.Port, taken[l.Port][0].Name, l.Name))
			continue
		case served[l.Port] != "":
			b.problem(l.ref, l.field(".port"), fmt.Sprintf("port %d is already served by east-west listener %q; listener %q is not programmed", l.Port, served[l.Port], l.Name))
			continue
		}
		served[l.Port] = l.Name
		b.eastWestListener(g, l)
	}
}

// eastWestListener builds one east-west listener.
func (b *builder) eastWestListener(g *model.Gateway, l gwListener) {
	b.out.fullOnly = true
	network := model.GatewayNetwork(b.in.Config, g)
	b.dependOn(AllServicesKey)
	ln := &listenerv3.Listener{
		Name:            GatewayListener(l.Port),
		Address:         socketAddress(b.in.Proxy.Workload.Address, l.Port),
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector()},
	}
	for _, s := range b.in.Config.Services {
		host := b.host(s.Key)
		if s.ExternalName != "" || l.Hostname != "" && !model.HostnameMatches(l.Hostname, host) {
			continue
		}
		members := b.clusterMembers(s)
		for _, sp := range s.Ports {
			var eps []*endpointv3.LbEndpoint
			for _, w := range members {
				if _, ok := w.TargetPort(sp); !ok || !w.HasSidecar() || model.NetworkOf(b.in.Config, w) != network {
					continue
				}
				eps = append(eps, lbEndpoint(w.Address, w.MeshPort, nil))
			}
			if len(eps) == 0 {
				continue
			}
			sni := SNI(sp.Port, host)
			ln.FilterChains = append(ln.FilterChains, &listenerv3.FilterChain{
				Name:             sni,
				FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls", ServerNames: []string{sni}},
				Filters:          []*listenerv3.Filter{tcpFilter(GatewayListener(l.Port), sni)},
			})
			b.out.Clusters = append(b.out.Clusters, &clusterv3.Cluster{
				Name:                 sni,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: sni},
				ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
				LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
			})
			b.out.Endpoints = append(b.out.Endpoints, &endpointv3.ClusterLoadAssignment{
				ClusterName: sni,
				Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}},
			})
		}
	}
	ls := []gwListener{l}
	for _, r := range routesOf(listenerParents(ls), b.tlsRoutesOf, func(r *model.TLSRoute) model.Key { return r.Key }) {
		if len(b.attachedHosts(model.KindTLSRoute, &r.Route, ls, ls, model.ProtocolTLS)) > 0 {
			b.problem("TLSRoute "+r.Key.String(), "spec.parentRefs", fmt.Sprintf("listener %q of Gateway %s is an east-west listener, which serves every mesh service of its network by SNI and no route; this route is not in effect there", l.Name, g.Key))
		}
	}
	if len(ln.FilterChains) == 0 {
		b.problem(l.ref, l.field(""), fmt.Sprintf("network %s has no member of a Service with a sidecar yet; east-west listener %q serves nothing", networkName(network), l.Name))
		return
	}
	b.out.Listeners = append(b.out.Listeners, ln)
}
