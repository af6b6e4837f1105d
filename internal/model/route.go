package model

import (
	"strings"
	"time"
)

// ParentKind is what a route attaches to.
type ParentKind string

// Parent kinds Trellis serves. A route may name another kind; its
// ParentRef.Kind is then "Kind.group" and the attachment is not in effect.
const (
	ParentGateway     ParentKind = "Gateway"
	ParentListenerSet ParentKind = "ListenerSet"
	ParentService     ParentKind = "Service"
)

// ParentRef names the Gateway, ListenerSet or Service a route attaches
// to.
type ParentRef struct {
	Kind ParentKind
	Key
	// SectionName names a listener or a Service port; empty means all.
	SectionName string
	// Port restricts attachment to one listener or service port; zero
	// means all.
	Port uint32
}

// Route is what every route kind shares.
type Route struct {
	Key
	Source    Source
	Parents   []ParentRef
	Hostnames []string
}

// MeshOnly reports whether every parent of the route is a Service: a
// mesh route (GAMMA). Its backends may be Services of any namespace
// without a ReferenceGrant (GEP-1294): a mesh route changes where calls
// to a Service go, and its callers could reach those backends anyway, so
// nothing becomes reachable that was not; AccessPolicy, enforced at the
// backend against the caller's own identity, still decides.
func (r *Route) MeshOnly() bool {
	for _, p := range r.Parents {
		if p.Kind != ParentService {
			return false
		}
	}
	return len(r.Parents) > 0
}

// HTTPRoute is a Gateway API HTTPRoute, attached to Gateways (ingress) or
// to Services (mesh routing, GAMMA).
type HTTPRoute struct {
	Route
	Rules []HTTPRouteRule
}

// HTTPRouteRule is one rule of an HTTPRoute: requests that match any of
// Matches go to Backends.
type HTTPRouteRule struct {
	Name    string
	Matches []HTTPMatch
	Filters []HTTPFilter
	// Backends are in the order written; each keeps its index.
	Backends []Backend
	// Timeout (timeouts.request) bounds the whole request, BackendTimeout
	// (timeouts.backendRequest) each try. nil is unset; zero ("0s")
	// disables the timeout.
	Timeout        *time.Duration
	BackendTimeout *time.Duration
}

// PathMatchType is how an HTTP path is matched.
type PathMatchType string

// Path match types, as in the Gateway API.
const (
	PathExact             PathMatchType = "Exact"
	PathPrefix            PathMatchType = "PathPrefix"
	PathRegularExpression PathMatchType = "RegularExpression"
)

// StringMatchType is how a header or query value is matched.
type StringMatchType string

// String match types, as in the Gateway API.
const (
	MatchExact             StringMatchType = "Exact"
	MatchRegularExpression StringMatchType = "RegularExpression"
)

// HTTPMatch selects requests; every present condition must hold.
type HTTPMatch struct {
	PathType  PathMatchType
	PathValue string
	Method    string
	Headers   []ValueMatch
	Query     []ValueMatch
}

// ValueMatch matches a named header or query parameter.
type ValueMatch struct {
	Type  StringMatchType
	Name  string
	Value string
}

// HTTPFilterType is the kind of an HTTPRoute filter.
type HTTPFilterType string

// HTTP filter types, as in the Gateway API.
const (
	FilterRequestHeaderModifier  HTTPFilterType = "RequestHeaderModifier"
	FilterResponseHeaderModifier HTTPFilterType = "ResponseHeaderModifier"
	FilterRequestRedirect        HTTPFilterType = "RequestRedirect"
	FilterURLRewrite             HTTPFilterType = "URLRewrite"
	FilterRequestMirror          HTTPFilterType = "RequestMirror"
	FilterExtensionRef           HTTPFilterType = "ExtensionRef"
	FilterCORS                   HTTPFilterType = "CORS"
)

