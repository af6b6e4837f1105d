package translate

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// The action of a route rule: where its requests go (weighted backends,
// each with its own header changes), or the redirect it answers, and what
// its filters and timeouts do on the way. HTTPRoute and GRPCRoute rules
// are built by the same code; a rule a proxy cannot serve as written
// answers 500 (gRPC clients fail its calls), and a Problem says why.

// CORSFilterName is the name of the CORS HTTP filter in connection
// managers, and the key of routes' CorsPolicy in typed_per_filter_config.
const CORSFilterName = "envoy.filters.http.cors"

// DefaultRetryOn are the failures every mesh and gateway route retries,
// DefaultNumRetries times with Envoy's default back-off: only those where
// the request never reached the app, so that any request, idempotent or
// not, can be sent again. Gateway API v1.6's standard channel has no retry
// field.
const (
	DefaultRetryOn    = "connect-failure,refused-stream,reset-before-request"
	DefaultNumRetries = 2
)

// rule is one rule of an HTTPRoute or GRPCRoute, as route building needs
// it.
type rule struct {
	ref string // "HTTPRoute ns/name"
	// from is the route's kind and namespace, to which references to
	// other namespaces must be granted.
	from     from
	index    int
	filters  []model.HTTPFilter
	backends []model.Backend
	// timeout and backendTimeout: nil unset, 0 disabled.
	timeout, backendTimeout *time.Duration
	// match is the HTTPRoute match the route is built for (prefix
	// rewrites replace what it matched); nil for a GRPCRoute.
	match *model.HTTPMatch
}

func (r rule) field(format string, args ...any) string {
	return fmt.Sprintf("spec.rules[%d].", r.index) + fmt.Sprintf(format, args...)
}

// ruleRoute sets the action, header changes, and per-filter config of out,
// a route of rule r in a route configuration served on port (a Gateway
// listener's port, or the Service port for mesh routes: the port a
// redirect names by default).
func (b *builder) ruleRoute(out *routev3.Route, r rule, port uint32) {
	if reason := b.unservable(r); reason != "" {
		out.Action = failRule(r, reason)
		return
	}
	mods := ruleFilters(r.filters)
	out.RequestHeadersToAdd, out.RequestHeadersToRemove = headerOptions(mods.request)
	out.ResponseHeadersToAdd, out.ResponseHeadersToRemove = headerOptions(mods.response)
	if mods.redirect != nil {
		out.Action = &routev3.Route_Redirect{Redirect: redirectAction(mods.redirect, r.match, port)}
		return
	}
	action := b.backendsAction(r)
	if action == nil {
		out.Action = failRule(r, "has no usable backend")
		return
	}
	if rw := mods.rewrite; rw != nil {
		if rw.Hostname != "" {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.Hostname}
		}
		if rw.Path != nil {
			switch rw.Path.Type {
			case model.ReplaceFullPath:
				action.PathRewrite = literal(rw.Path.Value)
			case model.ReplacePrefixMatch:
				action.PrefixRewrite, action.RegexRewrite = prefixReplacement(r.match, rw.Path.Value)
			}
		}
	}
	for i, m := range mods.mirrors {
		if p := b.mirrorPolicy(r, mods.mirrorIndex[i], m); p != nil {
			action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, p)
		}
	}
	b.timeouts(action, r)
	out.Action = &routev3.Route_Route{Route: action}
	if mods.cors != nil {
		out.TypedPerFilterConfig = map[string]*anypb.Any{CORSFilterName: typed(corsPolicy(mods.cors))}
	}
}

// failRule is the action of a rule that cannot be served: 500, as the
// Gateway API requires for rules with invalid backends or filters. gRPC
// clients fail its calls with UNAVAILABLE.
func failRule(r rule, reason string) *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
		Status: 500,
		Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{
			InlineString: fmt.Sprintf("trellis: %s rule %d %s\n", r.ref, r.index, reason),
		}},
	}}
}

