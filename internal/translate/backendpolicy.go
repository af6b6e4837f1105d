package translate

import (
	"fmt"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// BackendPolicy is client-side policy toward a Service port, translated
// into its outbound cluster and into the routes that send to it:
//
//	loadBalancer      RoundRobin → ROUND_ROBIN; LeastRequest → LEAST_REQUEST
//	                  (choice_count 2); ConsistentHash → RING_HASH, and a
//	                  header or cookie hash_policy on the routes
//	connectionLimits  circuit_breakers.thresholds (DEFAULT priority)
//	retryBudget       circuit_breakers.thresholds.retry_budget
//	outlierDetection  outlier_detection: consecutive 5xx, and connect errors as
//	                  local-origin failures (split_external_local_origin_errors);
//	                  success-rate ejection off; locality priorities (cluster.go)
//	idleTimeout       HttpProtocolOptions common_http_protocol_options.idle_timeout
//	rateLimit         the local rate limit filter in the connection manager, a
//	                  token bucket per route in typed_per_filter_config
//	faults            the fault filter in the connection manager (first), an
//	                  HTTPFault per route in typed_per_filter_config
//	tls               which members are reached and how (cluster.go)
//
// Proxyless gRPC clients get only what grpc-go's xDS client implements:
// the load balancing policies, header hashing and max_requests; the rest is
// reported and left out.

// LocalRateLimitFilter is the name of the local rate limit HTTP filter, by
// which routes key its typed_per_filter_config.
const LocalRateLimitFilter = "envoy.filters.http.local_ratelimit"

// FaultFilter is the name of the fault injection HTTP filter, by which
// routes key its typed_per_filter_config.
const FaultFilter = "envoy.filters.http.fault"

// httpProtocolOptionsKey is the typed_extension_protocol_options key of the
// upstream HTTP protocol options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// speaksHTTP2 reports whether the app of a port of protocol p speaks
// HTTP/2 (h2c): the proxy then does too, toward it and toward the
// sidecar in front of it.
func speaksHTTP2(p model.Protocol) bool { return p == model.ProtocolHTTP2 || p == model.ProtocolGRPC }

// protocolDetected stands, in what clusters speak, for a port whose
// protocol nothing declared: it is detected per connection, and requests
// go upstream in the HTTP version they came in with (HTTP/2 from a gRPC
// client, HTTP/1.1 from a browser).
const protocolDetected model.Protocol = "detected"

// upstreamProtocol is what clusters toward port sp speak: its protocol,
// or protocolDetected.
func upstreamProtocol(sp model.ServicePort) model.Protocol {
	if !sp.ProtocolDeclared {
		return protocolDetected
	}
	return sp.Protocol
}

// clusterProtocol is what outbound cluster name toward port sp speaks:
// upstreamProtocol, but at a gateway a port with no declared protocol gets
// HTTP/1.1. There the version a request came in with is the outside
// client's ALPN choice and says nothing of what the backend speaks (an
// HTTP/1 app would get HTTP/2 it cannot read); a sidecar's app chose it
// for the port it calls. A port a GRPCRoute sends to keeps the request's
// version: gRPC needs HTTP/2, and HTTP/1 requests to it still go as
// HTTP/1.1. Declare the port's protocol (appProtocol, or the port name)
// to choose otherwise.
func (b *builder) clusterProtocol(name string, sp model.ServicePort) model.Protocol {
	p := upstreamProtocol(sp)
	if p == protocolDetected && b.in.Proxy.Kind == model.KindGateway && !b.clusters[name].grpc {
		return model.ProtocolHTTP
	}
	return p
}

// httpProtocolOptions are the upstream HTTP protocol options of a cluster
// toward a port of protocol p: HTTP/2 for HTTP2 and GRPC ports, else
// HTTP/1.1, with an idle timeout when idle is set. Nil when there is
// nothing to say (HTTP/1.1, the default idle timeout).
func httpProtocolOptions(p model.Protocol, idle time.Duration) map[string]*anypb.Any {
	if !speaksHTTP2(p) && p != protocolDetected && idle == 0 {
		return nil
	}
	po := &upstreamhttpv3.HttpProtocolOptions{}
	if p == protocolDetected {
		po.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}
	} else {
		ex := &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}
		if speaksHTTP2(p) {
			ex.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
		}
		po.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: ex}
	}
	if idle > 0 {
		po.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(idle)}
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: typed(po)}
}

// policiesFor returns the BackendPolicies that target port sp of service
// s, the one in effect first (model.BackendPoliciesFor).
func (b *builder) policiesFor(s *model.Service, sp model.ServicePort) []model.BackendPolicyRef {
	return model.BackendPoliciesFor(b.backendPoliciesTargeting(s.Key), s, sp)
}