// HTTPFilter is one filter of a rule or backend; the field of its Type is
// set.
type HTTPFilter struct {
	Type            HTTPFilterType
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Redirect        *Redirect
	Rewrite         *URLRewrite
	Mirror          *Mirror
	ExtensionRef    *Ref
	CORS            *CORS
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// HostHeader returns the name of a Host header the modifier sets, adds or
// removes, or "" (also for a nil modifier).
func (m *HeaderModifier) HostHeader() string {
	if m == nil {
		return ""
	}
	for _, hs := range [][]Header{m.Set, m.Add} {
		for _, h := range hs {
			if strings.EqualFold(h.Name, "host") {
				return h.Name
			}
		}
	}
	for _, n := range m.Remove {
		if strings.EqualFold(n, "host") {
			return n
		}
	}
	return ""
}

// Header is a header name and value.
type Header struct {
	Name, Value string
}

// PathModifierType is how a redirect or rewrite changes the path.
type PathModifierType string

// Path modifiers, as in the Gateway API.
const (
	ReplaceFullPath    PathModifierType = "ReplaceFullPath"
	ReplacePrefixMatch PathModifierType = "ReplacePrefixMatch"
)

// PathModifier replaces the path, or the part the rule's prefix matched.
type PathModifier struct {
	Type  PathModifierType
	Value string
}

// Redirect answers with a redirect; empty fields keep the request's.
type Redirect struct {
	Scheme     string
	Hostname   string
	Port       uint32
	Path       *PathModifier
	StatusCode int
}

// URLRewrite changes the request before forwarding.
type URLRewrite struct {
	Hostname string
	Path     *PathModifier
}

// Mirror sends a copy of requests to another backend; Percent of them
// (100 when unset).
type Mirror struct {
	Backend Backend
	Percent int
}

// CORS is a CORS filter: how cross-origin requests, and their preflight
// requests, are answered.
type CORS struct {
	// AllowOrigins are origins as scheme://host[:port], where the host may
	// start with a "*" wildcard (any labels to its left); "*" alone allows
	// every origin.
	AllowOrigins []string
	// AllowMethods, AllowHeaders and ExposeHeaders may be ["*"].
	AllowMethods     []string
	AllowHeaders     []string
	ExposeHeaders    []string
	AllowCredentials bool
	// MaxAge is how long, in seconds, a client may cache a preflight
	// answer; the Gateway API default is 5.
	MaxAge int32
}

// Backend is a weighted destination of a route rule.
type Backend struct {
	// Kind is "Service" for a core Service; another kind is written
	// "Kind.group" and is not a destination Trellis can send to.
	Kind string
	// Service names the referenced object (a Service when Kind is
	// "Service").
	Service Key
	// Port is zero when unset.
	Port   uint32
	Weight uint32
	// Filters apply to requests sent to this backend only.
	Filters []HTTPFilter
}

// IsService reports whether the backend is a core Service.
func (b Backend) IsService() bool { return b.Kind == "Service" }

// GRPCRoute is a Gateway API GRPCRoute.
type GRPCRoute struct {
	Route
	Rules []GRPCRouteRule
}

// GRPCRouteRule is one rule of a GRPCRoute.
type GRPCRouteRule struct {
	Name     string
	Matches  []GRPCMatch
	Filters  []HTTPFilter
	Backends []Backend
}

// GRPCMatch selects calls by service, method and headers; an empty
// service or method matches any.
type GRPCMatch struct {
	Type    StringMatchType
	Service string
	Method  string
	Headers []ValueMatch
}

// TLSRoute routes TLS connections by SNI without terminating them.
type TLSRoute struct {
	Route
	Rules []L4Rule
}

// TCPRoute forwards TCP connections on a listener's port.
type TCPRoute struct {
	Route
	Rules []L4Rule
}

// L4Rule is a rule of a TLSRoute or TCPRoute.
type L4Rule struct {
	Name     string
	Backends []Backend
}
