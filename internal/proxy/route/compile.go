package route

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// defaultMaxDirectResponseBody is Envoy's default
// max_direct_response_body_size_bytes.
const defaultMaxDirectResponseBody = 4096

// Compile validates and compiles a RouteConfiguration.
//
// Any field the proxy does not implement, and that would change behaviour if
// ignored, is an error naming the route config, virtual host, route index and
// field (a *FieldError wrapping ErrNotSupported), e.g.
//
//	route config "http.80": virtual host "web": routes[2]: match.grpc: not supported
//
// The proxy NACKs such a config and keeps serving its last good one. Compile
// reports every problem it finds (joined with errors.Join), then checks the
// config against Envoy's own validation rules (the generated ValidateAll).
func Compile(rc *routev3.RouteConfiguration) (*Table, error) {
	if rc == nil {
		return nil, errors.New("route: nil RouteConfiguration")
	}
	c := &compiler{
		name:             rc.GetName(),
		vhIdx:            -1,
		routeIdx:         -1,
		mostSpecificWins: rc.GetMostSpecificHeaderMutationsWins(),
		ignoreParams:     rc.GetIgnorePathParametersInPathMatching(),
		maxBody:          defaultMaxDirectResponseBody,
	}
	t := c.table(rc)
	if err := c.err(); err != nil {
		return nil, err
	}
	if err := rc.ValidateAll(); err != nil {
		return nil, fmt.Errorf("route config %q: %w", rc.GetName(), err)
	}
	return t, nil
}

// compiler collects errors with their location.
type compiler struct {
	name     string
	vhIdx    int
	vhName   string
	routeIdx int
	errs     []error
	dropped  int

	mostSpecificWins bool
	ignoreParams     bool
	maxBody          uint32
}

func (c *compiler) fail(field string, err error) {
	if len(c.errs) >= maxErrors {
		c.dropped++
		return
	}
	c.errs = append(c.errs, &FieldError{
		RouteConfig:      c.name,
		VirtualHostIndex: c.vhIdx,
		VirtualHost:      c.vhName,
		RouteIndex:       c.routeIdx,
		Field:            field,
		Err:              err,
	})
}

func (c *compiler) failf(field, format string, args ...any) {
	c.fail(field, fmt.Errorf(format, args...))
}

func (c *compiler) err() error {
	switch {
	case len(c.errs) == 0:
		return nil
	case len(c.errs) == 1:
		return c.errs[0]
	}
	errs := c.errs
	if c.dropped > 0 {
		errs = append(errs, fmt.Errorf("route config %q: %d more errors", c.name, c.dropped))
	}
	return errors.Join(errs...)
}

// level is what a virtual host or the route configuration contributes to
// each of its routes.
type level struct {
	req, resp     *HeaderMutation // nil if none
	mirrors       []MirrorPolicy
	retry         *RetryPolicy
	cors          map[string]*corsConfig // CorsPolicy in typed_per_filter_config (cors.go)
	filterConfigs map[string]any         // other typed_per_filter_config (perfilter.go)
}

