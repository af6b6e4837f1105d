package proxy

import "sync"

// The cluster's side of retries. The route's retry policy decides whether
// a request should be retried; the cluster decides whether it may be
// (Envoy's retry budget and max_retries circuit breaker live on the
// cluster). This implementation has no budget: every retry is admitted,
// and the retries in flight are counted per cluster.

// activeRetries counts the retries in flight per cluster.
var activeRetries struct {
	sync.Mutex
	n map[*cluster]int
}

// admitRetry asks the cluster for one retry. When ok, the caller retries
// and calls done once the retried attempt has finished (response headers
// or failure); when not ok, the request ends with the result it has.
func (c *cluster) admitRetry() (done func(), ok bool) {
	activeRetries.Lock()
	if activeRetries.n == nil {
		activeRetries.n = map[*cluster]int{}
	}
	activeRetries.n[c]++
	activeRetries.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			activeRetries.Lock()
			defer activeRetries.Unlock()
			if activeRetries.n[c]--; activeRetries.n[c] <= 0 {
				delete(activeRetries.n, c)
			}
		})
	}, true
}
