// Package rbac compiles Envoy's role based access control policies
// (envoy.config.rbac.v3.RBAC, the rules of the HTTP and network RBAC
// filters) and evaluates them with Envoy's semantics:
//
//	RBAC ──Compile──► *Engine                  (error → NACK, keep last good)
//	                     │
//	Request ──Evaluate───┘──► Decision{Allowed, Policy}
//
// A request is a downstream connection (the network filter) or an HTTP
// request on one (the HTTP filter). The principal comes only from the TLS
// handshake: the verified peer certificate, never a header.
//
// Actions: ALLOW allows what some policy matches and denies the rest (no
// policies: deny everything); DENY denies what some policy matches; LOG
// allows everything and reports the policy that matched, for audit logs.
// Policies are tried in name order; the first that matches is the one
// reported.
//
// Supported, as in Envoy:
//   - principals: any, authenticated (principal_name matched against each
//     URI SAN, then each DNS SAN, then the subject of the peer
//     certificate; without principal_name any TLS connection), and_ids,
//     or_ids, not_id.
//   - permissions: any, destination_port (the port the downstream
//     connection reached), url_path (the path without query), header (as
//     route matching: string_match, present_match, invert_match,
//     treat_missing_header_as_empty; the pseudo-headers :method, :path,
//     :authority, :scheme; several values joined with ","), and_rules,
//     or_rules, not_rule.
//   - string matchers: exact, prefix, suffix, contains, ignore_case, and
//     safe_regex (Go regexp, RE2 syntax, matching the whole value).
//
// Any other field (remote_ip, metadata, CEL conditions, matchers,
// destination_ip, requested_server_name, audit_logging_options, ...) is
// refused with its field path, never ignored. On a connection without an
// HTTP request, url_path and header never match, as in Envoy's network
// filter.
package rbac

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// ErrNotSupported marks config this package does not implement.
var ErrNotSupported = errors.New("not supported by this proxy")

// Action is what an engine does with the requests its policies match.
type Action uint8

// Actions, as envoy.config.rbac.v3.RBAC.Action.
const (
	Allow Action = iota
	Deny
	Log
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "ALLOW"
	case Deny:
		return "DENY"
	default:
		return "LOG"
	}
}

// Engine is a compiled RBAC.
type Engine struct {
	action   Action
	policies []policy
}

type policy struct {
	name        string
	permissions []matcher
	principals  []matcher
}

// matcher is a compiled principal or permission.
type matcher func(*Request) bool

// Request is what policies are evaluated against.
type Request struct {
	// TLS tells whether the downstream connection is TLS; Peer is its
	// verified peer (leaf) certificate, nil when none was presented.
	TLS  bool
	Peer *x509.Certificate
	// DestinationPort is the local port the downstream connection reached.
	DestinationPort uint32
	// HTTP is the request, nil when a connection is evaluated. Its
	// URL.EscapedPath() is the (normalized) path matched by url_path.
	HTTP *http.Request
}

// Decision is the outcome of an evaluation.
type Decision struct {
	Allowed bool
	// Policy names the policy that matched, empty when none did.
	Policy string
}

// Action returns the engine's action.
func (e *Engine) Action() Action { return e.action }

// Evaluate decides a request.
func (e *Engine) Evaluate(r *Request) Decision {
	name, matched := e.match(r)
	switch e.action {
	case Allow:
		return Decision{Allowed: matched, Policy: name}
	case Deny:
		return Decision{Allowed: !matched, Policy: name}
	default:
		return Decision{Allowed: true, Policy: name}
	}
}

// match returns the first policy, in name order, that matches r.
func (e *Engine) match(r *Request) (string, bool) {
	for i := range e.policies {
		p := &e.policies[i]
		if anyOf(p.permissions, r) && anyOf(p.principals, r) {
			return p.name, true
		}
	}
	return "", false
}

func anyOf(ms []matcher, r *Request) bool {
	for _, m := range ms {
		if m(r) {
			return true
		}
	}
	return false
}

func allOf(ms []matcher, r *Request) bool {
	for _, m := range ms {
		if !m(r) {
			return false
		}
	}
	return true
}