func (c *compiler) table(rc *routev3.RouteConfiguration) *Table {
	c.checkFields(rc.ProtoReflect(), "")
	t := &Table{
		name:             rc.GetName(),
		exact:            make(map[string]*virtualHost),
		ignorePort:       rc.GetIgnorePortInHostMatching(),
		ignorePathParams: rc.GetIgnorePathParametersInPathMatching(),
	}
	if v := rc.GetValidateClusters(); v.GetValue() {
		c.failf("validate_clusters", "true: %w (the proxy does not check clusters when it loads routes)", ErrNotSupported)
	}
	if v := rc.GetMaxDirectResponseBodySizeBytes(); v != nil {
		c.maxBody = v.GetValue()
	}
	if h := rc.GetVhostHeader(); h != "" {
		switch lh := strings.ToLower(h); {
		case lh == ":authority" || lh == "host":
		case strings.HasPrefix(lh, ":"):
			c.failf("vhost_header", "%q: %w", h, ErrNotSupported)
		default:
			t.vhostHeader = textproto.CanonicalMIMEHeaderKey(h)
		}
	}
	cfg := level{
		req:     c.mutation("request_headers_to_add", rc.GetRequestHeadersToAdd(), "request_headers_to_remove", rc.GetRequestHeadersToRemove()),
		resp:    c.mutation("response_headers_to_add", rc.GetResponseHeadersToAdd(), "response_headers_to_remove", rc.GetResponseHeadersToRemove()),
		mirrors: c.mirrors("request_mirror_policies", rc.GetRequestMirrorPolicies()),
	}

	names := make(map[string]int)
	domains := make(map[string]string) // lower-case domain → virtual host
	suffixes := make(map[int]map[string]*virtualHost)
	prefixes := make(map[int]map[string]*virtualHost)
	for i, pvh := range rc.GetVirtualHosts() {
		c.vhIdx, c.vhName = i, pvh.GetName()
		if pvh == nil {
			// ValidateAll skips nil entries; on the wire this is an empty
			// message, which Envoy refuses.
			c.failf("", "empty virtual host (name and domains are required)")
			continue
		}
		vh := c.virtualHost(pvh, &cfg)
		for _, r := range vh.routes {
			t.clusters = append(t.clusters, r.clusters()...)
		}
		if j, dup := names[vh.name]; dup && vh.name != "" {
			c.failf("name", "virtual_hosts[%d] has the same name (virtual host names must be unique)", j)
		} else {
			names[vh.name] = i
		}
		for k, d := range pvh.GetDomains() {
			field := fmt.Sprintf("domains[%d]", k)
			ld := lowerASCII(d)
			if ld == "" {
				c.failf(field, "empty domain")
				continue
			}
			if other, dup := domains[ld]; dup {
				if ld == "*" {
					c.failf(field, `only one virtual host may have the domain "*"; %s has it too`, other)
				} else {
					c.failf(field, "domain %q is also in %s (domains must be unique across virtual hosts)", d, other)
				}
				continue
			}
			if vh.name != "" {
				domains[ld] = fmt.Sprintf("virtual host %q", vh.name)
			} else {
				domains[ld] = fmt.Sprintf("virtual_hosts[%d]", i)
			}
			// Envoy's classification: "*", then a leading '*' (suffix
			// wildcard), then a trailing '*' (prefix wildcard); any other
			// '*' is a literal character of an exact domain.
			switch {
			case ld == "*":
				t.star = vh
			case ld[0] == '*':
				addWildcard(suffixes, ld[1:], vh)
			case ld[len(ld)-1] == '*':
				addWildcard(prefixes, ld[:len(ld)-1], vh)
			default:
				t.exact[ld] = vh
			}
		}
	}
	c.vhIdx, c.vhName = -1, ""
	slices.Sort(t.clusters)
	t.clusters = slices.Compact(t.clusters)
	t.suffixes = sortWildcards(suffixes)
	t.prefixes = sortWildcards(prefixes)
	return t
}

func addWildcard(byLen map[int]map[string]*virtualHost, s string, vh *virtualHost) {
	m := byLen[len(s)]
	if m == nil {
		m = make(map[string]*virtualHost)
		byLen[len(s)] = m
	}
	m[s] = vh
}

func sortWildcards(byLen map[int]map[string]*virtualHost) []wildcards {
	var ws []wildcards
	for n, m := range byLen {
		ws = append(ws, wildcards{n: n, m: m})
	}
	slices.SortFunc(ws, func(a, b wildcards) int { return cmp.Compare(b.n, a.n) })
	return ws
}

func (c *compiler) virtualHost(pvh *routev3.VirtualHost, cfg *level) *virtualHost {
	c.checkFields(pvh.ProtoReflect(), "")
	vl := level{
		req:     c.mutation("request_headers_to_add", pvh.GetRequestHeadersToAdd(), "request_headers_to_remove", pvh.GetRequestHeadersToRemove()),
		resp:    c.mutation("response_headers_to_add", pvh.GetResponseHeadersToAdd(), "response_headers_to_remove", pvh.GetResponseHeadersToRemove()),
		mirrors: c.mirrors("request_mirror_policies", pvh.GetRequestMirrorPolicies()),
		retry:   c.retryPolicy("retry_policy", pvh.GetRetryPolicy()),
		cors:    c.perFilterConfig("typed_per_filter_config", pvh.GetTypedPerFilterConfig()),

		filterConfigs: c.filterConfigs(pvh.GetTypedPerFilterConfig()),
	}
	vh := &virtualHost{name: pvh.GetName()}
	for j, pr := range pvh.GetRoutes() {
		c.routeIdx = j
		vh.routes = append(vh.routes, c.route(pr, vh.name, &vl, cfg))
	}
	c.routeIdx = -1
	return vh
}