// unservable reports every filter, backend filter and timeout of r the
// proxy cannot honour, and returns why the rule must fail ("" if it can
// be served).
func (b *builder) unservable(r rule) string {
	var reasons []string
	fail := func(field, msg string) {
		b.problem(r.ref, field, msg+"; requests matching the rule get 500")
		reasons = append(reasons, msg)
	}
	for i, f := range r.filters {
		field := r.field("filters[%d]", i)
		switch f.Type {
		case model.FilterExtensionRef:
			fail(field+".extensionRef", "ExtensionRef filters are not supported")
			continue
		case model.FilterRequestHeaderModifier, model.FilterResponseHeaderModifier, model.FilterRequestRedirect,
			model.FilterURLRewrite, model.FilterRequestMirror, model.FilterCORS:
		default:
			fail(field+".type", fmt.Sprintf("filter type %s is not supported", f.Type))
			continue
		}
		if b.proxyless {
			fail(field, fmt.Sprintf("proxyless gRPC clients cannot apply a %s filter", f.Type))
			continue
		}
		for _, m := range []*model.HeaderModifier{f.RequestHeaders, f.ResponseHeaders} {
			if name := m.HostHeader(); name != "" {
				fail(field, fmt.Sprintf("header %s cannot be changed by a header modifier (use a URLRewrite hostname)", name))
			}
		}
		if f.Redirect != nil {
			if _, ok := redirectCodes[f.Redirect.StatusCode]; !ok {
				fail(field+".requestRedirect.statusCode", fmt.Sprintf("redirect status %d is not supported", f.Redirect.StatusCode))
			}
		}
		if p := pathModifierOf(f); p != nil && p.Type == model.ReplacePrefixMatch && (r.match == nil || r.match.PathType != model.PathPrefix) {
			// The CRD requires a PathPrefix match; a match-less rule matches
			// the prefix "/".
			fail(field, "replacePrefixMatch needs a PathPrefix match")
		}
	}
	for j, be := range r.backends {
		for k, f := range be.Filters {
			field := r.field("backendRefs[%d].filters[%d]", j, k)
			switch {
			case f.Type != model.FilterRequestHeaderModifier && f.Type != model.FilterResponseHeaderModifier:
				fail(field, fmt.Sprintf("a %s filter on a backendRef is not supported (header modifiers are)", f.Type))
			case b.proxyless:
				fail(field, fmt.Sprintf("proxyless gRPC clients cannot apply a %s filter", f.Type))
			case f.RequestHeaders.HostHeader() != "" || f.ResponseHeaders.HostHeader() != "":
				fail(field, "the Host header cannot be changed by a header modifier (use a URLRewrite hostname)")
			}
		}
	}
	if b.proxyless && r.backendTimeout != nil {
		fail(r.field("timeouts.backendRequest"), "proxyless gRPC clients have no per-try timeout")
	}
	if len(reasons) == 0 {
		return ""
	}
	return "cannot be served: " + strings.Join(reasons, "; ")
}

func pathModifierOf(f model.HTTPFilter) *model.PathModifier {
	switch {
	case f.Redirect != nil:
		return f.Redirect.Path
	case f.Rewrite != nil:
		return f.Rewrite.Path
	}
	return nil
}

// filterSet is what a rule's filters ask for, gathered by kind.
type filterSet struct {
	request, response []*model.HeaderModifier
	redirect          *model.Redirect
	rewrite           *model.URLRewrite
	mirrors           []*model.Mirror
	mirrorIndex       []int // each mirror's filter index
	cors              *model.CORS
}