// backendPolicy returns the BackendPolicy in effect for port sp of service
// s, or nil, reporting the policies it takes precedence over.
func (b *builder) backendPolicy(s *model.Service, sp model.ServicePort) *model.BackendPolicy {
	refs := b.policiesFor(s, sp)
	if len(refs) == 0 {
		return nil
	}
	win := refs[0]
	for _, lose := range refs[1:] {
		why := "it is older"
		switch {
		case win.ByPort() && !lose.ByPort():
			why = "it names the port by sectionName"
		case win.Policy.Source.CreationUnix == lose.Policy.Source.CreationUnix:
			why = "neither is older and its name sorts first"
		}
		b.problem("BackendPolicy "+lose.Policy.Key.String(), fmt.Sprintf("spec.targetRefs[%d]", lose.Target),
			fmt.Sprintf("BackendPolicy %s also targets port %d of Service %s and takes precedence (%s); this policy does not apply to that port",
				win.Policy.Key, sp.Port, s.Key, why))
	}
	return win.Policy
}

// applyBackendPolicy sets what bp asks of the cluster of port sp.
func (b *builder) applyBackendPolicy(c *clusterv3.Cluster, bp *model.BackendPolicy, sp model.ServicePort) {
	res := "BackendPolicy " + bp.Key.String()
	unsupported := func(field, what string) {
		b.problem(res, field, fmt.Sprintf("proxyless gRPC clients (proxy %s) %s; not applied to %s", b.in.Proxy.ID, what, c.Name))
	}
	if lb := bp.LoadBalancer; lb != nil {
		switch lb.Type {
		case "LeastRequest":
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
				ChoiceCount: wrapperspb.UInt32(2),
			}}
		case "ConsistentHash":
			c.LbPolicy = clusterv3.Cluster_RING_HASH
		}
	}
	var t *clusterv3.CircuitBreakers_Thresholds
	threshold := func() *clusterv3.CircuitBreakers_Thresholds {
		if t == nil {
			t = &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
		}
		return t
	}
	if cl := bp.ConnectionLimits; cl != nil {
		if cl.MaxRequests > 0 {
			threshold().MaxRequests = wrapperspb.UInt32(cl.MaxRequests)
		}
		switch {
		case b.proxyless && (cl.MaxConnections > 0 || cl.MaxPendingRequests > 0):
			unsupported("spec.connectionLimits", "limit only requests (maxRequests), not connections or pending requests")
		default:
			if cl.MaxConnections > 0 {
				threshold().MaxConnections = wrapperspb.UInt32(cl.MaxConnections)
			}
			if cl.MaxPendingRequests > 0 {
				threshold().MaxPendingRequests = wrapperspb.UInt32(cl.MaxPendingRequests)
			}
		}
	}
	if rb := bp.RetryBudget; rb != nil {
		if b.proxyless {
			unsupported("spec.retryBudget", "do not implement retry budgets")
		} else {
			budget := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: float64(rb.Percent)}}
			if rb.MinRetries > 0 {
				budget.MinRetryConcurrency = wrapperspb.UInt32(rb.MinRetries)
			}
			threshold().RetryBudget = budget
		}
	}
	if od := bp.OutlierDetection; od != nil {
		if b.proxyless {
			unsupported("spec.outlierDetection", "implement only success-rate and failure-percentage ejection, not consecutive errors")
		} else {
			c.OutlierDetection = outlierDetection(od)
		}
	}
	if bp.IdleTimeout > 0 {
		switch {
		case b.proxyless:
			unsupported("spec.idleTimeout", "do not take an upstream idle timeout from xDS")
		case !sp.Protocol.IsHTTP():
			b.problem(res, "spec.idleTimeout", fmt.Sprintf("port %d is %s: the idle timeout applies to HTTP connection pools; not applied to %s", sp.Port, sp.Protocol, c.Name))
		default:
			c.TypedExtensionProtocolOptions = httpProtocolOptions(b.clusterProtocol(c.Name, sp), bp.IdleTimeout)
		}
	}
	if bp.RateLimit != nil {
		switch {
		case b.proxyless:
			unsupported("spec.rateLimit", "do not implement the local rate limit filter")
		case !sp.Protocol.IsHTTP():
			b.problem(res, "spec.rateLimit", fmt.Sprintf("port %d is %s: the rate limit applies to HTTP requests; not applied to %s", sp.Port, sp.Protocol, c.Name))
		}
	}
	if bp.Faults != nil {
		switch {
		case b.proxyless:
			unsupported("spec.faults", "are not given fault injection by Trellis yet")
		case !sp.Protocol.IsHTTP():
			b.problem(res, "spec.faults", fmt.Sprintf("port %d is %s: faults are injected into HTTP requests; not applied to %s", sp.Port, sp.Protocol, c.Name))
		}
	}
}