func (c *compiler) route(pr *routev3.Route, vhName string, vl, cfg *level) *Route {
	c.checkFields(pr.ProtoReflect(), "")
	rt := &Route{Name: pr.GetName(), VirtualHost: vhName}
	rt.filterConfigs = mergeFilterConfigs(c.filterConfigs(pr.GetTypedPerFilterConfig()), vl.filterConfigs)
	c.routeMatch(&rt.match, pr.GetMatch())
	switch a := pr.GetAction().(type) {
	case *routev3.Route_Route:
		c.routeAction(rt, a.Route, vl, cfg)
	case *routev3.Route_Redirect:
		rt.Redirect = c.redirect(a.Redirect)
	case *routev3.Route_DirectResponse:
		rt.DirectResponse = c.directResponse(a.DirectResponse)
	case nil:
		c.failf("action", "one of route, redirect or direct_response is required")
	default:
		// Refused by checkFields.
	}

	cors := c.perFilterConfig("typed_per_filter_config", pr.GetTypedPerFilterConfig())
	if rt.Redirect == nil && rt.DirectResponse == nil {
		// Envoy's CORS filter acts on forwarding routes only: it passes
		// redirects and direct responses through untouched.
		rt.cors = mergeCORS(cors, vl.cors)
	}

	req := c.mutation("request_headers_to_add", pr.GetRequestHeadersToAdd(), "request_headers_to_remove", pr.GetRequestHeadersToRemove())
	resp := c.mutation("response_headers_to_add", pr.GetResponseHeadersToAdd(), "response_headers_to_remove", pr.GetResponseHeadersToRemove())
	rt.RequestHeaderMutations = c.levels(req, vl.req, cfg.req)
	rt.ResponseHeaderMutations = c.levels(resp, vl.resp, cfg.resp)
	return rt
}

// levels orders the route's, virtual host's and route configuration's
// mutations as Envoy evaluates them: most specific first (so the least
// specific wins), or least specific first with
// most_specific_header_mutations_wins.
func (c *compiler) levels(route, vhost, config *HeaderMutation) []HeaderMutation {
	order := []*HeaderMutation{route, vhost, config}
	if c.mostSpecificWins {
		slices.Reverse(order)
	}
	var out []HeaderMutation
	for _, m := range order {
		if m != nil {
			out = append(out, *m)
		}
	}
	return out
}

func (c *compiler) routeMatch(m *routeMatch, pm *routev3.RouteMatch) {
	m.ignoreParams = c.ignoreParams
	if pm == nil {
		c.failf("match", "required")
		return
	}
	if cs := pm.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		m.fold = true
	}
	switch ps := pm.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		m.kind, m.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		m.kind, m.value = pathExact, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		// case_sensitive is ignored for safe_regex, as in Envoy: use (?i).
		m.kind, m.fold = pathRegex, false
		m.re = c.anchoredRegex("match.safe_regex", ps.SafeRegex)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		m.kind, m.value = pathSeparatedPrefix, ps.PathSeparatedPrefix
		p := ps.PathSeparatedPrefix
		switch {
		case strings.ContainsAny(p, "?#"):
			c.failf("match.path_separated_prefix", "%q: must not contain '?' or '#'", p)
		case strings.HasSuffix(p, "/"):
			c.failf("match.path_separated_prefix", "%q: must not end in '/' (the '/' after the prefix is implied)", p)
		case len(p) < 2:
			c.failf("match.path_separated_prefix", "%q: must be at least 2 characters", p)
		}
	case nil:
		c.failf("match", "one of prefix, path, safe_regex or path_separated_prefix is required")
	default:
		// Refused by checkFields.
	}
	for i, h := range pm.GetHeaders() {
		if hm, ok := c.headerMatcher(fmt.Sprintf("match.headers[%d]", i), h); ok {
			m.headers = append(m.headers, hm)
		}
	}
	for i, q := range pm.GetQueryParameters() {
		field := fmt.Sprintf("match.query_parameters[%d]", i)
		qm := queryMatcher{name: q.GetName()}
		if qm.name == "" {
			c.failf(field+".name", "required")
		}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, ok := c.stringMatcher(field+".string_match", s.StringMatch)
			if !ok {
				continue
			}
			qm.str = &sm
		case *routev3.QueryParameterMatcher_PresentMatch:
			// Envoy checks presence whatever the value; refuse false rather
			// than let it read as "absent".
			if !s.PresentMatch {
				c.failf(field+".present_match", "false: %w (Envoy matches presence either way; omit it, or use present_match: true)", ErrNotSupported)
			}
		case nil:
			// Presence.
		}
		m.query = append(m.query, qm)
	}
}