func ruleFilters(fs []model.HTTPFilter) filterSet {
	var s filterSet
	for i, f := range fs {
		switch {
		case f.RequestHeaders != nil:
			s.request = append(s.request, f.RequestHeaders)
		case f.ResponseHeaders != nil:
			s.response = append(s.response, f.ResponseHeaders)
		case f.Redirect != nil:
			s.redirect = f.Redirect
		case f.Rewrite != nil:
			s.rewrite = f.Rewrite
		case f.Mirror != nil:
			s.mirrors = append(s.mirrors, f.Mirror)
			s.mirrorIndex = append(s.mirrorIndex, i)
		case f.CORS != nil:
			s.cors = f.CORS
		}
	}
	return s
}

// headerOptions translates header modifiers: set overwrites, add appends,
// remove removes (Envoy removes first, then sets, then appends). Values
// are literal: a '%' is escaped, and an empty value is kept.
func headerOptions(mods []*model.HeaderModifier) (add []*corev3.HeaderValueOption, remove []string) {
	for _, m := range mods {
		for _, h := range m.Set {
			add = append(add, headerOption(h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		}
		for _, h := range m.Add {
			add = append(add, headerOption(h, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
		}
		remove = append(remove, m.Remove...)
	}
	return add, remove
}

func headerOption(h model.Header, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:         &corev3.HeaderValue{Key: h.Name, Value: literal(h.Value)},
		AppendAction:   action,
		KeepEmptyValue: h.Value == "",
	}
}

// literal escapes a value for a field Envoy reads as a substitution
// format: "%" is written "%%".
func literal(v string) string { return strings.ReplaceAll(v, "%", "%%") }

// backendsAction forwards to the usable backends of r, weighted, each
// with its own header modifiers; nil when none is usable. Backends that
// cannot be resolved are reported and left out.
func (b *builder) backendsAction(r rule) *routev3.RouteAction {
	var clusters []*routev3.WeightedCluster_ClusterWeight
	ownHeaders := false
	for i, be := range r.backends {
		field := r.field("backendRefs[%d]", i)
		cluster, ok := b.backendCluster(r.from, r.ref, field, be.Kind, be.Service, be.Port)
		if !ok || be.Weight == 0 {
			continue
		}
		cw := &routev3.WeightedCluster_ClusterWeight{Name: cluster, Weight: wrapperspb.UInt32(be.Weight)}
		mods := ruleFilters(be.Filters)
		cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = headerOptions(mods.request)
		cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = headerOptions(mods.response)
		if len(be.Filters) > 0 {
			ownHeaders = true
		}
		clusters = append(clusters, cw)
	}
	switch {
	case len(clusters) == 0:
		return nil
	case len(clusters) == 1 && !ownHeaders:
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusters[0].Name}}
	}
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
		WeightedClusters: &routev3.WeightedCluster{Clusters: clusters},
	}}
}

// from is the kind and namespace of a resource that references others;
// mesh is set for routes whose parents are all Services
// (model.Route.MeshOnly), whose backends need no ReferenceGrant.
type from struct {
	kind      model.GroupKind
	namespace string
	mesh      bool
}

func routeFrom(kind string, r *model.Route) from {
	return from{kind: model.GroupKind{Group: model.GatewayGroup, Kind: kind}, namespace: r.Namespace, mesh: r.MeshOnly()}
}

// backendCluster resolves a backend (or mirror) reference of a route to the
// outbound cluster of a Service port, reporting why when it cannot: a
// Service of another namespace needs a ReferenceGrant there, unless the
// route is a mesh route.
func (b *builder) backendCluster(f from, ref, field, kind string, svc model.Key, port uint32) (string, bool) {
	if kind != "Service" {
		b.problem(ref, field, fmt.Sprintf("backend %s %s is not a Service", kind, svc))
		return "", false
	}
	if !f.mesh && !b.granted(f.kind, f.namespace, model.Ref{Kind: "Service", Key: svc}) {
		b.problem(ref, field, fmt.Sprintf("no ReferenceGrant in namespace %s allows %s of namespace %s to reference Service %s",
			svc.Namespace, f.kind.Kind, f.namespace, svc))
		return "", false
	}
	s := b.service(svc)
	if s == nil {
		b.problem(ref, field, fmt.Sprintf("service %s does not exist", svc))
		return "", false
	}
	sp, ok := s.Port(port)
	if !ok {
		b.problem(ref, field, fmt.Sprintf("service %s has no port %d", svc, port))
		return "", false
	}
	name := b.useCluster(s, sp)
	if f.kind.Kind == model.KindGRPCRoute {
		ref := b.clusters[name]
		ref.grpc = true
		b.clusters[name] = ref
	}
	return name, true
}

