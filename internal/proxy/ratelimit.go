package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/route"
)

// The local rate limit HTTP filter (envoy.filters.http.local_ratelimit),
// with Envoy's semantics: a token bucket, configured on the filter or, per
// route or virtual host, in typed_per_filter_config (the most specific
// wins, and each configuration has its own bucket). The bucket starts full
// with max_tokens and gains tokens_per_fill every fill_interval (at least
// 50 ms), never above max_tokens; each request takes a token. The filter
// acts on the share filter_enabled of requests (0 % when unset) and, of
// those finding no token, refuses the share filter_enforced (0 % when
// unset) with 429 and x-envoy-ratelimited: true.

var localRateLimitTypeURL = "type.googleapis.com/" + string((&localratelimitv3.LocalRateLimit{}).ProtoReflect().Descriptor().FullName())

func init() {
	registerHTTPFilter(&localratelimitv3.LocalRateLimit{}, func(name string, m *localratelimitv3.LocalRateLimit) (httpFilter, error) {
		cfg, err := compileLocalRateLimit(m, false)
		if err != nil {
			return nil, err
		}
		return &localRateLimitFilter{name: name, cfg: cfg}, nil
	})
	route.RegisterFilterConfig(localRateLimitTypeURL, func(m proto.Message) (any, error) {
		return compileLocalRateLimit(m.(*localratelimitv3.LocalRateLimit), true)
	})
}

// localRateLimit is a compiled LocalRateLimit.
type localRateLimit struct {
	bucket            *tokenBucket // nil: the filter does nothing
	enabled, enforced fraction
}

// fraction is a FractionalPercent: numerator out of denominator.
type fraction struct{ num, den uint32 }

func (f fraction) roll() bool {
	return f.num >= f.den || f.num > 0 && rand.Uint32N(f.den) < f.num
}

// minFillInterval is Envoy's lower bound on fill_interval.
const minFillInterval = 50 * time.Millisecond

func compileLocalRateLimit(m *localratelimitv3.LocalRateLimit, perRoute bool) (*localRateLimit, error) {
	if err := unsupported(m, "stat_prefix", "token_bucket", "filter_enabled", "filter_enforced"); err != nil {
		return nil, err
	}
	if err := m.ValidateAll(); err != nil {
		return nil, err
	}
	out := &localRateLimit{}
	var err error
	if out.enabled, err = compileFraction("filter_enabled", m.GetFilterEnabled()); err != nil {
		return nil, err
	}
	if out.enforced, err = compileFraction("filter_enforced", m.GetFilterEnforced()); err != nil {
		return nil, err
	}
	tb := m.GetTokenBucket()
	switch {
	case tb == nil && perRoute:
		return nil, errors.New("token_bucket is required in a per-route configuration")
	case tb == nil && out.enabled.num > 0:
		return nil, errors.New("filter_enabled without a token_bucket: set the bucket here or per route")
	case tb == nil:
		return out, nil
	}
	if err := unsupported(tb, "max_tokens", "tokens_per_fill", "fill_interval"); err != nil {
		return nil, fmt.Errorf("token_bucket: %w", err)
	}
	out.bucket, err = newTokenBucket(tb)
	return out, err
}

func compileFraction(field string, p *corev3.RuntimeFractionalPercent) (fraction, error) {
	if p == nil {
		return fraction{0, 100}, nil
	}
	if err := unsupported(p, "default_value"); err != nil {
		return fraction{}, fmt.Errorf("%s: %w (there is no runtime)", field, err)
	}
	d := p.GetDefaultValue()
	f := fraction{num: d.GetNumerator()}
	switch d.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		f.den = 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		f.den = 10_000
	case typev3.FractionalPercent_MILLION:
		f.den = 1_000_000
	default:
		return fraction{}, fmt.Errorf("%s: unknown denominator %s", field, d.GetDenominator())
	}
	return f, nil
}

// tokenBucket refills at whole fill intervals since its creation, as
// Envoy's fill timer does, computed when a request arrives.
type tokenBucket struct {
	max, perFill uint32
	interval     time.Duration

	mu     sync.Mutex
	tokens uint32
	filled time.Time // the last fill tick
}

func newTokenBucket(tb *typev3.TokenBucket) (*tokenBucket, error) {
	b := &tokenBucket{max: tb.GetMaxTokens(), perFill: 1, interval: tb.GetFillInterval().AsDuration()}
	if v := tb.GetTokensPerFill(); v != nil {
		b.perFill = v.GetValue()
	}
	if b.interval < minFillInterval {
		return nil, fmt.Errorf("token_bucket.fill_interval %v: must be at least %v", b.interval, minFillInterval)
	}
	b.tokens, b.filled = b.max, time.Now()
	return b, nil
}

// take takes a token if there is one.
func (b *tokenBucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ticks := now.Sub(b.filled) / b.interval; ticks > 0 {
		add := uint64(ticks) * uint64(b.perFill)
		b.tokens = uint32(min(uint64(b.max), uint64(b.tokens)+add))
		b.filled = b.filled.Add(ticks * b.interval)
	}
	if b.tokens == 0 {
		return false
	}
	b.tokens--
	return true
}

type localRateLimitFilter struct {
	name string
	cfg  *localRateLimit
}

func (f *localRateLimitFilter) decodeHeaders(s *httpStream) bool {
	cfg := f.cfg
	if rt := s.matchRoute(); rt != nil {
		if pc, ok := rt.FilterConfig(f.name).(*localRateLimit); ok {
			cfg = pc
		}
	}
	if cfg.bucket == nil || !cfg.enabled.roll() {
		return true
	}
	if cfg.bucket.take(time.Now()) || !cfg.enforced.roll() {
		return true
	}
	s.setFlag(flagRateLimited)
	s.w.Header().Set("X-Envoy-Ratelimited", "true")
	localReply(s.w, http.StatusTooManyRequests, "local_rate_limited")
	return false
}