func (c *compiler) headerMatcher(field string, h *routev3.HeaderMatcher) (headerMatcher, bool) {
	hm := headerMatcher{
		invert:         h.GetInvertMatch(),
		missingAsEmpty: h.GetTreatMissingHeaderAsEmpty(),
	}
	name := h.GetName()
	ok := true
	switch ln := strings.ToLower(name); {
	case ln == "":
		c.failf(field+".name", "required")
		ok = false
	case ln == ":method":
		hm.pseudo = pseudoMethod
	case ln == ":authority":
		hm.pseudo = pseudoAuthority
	case ln == ":path":
		hm.pseudo = pseudoPath
	case ln == ":scheme":
		hm.pseudo = pseudoScheme
	case strings.HasPrefix(ln, ":"):
		c.failf(field+".name", "pseudo-header %q: %w", name, ErrNotSupported)
		ok = false
	default:
		hm.name = textproto.CanonicalMIMEHeaderKey(name)
	}
	hm.kind = headerString
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		// No specifier: presence, as in Envoy.
		hm.kind, hm.present = headerPresent, true
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = headerPresent, s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		sm, smOK := c.stringMatcher(field+".string_match", s.StringMatch)
		hm.str, ok = sm, ok && smOK
	case *routev3.HeaderMatcher_ExactMatch:
		hm.str = stringMatcher{kind: stringExact, value: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.str = stringMatcher{kind: stringPrefix, value: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.str = stringMatcher{kind: stringSuffix, value: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.str = stringMatcher{kind: stringContains, value: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		hm.str = stringMatcher{kind: stringRegex, re: c.anchoredRegex(field+".safe_regex_match", s.SafeRegexMatch)}
		ok = ok && hm.str.re != nil
	case *routev3.HeaderMatcher_RangeMatch:
		hm.kind = headerRange
		hm.start, hm.end = s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	default:
		ok = false // refused by checkFields
	}
	return hm, ok
}

func (c *compiler) stringMatcher(field string, s *matcherv3.StringMatcher) (stringMatcher, bool) {
	sm := stringMatcher{fold: s.GetIgnoreCase()}
	switch p := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.value = stringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.value = stringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.value = stringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.value = stringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		sm.kind, sm.fold = stringRegex, false
		sm.re = c.anchoredRegex(field+".safe_regex", p.SafeRegex)
		return sm, sm.re != nil
	case nil:
		c.failf(field, "one of exact, prefix, suffix, contains or safe_regex is required")
		return sm, false
	default:
		return sm, false // refused by checkFields
	}
	return sm, true
}

// anchoredRegex compiles a RegexMatcher for a full match, as Envoy requires:
// the whole input must match, not a substring.
func (c *compiler) anchoredRegex(field string, rm *matcherv3.RegexMatcher) *regexp.Regexp {
	re := c.regex(field, rm)
	if re == nil {
		return nil
	}
	// The expression compiled alone, so its parentheses balance and the
	// group cannot be escaped.
	return regexp.MustCompile(`^(?:` + re.String() + `)$`)
}

// regex compiles a RegexMatcher with Go's regexp, whose syntax is RE2's.
func (c *compiler) regex(field string, rm *matcherv3.RegexMatcher) *regexp.Regexp {
	if rm == nil {
		c.failf(field, "required")
		return nil
	}
	re, err := regexp.Compile(rm.GetRegex())
	if err != nil {
		c.failf(field+".regex", "%q: %v", rm.GetRegex(), err)
		return nil
	}
	return re
}

func (c *compiler) regexRewrite(field string, rr *matcherv3.RegexMatchAndSubstitute) *RegexRewrite {
	re := c.regex(field+".pattern", rr.GetPattern())
	if re == nil {
		return nil
	}
	tmpl, err := re2Template(rr.GetSubstitution(), re.NumSubexp())
	if err != nil {
		c.failf(field+".substitution", "%q: %v", rr.GetSubstitution(), err)
		return nil
	}
	return &RegexRewrite{Pattern: re, Substitution: rr.GetSubstitution(), template: tmpl}
}

// re2Template converts an RE2 rewrite string (\0..\9 name capture groups, \\
// is a backslash, any other backslash is an error) to a template for Go's
// Regexp.Expand, checking the groups exist, as RE2 does.
func re2Template(sub string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(sub); i++ {
		ch := sub[i]
		switch {
		case ch == '$':
			b.WriteString("$$")
		case ch != '\\':
			b.WriteByte(ch)
		case i+1 < len(sub) && sub[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+1 < len(sub) && '0' <= sub[i+1] && sub[i+1] <= '9':
			n := int(sub[i+1] - '0')
			if n > groups {
				return "", fmt.Errorf(`\%d refers to a capture group the pattern does not have (it has %d)`, n, groups)
			}
			fmt.Fprintf(&b, "${%d}", n)
			i++
		default:
			return "", errors.New(`invalid escape: use \0-\9 for a capture group or \\ for a backslash`)
		}
	}
	return b.String(), nil
}

func (c *compiler) routeAction(rt *Route, a *routev3.RouteAction, vl, cfg *level) {
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			c.failf("route.cluster", "empty")
		}
		rt.Cluster = cs.Cluster
	case *routev3.RouteAction_WeightedClusters:
		c.weightedClusters(rt, cs.WeightedClusters)
	case nil:
		c.failf("route", "one of cluster or weighted_clusters is required")
	default:
		// Refused by checkFields.
	}

	n := 0
	if a.GetPrefixRewrite() != "" {
		n++
		rt.PrefixRewrite = a.GetPrefixRewrite()
	}
	if a.GetRegexRewrite() != nil {
		n++
		rt.RegexRewrite = c.regexRewrite("route.regex_rewrite", a.GetRegexRewrite())
	}
	if pr := a.GetPathRewrite(); pr != "" {
		n++
		v, err := literal(pr)
		if err != nil {
			c.failf("route.path_rewrite", "%q: %w", pr, err)
		}
		rt.PathRewrite = v
	}
	if n > 1 {
		c.failf("route", "only one of prefix_rewrite, regex_rewrite and path_rewrite may be set")
	}

	rt.HostRewrite = a.GetHostRewriteLiteral()
	if rt.HostRewrite != "" {
		for i, wc := range rt.WeightedClusters {
			if wc.HostRewrite != "" {
				c.failf(fmt.Sprintf("route.weighted_clusters.clusters[%d].host_rewrite_literal", i),
					"set both here and on the route (route.host_rewrite_literal): ambiguous, set one of them")
			}
		}
	}

	rt.Timeout = DefaultTimeout
	if d := a.GetTimeout(); d != nil {
		rt.Timeout = c.duration("route.timeout", d)
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		rt.RetryPolicy = c.retryPolicy("route.retry_policy", rp)
	} else {
		rt.RetryPolicy = vl.retry
	}
	switch {
	case len(a.GetRequestMirrorPolicies()) > 0:
		rt.MirrorPolicies = c.mirrors("route.request_mirror_policies", a.GetRequestMirrorPolicies())
	case len(vl.mirrors) > 0:
		rt.MirrorPolicies = vl.mirrors
	default:
		rt.MirrorPolicies = cfg.mirrors
	}
	rt.HashPolicy = c.hashPolicies("route.hash_policy", a.GetHashPolicy())
}

func (c *compiler) weightedClusters(rt *Route, wcs *routev3.WeightedCluster) {
	const field = "route.weighted_clusters"
	var total uint64
	for i, cw := range wcs.GetClusters() {
		f := fmt.Sprintf("%s.clusters[%d]", field, i)
		if cw.GetName() == "" {
			c.failf(f+".name", "required")
		}
		w := cw.GetWeight().GetValue()
		total += uint64(w)
		wc := WeightedCluster{
			Name:        cw.GetName(),
			Weight:      w,
			HostRewrite: cw.GetHostRewriteLiteral(),
			end:         uint32(min(total, math.MaxUint32)),
		}
		if m := c.mutation(f+".request_headers_to_add", cw.GetRequestHeadersToAdd(), f+".request_headers_to_remove", cw.GetRequestHeadersToRemove()); m != nil {
			wc.RequestHeaders = *m
		}
		if m := c.mutation(f+".response_headers_to_add", cw.GetResponseHeadersToAdd(), f+".response_headers_to_remove", cw.GetResponseHeadersToRemove()); m != nil {
			wc.ResponseHeaders = *m
		}
		rt.WeightedClusters = append(rt.WeightedClusters, wc)
	}
	switch {
	case len(rt.WeightedClusters) == 0:
		c.failf(field+".clusters", "at least one cluster is required")
		return
	case total == 0:
		c.failf(field+".clusters", "the weights add up to 0; at least one must be positive")
		return
	case total > math.MaxUint32:
		c.failf(field+".clusters", "the weights add up to %d, more than %d", total, uint32(math.MaxUint32))
		return
	}
	// total_weight is deprecated (Envoy uses the sum of the weights) but
	// documented as "must equal the sum if greater than 0": a mismatch is a
	// control plane bug worth refusing.
	if tw := wcs.GetTotalWeight().GetValue(); tw > 0 && uint64(tw) != total {
		c.failf(field+".total_weight", "%d, but the weights add up to %d (total_weight is deprecated: leave it unset)", tw, total)
	}
	rt.totalWeight = uint32(total)
}

// retryOn lists the conditions of Envoy's x-envoy-retry-on and
// x-envoy-retry-grpc-on. retriable-headers is missing: it needs
// retriable_headers, which is not supported.
var retryOn = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true,
	"connect-failure": true, "envoy-ratelimited": true, "retriable-4xx": true,
	"refused-stream": true, "retriable-status-codes": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

func (c *compiler) retryPolicy(field string, rp *routev3.RetryPolicy) *RetryPolicy {
	if rp == nil {
		return nil
	}
	p := &RetryPolicy{RetryOn: rp.GetRetryOn(), NumRetries: 1, BackOffBase: defaultBackOffBase}
	for _, cond := range strings.Split(rp.GetRetryOn(), ",") {
		cond = strings.TrimSpace(cond)
		switch {
		case cond == "":
		case cond == "retriable-headers":
			c.failf(field+".retry_on", "%q: %w", cond, ErrNotSupported)
		case !retryOn[cond]:
			// Envoy ignores unknown conditions; a typo would silently
			// disable retries, so refuse it.
			c.failf(field+".retry_on", "unknown condition %q", cond)
		default:
			p.Conditions = append(p.Conditions, cond)
		}
	}
	if n := rp.GetNumRetries(); n != nil {
		p.NumRetries = n.GetValue()
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		p.PerTryTimeout = c.duration(field+".per_try_timeout", d)
	}
	for i, code := range rp.GetRetriableStatusCodes() {
		if code < 100 || code > 599 {
			c.failf(fmt.Sprintf("%s.retriable_status_codes[%d]", field, i), "%d is not an HTTP status code", code)
		}
	}
	p.RetriableStatusCodes = rp.GetRetriableStatusCodes()
	if bo := rp.GetRetryBackOff(); bo != nil {
		if bo.GetBaseInterval() == nil {
			c.failf(field+".retry_back_off.base_interval", "required")
		} else {
			p.BackOffBase = c.duration(field+".retry_back_off.base_interval", bo.GetBaseInterval())
		}
		p.BackOffMax = 10 * p.BackOffBase
		if d := bo.GetMaxInterval(); d != nil {
			p.BackOffMax = c.duration(field+".retry_back_off.max_interval", d)
			if p.BackOffMax < p.BackOffBase {
				c.failf(field+".retry_back_off.max_interval", "%v is less than base_interval %v", p.BackOffMax, p.BackOffBase)
			}
		}
	} else {
		p.BackOffMax = 10 * p.BackOffBase
	}
	return p
}

func (c *compiler) mirrors(field string, ps []*routev3.RouteAction_RequestMirrorPolicy) []MirrorPolicy {
	var out []MirrorPolicy
	for i, p := range ps {
		f := fmt.Sprintf("%s[%d]", field, i)
		if p.GetCluster() == "" && p.GetClusterHeader() == "" { // cluster_header is refused by checkFields
			c.failf(f+".cluster", "required")
		}
		perMillion := uint32(million)
		if rf := p.GetRuntimeFraction(); rf != nil {
			// runtime_key is refused by the allow-list: the default is the
			// fraction, as in an Envoy without that runtime key.
			perMillion = c.perMillion(f+".runtime_fraction.default_value", rf.GetDefaultValue())
		}
		out = append(out, MirrorPolicy{
			Cluster:                 p.GetCluster(),
			HostRewrite:             p.GetHostRewriteLiteral(),
			DisableShadowHostSuffix: p.GetDisableShadowHostSuffixAppend(),
			PerMillion:              perMillion,
		})
	}
	return out
}

const million = 1_000_000

// perMillion converts a FractionalPercent to parts per million; a numerator
// above its denominator is the whole, as in Envoy.
func (c *compiler) perMillion(field string, fp *typev3.FractionalPercent) uint32 {
	if fp == nil {
		c.failf(field, "required")
		return 0
	}
	d, ok := denominators[fp.GetDenominator()]
	if !ok {
		c.failf(field+".denominator", "%v: %w", fp.GetDenominator(), ErrNotSupported)
		return 0
	}
	return uint32(min(uint64(fp.GetNumerator()), uint64(d)) * million / uint64(d))
}

var denominators = map[typev3.FractionalPercent_DenominatorType]uint32{
	typev3.FractionalPercent_HUNDRED:      100,
	typev3.FractionalPercent_TEN_THOUSAND: 10_000,
	typev3.FractionalPercent_MILLION:      million,
}

var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  301,
	routev3.RedirectAction_FOUND:              302,
	routev3.RedirectAction_SEE_OTHER:          303,
	routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
	routev3.RedirectAction_PERMANENT_REDIRECT: 308,
}

var schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*$`)

func (c *compiler) redirect(rd *routev3.RedirectAction) *Redirect {
	out := &Redirect{Host: rd.GetHostRedirect(), Port: rd.GetPortRedirect(), StripQuery: rd.GetStripQuery()}
	switch s := rd.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			out.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		if s.SchemeRedirect != "" && !schemeRE.MatchString(s.SchemeRedirect) {
			c.failf("redirect.scheme_redirect", "%q is not a URL scheme", s.SchemeRedirect)
		}
		out.Scheme = strings.ToLower(s.SchemeRedirect)
	}
	if out.Port > math.MaxUint16 {
		c.failf("redirect.port_redirect", "%d is not a port", out.Port)
	}
	switch p := rd.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		out.Path = p.PathRedirect
		out.pathHasQuery = strings.Contains(p.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:
		out.PrefixRewrite = p.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		out.RegexRewrite = c.regexRewrite("redirect.regex_rewrite", p.RegexRewrite)
	}
	code, ok := redirectCodes[rd.GetResponseCode()]
	if !ok {
		c.failf("redirect.response_code", "%v: %w", rd.GetResponseCode(), ErrNotSupported)
	}
	out.Code = code
	return out
}

func (c *compiler) directResponse(d *routev3.DirectResponseAction) *DirectResponse {
	out := &DirectResponse{Status: int(d.GetStatus())}
	if out.Status < 200 || out.Status > 599 {
		c.failf("direct_response.status", "%d: must be in [200, 600)", out.Status)
	}
	switch s := d.GetBody().GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		out.Body = []byte(s.InlineString)
	case *corev3.DataSource_InlineBytes:
		out.Body = s.InlineBytes
	}
	if n := len(out.Body); n > int(c.maxBody) {
		c.failf("direct_response.body", "%d bytes, more than max_direct_response_body_size_bytes (%d)", n, c.maxBody)
	}
	return out
}

// mutation compiles one level's headers to add and remove; nil if it has
// none.
func (c *compiler) mutation(addField string, adds []*corev3.HeaderValueOption, removeField string, removes []string) *HeaderMutation {
	m := &HeaderMutation{}
	for i, name := range removes {
		f := fmt.Sprintf("%s[%d]", removeField, i)
		if !modifiable(name) {
			c.failf(f, "%q: pseudo-headers and host may not be removed", name)
			continue
		}
		m.Remove = append(m.Remove, textproto.CanonicalMIMEHeaderKey(name))
	}
	for i, o := range adds {
		f := fmt.Sprintf("%s[%d]", addField, i)
		hv := o.GetHeader()
		if hv == nil {
			c.failf(f+".header", "required")
			continue
		}
		if !modifiable(hv.GetKey()) {
			c.failf(f+".header.key", "%q: pseudo-headers and host may not be modified", hv.GetKey())
			continue
		}
		raw := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			if raw != "" {
				c.failf(f+".header", "only one of value and raw_value may be set")
				continue
			}
			raw = string(hv.GetRawValue())
		}
		v, err := literal(raw)
		if err != nil {
			c.failf(f+".header.value", "%q: %w", raw, err)
			continue
		}
		var action AppendAction
		if ap := o.GetAppend(); ap != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				c.failf(f, "both append and append_action are set; use append_action")
				continue
			}
			action = OverwriteIfExistsOrAdd
			if ap.GetValue() {
				action = AppendIfExistsOrAdd
			}
		} else {
			switch o.GetAppendAction() {
			case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
				action = AppendIfExistsOrAdd
			case corev3.HeaderValueOption_ADD_IF_ABSENT:
				action = AddIfAbsent
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
				action = OverwriteIfExistsOrAdd
			case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
				action = OverwriteIfExists
			default:
				c.failf(f+".append_action", "%v: %w", o.GetAppendAction(), ErrNotSupported)
				continue
			}
		}
		// Envoy drops a header whose value is empty unless keep_empty_value.
		if v == "" && !o.GetKeepEmptyValue() {
			continue
		}
		m.Add = append(m.Add, HeaderValue{Name: textproto.CanonicalMIMEHeaderKey(hv.GetKey()), Value: v, Action: action})
	}
	if len(m.Remove) == 0 && len(m.Add) == 0 {
		return nil
	}
	return m
}

// modifiable is Envoy's HeaderUtility::isModifiableHeader: not a
// pseudo-header and not host.
func modifiable(name string) bool {
	return !strings.HasPrefix(name, ":") && !strings.EqualFold(name, "host")
}

// literal returns v with "%%" unescaped to "%", or an error if v holds a
// substitution format command (%REQ(x)%, %DOWNSTREAM_REMOTE_ADDRESS%, ...),
// which the proxy does not implement yet.
func literal(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		cmd := v[i:]
		if j := strings.IndexByte(v[i+1:], '%'); j >= 0 {
			cmd = v[i : i+j+2]
		}
		return "", fmt.Errorf("substitution command %s: %w (only literal values are; write %%%% for a literal %%)", cmd, ErrNotSupported)
	}
	return b.String(), nil
}

// duration converts a Duration, refusing invalid and negative ones.
func (c *compiler) duration(field string, d *durationpb.Duration) time.Duration {
	if err := d.CheckValid(); err != nil {
		c.failf(field, "%v", err)
		return 0
	}
	v := d.AsDuration()
	if v < 0 {
		c.failf(field, "%v: must not be negative", v)
		return 0
	}
	return v
}
