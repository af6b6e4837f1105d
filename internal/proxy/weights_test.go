package proxy

import (
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

func weighted(weights ...uint32) []*endpoint {
	var eps []*endpoint
	for i, w := range weights {
		eps = append(eps, &endpoint{addr: string(rune('a' + i)), weight: w, st: &hostState{}})
	}
	return eps
}

// Over any W consecutive picks, weighted round robin picks each host
// exactly its weight's times.
func TestWeightedRoundRobinExact(t *testing.T) {
	for _, weights := range [][]uint32{{1, 2}, {3, 1, 1}, {5, 7, 11}, {1, 100}} {
		eps := weighted(weights...)
		cum := cumulativeWeights(eps)
		if cum == nil {
			t.Fatalf("%v: no running sums", weights)
		}
		total := cum[len(cum)-1]
		for _, start := range []uint64{0, 1, 17, 1 << 40} {
			got := make([]uint64, len(eps))
			for k := start; k < start+total; k++ {
				got[weightedRoundRobin(cum, k)]++
			}
			for i, w := range weights {
				if got[i] != uint64(w) {
					t.Errorf("weights %v from pick %d: host %d picked %d times, want %d", weights, start, i, got[i], w)
				}
			}
		}
	}
	if cumulativeWeights(weighted(2, 2, 2)) != nil {
		t.Error("equal weights: want the unweighted algorithms")
	}
}

// A ring of the minimum size gives each host points in proportion to its
// weight (Envoy: the scale is ceil(minNorm*min)/minNorm).
func TestRingHashWeights(t *testing.T) {
	eps := weighted(1, 3)
	r := newHashRing(eps, defaultRingMin, defaultRingMax)
	count := map[*endpoint]int{}
	for _, h := range r.hosts {
		count[h]++
	}
	if count[eps[0]] != defaultRingMin/4 || count[eps[1]] != 3*defaultRingMin/4 {
		t.Errorf("points: %d and %d, want %d and %d", count[eps[0]], count[eps[1]], defaultRingMin/4, 3*defaultRingMin/4)
	}
}

// EDS with weights compiles; a weight of 0 is refused.
func TestEndpointWeights(t *testing.T) {
	c := &cluster{}
	cla := func(w uint32) *endpointv3.ClusterLoadAssignment {
		return &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
					Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1",
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15443}}}}}},
				LoadBalancingWeight: wrapperspb.UInt32(w),
			}},
		}}}
	}
	a, err := c.compileEndpoints(cla(3))
	if err != nil || len(a.endpoints) != 1 || a.endpoints[0].weight != 3 {
		t.Fatalf("weight 3: %v %+v", err, a)
	}
	if _, err := c.compileEndpoints(cla(0)); err == nil {
		t.Error("weight 0 accepted")
	}
}
