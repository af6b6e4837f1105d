package proxy

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/proxy/route"
)

// Load balancing, with Envoy's semantics:
//
//	ClusterLoadAssignment ──► endpoints by priority ──► hostSet (rebuilt on EDS and on ejection)
//	                                                       │ per priority: hosts, healthy (not ejected), panic, ring
//	request (hash?) ──► choose a priority by load ──► ROUND_ROBIN | LEAST_REQUEST | RING_HASH ──► endpoint
//
// Priority load follows Envoy: the health of a priority is its share of
// healthy hosts times the overprovisioning factor (1.4 by default), capped
// at 100 %; priorities take load in order, up to their health, normalized
// by the total health when it is below 100 %. A priority whose healthy share
// is below the panic threshold (50 % by default) while the total health is
// below 100 % is in panic and balances over all its hosts, ejected or not;
// when every priority is in panic, load follows host counts.

// lbPolicy is the cluster's load balancing algorithm.
type lbPolicy uint8

const (
	lbRoundRobin lbPolicy = iota
	lbLeastRequest
	lbRingHash
)

// Envoy's defaults.
const (
	defaultOverprovisioning = 140 // percent
	defaultPanicThreshold   = 50  // percent
	defaultChoiceCount      = 2
	defaultRingMin          = 1024
	defaultRingMax          = 8 * 1024 * 1024
)

// hostState is what the proxy learns about an endpoint while using it. It
// is keyed by address and outlives EDS updates that keep the address, so
// that ejections, connection counts and requests in flight carry over.
type hostState struct {
	addr string
	// failedAt is when a connection to it last failed (Unix nanoseconds);
	// clusters without outlier detection pass over such endpoints for
	// failedEndpointBackoff while others are available.
	failedAt atomic.Int64
	// active counts requests in flight (LEAST_REQUEST), conns the
	// connections open or opening (circuit breakers).
	active atomic.Int64
	conns  atomic.Int64
	// Outlier detection: consecutive failures, and whether the host is
	// ejected. The rest is guarded by the cluster's lbMu.
	consecutive5xx   atomic.Uint32
	consecutiveLocal atomic.Uint32
	ejected          atomic.Bool
	numEjections     uint32
	backoff          uint32
	lastEjection     time.Time
	lastUnejection   time.Time
	jitter           time.Duration
}

// endpoint is one lb_endpoint of the current assignment.
type endpoint struct {
	addr     string
	tls      *upstreamTLS // nil: plaintext
	priority uint32
	// weight is the load_balancing_weight; 0 counts as 1.
	weight uint32
	st     *hostState
}

// w is the endpoint's load balancing weight.
func (ep *endpoint) w() uint64 { return uint64(max(ep.weight, 1)) }

// hostSet is an immutable view of a cluster's endpoints for the load
// balancer; a new one replaces it when endpoints or their health change.
type hostSet struct {
	all    []*endpoint
	levels []*priorityLevel
	// load is the percentage of requests each priority takes; it sums to
	// 100 when there is any host.
	load []uint32
}

type priorityLevel struct {
	hosts   []*endpoint
	healthy []*endpoint
	panic   bool
	ring    *hashRing // RING_HASH: over candidates()
	// cum are the running sums of the candidates' weights when they are
	// not all equal (nil when they are): weighted round robin and least
	// request choose by them (weights.go).
	cum []uint64
}

// candidates are the endpoints a priority balances over.
func (l *priorityLevel) candidates() []*endpoint {
	if l.panic {
		return l.hosts
	}
	return l.healthy
}

// lbConfig is what building a hostSet needs of the cluster.
type lbConfig struct {
	policy           lbPolicy
	choiceCount      int
	ringMin, ringMax uint64
	panicThreshold   uint32 // percent; 0 disables panic mode
}