// Compile checks every set field of c against what this package
// implements, runs Envoy's own validation, and compiles it. field is the
// path of c in its filter's config, used in errors ("rules").
func Compile(field string, c *rbacv3.RBAC) (*Engine, error) {
	if err := checkFields(c.ProtoReflect(), field); err != nil {
		return nil, err
	}
	if err := c.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	e := &Engine{}
	switch c.GetAction() {
	case rbacv3.RBAC_ALLOW:
		e.action = Allow
	case rbacv3.RBAC_DENY:
		e.action = Deny
	case rbacv3.RBAC_LOG:
		e.action = Log
	default:
		return nil, fmt.Errorf("%s.action %s: %w", field, c.GetAction(), ErrNotSupported)
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.GetPolicies())) {
		pp := c.GetPolicies()[name]
		path := fmt.Sprintf("%s.policies[%q]", field, name)
		p := policy{name: name}
		for i, perm := range pp.GetPermissions() {
			m, err := permission(fmt.Sprintf("%s.permissions[%d]", path, i), perm)
			errs = append(errs, err)
			p.permissions = append(p.permissions, m)
		}
		for i, prin := range pp.GetPrincipals() {
			m, err := principal(fmt.Sprintf("%s.principals[%d]", path, i), prin)
			errs = append(errs, err)
			p.principals = append(p.principals, m)
		}
		e.policies = append(e.policies, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(e.policies, func(a, b policy) int { return cmp.Compare(a.name, b.name) })
	return e, nil
}

func permission(field string, p *rbacv3.Permission) (matcher, error) {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return func(*Request) bool { return true }, nil
	case *rbacv3.Permission_DestinationPort:
		port := r.DestinationPort
		return func(req *Request) bool { return req.DestinationPort == port }, nil
	case *rbacv3.Permission_UrlPath:
		sm, err := stringMatch(field+".url_path.path", r.UrlPath.GetPath())
		if err != nil {
			return nil, err
		}
		return func(req *Request) bool {
			// The path without query: Envoy strips the query and fragment.
			return req.HTTP != nil && req.HTTP.URL != nil && sm(req.HTTP.URL.EscapedPath())
		}, nil
	case *rbacv3.Permission_Header:
		hm, err := header(field+".header", r.Header)
		if err != nil {
			return nil, err
		}
		return func(req *Request) bool { return req.HTTP != nil && hm(req.HTTP) }, nil
	case *rbacv3.Permission_AndRules:
		ms, err := permissions(field+".and_rules", r.AndRules.GetRules())
		return func(req *Request) bool { return allOf(ms, req) }, err
	case *rbacv3.Permission_OrRules:
		ms, err := permissions(field+".or_rules", r.OrRules.GetRules())
		return func(req *Request) bool { return anyOf(ms, req) }, err
	case *rbacv3.Permission_NotRule:
		m, err := permission(field+".not_rule", r.NotRule)
		return func(req *Request) bool { return !m(req) }, err
	}
	return nil, fmt.Errorf("%s: rule %T: %w", field, p.GetRule(), ErrNotSupported)
}

