package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"

	"trellis.dev/trellis/internal/proxy/route"
)

// The router's upstream side: a request that matched a forwarding route
// is sent to the route's cluster in one or more attempts, as Envoy's
// router does with the route's retry_policy, and copied to its mirrors
// (mirror.go).
//
//	serveHTTP ──► ReverseProxy ──► forwarder.RoundTrip
//	                                 ├─ attempt 1 ──► cluster.RoundTrip (one endpoint)
//	                                 ├─ retry? (retry_on, num_retries, body kept, cluster.admitRetry)
//	                                 ├─ back-off (jittered, exponential)
//	                                 └─ attempt 2 ──► another endpoint when there is one
//
// Timeouts: the route's timeout runs from the request's arrival to the end
// of the response, retries included (serveHTTP arms it; Envoy starts it at
// the end of the request, which a client that never finishes its body
// would postpone for ever); a per_try_timeout runs, as in Envoy, from the
// end of the request, or the start of a retry, until the attempt's
// response headers arrive.

var (
	// errRouteTimeout is the cause of a request cancelled by the route's
	// timeout.
	errRouteTimeout = fmt.Errorf("upstream request timeout: %w", context.DeadlineExceeded)
	// errPerTryTimeout ends an attempt that ran out of per_try_timeout.
	errPerTryTimeout = fmt.Errorf("upstream per-try timeout: %w", context.DeadlineExceeded)
)

// forwarder sends one request to the route's cluster.
type forwarder struct {
	p    *Proxy
	c    *cluster
	rt   *route.Route
	body *requestBody
}

// bufferLimit is how much of the body a request to rt keeps: enough to
// retry or mirror it when the route may do either, nothing otherwise.
func bufferLimit(rt *route.Route) int {
	if rt.RetryPolicy != nil && rt.RetryPolicy.NumRetries > 0 || len(rt.MirrorPolicies) > 0 {
		return maxBufferedBody
	}
	return 0
}

func (f *forwarder) RoundTrip(out *http.Request) (*http.Response, error) {
	f.mirror(out)
	policy := f.rt.RetryPolicy
	if policy == nil {
		return f.try(out, nil, 0)
	}
	ctx := out.Context()
	tried := &triedEndpoints{}
	backoff := newBackoff(policy.BackOffBase, policy.BackOffMax)
	var done func()
	for retries := uint32(0); ; retries++ {
		resp, err := f.try(out, tried, policy.PerTryTimeout)
		if done != nil {
			done()
			done = nil
		}
		if !f.shouldRetry(policy, resp, err) || retries >= policy.NumRetries || !f.body.replayable() || ctx.Err() != nil {
			return resp, err
		}
		var ok bool
		if done, ok = f.c.admitRetry(); !ok {
			return resp, err
		}
		if resp != nil {
			resp.Body.Close()
		}
		t := time.NewTimer(backoff.next())
		select {
		case <-ctx.Done():
			t.Stop()
			done()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// attemptResult is what one attempt learned besides its response.
type attemptResult struct {
	wroteHeaders bool // the request's headers reached the upstream connection
	perTryTimout bool
}

// try sends one attempt. With a per-try timeout, the attempt is cancelled
// if its response headers have not arrived in time; the timer starts
// once the downstream body has been read (at once on a retry, whose body
// is in memory).
func (f *forwarder) try(out *http.Request, tried *triedEndpoints, perTry time.Duration) (*http.Response, error) {
	ctx := out.Context()
	var res attemptResult
	var mu sync.Mutex
	if tried != nil {
		ctx = withTriedEndpoints(ctx, tried)
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteHeaders: func() { mu.Lock(); res.wroteHeaders = true; mu.Unlock() },
		})
	}
	cancel := context.CancelCauseFunc(func(error) {})
	var timer *attemptTimer
	if perTry > 0 {
		ctx, cancel = context.WithCancelCause(ctx)
		timer = &attemptTimer{d: perTry, fire: func() { cancel(errPerTryTimeout) }}
		f.body.whenRead(timer.start)
	}
	// A shallow copy: RoundTrippers must not change the request, so the
	// attempts can share its headers (ReverseProxy already cloned them).
	req := out.WithContext(ctx)
	if body := f.body.reader(); body != nil {
		req.Body = body
		req.GetBody = func() (io.ReadCloser, error) {
			if !f.body.replayable() {
				return nil, errBodyNotReplayable
			}
			return f.body.reader(), nil
		}
	}
	resp, err := f.c.RoundTrip(req)
	if timer != nil && timer.stop() {
		// The per-try timeout fired first: whatever arrived is late.
		if resp != nil {
			resp.Body.Close()
		}
		resp, err = nil, errPerTryTimeout
	}
	if err != nil {
		cancel(nil)
		mu.Lock()
		wrote := res.wroteHeaders
		mu.Unlock()
		return nil, &attemptError{err: err, wroteHeaders: wrote || tried == nil}
	}
	if perTry > 0 {
		resp.Body = withClose(resp.Body, func() { cancel(nil) })
	}
	return resp, nil
}

// attemptError is a failed attempt.
type attemptError struct {
	err error
	// wroteHeaders is false when the request never reached the upstream.
	wroteHeaders bool
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// shouldRetry is Envoy's retry decision for an attempt's response or
// failure, by the policy's retry_on conditions.
func (f *forwarder) shouldRetry(p *route.RetryPolicy, resp *http.Response, err error) bool {
	has := func(cond string) bool {
		for _, c := range p.Conditions {
			if c == cond {
				return true
			}
		}
		return false
	}
	if err != nil {
		if errors.Is(err, errNoHealthyUpstream) || errors.Is(err, errBodyNotReplayable) {
			return false
		}
		var ae *attemptError
		wrote := !errors.As(err, &ae) || ae.wroteHeaders
		connect := isConnectFailure(err)
		switch {
		case has("5xx") || has("gateway-error") || has("reset"):
			// Envoy counts a reset, and a per-try timeout, as a 5xx.
			return true
		case has("reset-before-request") && !wrote:
			return true
		case has("connect-failure") && connect:
			return true
		case has("refused-stream") && isRefusedStream(err):
			return true
		}
		return false
	}
	// A rate limit from an upstream Envoy is retried only when asked for.
	if resp.Header.Get("X-Envoy-Ratelimited") != "" {
		return has("envoy-ratelimited")
	}
	code := resp.StatusCode
	switch {
	case has("5xx") && code >= 500 && code <= 599:
		return true
	case has("gateway-error") && (code == 502 || code == 503 || code == 504):
		return true
	case has("retriable-4xx") && code == http.StatusConflict:
		return true
	case has("retriable-status-codes"):
		for _, c := range p.RetriableStatusCodes {
			if uint32(code) == c {
				return true
			}
		}
	}
	// A gRPC status in the response headers: a trailers-only response.
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return false
		}
		for cond, status := range grpcRetryOn {
			if n == status && has(cond) {
				return true
			}
		}
	}
	return false
}

