package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// outboundClusters builds every outbound cluster that a listener or route
// referenced, with its endpoints.
func (b *builder) outboundClusters() {
	for _, name := range slices.Sorted(maps.Keys(b.clusters)) {
		ref := b.clusters[name]
		b.outboundClusterOf(name, ref.service, ref.port)
	}
}

// outboundClusterOf builds an outbound cluster and records what it was
// built from, with the problems met, for RefreshEndpoints.
func (b *builder) outboundClusterOf(name string, s *model.Service, sp model.ServicePort) {
	before := len(b.problems)
	b.outboundCluster(name, s, sp)
	if b.out.outbound == nil {
		b.out.outbound = map[string]outboundRef{}
	}
	b.out.outbound[name] = outboundRef{service: s.Key, port: sp.Port, grpc: b.clusters[name].grpc, problems: slices.Clone(b.problems[before:])}
	b.problems = b.problems[:before]
}

// outboundCluster builds the EDS cluster of port sp of service s and its
// endpoints, under the BackendPolicy that applies to the port (see
// backendpolicy.go): its TLS mode decides which members are reached and
// how (model.ReachMember), and with outlier detection the endpoints are ordered into
// priorities by locality, nearest first.
func (b *builder) outboundCluster(name string, s *model.Service, sp model.ServicePort) {
	if s.ExternalName != "" {
		b.externalNameCluster(name, s, sp)
		return
	}
	bp := b.backendPolicy(s, sp)
	mode := model.BackendTLSMesh
	if bp != nil {
		mode = bp.TLS
	}
	ref := "proxy " + b.in.Proxy.ID
	// Locality failover needs health information: only with outlier
	// detection (as Istio requires too), and only for a proxy that knows
	// its own locality.
	failover := bp != nil && bp.OutlierDetection != nil && !b.proxyless && b.in.Proxy.Workload.Locality != ""
	members := b.clusterMembers(s)
	var ids []string
	meshed := false
	byGroup := map[group][]*endpointv3.LbEndpoint{}
	remote := b.remoteMembers(name, s)
	// gRPC's xDS client refuses a whole assignment that lists an address
	// twice; two registrations can claim one address while the older one
	// waits out its grace period.
	owner := map[string]model.Key{}
	for _, w := range members {
		target, ok := w.TargetPort(sp)
		if !ok {
			continue
		}
		if w.HasSidecar() && b.proxyless {
			b.problem(ref, "", fmt.Sprintf("workload %s is reached through its sidecar over mesh mTLS, "+
				"which proxyless gRPC does not speak yet; it is left out of %s", w.Key, name))
			continue
		}
		var ep *endpointv3.LbEndpoint
		reach, why := model.ReachMember(mode, w)
		g := group{locality: w.Locality}
		if failover {
			g.priority = localityPriority(b.in.Proxy.Workload.Locality, w.Locality)
		}
		if reach != model.MemberLeftOut && remote.add(w, reach, g) {
			// A member of another network: reached through its
			// network's east-west gateway (network.go).
			continue
		}
		switch reach {
		case model.MemberLeftOut:
			b.problem("BackendPolicy "+bp.Key.String(), "spec.tls.mode", fmt.Sprintf("%s; it is left out of %s", why, name))
			continue
		case model.MemberMTLS:
			meshed = true
			ids = append(ids, b.workloadID(w))
			ep = lbEndpoint(w.Address, w.MeshPort, mtlsEndpointMetadata)
		default:
			ep = lbEndpoint(w.Address, target, nil)
		}
		if b.proxyless {
			addr := model.HostPort(w.Address, target)
			if first, ok := owner[addr]; ok {
				b.problem(ref, "", fmt.Sprintf("workloads %s and %s both claim %s; %s is left out of %s", first, w.Key, addr, w.Key, name))
				continue
			}
			owner[addr] = w.Key
		}
		byGroup[g] = append(byGroup[g], ep)
	}
	if remoteIDs := remote.addEndpoints(byGroup); len(remoteIDs) > 0 {
		meshed = true
		ids = append(ids, remoteIDs...)
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		ConnectTimeout:       durationpb.New(b.opts.ConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if meshed {
		sni := SNI(sp.Port, b.host(s.Key))
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{{
			Name:            TLSModeMTLS,
			Match:           mtlsEndpointMetadata.FilterMetadata[TransportSocketMatchFilter],
			TransportSocket: b.upstreamMTLS(sni, sortedUnique(ids)),
		}}
	}
	if bp != nil {
		b.applyBackendPolicy(c, bp, sp)
	}
	if !b.proxyless && c.TypedExtensionProtocolOptions == nil {
		c.TypedExtensionProtocolOptions = httpProtocolOptions(b.clusterProtocol(name, sp), 0)
	}
	b.out.Clusters = append(b.out.Clusters, c)

	// Priorities run from 0 without a gap, as Envoy and gRPC require.
	groups := slices.SortedFunc(maps.Keys(byGroup), func(x, y group) int {
		if c := cmp.Compare(x.priority, y.priority); c != 0 {
			return c
		}
		return cmp.Compare(x.locality, y.locality)
	})
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	var prio, last uint32
	for i, g := range groups {
		if i > 0 && g.priority != last {
			prio++
		}
		last = g.priority
		lle := &endpointv3.LocalityLbEndpoints{
			Locality:    parseLocality(g.locality),
			LbEndpoints: byGroup[g],
			Priority:    prio,
		}
		if b.proxyless {
			// gRPC refuses an assignment with a locality left unset and
			// drops localities without weight; weighting each by its
			// endpoint count spreads calls evenly over endpoints.
			if lle.Locality == nil {
				lle.Locality = &corev3.Locality{}
			}
			lle.LoadBalancingWeight = wrapperspb.UInt32(uint32(len(lle.LbEndpoints)))
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	b.out.Endpoints = append(b.out.Endpoints, cla)
}

// localityPriority is Istio's locality failover order of an endpoint's
// locality seen from the proxy's, both region/zone/subzone: 0 for the same
// subzone, 1 for the same zone, 2 for the same region, 3 otherwise.
func localityPriority(proxy, endpoint string) uint32 {
	var p, e [3]string
	copy(p[:], strings.SplitN(proxy, "/", 3))
	copy(e[:], strings.SplitN(endpoint, "/", 3))
	switch {
	case p[0] != e[0]:
		return 3
	case p[1] != e[1]:
		return 2
	case p[2] != e[2]:
		return 1
	}
	return 0
}
