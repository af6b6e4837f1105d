package translate

import (
	"fmt"
	"slices"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/model"
)

// AccessPolicy → Envoy RBAC on a sidecar's inbound filter chains.
//
// Each chain (one service port, reaching one app port) gets up to three
// RBAC filters, in this order, before the router (HTTP) or tcp_proxy (TCP):
//
//	audit  action LOG    the AUDIT rules: logged, never change the outcome
//	deny   action DENY   the DENY rules: a match is refused
//	allow  action ALLOW  the ALLOW rules, when any ALLOW policy selects the
//	                     workload: only a match passes (no rule: nothing)
//
// A rule becomes one RBAC policy named NS/NAME/rules[I]. Its sources are
// principals on the peer's SPIFFE ID from the mTLS handshake (an identity
// exactly, or as a prefix for a trailing *; a namespace as the prefix
// spiffe://TD/ns/NS/sa/); its targets are permissions. Ports are resolved
// here: a chain serves one app port, and Envoy's destination_port would be
// the mesh port every chain shares, so a target naming other ports is left
// out of this chain. HTTP-only conditions (paths, methods, headers) cannot
// be seen on a TCP chain: there a target with them never matches for
// ALLOW, and for DENY and AUDIT it applies without them, so nothing is
// bypassed by using TCP.

// RBAC filter names on inbound chains, in the order they run.
const (
	AccessFilterAudit = "trellis.access.audit"
	AccessFilterDeny  = "trellis.access.deny"
	AccessFilterAllow = "trellis.access.allow"
)

// PathParametersPolicy names the DENY policy that refuses requests whose
// path holds parameters (";") on chains where a rule matches paths.
const PathParametersPolicy = "trellis/path-parameters"

// inboundPathNormalization sets the path normalization of an inbound
// connection manager: RFC 3986 dot-segment removal and percent-encoding
// canonicalization, merged slashes, and escaped slashes (%2F, %5C)
// refused with 400, so that routing and RBAC see the path the app does.
func inboundPathNormalization(h *hcmv3.HttpConnectionManager) *hcmv3.HttpConnectionManager {
	h.NormalizePath = wrapperspb.Bool(true)
	h.MergeSlashes = true
	h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
	return h
}

// accessPolicies returns the AccessPolicies that apply to the sidecar's
// workload w, a member of services, recording the dependencies.
func (b *builder) accessPolicies(w *model.Workload, services []*model.Service) []*model.AccessPolicy {
	b.dependOn(AccessNamespaceKey(w.Namespace))
	for _, s := range services {
		b.dependOn(AccessServiceKey(s.Key))
	}
	return model.AccessPoliciesFor(b.in.Config, b.in.Index, w)
}

// accessRBAC is the RBAC of one inbound chain, by action; nil when there
// is nothing to enforce.
type accessRBAC struct {
	audit, deny, allow *rbacv3.RBAC
}

// inboundAccess builds the RBAC of an inbound chain that reaches app port
// port, speaking HTTP or not.
func (b *builder) inboundAccess(policies []*model.AccessPolicy, port uint32, http bool) accessRBAC {
	var out accessRBAC
	pathRules := false
	add := func(dst **rbacv3.RBAC, action rbacv3.RBAC_Action, name string, p *rbacv3.Policy) {
		if *dst == nil {
			*dst = &rbacv3.RBAC{Action: action, Policies: map[string]*rbacv3.Policy{}}
		}
		if p != nil {
			(*dst).Policies[name] = p
		}
	}
	for _, ap := range policies {
		var dst **rbacv3.RBAC
		var action rbacv3.RBAC_Action
		switch ap.Action {
		case model.AccessAudit:
			dst, action = &out.audit, rbacv3.RBAC_LOG
		case model.AccessDeny:
			dst, action = &out.deny, rbacv3.RBAC_DENY
		case model.AccessAllow:
			dst, action = &out.allow, rbacv3.RBAC_ALLOW
			// Any ALLOW policy makes the workload deny what no ALLOW rule
			// matches, on every port, also with no rule at all.
			add(dst, action, "", nil)
		default:
			b.problem("AccessPolicy "+ap.Key.String(), "spec.action", fmt.Sprintf("unknown action %q; the policy is not in effect", ap.Action))
			continue
		}
		for i, r := range ap.Rules {
			p, paths := b.accessPolicy(r, ap.Action, port, http)
			if p == nil {
				continue
			}
			pathRules = pathRules || paths && ap.Action != model.AccessAudit
			add(dst, action, fmt.Sprintf("%s/rules[%d]", ap.Key, i), p)
		}
	}
	if pathRules {
		// Servlet containers and others read "/admin;x" as "/admin" and
		// "/a/..;/admin" as "/admin": where rules match paths, a path with
		// parameters could mean one thing to the proxy and another to the
		// app, so it is refused.
		add(&out.deny, rbacv3.RBAC_DENY, PathParametersPolicy, &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{urlPathPermission(&matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Contains{Contains: ";"},
			})},
			Principals: []*rbacv3.Principal{anyPrincipal()},
		})
	}
	return out
}