// grpcRetryOn are the x-envoy-retry-grpc-on conditions and their gRPC
// status codes.
var grpcRetryOn = map[string]int{
	"cancelled":          1,
	"deadline-exceeded":  4,
	"resource-exhausted": 8,
	"internal":           13,
	"unavailable":        14,
}

// isConnectFailure reports whether an attempt failed to connect: the
// dial or the TLS handshake failed.
func isConnectFailure(err error) bool {
	if isConnectError(err) {
		return true
	}
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	return errors.As(err, &alert) || errors.As(err, &verify) || errors.As(err, &record)
}

// isRefusedStream reports whether an HTTP/2 upstream refused the stream
// (REFUSED_STREAM): the request was not processed. net/http does not
// export its HTTP/2 stream errors, so the code is read from the message.
func isRefusedStream(err error) bool {
	return strings.Contains(err.Error(), "REFUSED_STREAM")
}

// backoff is Envoy's fully jittered exponential back-off: the first retry
// waits a random time below base, each next one below twice the previous
// bound, never more than max.
type backoff struct {
	next_, max time.Duration
}

func newBackoff(base, max time.Duration) *backoff {
	if base <= 0 {
		base = 25 * time.Millisecond
	}
	if max < base {
		max = 10 * base
	}
	return &backoff{next_: base, max: max}
}

func (b *backoff) next() time.Duration {
	bound := b.next_
	if b.max/2 < b.next_ {
		b.next_ = b.max
	} else {
		b.next_ *= 2
	}
	return min(time.Duration(randInt64n(int64(bound))), b.max)
}

// attemptTimer is a timeout armed once (start) and disarmed once (stop),
// in either order and from any goroutine.
type attemptTimer struct {
	d    time.Duration
	fire func()

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	fired   bool
}

func (a *attemptTimer) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped || a.t != nil {
		return
	}
	a.t = time.AfterFunc(a.d, func() {
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			return
		}
		a.fired = true
		a.mu.Unlock()
		a.fire()
	})
}

// stop disarms the timer and reports whether it had fired.
func (a *attemptTimer) stop() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.t != nil {
		a.t.Stop()
	}
	return a.fired
}

// triedEndpoints are the endpoints earlier attempts of a request went to:
// a retry goes to another one when the cluster has one.
type triedEndpoints struct {
	mu    sync.Mutex
	addrs []string
}

type triedEndpointsKey struct{}

func withTriedEndpoints(ctx context.Context, t *triedEndpoints) context.Context {
	return context.WithValue(ctx, triedEndpointsKey{}, t)
}

// endpointsToPick is how many endpoints the cluster should offer an
// attempt of the request ctx belongs to (n when it is not an attempt of a
// request with a retry policy): enough that one has not been tried.
func endpointsToPick(ctx context.Context, n int) int {
	t, _ := ctx.Value(triedEndpointsKey{}).(*triedEndpoints)
	if t == nil {
		return n
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.addrs) + 1
}

// narrowToAttempt keeps, for an attempt of a request with a retry policy,
// one endpoint of eps (the first not tried yet, else the first), and
// records it: the cluster then makes exactly one try, and retries are the
// route's to decide. Other requests keep eps.
func narrowToAttempt(ctx context.Context, eps []*endpoint) []*endpoint {
	t, _ := ctx.Value(triedEndpointsKey{}).(*triedEndpoints)
	if t == nil || len(eps) == 0 {
		return eps
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pick := eps[0]
	for _, ep := range eps {
		if !containsString(t.addrs, ep.addr) {
			pick = ep
			break
		}
	}
	t.addrs = append(t.addrs, pick.addr)
	return []*endpoint{pick}
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// withClose calls f when body is closed, keeping an upgraded
// connection's body writable.
func withClose(body io.ReadCloser, f func()) io.ReadCloser {
	c := &closeHook{ReadCloser: body, f: f}
	if w, ok := body.(io.Writer); ok {
		return &rwCloseHook{closeHook: c, w: w}
	}
	return c
}

type closeHook struct {
	io.ReadCloser
	once sync.Once
	f    func()
}

func (c *closeHook) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.f)
	return err
}

type rwCloseHook struct {
	*closeHook
	w io.Writer
}

func (c *rwCloseHook) Write(p []byte) (int, error) { return c.w.Write(p) }
