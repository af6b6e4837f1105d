package translate

import (
	"cmp"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
)

// RefreshEndpoints brings prev, a config Translate built for in.Proxy,
// up to date after changes to the members of services only (their ep/
// dependency keys): it rebuilds the outbound clusters of those services
// from in and replaces their endpoints, sharing every other resource with
// prev. Endpoint churn thus costs a proxy the clusters it concerns, not a
// whole translation.
//
// It reports false when the change reaches further (always for a sidecar
// with an outbound capture listener), and the caller must
// then translate in full: a service or port that is gone, a rebuilt
// cluster that differs from the one in prev (its members' identities
// changed, for instance), or a rebuilt resource that is invalid.
func RefreshEndpoints(in Input, opts Options, prev *Resources, services map[model.Key]bool) (*Resources, []Problem, bool) {
	if in.Proxy.OutboundCapturePort != 0 || prev.fullOnly {
		// The outbound capture listener matches on the members' addresses.
		return nil, nil, false
	}
	b := &builder{in: in, opts: opts.withDefaults(), clusters: map[string]clusterRef{}, proxyless: in.Proxy.Kind == model.KindGRPC}
	for _, name := range slices.Sorted(maps.Keys(prev.outbound)) {
		ref := prev.outbound[name]
		if !services[ref.service] {
			continue
		}
		s := in.Index.Service(ref.service)
		if s == nil {
			return nil, nil, false
		}
		sp, ok := s.Port(ref.port)
		if !ok {
			return nil, nil, false
		}
		b.clusters[name] = clusterRef{service: s, port: sp, grpc: ref.grpc}
		b.outboundClusterOf(name, s, sp)
	}
	if len(b.problems) > 0 {
		return nil, nil, false
	}
	for _, c := range b.out.Clusters {
		i, ok := slices.BinarySearchFunc(prev.Clusters, c.Name, func(x *clusterv3.Cluster, name string) int { return cmp.Compare(x.GetName(), name) })
		if !ok || !proto.Equal(prev.Clusters[i], c) {
			return nil, nil, false
		}
	}
	for k := range b.deps {
		if _, ok := slices.BinarySearch(prev.Deps, k); !ok {
			return nil, nil, false
		}
	}
	next := *prev
	next.Endpoints = slices.Clone(prev.Endpoints)
	next.outbound = maps.Clone(prev.outbound)
	for _, cla := range b.out.Endpoints {
		if err := cla.ValidateAll(); err != nil {
			return nil, nil, false
		}
		i, ok := slices.BinarySearchFunc(next.Endpoints, cla.ClusterName, func(x *endpointv3.ClusterLoadAssignment, name string) int {
			return cmp.Compare(x.GetClusterName(), name)
		})
		if !ok {
			return nil, nil, false
		}
		next.Endpoints[i] = cla
		next.outbound[cla.ClusterName] = b.out.outbound[cla.ClusterName]
	}
	return &next, next.allProblems(), true
}