// outlierDetection ejects endpoints after consecutive 5xx responses and,
// counted apart, consecutive locally originated errors (connections
// refused or timed out, resets): Envoy's consecutive_local_origin_failure
// with split_external_local_origin_errors. Success-rate ejection, on by
// default in Envoy, is turned off. Zero fields keep Envoy's defaults.
func outlierDetection(od *model.OutlierDetection) *clusterv3.OutlierDetection {
	out := &clusterv3.OutlierDetection{
		EnforcingSuccessRate:            wrapperspb.UInt32(0),
		SplitExternalLocalOriginErrors:  true,
		EnforcingLocalOriginSuccessRate: wrapperspb.UInt32(0),
	}
	if od.Consecutive5xx > 0 {
		out.Consecutive_5Xx = wrapperspb.UInt32(od.Consecutive5xx)
	}
	if od.ConsecutiveConnectErrors > 0 {
		out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(od.ConsecutiveConnectErrors)
	}
	if od.Interval > 0 {
		out.Interval = durationpb.New(od.Interval)
	}
	if od.BaseEjectionTime > 0 {
		out.BaseEjectionTime = durationpb.New(od.BaseEjectionTime)
	}
	if od.MaxEjectionPercent > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(od.MaxEjectionPercent)
	}
	return out
}

// routePolicies adds to the routes what the BackendPolicies of their
// backends ask of them: the hash policy of a ConsistentHash load balancer,
// a local rate limit and faults. It runs once every route is built; the
// clusters the routes send to are known then. Connection managers whose
// routes rate-limit get the local rate limit filter; those whose routes
// inject faults get the fault filter, first.
func (b *builder) routePolicies() {
	limited := map[string]bool{} // route configurations with a rate limit
	faulty := map[string]bool{}  // route configurations with faults
	for _, rc := range b.out.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				limits, faults := b.routePolicy(r)
				if limits {
					limited[rc.GetName()] = true
				}
				if faults {
					faulty[rc.GetName()] = true
				}
			}
		}
	}
	if len(limited) == 0 && len(faulty) == 0 {
		return
	}
	for _, l := range b.out.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				withRouteFilter(f, limited, LocalRateLimitFilter, &localratelimitv3.LocalRateLimit{StatPrefix: "local_rate_limit"})
				withRouteFilter(f, faulty, FaultFilter, &faultv3.HTTPFault{})
			}
		}
	}
}