// mirrorPolicy mirrors the requests of a rule to a backend; nil (and a
// Problem) when the backend cannot be resolved: the rule is served
// without the mirror, as the Gateway API requires of invalid references.
func (b *builder) mirrorPolicy(r rule, filter int, m *model.Mirror) *routev3.RouteAction_RequestMirrorPolicy {
	if m.Percent <= 0 {
		return nil
	}
	field := r.field("filters[%d].requestMirror.backendRef", filter)
	cluster, ok := b.backendCluster(r.from, r.ref, field, m.Backend.Kind, m.Backend.Service, m.Backend.Port)
	if !ok {
		return nil
	}
	p := &routev3.RouteAction_RequestMirrorPolicy{Cluster: cluster}
	if m.Percent < 100 {
		p.RuntimeFraction = &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			Numerator: uint32(m.Percent), Denominator: typev3.FractionalPercent_HUNDRED,
		}}
	}
	return p
}

// timeouts sets a route's timeouts and retries. timeouts.request is the
// route timeout; unset, the route has none (Envoy's 15 s default would cut
// streams and long polls), and "0s" disables it. timeouts.backendRequest
// is the per-try timeout of the default retry policy. Proxyless gRPC
// clients get the request timeout as max_stream_duration (the field they
// read) and no retry policy: gRPC already retries, transparently, calls
// that never left the client.
func (b *builder) timeouts(a *routev3.RouteAction, r rule) {
	if b.proxyless {
		if r.timeout != nil && *r.timeout > 0 {
			a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(*r.timeout)}
		}
		return
	}
	var d time.Duration
	if r.timeout != nil {
		d = *r.timeout
	}
	a.Timeout = durationpb.New(d)
	a.RetryPolicy = defaultRetryPolicy()
	if t := r.backendTimeout; t != nil && *t > 0 {
		a.RetryPolicy.PerTryTimeout = durationpb.New(*t)
	}
}

func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: DefaultRetryOn, NumRetries: wrapperspb.UInt32(DefaultNumRetries)}
}

// prefixReplacement implements ReplacePrefixMatch for a PathPrefix match,
// with the Gateway API's path-segment semantics: the matched segments are
// replaced, a trailing '/' of the replacement is ignored, and the result
// is never empty (prefix /foo replaced by / turns /foo/bar into /bar,
// /foo into /). Envoy's prefix_rewrite does this on the segments a
// path_separated_prefix matched, except when the replacement is empty or
// the prefix is "/": a regex_rewrite does those.
func prefixReplacement(m *model.HTTPMatch, replacement string) (string, *matcherv3.RegexMatchAndSubstitute) {
	prefix := strings.TrimSuffix(m.PathValue, "/")
	repl := strings.TrimSuffix(replacement, "/")
	switch {
	case prefix == "":
		// Every path starts with "/": it keeps its segments after repl.
		return "", &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^/"},
			Substitution: regexSubstitution(repl) + "/",
		}
	case repl == "":
		// /foo, /foo/ and /foo/bar become /, / and /bar.
		return "", &matcherv3.RegexMatchAndSubstitute{
			Pattern:      &matcherv3.RegexMatcher{Regex: "^" + regexp.QuoteMeta(prefix) + "/*"},
			Substitution: "/",
		}
	}
	return repl, nil
}

