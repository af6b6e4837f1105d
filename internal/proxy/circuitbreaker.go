package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Circuit breakers, with Envoy's semantics and defaults (every cluster has
// them, configured or not):
//
//   - max_requests (1024): requests in flight to the cluster; one more is
//     refused at once;
//   - max_connections (1024): connections to the cluster's endpoints. A
//     request that finds no idle connection opens one if the cluster is
//     below the limit, or if its endpoint has no connection at all;
//     otherwise it waits for one of that endpoint's connections;
//   - max_pending_requests (1024): requests waiting for a connection (one
//     being opened, or one in use); one more is refused at once. For TCP
//     proxying every connection being opened is pending;
//   - max_retries (3), or retry_budget: see retrybudget.go.
//
// A refused request is answered 503 with x-envoy-overloaded: true; nothing
// queues without bound.

// errOverflow is a request refused by a circuit breaker.
var errOverflow = errors.New("upstream overflow: a circuit breaker is open")

// errNotNeeded ends a connection attempt whose request no longer waits.
var errNotNeeded = errors.New("connection no longer needed")

// Envoy's default thresholds.
const (
	defaultMaxConnections = 1024
	defaultMaxPending     = 1024
	defaultMaxRequests    = 1024
	defaultMaxRetries     = 3
	defaultBudgetPercent  = 20.0
	defaultMinRetryConc   = 3
)

// breaker holds a cluster's thresholds and what counts against them.
type breaker struct {
	maxConnections, maxPending, maxRequests, maxRetries int64
	// budget, when set, replaces maxRetries.
	budget *retryBudget

	active  atomic.Int64 // requests in flight, pending ones included
	pending atomic.Int64 // requests waiting for a connection
	retries atomic.Int64 // retries in flight

	mu    sync.Mutex
	conns int64
	// freed is closed (and replaced) whenever a connection closes.
	freed chan struct{}
}

type retryBudget struct {
	percent        float64
	minConcurrency int64
}

func newBreaker() *breaker {
	return &breaker{
		maxConnections: defaultMaxConnections, maxPending: defaultMaxPending,
		maxRequests: defaultMaxRequests, maxRetries: defaultMaxRetries,
		freed: make(chan struct{}),
	}
}

// compileCircuitBreakers reads circuit_breakers: one thresholds entry of
// priority DEFAULT (routes never ask for HIGH).
func compileCircuitBreakers(cb *clusterv3.CircuitBreakers) (*breaker, error) {
	b := newBreaker()
	if cb == nil {
		return b, nil
	}
	if err := unsupported(cb, "thresholds"); err != nil {
		return nil, err
	}
	for i, t := range cb.GetThresholds() {
		if err := unsupported(t, "priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "retry_budget"); err != nil {
			return nil, fmt.Errorf("thresholds[%d]: %w", i, err)
		}
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			return nil, fmt.Errorf("thresholds[%d]: priority %s: only DEFAULT is supported (routes never set a priority)", i, t.GetPriority())
		}
		if i > 0 {
			// Envoy uses the first entry of a priority; a second one would
			// be ignored.
			return nil, fmt.Errorf("thresholds[%d]: a second DEFAULT entry would be ignored; send one", i)
		}
		if v := t.GetMaxConnections(); v != nil {
			b.maxConnections = int64(v.GetValue())
		}
		if v := t.GetMaxPendingRequests(); v != nil {
			b.maxPending = int64(v.GetValue())
		}
		if v := t.GetMaxRequests(); v != nil {
			b.maxRequests = int64(v.GetValue())
		}
		if v := t.GetMaxRetries(); v != nil {
			b.maxRetries = int64(v.GetValue())
		}
		if rb := t.GetRetryBudget(); rb != nil {
			if err := unsupported(rb, "budget_percent", "min_retry_concurrency"); err != nil {
				return nil, fmt.Errorf("thresholds[%d].retry_budget: %w", i, err)
			}
			b.budget = &retryBudget{percent: defaultBudgetPercent, minConcurrency: defaultMinRetryConc}
			if p := rb.GetBudgetPercent(); p != nil {
				b.budget.percent = p.GetValue()
			}
			if m := rb.GetMinRetryConcurrency(); m != nil {
				b.budget.minConcurrency = int64(m.GetValue())
			}
		}
	}
	return b, nil
}

