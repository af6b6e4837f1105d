package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/route"
)

// The fault injection HTTP filter (envoy.filters.http.fault), with Envoy's
// semantics for the part the control plane generates: configured on the
// filter or, per route or virtual host, in typed_per_filter_config (the
// most specific wins). A request is first delayed, with the share
// delay.percentage, by delay.fixed_delay; then, with the share
// abort.percentage, answered by the proxy: with abort.http_status, or for
// gRPC with HTTP 200 and grpc-status abort.grpc_status. The delay happens
// before the router, so a route's timeout does not count it (as in Envoy);
// a caller that gives up while delayed ends the request.

var faultTypeURL = "type.googleapis.com/" + string((&faultv3.HTTPFault{}).ProtoReflect().Descriptor().FullName())

func init() {
	registerHTTPFilter(&faultv3.HTTPFault{}, func(name string, m *faultv3.HTTPFault) (httpFilter, error) {
		cfg, err := compileFault(m)
		if err != nil {
			return nil, err
		}
		return &faultFilter{name: name, cfg: cfg}, nil
	})
	route.RegisterFilterConfig(faultTypeURL, func(m proto.Message) (any, error) {
		return compileFault(m.(*faultv3.HTTPFault))
	})
}

// fault is a compiled HTTPFault.
type fault struct {
	delay      time.Duration
	delayShare fraction
	abortShare fraction
	// httpStatus is the abort's HTTP status; zero: grpcStatus is sent.
	httpStatus int
	grpcStatus string
}

func compileFault(m *faultv3.HTTPFault) (*fault, error) {
	if err := unsupported(m, "delay", "abort"); err != nil {
		return nil, err
	}
	if err := m.ValidateAll(); err != nil {
		return nil, err
	}
	f := &fault{}
	if d := m.GetDelay(); d != nil {
		if err := unsupported(d, "fixed_delay", "percentage"); err != nil {
			return nil, fmt.Errorf("delay: %w", err)
		}
		if d.GetFixedDelay() == nil {
			return nil, errors.New("delay: fixed_delay is required")
		}
		f.delay = d.GetFixedDelay().AsDuration()
		var err error
		if f.delayShare, err = compilePercent("delay.percentage", d.GetPercentage()); err != nil {
			return nil, err
		}
	}
	if a := m.GetAbort(); a != nil {
		if err := unsupported(a, "http_status", "grpc_status", "percentage"); err != nil {
			return nil, fmt.Errorf("abort: %w", err)
		}
		switch e := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			f.httpStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			f.grpcStatus = strconv.FormatUint(uint64(e.GrpcStatus), 10)
		default:
			return nil, errors.New("abort: http_status or grpc_status is required")
		}
		var err error
		if f.abortShare, err = compilePercent("abort.percentage", a.GetPercentage()); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// compilePercent compiles a fault's percentage; unset is 100 %, as in
// Envoy.
func compilePercent(field string, p *typev3.FractionalPercent) (fraction, error) {
	if p == nil {
		return fraction{100, 100}, nil
	}
	f := fraction{num: p.GetNumerator()}
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		f.den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		f.den = 10_000
	case typev3.FractionalPercent_MILLION:
		f.den = 1_000_000
	default:
		return fraction{}, fmt.Errorf("%s: unknown denominator %s", field, p.GetDenominator())
	}
	return f, nil
}

// faultSleep waits d or until ctx is done, and reports whether it waited
// d. Tests replace it to see delays without waiting.
var faultSleep = func(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type faultFilter struct {
	name string
	cfg  *fault
}

func (f *faultFilter) decodeHeaders(s *httpStream) bool {
	cfg := f.cfg
	if rt := s.matchRoute(); rt != nil {
		if pc, ok := rt.FilterConfig(f.name).(*fault); ok {
			cfg = pc
		}
	}
	if cfg.delay > 0 && cfg.delayShare.num > 0 && cfg.delayShare.roll() {
		s.setFlag(flagDelayInjected)
		if !faultSleep(s.r.Context(), cfg.delay) {
			// The caller went away.
			s.setFlag(flagDownstreamTerminated)
			return false
		}
	}
	if (cfg.httpStatus != 0 || cfg.grpcStatus != "") && cfg.abortShare.num > 0 && cfg.abortShare.roll() {
		s.setFlag(flagFaultInjected)
		if cfg.httpStatus != 0 {
			localReply(s.w, cfg.httpStatus, "fault filter abort")
			return false
		}
		h := s.w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", cfg.grpcStatus)
		h.Set("Grpc-Message", "fault filter abort")
		h.Set("X-Trellis-Local-Reply", "true")
		s.w.WriteHeader(http.StatusOK)
		return false
	}
	return true
}