// newHostSet groups endpoints by priority and computes Envoy's priority
// load and panic state with overprovisioning factor op (percent).
func newHostSet(all []*endpoint, cfg *lbConfig, op uint32) *hostSet {
	hs := &hostSet{all: all}
	maxPrio := -1
	for _, ep := range all {
		maxPrio = max(maxPrio, int(ep.priority))
	}
	hs.levels = make([]*priorityLevel, maxPrio+1)
	for i := range hs.levels {
		hs.levels[i] = &priorityLevel{}
	}
	for _, ep := range all {
		l := hs.levels[ep.priority]
		l.hosts = append(l.hosts, ep)
		if !ep.st.ejected.Load() {
			l.healthy = append(l.healthy, ep)
		}
	}
	n := len(hs.levels)
	hs.load = make([]uint32, n)
	if n == 0 {
		return hs
	}
	health := make([]uint32, n)
	var total uint32
	for i, l := range hs.levels {
		if len(l.hosts) > 0 {
			health[i] = min(100, uint32(uint64(op)*uint64(len(l.healthy))/uint64(len(l.hosts))))
		}
		total += health[i]
	}
	total = min(total, 100)
	switch {
	case total == 0:
		hs.load[0] = 100
	default:
		remaining := uint32(100)
		first := -1
		for i := range hs.levels {
			if first < 0 && health[i] > 0 {
				first = i
			}
			hs.load[i] = min(remaining, health[i]*100/total)
			remaining -= hs.load[i]
		}
		if remaining > 0 && first >= 0 {
			hs.load[first] += remaining
		}
	}
	// Panic: never while the total health is 100 %.
	if cfg.panicThreshold > 0 && total < 100 {
		allPanic := true
		for _, l := range hs.levels {
			l.panic = len(l.hosts) == 0 || uint64(len(l.healthy))*100 < uint64(cfg.panicThreshold)*uint64(len(l.hosts))
			allPanic = allPanic && l.panic
		}
		if allPanic {
			// Total panic: load follows the number of hosts.
			hosts := len(hs.all)
			clear(hs.load)
			remaining := uint32(100)
			first := -1
			for i, l := range hs.levels {
				if first < 0 && len(l.hosts) > 0 {
					first = i
				}
				hs.load[i] = uint32(100 * len(l.hosts) / hosts)
				remaining -= hs.load[i]
			}
			if first >= 0 {
				hs.load[first] += remaining
			}
		}
	}
	for _, l := range hs.levels {
		l.cum = cumulativeWeights(l.candidates())
		if cfg.policy == lbRingHash {
			l.ring = newHashRing(l.candidates(), cfg.ringMin, cfg.ringMax)
		}
	}
	return hs
}

// choosePriority picks a priority by load with v, a number whose value
// modulo 100 is uniformly spread.
func (hs *hostSet) choosePriority(v uint64) *priorityLevel {
	if len(hs.levels) == 1 {
		return hs.levels[0]
	}
	r := uint32(v % 100)
	var cum uint32
	for i, load := range hs.load {
		cum += load
		if r < cum {
			return hs.levels[i]
		}
	}
	return hs.levels[0]
}

// pick chooses up to n distinct endpoints to try in order: the one the
// load balancer picks, then the next ones of the same priority (on the
// ring, for RING_HASH). hash is the request's hash, for RING_HASH; without
// one the pick is random, as in Envoy. Clusters without outlier detection
// try endpoints that recently refused a connection last.
func (c *cluster) pick(n int, hash uint64, hasHash bool) []*endpoint {
	hs := c.hosts.Load()
	if len(hs.all) == 0 {
		return nil
	}
	if !hasHash {
		hash = rand.Uint64()
	}
	lvl := hs.choosePriority(hash)
	cands := lvl.candidates()
	if len(cands) == 0 {
		return nil
	}
	var order []*endpoint
	switch policy := c.lb.policy; {
	case policy == lbLeastRequest && lvl.cum != nil:
		order = rotate(cands, weightedLeastRequest(cands), n)
	case policy == lbRingHash:
		order = lvl.ring.walk(hash, min(n, len(cands)))
	case policy == lbLeastRequest:
		best := rand.IntN(len(cands))
		for range c.lb.choiceCount - 1 {
			if j := rand.IntN(len(cands)); cands[j].st.active.Load() < cands[best].st.active.Load() {
				best = j
			}
		}
		order = rotate(cands, best, n)
	case lvl.cum != nil:
		order = rotate(cands, weightedRoundRobin(lvl.cum, c.next.Add(1)), n)
	default:
		start := int(c.next.Add(1) % uint64(len(cands)))
		order = rotate(cands, start, n)
	}
	if c.od == nil && len(order) > 1 {
		// The ad-hoc backoff of clusters without outlier detection: endpoints
		// that refused a connection recently go last.
		now := time.Now().UnixNano()
		fresh := make([]*endpoint, 0, len(order))
		var failed []*endpoint
		for _, ep := range order {
			if now-ep.st.failedAt.Load() < int64(failedEndpointBackoff) {
				failed = append(failed, ep)
			} else {
				fresh = append(fresh, ep)
			}
		}
		order = append(fresh, failed...)
	}
	return order
}