// take increments n unless it has reached limit.
func take(n *atomic.Int64, limit int64) bool {
	for {
		v := n.Load()
		if v >= limit {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// startRequest counts a request against max_requests.
func (b *breaker) startRequest() bool { return take(&b.active, b.maxRequests) }

func (b *breaker) endRequest() { b.active.Add(-1) }

// acquireConn takes a connection slot toward the endpoint of st: at once
// below max_connections or when the endpoint has no connection, else when
// a connection closes. It gives up when wait is closed (the request got a
// connection another way, or ended) or ctx is done.
func (b *breaker) acquireConn(ctx context.Context, st *hostState, wait <-chan struct{}) (release func(), err error) {
	for {
		b.mu.Lock()
		if b.conns < b.maxConnections || st.conns.Load() == 0 {
			b.conns++
			st.conns.Add(1)
			b.mu.Unlock()
			return sync.OnceFunc(func() {
				b.mu.Lock()
				b.conns--
				st.conns.Add(-1)
				close(b.freed)
				b.freed = make(chan struct{})
				b.mu.Unlock()
			}), nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-wait:
			return nil, errNotNeeded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// attempt is one try of an HTTP request on one endpoint. Through the
// client trace it learns when the transport looks for a connection and
// when it has one; the dial function, which runs only when no idle
// connection was free, makes the request pending until then.
type attempt struct {
	c  *cluster
	ep *endpoint

	mu      sync.Mutex
	pending bool
	wait    chan struct{} // closed once the request has a connection or ended
	closed  bool
	trace   httptrace.ClientTrace
}

type attemptKey struct{}

func (c *cluster) newAttempt(ep *endpoint) *attempt {
	a := &attempt{c: c, ep: ep}
	a.trace.GetConn = func(string) { a.getConn() }
	a.trace.GotConn = func(httptrace.GotConnInfo) {
		a.release()
		c.connectSucceeded(ep)
	}
	return a
}

// context adds the attempt and its trace to ctx.
func (a *attempt) context(ctx context.Context) context.Context {
	return context.WithValue(httptrace.WithClientTrace(ctx, &a.trace), attemptKey{}, a)
}

// getConn starts a wait for a connection (the transport may look for
// another one when a reused connection fails before the request is sent).
func (a *attempt) getConn() {
	a.mu.Lock()
	if a.wait == nil || a.closed {
		a.wait, a.closed = make(chan struct{}), false
	}
	a.mu.Unlock()
}

// release ends the wait: the request has a connection, or is over.
func (a *attempt) release() {
	a.mu.Lock()
	if a.pending {
		a.pending = false
		a.c.cb.pending.Add(-1)
	}
	if a.wait != nil && !a.closed {
		close(a.wait)
		a.closed = true
	}
	a.mu.Unlock()
}

// waiting makes the attempt pending, if max_pending_requests allows, and
// returns the channel closed when it stops waiting.
func (a *attempt) waiting() (<-chan struct{}, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wait == nil || a.closed {
		return nil, errNotNeeded
	}
	if !a.pending {
		if !take(&a.c.cb.pending, a.c.cb.maxPending) {
			return nil, errOverflow
		}
		a.pending = true
	}
	return a.wait, nil
}

// dialContext is the HTTP transports' dial function. It runs when a
// request found no idle connection: the request is pending from here until
// it has one, and the new connection needs a slot under max_connections.
func (c *cluster) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		return nil, errors.New("proxy: dial outside of a request")
	}
	wait, err := a.waiting()
	if err != nil {
		return nil, err
	}
	release, err := c.cb.acquireConn(ctx, a.ep.st, wait)
	if err != nil {
		return nil, err
	}
	conn, err := (&net.Dialer{Timeout: c.connectTimeout, KeepAlive: keepAlive, Control: markControl(c.mark)}).DialContext(ctx, network, addr)
	if err != nil {
		release()
		return nil, err
	}
	return &countedConn{Conn: conn, release: release}, nil
}

// countedConn gives its connection slot back when it closes.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// connectTCP opens a connection for the TCP proxy to an endpoint of the
// cluster, trying up to three when one refuses. The connection is pending
// until it is established, and holds a slot under max_connections until
// release is called (after closing it): the connection itself is returned
// unwrapped, so that copying between two TCP connections still splices.
func (c *cluster) connectTCP(ctx context.Context) (conn net.Conn, release func(), err error) {
	if !take(&c.cb.pending, c.cb.maxPending) {
		return nil, nil, errOverflow
	}
	defer c.cb.pending.Add(-1)
	eps := c.pick(3, 0, false)
	if len(eps) == 0 {
		return nil, nil, errNoHealthyUpstream
	}
	for _, ep := range eps {
		var rel func()
		rel, err = c.cb.acquireConn(ctx, ep.st, nil)
		if err != nil {
			return nil, nil, err
		}
		conn, err = c.dial(ctx, ep)
		if err == nil {
			c.connectSucceeded(ep)
			c.tcpSucceeded(ep)
			return conn, rel, nil
		}
		rel()
		c.localFailure(ep, false)
		if !isConnectError(err) {
			return nil, nil, err
		}
		c.connectFailed(ep)
	}
	return nil, nil, err
}

// overflowReply answers a request a circuit breaker refused as Envoy does
// and reports whether err was such a refusal.
func overflowReply(w http.ResponseWriter, err error) bool {
	if !errors.Is(err, errOverflow) {
		return false
	}
	w.Header().Set("X-Envoy-Overloaded", "true")
	localReply(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: overflow")
	return true
}
