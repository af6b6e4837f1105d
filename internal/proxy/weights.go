package proxy

import (
	"math/rand/v2"
	"sort"
)

// Endpoint weights (LbEndpoint.load_balancing_weight), with Envoy's
// semantics: within a priority, a host takes load in proportion to its
// weight. Priority load and panic still count hosts, as in Envoy.
//
//	ROUND_ROBIN    weighted: over each cycle of W picks (W the sum of the
//	               weights) every host is picked exactly its weight's
//	               times, interleaved (pick k goes to the host owning
//	               k*stride mod W, stride a prime not dividing W)
//	LEAST_REQUEST  with unequal weights, a host is picked with probability
//	               proportional to weight/(active requests+1), Envoy's
//	               effective weight with active_request_bias 1.0
//	RING_HASH      points on the ring in proportion to the weights
//	               (newHashRing)

// cumulativeWeights returns the running sums of the weights of eps, or
// nil when they are all equal (the unweighted algorithms then apply).
func cumulativeWeights(eps []*endpoint) []uint64 {
	equal := true
	for _, ep := range eps {
		equal = equal && ep.w() == eps[0].w()
	}
	if equal {
		return nil
	}
	cum := make([]uint64, len(eps))
	var sum uint64
	for i, ep := range eps {
		sum += ep.w()
		cum[i] = sum
	}
	return cum
}

// wrrStride spreads a cycle's picks over the hosts: a prime, so that
// k*stride mod W visits every residue once per cycle unless W is a
// multiple of it.
const wrrStride = 2654435761

// weightedRoundRobin returns the index of the host pick k goes to, by the
// running sums cum.
func weightedRoundRobin(cum []uint64, k uint64) int {
	total := cum[len(cum)-1]
	stride := uint64(wrrStride)
	if total%stride == 0 {
		stride = 1
	}
	x := mulmod(k%total, stride%total, total)
	return sort.Search(len(cum), func(i int) bool { return cum[i] > x })
}

// mulmod returns a*b mod m without overflow for a, b < m.
func mulmod(a, b, m uint64) uint64 {
	if a == 0 || b < (^uint64(0))/a {
		return a * b % m
	}
	var r uint64
	for b > 0 {
		if b&1 == 1 {
			r = (r + a) % m
		}
		a = (a << 1) % m
		b >>= 1
	}
	return r
}

// weightedLeastRequest picks a host with probability proportional to
// weight/(active+1).
func weightedLeastRequest(eps []*endpoint) int {
	eff := make([]float64, len(eps))
	var sum float64
	for i, ep := range eps {
		eff[i] = float64(ep.w()) / float64(ep.st.active.Load()+1)
		sum += eff[i]
	}
	x := rand.Float64() * sum
	for i := range eps {
		if x < eff[i] {
			return i
		}
		x -= eff[i]
	}
	return len(eps) - 1
}
