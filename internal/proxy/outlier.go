package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// Outlier detection, with Envoy's semantics for consecutive errors:
//
//   - every response of an endpoint is a result: a 5xx counts toward
//     consecutive_5xx, anything else resets the count; when the count
//     reaches the threshold the endpoint is ejected (with probability
//     enforcing_consecutive_5xx, 100 % by default);
//   - locally originated errors (connection refused or timed out, reset
//     before a response, upstream request timeout) count as a 503 or 504
//     without split_external_local_origin_errors, and toward
//     consecutive_local_origin_failure with it (a successful connection
//     resets that count);
//   - an ejection is refused when it would take the share of ejected
//     endpoints above max_ejection_percent (unless always_eject_one_host and
//     none is ejected);
//   - an ejected endpoint returns at the first interval tick after
//     min(base_ejection_time × its back-off, max_ejection_time) plus its
//     jitter; the back-off grows by one with each ejection and shrinks by
//     one for each interval it stays healthy;
//   - ejected endpoints leave the load balancer's healthy set; when too
//     few are healthy the panic threshold (see lb.go) balances over all.
//
// Success-rate and failure-percentage ejection are not implemented: their
// enforcing percentages must be 0 (success rate's default is 100, so it
// must be set).

// outlierConfig is a compiled outlier_detection.
type outlierConfig struct {
	consecutive5xx, enforcing5xx     uint32
	split                            bool
	consecutiveLocal, enforcingLocal uint32
	interval, base, maxEjection      time.Duration
	maxJitter                        time.Duration
	maxEjectionPercent               uint32
	alwaysEjectOne                   bool
}

// Envoy's outlier detection defaults.
const (
	defaultConsecutive     = 5
	defaultODInterval      = 10 * time.Second
	defaultBaseEjection    = 30 * time.Second
	defaultMaxEjection     = 300 * time.Second
	defaultMaxEjectPercent = 10
)