// rotate returns up to n endpoints of eps starting at start, wrapping.
func rotate(eps []*endpoint, start, n int) []*endpoint {
	n = min(n, len(eps))
	out := make([]*endpoint, n)
	for i := range n {
		out[i] = eps[(start+i)%len(eps)]
	}
	return out
}

// hashRing is Envoy's ring hash: each host owns points of a ring of 64-bit
// hashes, xxHash64 of "ADDRESS_i"; a request goes to the first point at or
// after its hash. The ring depends only on the hosts' addresses, so equal
// endpoint sets give equal rings on every proxy and across config pushes.
type hashRing struct {
	hashes []uint64
	hosts  []*endpoint
}

func newHashRing(hosts []*endpoint, minSize, maxSize uint64) *hashRing {
	r := &hashRing{}
	if len(hosts) == 0 {
		return r
	}
	// Each host gets points in proportion to its normalized weight
	// (weight/total), spread by Envoy's running sums over a ring of
	// ceil(minNorm*minSize)/minNorm points (minNorm the smallest
	// normalized weight), capped at maxSize. With equal weights that is
	// ceil(minSize/N)*N.
	var total, least uint64
	for _, h := range hosts {
		total += h.w()
		if least == 0 || h.w() < least {
			least = h.w()
		}
	}
	minNorm := float64(least) / float64(total)
	scale := min(math.Ceil(minNorm*float64(minSize))/minNorm, float64(maxSize))
	if least*uint64(len(hosts)) == total {
		// Equal weights, in integers, as before.
		scale = min(float64(ceilDiv(minSize, uint64(len(hosts)))*uint64(len(hosts))), float64(maxSize))
	}
	type point struct {
		hash uint64
		host *endpoint
	}
	points := make([]point, 0, int(scale)+len(hosts))
	current, target := 0.0, 0.0
	var key []byte
	for _, h := range hosts {
		target += scale * float64(h.w()) / float64(total)
		key = append(key[:0], h.addr...)
		key = append(key, '_')
		base := len(key)
		for i := 0; current < target; i++ {
			key = strconv.AppendInt(key[:base], int64(i), 10)
			points = append(points, point{route.XXHash64(key, 0), h})
			current++
		}
	}
	slices.SortStableFunc(points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	r.hashes = make([]uint64, len(points))
	r.hosts = make([]*endpoint, len(points))
	for i, p := range points {
		r.hashes[i], r.hosts[i] = p.hash, p.host
	}
	return r
}

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// walk returns up to n distinct hosts in ring order from the first point
// at or after h.
func (r *hashRing) walk(h uint64, n int) []*endpoint {
	if len(r.hashes) == 0 {
		return nil
	}
	i := sort.Search(len(r.hashes), func(i int) bool { return r.hashes[i] >= h })
	out := make([]*endpoint, 0, n)
	for k := 0; k < len(r.hashes) && len(out) < n; k++ {
		h := r.hosts[(i+k)%len(r.hashes)]
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