// routePolicy sets the hash policy, rate limit and faults of one route and
// reports whether it rate-limits and whether it injects faults.
func (b *builder) routePolicy(r *routev3.Route) (limits, faults bool) {
	action := r.GetRoute()
	if action == nil {
		return false, false
	}
	var clusters []string
	if c := action.GetCluster(); c != "" {
		clusters = append(clusters, c)
	}
	for _, wc := range action.GetWeightedClusters().GetClusters() {
		clusters = append(clusters, wc.GetName())
	}
	type hashKey struct{ header, cookie string }
	var hash *hashKey
	hashAgree := true
	var limit *model.RateLimit
	var limitFrom []string
	limitAgree := true
	var fault *model.Faults
	var faultFrom []string
	faultAgree := true
	for i, name := range clusters {
		ref, ok := b.clusters[name]
		if !ok {
			return false, false
		}
		bp := b.policiesFor(ref.service, ref.port)
		var p *model.BackendPolicy
		if len(bp) > 0 {
			p = bp[0].Policy
		}
		if p != nil && p.LoadBalancer != nil && p.LoadBalancer.Type == "ConsistentHash" {
			k := &hashKey{p.LoadBalancer.HashHeader, p.LoadBalancer.HashCookie}
			if hash != nil && *hash != *k {
				hashAgree = false
			}
			hash = k
		}
		var rl *model.RateLimit
		if p != nil && ref.port.Protocol.IsHTTP() {
			rl = p.RateLimit
		}
		switch {
		case i == 0:
			limit = rl
		case (limit == nil) != (rl == nil) || limit != nil && *limit != *rl:
			limitAgree = false
		}
		if rl != nil {
			limitFrom = append(limitFrom, "BackendPolicy "+p.Key.String())
		}
		var f *model.Faults
		if p != nil && ref.port.Protocol.IsHTTP() {
			f = p.Faults
		}
		switch {
		case i == 0:
			fault = f
		case (fault == nil) != (f == nil) || fault != nil && *fault != *f:
			faultAgree = false
		}
		if f != nil {
			faultFrom = append(faultFrom, "BackendPolicy "+p.Key.String())
		}
	}
	where := "route " + r.GetName()
	if r.GetName() == "" {
		where = "the route to " + strings.Join(clusters, ", ")
	}
	switch {
	case hash == nil:
	case !hashAgree:
		b.problem("proxy "+b.in.Proxy.ID, "", fmt.Sprintf("%s splits requests between services that hash on different keys; it carries no hash policy and their endpoints are picked at random", where))
	default:
		if hash.header != "" {
			action.HashPolicy = append(action.HashPolicy, &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
				Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: hash.header},
			}})
		}
		if hash.cookie != "" {
			if b.proxyless {
				b.problem("proxy "+b.in.Proxy.ID, "", fmt.Sprintf("%s: proxyless gRPC clients hash on headers only; the cookie %q is not used", where, hash.cookie))
			} else {
				action.HashPolicy = append(action.HashPolicy, &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
					Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: hash.cookie},
				}})
			}
		}
	}
	if b.proxyless {
		return false, false
	}
	if len(limitFrom) > 0 {
		if !limitAgree {
			b.problem(strings.Join(limitFrom, ", "), "spec.rateLimit", fmt.Sprintf("%s splits requests between services with different rate limits (or none); it is not rate-limited", where))
		} else {
			perFilter(r)[LocalRateLimitFilter] = typed(localRateLimit(limit))
			limits = true
		}
	}
	if len(faultFrom) > 0 {
		switch {
		case !faultAgree:
			b.problem(strings.Join(faultFrom, ", "), "spec.faults", fmt.Sprintf("%s splits requests between services with different faults (or none); no fault is injected", where))
		case fault.DelayPercent > 0 && fault.Delay > 0 || fault.AbortPercent > 0:
			perFilter(r)[FaultFilter] = typed(httpFault(fault))
			faults = true
		}
	}
	return limits, faults
}

// perFilter returns the route's typed_per_filter_config, made if nil.
func perFilter(r *routev3.Route) map[string]*anypb.Any {
	if r.TypedPerFilterConfig == nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	return r.TypedPerFilterConfig
}

// httpFault is the per-route fault filter config of faults; a part with a
// zero percent (or delay) is left out.
func httpFault(f *model.Faults) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if f.DelayPercent > 0 && f.Delay > 0 {
		out.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(f.Delay)},
			Percentage:         &typev3.FractionalPercent{Numerator: f.DelayPercent, Denominator: typev3.FractionalPercent_HUNDRED},
		}
	}
	if f.AbortPercent > 0 {
		out.Abort = &faultv3.FaultAbort{
			Percentage: &typev3.FractionalPercent{Numerator: f.AbortPercent, Denominator: typev3.FractionalPercent_HUNDRED},
		}
		if f.AbortHTTPStatus != 0 {
			out.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: f.AbortHTTPStatus}
		} else {
			out.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: f.AbortGRPCStatus}
		}
	}
	return out
}

// localRateLimit is the per-route token bucket of a rate limit: Requests
// tokens every Per, up to Burst (at least Requests), enabled and enforced
// for every request.
func localRateLimit(rl *model.RateLimit) *localratelimitv3.LocalRateLimit {
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	return &localratelimitv3.LocalRateLimit{
		StatPrefix: "local_rate_limit",
		TokenBucket: &typev3.TokenBucket{
			MaxTokens:     max(rl.Burst, rl.Requests),
			TokensPerFill: wrapperspb.UInt32(rl.Requests),
			FillInterval:  durationpb.New(rl.Per),
		},
		FilterEnabled:  all,
		FilterEnforced: all,
	}
}

// withRouteFilter adds the HTTP filter named name, with config m (which
// does nothing by itself: routes configure it), first in an HTTP
// connection manager whose routes (by RDS name or inline) are among
// configured.
func withRouteFilter(f *listenerv3.Filter, configured map[string]bool, filterName string, m proto.Message) {
	tc := f.GetTypedConfig()
	if tc == nil || !tc.MessageIs(&hcmv3.HttpConnectionManager{}) {
		return
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(hcm); err != nil {
		return
	}
	name := hcm.GetRds().GetRouteConfigName()
	if name == "" {
		name = hcm.GetRouteConfig().GetName()
	}
	if !configured[name] {
		return
	}
	filter := &hcmv3.HttpFilter{
		Name:       filterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(m)},
	}
	hcm.HttpFilters = append([]*hcmv3.HttpFilter{filter}, hcm.HttpFilters...)
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: typed(hcm)}
}
