package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func faultBed(t *testing.T, perRoute *faultv3.HTTPFault) (*testBed, *lbBackend) {
	t.Helper()
	b := newLBBackend(t, "a")
	rt := &routev3.Route{
		Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/faulty"}},
		TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(t, perRoute)},
	}
	filter := &hcmv3.HttpFilter{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &faultv3.HTTPFault{})}}
	return newTestBed(t, bedOptions{cla: assignmentOf("c", []*lbBackend{b}), route: rt, filters: []*hcmv3.HttpFilter{filter}}), b
}

func percent(n uint32) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n, Denominator: typev3.FractionalPercent_HUNDRED}
}

// TestFaultAbort: every request is answered by the proxy with the abort's
// HTTP status or gRPC status; none reaches the backend.
func TestFaultAbort(t *testing.T) {
	tb, b := faultBed(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{Percentage: percent(100), ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}}})
	code, body, _ := tb.get(t, "/faulty")
	if code != 503 || !strings.Contains(body, "fault filter abort") {
		t.Errorf("abort: %d %q, want 503 and fault filter abort", code, body)
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend got %d requests, want 0", n)
	}

	tb, b = faultBed(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}}})
	code, _, hdr := tb.get(t, "/faulty")
	if code != 200 || hdr.Get("Grpc-Status") != "14" || hdr.Get("Content-Type") != "application/grpc" {
		t.Errorf("gRPC abort: %d grpc-status %q content-type %q, want 200, 14, application/grpc", code, hdr.Get("Grpc-Status"), hdr.Get("Content-Type"))
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend got %d requests, want 0", n)
	}

	// A zero percentage aborts nothing.
	tb, b = faultBed(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{Percentage: percent(0), ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}}})
	if code, _, _ := tb.get(t, "/faulty"); code != 200 || b.hits.Load() != 1 {
		t.Errorf("0 %%: %d, %d backend requests; want 200 and 1", code, b.hits.Load())
	}
}

// TestFaultDelay: a delayed request waits the fixed delay (seen through
// faultSleep, not measured), then goes to the backend; a caller that gives
// up while delayed ends it there.
func TestFaultDelay(t *testing.T) {
	delay := func(d time.Duration) *faultv3.HTTPFault {
		return &faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{Percentage: percent(100),
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}}}
	}
	real := faultSleep
	t.Cleanup(func() { faultSleep = real })
	var slept []time.Duration
	faultSleep = func(_ context.Context, d time.Duration) bool {
		slept = append(slept, d)
		return true
	}
	tb, b := faultBed(t, delay(7*time.Second))
	if code, _, _ := tb.get(t, "/faulty"); code != 200 || b.hits.Load() != 1 {
		t.Errorf("delayed: %d, %d backend requests; want 200 and 1", code, b.hits.Load())
	}
	if code, _, _ := tb.get(t, "/other"); code != 404 {
		t.Errorf("no route: %d, want 404", code)
	}
	if len(slept) != 1 || slept[0] != 7*time.Second {
		t.Errorf("slept %v, want [7s] (only on the faulty route)", slept)
	}

	// A caller giving up during an hour-long delay.
	sleeping, woke := make(chan struct{}), make(chan bool, 1)
	faultSleep = func(ctx context.Context, d time.Duration) bool {
		close(sleeping)
		ok := real(ctx, d)
		woke <- ok
		return ok
	}
	tb, b = faultBed(t, delay(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tb.url+"/faulty", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := tb.http.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-sleeping
	cancel()
	if err := <-done; err == nil {
		t.Error("the canceled request succeeded")
	}
	if ok := <-woke; ok {
		t.Error("the delay ran out instead of ending with the caller")
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend got %d requests, want 0", n)
	}
}

// TestFaultConfigRefused: what the fault filter does not implement is
// refused, naming the field.
func TestFaultConfigRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		m    *faultv3.HTTPFault
		want string
	}{
		"headers":      {&faultv3.HTTPFault{Headers: []*routev3.HeaderMatcher{{Name: "x"}}}, "headers"},
		"header delay": {&faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_HeaderDelay_{HeaderDelay: &faultcommonv3.FaultDelay_HeaderDelay{}}}}, "header_delay"},
		"header abort": {&faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HeaderAbort_{HeaderAbort: &faultv3.FaultAbort_HeaderAbort{}}}}, "header_abort"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := compileFault(tc.m); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("compileFault = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