// accessPolicy converts one rule for a chain; nil when the rule can never
// match there. paths reports whether it matches on paths.
func (b *builder) accessPolicy(r model.AccessRule, action model.AccessAction, port uint32, http bool) (p *rbacv3.Policy, paths bool) {
	var perms []*rbacv3.Permission
	for _, t := range r.To {
		if len(t.Ports) > 0 && !slices.Contains(t.Ports, port) {
			continue
		}
		var conds []*rbacv3.Permission
		switch {
		case http:
			conds = httpConditions(t)
			paths = paths || len(t.Paths) > 0
		case t.HTTPOnly() && action == model.AccessAllow:
			// A TCP connection carries no path, method or header: the
			// target cannot match it.
			continue
		}
		perms = append(perms, andPermissions(conds))
	}
	if len(r.To) == 0 {
		perms = []*rbacv3.Permission{anyPermission()}
	}
	if len(perms) == 0 {
		return nil, false
	}
	var prins []*rbacv3.Principal
	for _, f := range r.From {
		prins = append(prins, b.sourcePrincipal(f))
	}
	if len(r.From) == 0 {
		prins = []*rbacv3.Principal{anyPrincipal()}
	}
	return &rbacv3.Policy{Permissions: perms, Principals: prins}, paths
}

// httpConditions are the conditions of a target on an HTTP request: one
// of its paths, one of its methods, and every header.
func httpConditions(t model.AccessTarget) []*rbacv3.Permission {
	var conds []*rbacv3.Permission
	if len(t.Paths) > 0 {
		var ps []*rbacv3.Permission
		for _, path := range t.Paths {
			ps = append(ps, pathPermissions(path)...)
		}
		conds = append(conds, orPermissions(ps))
	}
	if len(t.Methods) > 0 {
		var ms []*rbacv3.Permission
		for _, m := range t.Methods {
			ms = append(ms, headerPermission(&routev3.HeaderMatcher{
				Name:                 ":method",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exactString(m)},
			}))
		}
		conds = append(conds, orPermissions(ms))
	}
	for _, h := range t.Headers {
		sm := exactString(h.Value)
		if h.Type == model.MatchRegularExpression {
			sm = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: h.Value}}}
		}
		name := strings.ToLower(h.Name)
		if name == "host" {
			// HTTP/1's Host is :authority; a matcher on "host" would
			// find nothing.
			name = ":authority"
		}
		conds = append(conds, headerPermission(&routev3.HeaderMatcher{
			Name:                 name,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm},
		}))
	}
	return conds
}

// pathPermissions matches a path pattern against the normalized path
// (without query): "*" any path, "/api/*" the prefix "/api/", "*.png" the
// suffix ".png", else the path exactly, with or without a trailing slash
// ("/admin" also matches "/admin/", as most applications serve both).
// Matching is case-sensitive.
func pathPermissions(pattern string) []*rbacv3.Permission {
	kind, lit := model.ParseAccessPath(pattern)
	var sms []*matcherv3.StringMatcher
	switch kind {
	case model.AccessPathAny:
		sms = append(sms, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/"}})
	case model.AccessPathPrefix:
		sms = append(sms, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: lit}})
	case model.AccessPathSuffix:
		sms = append(sms, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: lit}})
	default:
		sms = append(sms, exactString(lit))
		if !strings.HasSuffix(lit, "/") {
			sms = append(sms, exactString(lit+"/"))
		}
	}
	out := make([]*rbacv3.Permission, len(sms))
	for i, sm := range sms {
		out[i] = urlPathPermission(sm)
	}
	return out
}

