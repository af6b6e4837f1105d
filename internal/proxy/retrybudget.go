package proxy

import "sync"

// admitRetry asks the cluster's retry circuit breaker for one more retry in
// flight, with Envoy's semantics. With a retry_budget, retries in flight
// may reach budget_percent of the requests active and pending on the
// cluster, and never fewer than min_retry_concurrency (defaults 20 % and
// 3); without one, max_retries (default 3). When ok, done must be called
// once the retry attempt is over; when not, the retry must not be made
// (Envoy counts it as upstream_rq_retry_overflow and returns the response
// it has).
func (c *cluster) admitRetry() (done func(), ok bool) {
	b := c.cb
	limit := b.maxRetries
	if b.budget != nil {
		active := b.active.Load()
		limit = max(b.budget.minConcurrency, int64(b.budget.percent*float64(active)/100))
	}
	if !take(&b.retries, limit) {
		return nil, false
	}
	return sync.OnceFunc(func() { b.retries.Add(-1) }), true
}
