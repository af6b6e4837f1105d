package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is an httptest server that counts the requests it gets.
type backend struct {
	*httptest.Server
	n atomic.Int64
}

func newBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.n.Add(1)
		h(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// echo answers 200 with "name:" and the request body.
func echo(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", name, body)
	}
}

func retryRoute(policy string) string {
	return routes(`{"match":{"prefix":"/"},"route":{"cluster":"c","retry_policy":` + policy + `}}`)
}

// A connection refused is retried on another endpoint, body included; the
// retry is the route's: without retries left, the cluster does not try
// another endpoint by itself.
func TestRetryConnectFailureOnAnotherEndpoint(t *testing.T) {
	live := newBackend(t, echo("live"))
	dead := deadAddr(t)
	h := newHarness(t, retryRoute(`{"retry_on":"connect-failure","num_retries":2}`), map[string][]string{"c": {dead, live.addr()}}, false)
	for i := range 6 {
		body := fmt.Sprintf("payload-%d", i)
		resp, got := h.do(t, "POST", "/", body)
		if resp.StatusCode != 200 || got != "live:"+body {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
	if n := live.n.Load(); n != 6 {
		t.Errorf("live endpoint got %d requests, want 6 (one per request)", n)
	}

	h = newHarness(t, retryRoute(`{"retry_on":"connect-failure","num_retries":0}`), map[string][]string{"c": {dead, live.addr()}}, false)
	failed := 0
	for range 6 {
		if resp, _ := h.do(t, "GET", "/", ""); resp.StatusCode == http.StatusServiceUnavailable {
			failed++
		}
	}
	if failed == 0 {
		t.Error("with num_retries 0, no request to the dead endpoint failed: something retried")
	}
}

// A 5xx answer is retried, on the other endpoint; the last answer is
// returned when retries run out.
func TestRetryOn5xx(t *testing.T) {
	bad := newBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	good := newBackend(t, echo("good"))
	h := newHarness(t, retryRoute(`{"retry_on":"5xx","num_retries":1}`), map[string][]string{"c": {bad.addr(), good.addr()}}, false)
	for i := range 6 {
		if resp, got := h.do(t, "GET", "/", ""); resp.StatusCode != 200 || got != "good:" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
	if bad.n.Load() == 0 || good.n.Load() != 6 {
		t.Errorf("bad got %d, good %d; want some and 6", bad.n.Load(), good.n.Load())
	}

	// Only 503 is retriable here: a 500 is returned as it is.
	bad500 := newBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	h = newHarness(t, retryRoute(`{"retry_on":"retriable-status-codes","retriable_status_codes":[503],"num_retries":3}`), map[string][]string{"c": {bad500.addr()}}, false)
	if resp, _ := h.do(t, "GET", "/", ""); resp.StatusCode != 500 || bad500.n.Load() != 1 {
		t.Errorf("500 with retriable_status_codes [503]: status %d after %d attempts, want 500 after 1", resp.StatusCode, bad500.n.Load())
	}
	h = newHarness(t, retryRoute(`{"retry_on":"retriable-status-codes","retriable_status_codes":[503],"num_retries":3}`), map[string][]string{"c": {bad.addr()}}, false)
	before := bad.n.Load()
	if resp, _ := h.do(t, "GET", "/", ""); resp.StatusCode != 503 || bad.n.Load()-before != 4 {
		t.Errorf("503 with 3 retries: status %d after %d attempts, want 503 after 4", resp.StatusCode, bad.n.Load()-before)
	}
}

// gRPC statuses in a trailers-only response are retried by the gRPC
// conditions.
func TestRetryGRPCStatus(t *testing.T) {
	var n atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Grpc-Status", "14") // UNAVAILABLE
			return
		}
		w.Header().Set("Grpc-Status", "0")
	})
	h := newHarness(t, retryRoute(`{"retry_on":"unavailable","num_retries":1}`), map[string][]string{"c": {b.addr()}}, false)
	if resp, _ := h.do(t, "POST", "/pkg.Svc/Get", "x"); resp.Header.Get("Grpc-Status") != "0" || b.n.Load() != 2 {
		t.Errorf("grpc-status %q after %d attempts, want 0 after 2", resp.Header.Get("Grpc-Status"), b.n.Load())
	}
}