// regexSubstitution escapes a literal for an RE2 substitution, in which
// '\' starts a group reference.
func regexSubstitution(s string) string { return strings.ReplaceAll(s, `\`, `\\`) }

var redirectCodes = map[int]routev3.RedirectAction_RedirectResponseCode{
	301: routev3.RedirectAction_MOVED_PERMANENTLY,
	302: routev3.RedirectAction_FOUND,
	303: routev3.RedirectAction_SEE_OTHER,
	307: routev3.RedirectAction_TEMPORARY_REDIRECT,
	308: routev3.RedirectAction_PERMANENT_REDIRECT,
}

// redirectAction translates a RequestRedirect. The port follows the
// Gateway API: when unset, the scheme's well-known port if the scheme is
// set (http 80, https 443), else the port the route is served on; Envoy
// leaves a scheme's default port out of the Location.
func redirectAction(rd *model.Redirect, m *model.HTTPMatch, port uint32) *routev3.RedirectAction {
	out := &routev3.RedirectAction{HostRedirect: rd.Hostname, ResponseCode: redirectCodes[rd.StatusCode]}
	if rd.Scheme != "" {
		out.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.Scheme}
	}
	out.PortRedirect = rd.Port
	if out.PortRedirect == 0 {
		switch strings.ToLower(rd.Scheme) {
		case "http":
			out.PortRedirect = 80
		case "https":
			out.PortRedirect = 443
		default:
			out.PortRedirect = port
		}
	}
	if p := rd.Path; p != nil {
		switch p.Type {
		case model.ReplaceFullPath:
			out.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: p.Value}
		case model.ReplacePrefixMatch:
			prefix, regex := prefixReplacement(m, p.Value)
			if regex != nil {
				out.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: regex}
			} else {
				out.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: prefix}
			}
		}
	}
	return out
}

// corsPolicy translates a CORS filter into the CORS filter's per-route
// config. Origins with a '*' host wildcard (any labels to its left)
// become regular expressions; "*" alone stays exact, which Envoy reads as
// every origin. A preflight from an origin not allowed is answered 200
// without CORS headers, as the Gateway API allows, not forwarded.
func corsPolicy(c *model.CORS) *corsv3.CorsPolicy {
	p := &corsv3.CorsPolicy{
		AllowMethods:                 strings.Join(c.AllowMethods, ", "),
		AllowHeaders:                 strings.Join(c.AllowHeaders, ", "),
		ExposeHeaders:                strings.Join(c.ExposeHeaders, ", "),
		ForwardNotMatchingPreflights: wrapperspb.Bool(false),
	}
	if c.MaxAge > 0 {
		p.MaxAge = fmt.Sprint(c.MaxAge)
	}
	if c.AllowCredentials {
		p.AllowCredentials = wrapperspb.Bool(true)
	}
	for _, o := range c.AllowOrigins {
		var sm *matcherv3.StringMatcher
		if o != "*" && strings.Contains(o, "*") {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
				Regex: strings.ReplaceAll(regexp.QuoteMeta(o), `\*`, `.*`),
			}}}
		} else {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}}
		}
		p.AllowOriginStringMatch = append(p.AllowOriginStringMatch, sm)
	}
	return p
}

// corsFilter is the CORS HTTP filter a connection manager runs before the
// router when a route of its configuration has a CORS policy.
func corsFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       CORSFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(&corsv3.Cors{})},
	}
}

// usesCORS reports whether a route of rc has a CORS policy.
func usesCORS(rc *routev3.RouteConfiguration) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if _, ok := r.GetTypedPerFilterConfig()[CORSFilterName]; ok {
				return true
			}
		}
	}
	return false
}

// withCORS makes a connection manager run the CORS filter when rc needs
// it.
func withCORS(m *hcmv3.HttpConnectionManager, rc *routev3.RouteConfiguration) *hcmv3.HttpConnectionManager {
	if rc != nil && usesCORS(rc) {
		m.HttpFilters = append(m.HttpFilters, corsFilter())
	}
	return m
}