func compileOutlierDetection(od *clusterv3.OutlierDetection) (*outlierConfig, error) {
	if od == nil {
		return nil, nil
	}
	if err := unsupported(od, "consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
		"enforcing_consecutive_5xx", "enforcing_success_rate", "split_external_local_origin_errors",
		"consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
		"enforcing_local_origin_success_rate", "max_ejection_time", "max_ejection_time_jitter",
		"always_eject_one_host", "enforcing_consecutive_gateway_failure", "enforcing_failure_percentage",
		"enforcing_failure_percentage_local_origin"); err != nil {
		return nil, err
	}
	u32 := func(v interface{ GetValue() uint32 }, isNil bool, def uint32) uint32 {
		if isNil {
			return def
		}
		return v.GetValue()
	}
	dur := func(get func() time.Duration, isNil bool, def time.Duration) time.Duration {
		if isNil {
			return def
		}
		return get()
	}
	c := &outlierConfig{
		consecutive5xx:     u32(od.GetConsecutive_5Xx(), od.GetConsecutive_5Xx() == nil, defaultConsecutive),
		enforcing5xx:       u32(od.GetEnforcingConsecutive_5Xx(), od.GetEnforcingConsecutive_5Xx() == nil, 100),
		split:              od.GetSplitExternalLocalOriginErrors(),
		consecutiveLocal:   u32(od.GetConsecutiveLocalOriginFailure(), od.GetConsecutiveLocalOriginFailure() == nil, defaultConsecutive),
		enforcingLocal:     u32(od.GetEnforcingConsecutiveLocalOriginFailure(), od.GetEnforcingConsecutiveLocalOriginFailure() == nil, 100),
		interval:           dur(od.GetInterval().AsDuration, od.GetInterval() == nil, defaultODInterval),
		base:               dur(od.GetBaseEjectionTime().AsDuration, od.GetBaseEjectionTime() == nil, defaultBaseEjection),
		maxJitter:          dur(od.GetMaxEjectionTimeJitter().AsDuration, od.GetMaxEjectionTimeJitter() == nil, 0),
		maxEjectionPercent: min(100, u32(od.GetMaxEjectionPercent(), od.GetMaxEjectionPercent() == nil, defaultMaxEjectPercent)),
		alwaysEjectOne:     od.GetAlwaysEjectOneHost().GetValue(),
	}
	c.maxEjection = dur(od.GetMaxEjectionTime().AsDuration, od.GetMaxEjectionTime() == nil, max(defaultMaxEjection, c.base))
	var errs []error
	if v := od.GetEnforcingSuccessRate(); v == nil || v.GetValue() != 0 {
		errs = append(errs, errors.New("enforcing_success_rate: success-rate ejection is not implemented; set it to 0 (its default is 100)"))
	}
	if v := od.GetEnforcingLocalOriginSuccessRate(); c.split && (v == nil || v.GetValue() != 0) {
		errs = append(errs, errors.New("enforcing_local_origin_success_rate: success-rate ejection is not implemented; set it to 0 (its default is 100)"))
	}
	for _, e := range []struct {
		name string
		v    uint32
	}{
		{"enforcing_consecutive_gateway_failure", od.GetEnforcingConsecutiveGatewayFailure().GetValue()},
		{"enforcing_failure_percentage", od.GetEnforcingFailurePercentage().GetValue()},
		{"enforcing_failure_percentage_local_origin", od.GetEnforcingFailurePercentageLocalOrigin().GetValue()},
	} {
		if e.v != 0 {
			errs = append(errs, fmt.Errorf("%s: %d: this ejection is not implemented; leave it 0", e.name, e.v))
		}
	}
	if c.interval <= 0 {
		errs = append(errs, errors.New("interval must be positive"))
	}
	if c.maxEjection < c.base {
		errs = append(errs, errors.New("max_ejection_time cannot be smaller than base_ejection_time"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// httpStatus records a response of ep.
func (c *cluster) httpStatus(ep *endpoint, code int) {
	if c.od == nil {
		return
	}
	if code >= 500 && code <= 599 {
		if n := ep.st.consecutive5xx.Add(1); n == c.od.consecutive5xx {
			c.onConsecutive(ep, false)
		}
		return
	}
	ep.st.consecutive5xx.Store(0)
}

// localFailure records a locally originated error toward ep: a connection
// failure or reset, or a timeout.
func (c *cluster) localFailure(ep *endpoint, timeout bool) {
	if c.od == nil {
		return
	}
	if !c.od.split {
		code := 503
		if timeout {
			code = 504
		}
		c.httpStatus(ep, code)
		return
	}
	if n := ep.st.consecutiveLocal.Add(1); n == c.od.consecutiveLocal {
		c.onConsecutive(ep, true)
	}
}

// connectSucceeded records that a request got a connection to ep.
func (c *cluster) connectSucceeded(ep *endpoint) {
	if c.od != nil && c.od.split {
		ep.st.consecutiveLocal.Store(0)
	}
}

// tcpSucceeded records that the TCP proxy connected to ep, its final
// result: a success for the 5xx count too when errors are not split.
func (c *cluster) tcpSucceeded(ep *endpoint) {
	if c.od != nil && !c.od.split {
		c.httpStatus(ep, 200)
	}
}

// connectFailed remembers a refused connection for the ad-hoc back-off of
// clusters without outlier detection.
func (c *cluster) connectFailed(ep *endpoint) {
	ep.st.failedAt.Store(nowNanos())
}

// onConsecutive handles a count of consecutive errors reaching its
// threshold: eject ep if the limits allow, and restart the count.
func (c *cluster) onConsecutive(ep *endpoint, local bool) {
	c.lbMu.Lock()
	defer c.lbMu.Unlock()
	st := ep.st
	hs := c.hosts.Load()
	member, ejected := false, 0
	for _, h := range hs.all {
		member = member || h.st == st
		if h.st.ejected.Load() {
			ejected++
		}
	}
	if !member || st.ejected.Load() || c.closed {
		return
	}
	enforcing := c.od.enforcing5xx
	if local {
		enforcing = c.od.enforcingLocal
		defer st.consecutiveLocal.Store(0)
	} else {
		defer st.consecutive5xx.Store(0)
	}
	ok := 100*(ejected+1) <= int(c.od.maxEjectionPercent)*len(hs.all) || c.od.alwaysEjectOne && ejected == 0
	if !ok || rand.Uint32N(100) >= enforcing {
		return
	}
	now := time.Now()
	st.ejected.Store(true)
	st.numEjections++
	st.lastEjection = now
	if c.od.maxJitter > 0 {
		st.jitter = rand.N(c.od.maxJitter + 1)
	}
	if time.Duration(st.backoff)*c.od.base < c.od.maxEjection+c.od.base {
		st.backoff++
	}
	c.rebuildLocked()
	if c.odTimer == nil {
		c.odTimer = time.AfterFunc(c.od.interval, c.outlierTick)
	}
}

// outlierTick is the interval timer: it returns ejected endpoints whose
// time is up, lets the back-off of healthy ones decay, and runs again
// while there is anything left to do.
func (c *cluster) outlierTick() {
	c.lbMu.Lock()
	defer c.lbMu.Unlock()
	if c.closed {
		return
	}
	now := time.Now()
	hs := c.hosts.Load()
	changed, busy := false, false
	for _, h := range hs.all {
		st := h.st
		if !st.ejected.Load() {
			continue
		}
		if min(c.od.base*time.Duration(st.backoff), c.od.maxEjection)+st.jitter <= now.Sub(st.lastEjection) {
			st.ejected.Store(false)
			st.consecutive5xx.Store(0)
			st.consecutiveLocal.Store(0)
			st.lastUnejection = now
			changed = true
		}
	}
	for _, h := range hs.all {
		st := h.st
		if st.ejected.Load() {
			busy = true
			continue
		}
		if !st.lastUnejection.IsZero() && now.Sub(st.lastUnejection) >= c.od.interval && st.backoff > 0 {
			st.backoff--
		}
		busy = busy || st.backoff > 0
	}
	if changed {
		c.rebuildLocked()
	}
	if busy {
		c.odTimer.Reset(c.od.interval)
	} else {
		c.odTimer = nil
	}
}