// sourcePrincipal matches a caller: one of the identities and one of the
// namespaces, each when given.
func (b *builder) sourcePrincipal(f model.AccessSource) *rbacv3.Principal {
	var ids []*rbacv3.Principal
	if len(f.Identities) > 0 {
		var ps []*rbacv3.Principal
		for _, id := range f.Identities {
			sm := exactString(id)
			switch {
			case id == "*":
				sm = prefixString("spiffe://")
			case strings.HasSuffix(id, "*"):
				sm = prefixString(strings.TrimSuffix(id, "*"))
			}
			ps = append(ps, authenticated(sm))
		}
		ids = append(ids, orPrincipals(ps))
	}
	if len(f.Namespaces) > 0 {
		var ps []*rbacv3.Principal
		for _, ns := range f.Namespaces {
			// The trailing "/sa/" keeps namespace "a" from matching "ab".
			ps = append(ps, authenticated(prefixString("spiffe://"+b.opts.TrustDomain+"/ns/"+ns+"/sa/")))
		}
		ids = append(ids, orPrincipals(ps))
	}
	switch len(ids) {
	case 0:
		return anyPrincipal()
	case 1:
		return ids[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
}

// accessHTTPFilters returns the RBAC HTTP filters of a chain, to go before
// the router.
func accessHTTPFilters(a accessRBAC) []*hcmv3.HttpFilter {
	var out []*hcmv3.HttpFilter
	for _, f := range []struct {
		name  string
		rules *rbacv3.RBAC
	}{{AccessFilterAudit, a.audit}, {AccessFilterDeny, a.deny}, {AccessFilterAllow, a.allow}} {
		if f.rules == nil {
			continue
		}
		out = append(out, &hcmv3.HttpFilter{
			Name:       f.name,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(&httprbacv3.RBAC{Rules: f.rules})},
		})
	}
	return out
}

// accessNetworkFilters returns the RBAC network filters of a TCP chain,
// to go before tcp_proxy.
func accessNetworkFilters(a accessRBAC, statPrefix string) []*listenerv3.Filter {
	var out []*listenerv3.Filter
	for _, f := range []struct {
		name  string
		rules *rbacv3.RBAC
	}{{AccessFilterAudit, a.audit}, {AccessFilterDeny, a.deny}, {AccessFilterAllow, a.allow}} {
		if f.rules == nil {
			continue
		}
		out = append(out, &listenerv3.Filter{
			Name: f.name,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed(&netrbacv3.RBAC{
				StatPrefix: statPrefix + "_" + strings.TrimPrefix(f.name, "trellis.access."),
				Rules:      f.rules,
			})},
		})
	}
	return out
}

// proxylessAccess reports the AccessPolicies that select a proxyless gRPC
// application: nothing in front of it enforces them (TRL4011).
func (b *builder) proxylessAccess() {
	w := &b.in.Proxy.Workload
	for _, ap := range b.accessPolicies(w, b.memberOf(w)) {
		b.problem("AccessPolicy "+ap.Key.String(), "", fmt.Sprintf(
			"selects %s, a proxyless gRPC application, which does not enforce AccessPolicy: its calls are not checked", w.Key))
	}
}

func exactString(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefixString(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func authenticated(sm *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: sm},
	}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func urlPathPermission(sm *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: sm},
	}}}
}

func headerPermission(h *routev3.HeaderMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: h}}
}

// orPrincipals is one of ps (ps itself when there is one).
func orPrincipals(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

// orPermissions is one of ps (ps itself when there is one).
func orPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

// andPermissions is all of ps: any when there is none, ps itself when
// there is one.
func andPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return anyPermission()
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}