// A try that has no response headers within per_try_timeout is given up:
// retried under 5xx, answered 504 when no retry is left.
func TestPerTryTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	fast := newBackend(t, echo("fast"))
	h := newHarness(t, retryRoute(`{"retry_on":"5xx","num_retries":1,"per_try_timeout":"0.1s"}`), map[string][]string{"c": {slow.addr(), fast.addr()}}, false)
	for i := range 4 {
		if resp, got := h.do(t, "GET", "/", ""); resp.StatusCode != 200 || got != "fast:" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
	if slow.n.Load() == 0 {
		t.Error("no request went to the slow endpoint first")
	}
	h = newHarness(t, retryRoute(`{"retry_on":"connect-failure","num_retries":1,"per_try_timeout":"0.1s"}`), map[string][]string{"c": {slow.addr()}}, false)
	resp, body := h.do(t, "GET", "/", "")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "upstream request timeout") {
		t.Errorf("per-try timeout without a retry: %d %q, want 504", resp.StatusCode, body)
	}

	// Once response headers have arrived, the per-try timeout no longer
	// applies: a slow body streams on.
	streaming := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "late")
	})
	h = newHarness(t, retryRoute(`{"retry_on":"5xx","num_retries":1,"per_try_timeout":"0.1s"}`), map[string][]string{"c": {streaming.addr()}}, false)
	if resp, got := h.do(t, "GET", "/", ""); resp.StatusCode != 200 || got != "late" {
		t.Errorf("streamed body: %d %q", resp.StatusCode, got)
	}
}

// The route timeout answers 504; "0s" disables it.
func TestRouteTimeout(t *testing.T) {
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(300 * time.Millisecond):
			io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
	h := newHarness(t, routes(`{"match":{"prefix":"/short"},"route":{"cluster":"c","timeout":"0.05s"}}`,
		`{"match":{"prefix":"/"},"route":{"cluster":"c","timeout":"0s"}}`), map[string][]string{"c": {slow.addr()}}, false)
	if resp, _ := h.do(t, "GET", "/short", ""); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("route timeout: status %d, want 504", resp.StatusCode)
	}
	if resp, got := h.do(t, "GET", "/none", ""); resp.StatusCode != 200 || got != "done" {
		t.Errorf("timeout 0s: %d %q", resp.StatusCode, got)
	}
}

// A body larger than the retry buffer streams through and is not
// retried; a small one is retried whole.
func TestRetryBodyTooLarge(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		sizes = append(sizes, len(body))
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	h := newHarness(t, retryRoute(`{"retry_on":"5xx","num_retries":2}`), map[string][]string{"c": {b.addr()}}, false)
	small := strings.Repeat("s", 1000)
	if resp, _ := h.do(t, "POST", "/", small); resp.StatusCode != 503 {
		t.Fatalf("small body: status %d", resp.StatusCode)
	}
	mu.Lock()
	if len(sizes) != 3 || sizes[0] != 1000 || sizes[1] != 1000 || sizes[2] != 1000 {
		t.Errorf("small body: attempts got %v bytes, want 3 × 1000", sizes)
	}
	sizes = nil
	mu.Unlock()
	large := strings.Repeat("L", maxBufferedBody+1)
	if resp, _ := h.do(t, "POST", "/", large); resp.StatusCode != 503 {
		t.Fatalf("large body: status %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 1 || sizes[0] != len(large) {
		t.Errorf("large body: attempts got %v bytes, want one attempt with all %d", sizes, len(large))
	}
}
