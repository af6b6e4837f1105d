package xds

import (
	"context"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/translate"
)

// config builds a config of n EDS clusters whose endpoints are at addr.
func config(n int, addr func(i int) string) *translate.Resources {
	res := &translate.Resources{}
	for i := range n {
		name := string(rune('a' + i))
		res.Clusters = append(res.Clusters, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
				EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			},
		})
		res.Endpoints = append(res.Endpoints, &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: addr(i), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80},
					}}},
				}},
			}}}},
		})
	}
	return res
}

// TestPushSharesWhatIsServed pushes configs rebuilt from scratch: what did
// not change is replaced by what is served, and versions follow content.
func TestPushSharesWhatIsServed(t *testing.T) {
	ctx := context.Background()
	s := New(ctx, nil, nil)
	same := func(int) string { return "10.0.0.1" }
	first := config(3, same)
	if changed, err := s.Push(ctx, "p", first, nil); err != nil || !changed {
		t.Fatalf("first push: changed %v, err %v", changed, err)
	}
	versions := s.nodes["p"].current.VersionMap[resource.EndpointType]

	again := config(3, same)
	if changed, err := s.Push(ctx, "p", again, nil); err != nil || changed {
		t.Fatalf("equal config: changed %v, err %v", changed, err)
	}
	for i := range 3 {
		if again.Clusters[i] != first.Clusters[i] || again.Endpoints[i] != first.Endpoints[i] {
			t.Errorf("resource %d of an equal config is a copy, not the one served", i)
		}
	}

	moved := config(3, func(i int) string {
		if i == 1 {
			return "10.0.0.2"
		}
		return "10.0.0.1"
	})
	if changed, err := s.Push(ctx, "p", moved, nil); err != nil || !changed {
		t.Fatalf("changed config: changed %v, err %v", changed, err)
	}
	if moved.Endpoints[1] == first.Endpoints[1] {
		t.Error("the changed resource was replaced by the old one")
	}
	if moved.Endpoints[0] != first.Endpoints[0] || moved.Endpoints[2] != first.Endpoints[2] || moved.Clusters[1] != first.Clusters[1] {
		t.Error("unchanged resources of a changed config are copies")
	}
	now := s.nodes["p"].current.VersionMap[resource.EndpointType]
	if now["a"] != versions["a"] || now["b"] == versions["b"] {
		t.Errorf("versions %v after %v: want a kept, b changed", now, versions)
	}
	// Every resource served has its version remembered, and only those.
	if got := len(s.nodes["p"].hashes); got != 6 {
		t.Errorf("%d versions remembered, want 6", got)
	}

	// Another proxy with the same clusters shares them too.
	other := config(3, same)
	if changed, err := s.Push(ctx, "q", other, nil); err != nil || !changed {
		t.Fatalf("other proxy: changed %v, err %v", changed, err)
	}
	if other.Clusters[0] != first.Clusters[0] || other.Endpoints[1] != first.Endpoints[1] || other.Endpoints[1] == moved.Endpoints[1] {
		t.Error("a second proxy's config holds copies of resources in use")
	}
}