func permissions(field string, ps []*rbacv3.Permission) ([]matcher, error) {
	out := make([]matcher, len(ps))
	var errs []error
	for i, p := range ps {
		m, err := permission(fmt.Sprintf("%s.rules[%d]", field, i), p)
		out[i] = m
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

func principal(field string, p *rbacv3.Principal) (matcher, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return func(*Request) bool { return true }, nil
	case *rbacv3.Principal_Authenticated_:
		if id.Authenticated.GetPrincipalName() == nil {
			return func(req *Request) bool { return req.TLS }, nil
		}
		sm, err := stringMatch(field+".authenticated.principal_name", id.Authenticated.GetPrincipalName())
		if err != nil {
			return nil, err
		}
		return func(req *Request) bool { return req.TLS && req.Peer != nil && peerMatches(req.Peer, sm) }, nil
	case *rbacv3.Principal_AndIds:
		ms, err := principals(field+".and_ids", id.AndIds.GetIds())
		return func(req *Request) bool { return allOf(ms, req) }, err
	case *rbacv3.Principal_OrIds:
		ms, err := principals(field+".or_ids", id.OrIds.GetIds())
		return func(req *Request) bool { return anyOf(ms, req) }, err
	case *rbacv3.Principal_NotId:
		m, err := principal(field+".not_id", id.NotId)
		return func(req *Request) bool { return !m(req) }, err
	}
	return nil, fmt.Errorf("%s: identifier %T: %w", field, p.GetIdentifier(), ErrNotSupported)
}

func principals(field string, ps []*rbacv3.Principal) ([]matcher, error) {
	out := make([]matcher, len(ps))
	var errs []error
	for i, p := range ps {
		m, err := principal(fmt.Sprintf("%s.ids[%d]", field, i), p)
		out[i] = m
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// peerMatches follows Envoy's authenticated principal: the name is matched
// against every URI SAN, then every DNS SAN, then the subject.
func peerMatches(c *x509.Certificate, sm func(string) bool) bool {
	for _, u := range c.URIs {
		if sm(u.String()) {
			return true
		}
	}
	for _, d := range c.DNSNames {
		if sm(d) {
			return true
		}
	}
	return sm(c.Subject.String())
}

// stringMatch compiles a StringMatcher; ignore_case folds ASCII only, as
// Envoy does.
func stringMatch(field string, s *matcherv3.StringMatcher) (func(string) bool, error) {
	fold := s.GetIgnoreCase()
	switch p := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		v := p.Exact
		return func(s string) bool { return equal(s, v, fold) }, nil
	case *matcherv3.StringMatcher_Prefix:
		v := p.Prefix
		return func(s string) bool { return len(s) >= len(v) && equal(s[:len(v)], v, fold) }, nil
	case *matcherv3.StringMatcher_Suffix:
		v := p.Suffix
		return func(s string) bool { return len(s) >= len(v) && equal(s[len(s)-len(v):], v, fold) }, nil
	case *matcherv3.StringMatcher_Contains:
		v := p.Contains
		return func(s string) bool {
			for i := 0; i+len(v) <= len(s); i++ {
				if equal(s[i:i+len(v)], v, fold) {
					return true
				}
			}
			return false
		}, nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile(p.SafeRegex.GetRegex())
		if err != nil {
			return nil, fmt.Errorf("%s.safe_regex.regex %q: %w", field, p.SafeRegex.GetRegex(), err)
		}
		// The expression compiled alone, so its parentheses balance and
		// the group cannot be escaped.
		full := regexp.MustCompile(`^(?:` + re.String() + `)$`)
		return full.MatchString, nil
	}
	return nil, fmt.Errorf("%s: one of exact, prefix, suffix, contains or safe_regex is required", field)
}

// equal compares a and b, ignoring ASCII case if fold (never Unicode
// folding, which would let the Kelvin sign equal "k").
func equal(a, b string, fold bool) bool {
	if !fold {
		return a == b
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// header compiles a HeaderMatcher with Envoy's semantics (HeaderUtility):
// a missing header matches only a present_match (false, or true with
// invert_match) unless treat_missing_header_as_empty; otherwise the value
// is matched and the result inverted by invert_match.
func header(field string, h *routev3.HeaderMatcher) (func(*http.Request) bool, error) {
	value, err := headerValue(field, h.GetName())
	if err != nil {
		return nil, err
	}
	invert, missingAsEmpty := h.GetInvertMatch(), h.GetTreatMissingHeaderAsEmpty()
	var match func(string) bool
	present := true
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		// No specifier: presence, as in Envoy.
	case *routev3.HeaderMatcher_PresentMatch:
		present = s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		if match, err = stringMatch(field+".string_match", s.StringMatch); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s: %T: %w", field, s, ErrNotSupported)
	}
	return func(r *http.Request) bool {
		v, ok := value(r)
		if !ok && !missingAsEmpty {
			return match == nil && present == invert
		}
		res := present
		if match != nil {
			res = match(v)
		}
		return res != invert
	}, nil
}

// headerValue returns the function that reads a header: several values
// joined with "," as Envoy does, and the pseudo-headers. In HTTP/1 the
// Host header is :authority, so a matcher on "host" finds nothing, as in
// Envoy.
func headerValue(field, name string) (func(*http.Request) (string, bool), error) {
	switch ln := strings.ToLower(name); {
	case ln == ":method":
		return func(r *http.Request) (string, bool) {
			if r.Method == "" {
				return http.MethodGet, true
			}
			return r.Method, true
		}, nil
	case ln == ":authority":
		return func(r *http.Request) (string, bool) { return r.Host, r.Host != "" }, nil
	case ln == ":path":
		return func(r *http.Request) (string, bool) {
			if r.URL == nil {
				return "", false
			}
			p := r.URL.EscapedPath()
			if r.URL.RawQuery != "" || r.URL.ForceQuery {
				p += "?" + r.URL.RawQuery
			}
			return p, p != ""
		}, nil
	case ln == ":scheme":
		return func(r *http.Request) (string, bool) {
			if r.TLS != nil {
				return "https", true
			}
			return "http", true
		}, nil
	case strings.HasPrefix(ln, ":"):
		return nil, fmt.Errorf("%s.name: pseudo-header %q: %w", field, name, ErrNotSupported)
	case ln == "":
		return nil, fmt.Errorf("%s.name: required", field)
	}
	key := http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, bool) {
		vs := r.Header[key]
		switch len(vs) {
		case 0:
			return "", false
		case 1:
			return vs[0], true
		}
		return strings.Join(vs, ","), true
	}, nil
}
