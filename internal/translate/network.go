package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// Endpoints across networks (model.NetworkOf): a client proxy reaches the
// members of a Service in its own network at their addresses, and those
// of another network through that network's east-west gateway. For each
// other network with members, and each locality group of them, the
// cluster's assignment lists each address of each east-west gateway of
// the network (model.NetworkGateways), on its east-west port, weighted
// (LbEndpoint.load_balancing_weight) by the number of members it stands
// for, so that load spreads over members as if they were reached
// directly. When a network has k gateway addresses, each carries n/k of
// its n members' weight; to keep weights whole, every weight of the
// cluster is scaled by the least common multiple of those k.
//
// The client still sends the SNI of the service port and verifies the
// members' identities (the cluster's SAN list includes them): the
// gateway passes the TLS stream through (eastwest.go), so mTLS runs end to
// end, from the client's sidecar to the member's. Members of a network
// with no east-west gateway, and members of another network without a
// sidecar (the gateway passes only mesh mTLS), are left out and reported.

// NetworkKey is the dependency key of a network's east-west gateways:
// which Gateways are (their label, their listeners); their addresses are
// under their own GatewayKey.
func NetworkKey(network string) string { return "net/" + network }

// group is a locality group of a cluster's endpoints.
type group struct {
	priority uint32
	locality string
}

// proxyNetwork is the network of the proxy being built: a gateway's is
// its Gateway's label when set; otherwise the registration's, else its
// namespace's label.
func (b *builder) proxyNetwork() string {
	p := b.in.Proxy
	if p.Kind == model.KindGateway {
		if g := b.gatewayOf(p.Gateway); g != nil {
			if n := model.GatewayNetwork(b.in.Config, g); n != "" {
				return n
			}
		}
	}
	return model.NetworkOf(b.in.Config, &p.Workload)
}

// networkGateways returns the east-west gateways of network, recording
// the dependencies on the network and on each of its gateways (whose
// registered proxies' addresses may change).
func (b *builder) networkGateways(network string) []model.NetworkGateway {
	b.dependOn(NetworkKey(network))
	gws := model.NetworkGateways(b.in.Config, network)
	for _, g := range gws {
		b.dependOn(GatewayKey(g.Gateway))
	}
	return slices.DeleteFunc(gws, func(g model.NetworkGateway) bool { return len(g.Addresses) == 0 })
}

// remoteMembers gathers the members of one cluster that are in other
// networks than the proxy's.
type remoteMembers struct {
	b       *builder
	cluster string
	service model.Key
	local   string
	// counts are the meshed members by network and locality group; ids
	// their identities by network; plain the members without a sidecar
	// by network.
	counts map[string]map[group]uint32
	ids    map[string][]string
	plain  map[string][]string
}

func (b *builder) remoteMembers(cluster string, s *model.Service) *remoteMembers {
	return &remoteMembers{b: b, cluster: cluster, service: s.Key, local: b.proxyNetwork(),
		counts: map[string]map[group]uint32{}, ids: map[string][]string{}, plain: map[string][]string{}}
}

// add takes member w, reached as reach, in locality group g, when it is
// in another network, and reports whether it did.
func (r *remoteMembers) add(w *model.Workload, reach model.MemberTLS, g group) bool {
	network := model.NetworkOf(r.b.in.Config, w)
	if network == r.local {
		return false
	}
	if reach != model.MemberMTLS {
		r.plain[network] = append(r.plain[network], w.Key.String())
		return true
	}
	if r.counts[network] == nil {
		r.counts[network] = map[group]uint32{}
	}
	r.counts[network][g]++
	r.ids[network] = append(r.ids[network], r.b.workloadID(w))
	return true
}

// addEndpoints adds the east-west gateway endpoints of the remote members
// to byGroup (scaling the weights already there when needed), reports
// what is left out, and returns the identities of the members reached.
func (r *remoteMembers) addEndpoints(byGroup map[group][]*endpointv3.LbEndpoint) []string {
	svc := "Service " + r.service.String()
	for _, network := range slices.Sorted(maps.Keys(r.plain)) {
		r.b.problem(svc, "", fmt.Sprintf("workloads %s of network %s have no sidecar, and an east-west gateway passes only mesh mTLS; "+
			"they are left out of %s for clients in network %s", strings.Join(r.plain[network], ", "), networkName(network), r.cluster, networkName(r.local)))
	}
	gateways := map[string][]model.NetworkGateway{}
	addrs := map[string]uint32{}
	scale := uint32(1)
	for _, network := range slices.Sorted(maps.Keys(r.counts)) {
		gws := r.b.networkGateways(network)
		if len(gws) == 0 {
			var n uint32
			for _, c := range r.counts[network] {
				n += c
			}
			r.b.problem(svc, "", fmt.Sprintf("%d endpoint(s) in network %s, which has no east-west gateway with an address "+
				"(a Gateway labeled %s: %s with an auto-passthrough listener), are left out of %s for clients in network %s",
				n, networkName(network), model.NetworkLabel, network, r.cluster, networkName(r.local)))
			continue
		}
		gateways[network] = gws
		for _, g := range gws {
			addrs[network] += uint32(len(g.Addresses))
		}
		scale = lcm(scale, addrs[network])
	}
	if len(gateways) == 0 {
		return nil
	}
	if scale > 1 {
		for _, eps := range byGroup {
			for _, ep := range eps {
				ep.LoadBalancingWeight = wrapperspb.UInt32(scale)
			}
		}
	}
	var ids []string
	for _, network := range slices.Sorted(maps.Keys(gateways)) {
		ids = append(ids, r.ids[network]...)
		groups := slices.SortedFunc(maps.Keys(r.counts[network]), func(x, y group) int {
			return cmp.Or(cmp.Compare(x.priority, y.priority), cmp.Compare(x.locality, y.locality))
		})
		for _, g := range groups {
			weight := r.counts[network][g] * scale / addrs[network]
			for _, gw := range gateways[network] {
				for _, a := range gw.Addresses {
					ep := lbEndpoint(a, gw.Port, mtlsEndpointMetadata)
					ep.LoadBalancingWeight = wrapperspb.UInt32(weight)
					byGroup[g] = append(byGroup[g], ep)
				}
			}
		}
	}
	return ids
}

func networkName(n string) string {
	if n == "" {
		return `"" (the default network)`
	}
	return fmt.Sprintf("%q", n)
}

func lcm(a, b uint32) uint32 {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}
