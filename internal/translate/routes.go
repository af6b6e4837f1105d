package translate

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"

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

// routes translates attached rules into Envoy routes in precedence order,
// for a route configuration served on port (see ruleRoute).
func (b *builder) routes(rules []attachedRule, port uint32) []*routev3.Route {
	slices.SortStableFunc(rules, comparePrecedence)
	out := make([]*routev3.Route, 0, len(rules))
	for _, a := range rules {
		hr := a.route.Rules[a.rule]
		m := a.m()
		r := &routev3.Route{
			Name:  fmt.Sprintf("%s/%s.rules[%d]", a.route.Namespace, a.route.Name, a.rule),
			Match: b.routeMatch(m),
		}
		b.ruleRoute(r, rule{
			ref:            "HTTPRoute " + a.route.Key.String(),
			from:           routeFrom("HTTPRoute", &a.route.Route),
			index:          a.rule,
			filters:        hr.Filters,
			backends:       hr.Backends,
			timeout:        hr.Timeout,
			backendTimeout: hr.BackendTimeout,
			match:          &m,
		}, port)
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

func clusterAction(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}}
}

// prefixRoute sends everything under prefix to cluster, with no route
// timeout: the inbound side of a call is bounded by its caller's route,
// and Envoy's 15 s default would cut streams.
func prefixRoute(prefix, cluster string) *routev3.Route {
	a := clusterAction(cluster)
	a.Route.Timeout = durationpb.New(0)
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: a,
	}
}

// defaultRoute sends everything to cluster as a route rule without
// filters or timeouts would: the mesh route of a service no route is
// attached to.
func (b *builder) defaultRoute(cluster string) *routev3.Route {
	a := clusterAction(cluster)
	b.timeouts(a.Route, rule{})
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: a,
	}
}
