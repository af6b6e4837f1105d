package translate

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// attachedRule is one match of one rule of a route, the unit Gateway API
// precedence orders.
type attachedRule struct {
	route *model.HTTPRoute
	rule  int
	match int // index into rule.Matches; -1 when the rule has none
}

func rulesOf(r *model.HTTPRoute) []attachedRule {
	var out []attachedRule
	for i, rule := range r.Rules {
		if len(rule.Matches) == 0 {
			out = append(out, attachedRule{route: r, rule: i, match: -1})
			continue
		}
		for j := range rule.Matches {
			out = append(out, attachedRule{route: r, rule: i, match: j})
		}
	}
	return out
}

func (a attachedRule) m() model.HTTPMatch {
	if a.match < 0 {
		return model.HTTPMatch{PathType: model.PathPrefix, PathValue: "/"}
	}
	return a.route.Rules[a.rule].Matches[a.match]
}

// comparePrecedence orders matches by Gateway API HTTPRoute precedence:
// exact paths, then regular expressions, then the longest prefix; then a
// method match; then more header matches; then more query matches; then the
// oldest route, then the route's namespace/name; then rule and match order.
func comparePrecedence(a, b attachedRule) int {
	ma, mb := a.m(), b.m()
	if c := cmp.Compare(pathRank(ma.PathType), pathRank(mb.PathType)); c != 0 {
		return c
	}
	if ma.PathType == model.PathPrefix {
		if c := cmp.Compare(len(strings.TrimSuffix(mb.PathValue, "/")), len(strings.TrimSuffix(ma.PathValue, "/"))); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(boolRank(ma.Method != ""), boolRank(mb.Method != "")); c != 0 {
		return c
	}
	if c := cmp.Compare(len(mb.Headers), len(ma.Headers)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(mb.Query), len(ma.Query)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.route.Source.CreationUnix, b.route.Source.CreationUnix); c != 0 {
		return c
	}
	if c := a.route.Key.Compare(b.route.Key); c != 0 {
		return c
	}
	if c := cmp.Compare(a.rule, b.rule); c != 0 {
		return c
	}
	return cmp.Compare(a.match, b.match)
}

func pathRank(t model.PathMatchType) int {
	switch t {
	case model.PathExact:
		return 0
	case model.PathRegularExpression:
		return 1
	default:
		return 2
	}
}

func boolRank(b bool) int {
	if b {
		return 0
	}
	return 1
}

// routes translates attached rules into Envoy routes in precedence order.
func (b *builder) routes(rules []attachedRule) []*routev3.Route {
	slices.SortStableFunc(rules, comparePrecedence)
	out := make([]*routev3.Route, 0, len(rules))
	for _, a := range rules {
		rule := a.route.Rules[a.rule]
		r := &routev3.Route{
			Name:  fmt.Sprintf("%s/%s.rules[%d]", a.route.Namespace, a.route.Name, a.rule),
			Match: b.routeMatch(a.m()),
		}
		b.setAction(r, "HTTPRoute "+a.route.Key.String(), a.rule, rule.Backends)
		out = append(out, r)
	}
	return out
}

func (b *builder) routeMatch(m model.HTTPMatch) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{}
	switch m.PathType {
	case model.PathExact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: m.PathValue}
	case model.PathRegularExpression:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.PathValue}}
	default:
		// Gateway API prefixes match whole path segments: /foo matches /foo
		// and /foo/bar, not /foobar. gRPC's xDS client knows no
		// path_separated_prefix (it rejects the whole route configuration),
		// so it gets the same as a regular expression.
		v := strings.TrimSuffix(m.PathValue, "/")
		switch {
		case v == "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		case b.proxyless:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: regexp.QuoteMeta(v) + "(?:/.*)?"}}
		default:
			rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: v}
		}
	}
	if m.Method != "" {
		rm.Headers = append(rm.Headers, headerMatch(":method", model.MatchExact, m.Method))
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatch(h.Name, h.Type, h.Value))
	}
	for _, q := range m.Query {
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatch(q.Type, q.Value)},
		})
	}
	return rm
}

func headerMatch(name string, t model.StringMatchType, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name:                 name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatch(t, value)},
	}
}

func stringMatch(t model.StringMatchType, value string) *matcherv3.StringMatcher {
	if t == model.MatchRegularExpression {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}
}

// setAction forwards to the backends of rule ruleIndex of the route ref
// names ("HTTPRoute ns/name"). Backends that cannot be resolved are
// reported and left out; when none remain the route answers 500, as the
// Gateway API requires for invalid backends (gRPC clients fail such calls
// with UNAVAILABLE).
func (b *builder) setAction(out *routev3.Route, ref string, ruleIndex int, ruleBackends []model.Backend) {
	type weighted struct {
		cluster string
		weight  uint32
	}
	var backends []weighted
	for i, be := range ruleBackends {
		field := fmt.Sprintf("spec.rules[%d].backendRefs[%d]", ruleIndex, i)
		if !be.IsService() {
			b.problem(ref, field, fmt.Sprintf("backend %s %s is not a Service", be.Kind, be.Service))
			continue
		}
		s := b.service(be.Service)
		if s == nil {
			b.problem(ref, field, fmt.Sprintf("service %s does not exist", be.Service))
			continue
		}
		sp, ok := s.Port(be.Port)
		if !ok {
			b.problem(ref, field, fmt.Sprintf("service %s has no port %d", be.Service, be.Port))
			continue
		}
		if be.Weight == 0 {
			continue
		}
		backends = append(backends, weighted{cluster: b.useCluster(s, sp), weight: be.Weight})
	}
	switch len(backends) {
	case 0:
		out.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 500,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{
				InlineString: fmt.Sprintf("trellis: %s rule %d has no usable backend\n", ref, ruleIndex),
			}},
		}}
		return
	case 1:
		out.Action = clusterAction(backends[0].cluster)
		return
	}
	wc := &routev3.WeightedCluster{}
	for _, be := range backends {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   be.cluster,
			Weight: wrapperspb.UInt32(be.weight),
		})
	}
	out.Action = &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
	}}
}

func clusterAction(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}}
}

func prefixRoute(prefix, cluster string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: clusterAction(cluster),
	}
}
