package model

import "strings"

// GatewayClass is a class of Gateways and the controller that serves it.
type GatewayClass struct {
	Name           string
	Source         Source
	ControllerName string
}

// Gateway is a Gateway API Gateway: one gateway instance with its own
// addresses and listeners.
type Gateway struct {
	Key
	Source    Source
	ClassName string
	// Addresses are the addresses requested in spec.addresses.
	Addresses []string
	Listeners []Listener
	// AllowListenerSets tells which namespaces' ListenerSets may attach
	// (spec.allowedListeners): nil allows none.
	AllowListenerSets *NamespaceFilter
	// Network is the Gateway's trellis.dev/network label: the network
	// whose east-west gateway it is when it has an east-west listener
	// (network.go).
	Network string
	// ServiceType is the type of the Gateway's Service on Kubernetes that
	// its annotation ServiceTypeAnnotation asks for (in
	// spec.infrastructure.annotations, else on the Gateway), read at
	// ServiceTypeField; "" asks for the default, LoadBalancer.
	ServiceType, ServiceTypeField string
	// ParametersRef is spec.infrastructure.parametersRef as written
	// ("Kind.group/name"), "" when unset. Trellis has no parameters kind:
	// a Gateway that names one is not accepted (InvalidParameters).
	ParametersRef string
}

// ServiceTypeAnnotation chooses the type of a Gateway's Service on
// Kubernetes.
const ServiceTypeAnnotation = "trellis.dev/service-type"

// ServiceTypes are the Service types Trellis makes for Gateways.
var ServiceTypes = []string{"LoadBalancer", "ClusterIP", "NodePort"}

// ListenerSet adds listeners to a Gateway it does not own.
type ListenerSet struct {
	Key
	Source    Source
	Gateway   Key
	Listeners []Listener
}

// TLSMode is how a listener treats TLS.
type TLSMode string

// TLS modes of a listener.
const (
	TLSTerminate   TLSMode = "Terminate"
	TLSPassthrough TLSMode = "Passthrough"
)

// Listener is one listener of a Gateway or ListenerSet.
type Listener struct {
	Name     string
	Port     uint32
	Protocol Protocol
	// Hostname restricts the listener to matching Host headers or SNI
	// names; empty matches all.
	Hostname string
	// TLS is set for HTTPS and TLS listeners.
	TLS *ListenerTLS
	// AllowedRoutes says which routes may attach.
	AllowedRoutes AllowedRoutes
}

// ListenerTLS is a listener's TLS configuration.
type ListenerTLS struct {
	Mode            TLSMode
	CertificateRefs []Ref
	// Options are tls.options, implementation-specific settings
	// (EastWestOption).
	Options map[string]string
}

// AllowedRoutes filters the routes that may attach to a listener.
type AllowedRoutes struct {
	Namespaces NamespaceFilter
	// Kinds are the route kinds allowed; empty means those that fit the
	// listener's protocol.
	Kinds []GroupKind
}

// From says which namespaces a filter admits.
type From string

// Namespace filters.
const (
	FromSame     From = "Same"
	FromAll      From = "All"
	FromSelector From = "Selector"
)

// NamespaceFilter admits namespaces: the owner's own, all, or those whose
// labels a selector matches.
type NamespaceFilter struct {
	From     From
	Selector *Selector
}

// GroupKind names a kind of resource.
type GroupKind struct {
	Group string
	Kind  string
}

// String formats the kind as Kind or Kind.group.
func (gk GroupKind) String() string {
	if gk.Group == "" {
		return gk.Kind
	}
	return gk.Kind + "." + gk.Group
}

// Well-known groups.
const (
	GatewayGroup = "gateway.networking.k8s.io"
	TrellisGroup = "trellis.dev"
)

// Selector is a Kubernetes label selector.
type Selector struct {
	MatchLabels map[string]string
	Expressions []SelectorRequirement
}

// SelectorRequirement is one matchExpressions entry.
type SelectorRequirement struct {
	Key string
	// Operator is In, NotIn, Exists or DoesNotExist.
	Operator string
	Values   []string
}

// Matches reports whether labels satisfy the selector. An empty selector
// matches everything.
func (s *Selector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.Expressions {
		v, ok := labels[r.Key]
		in := false
		for _, want := range r.Values {
			if v == want {
				in = true
			}
		}
		switch r.Operator {
		case "In":
			if !ok || !in {
				return false
			}
		case "NotIn":
			if ok && in {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Ref is a reference to a resource by group, kind, namespace and name.
type Ref struct {
	Group, Kind string
	Key
}

// GroupKind returns the reference's kind.
func (r Ref) GroupKind() GroupKind { return GroupKind{Group: r.Group, Kind: r.Kind} }

// String formats the reference as "Kind namespace/name".
func (r Ref) String() string { return r.GroupKind().String() + " " + r.Key.String() }

// HostnameMatches reports whether a concrete or wildcard hostname h falls
// under pattern, which may be a wildcard (*.example.com needs at least one
// more label). Both are lowercase.
func HostnameMatches(pattern, h string) bool {
	if pattern == h {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
	}
	return false
}

// IntersectHostnames returns the hostnames a route with hostnames route
// serves on a listener with hostname listener, as the Gateway API defines
// it: the more specific of each matching pair; "*" stands for any host.
func IntersectHostnames(listener string, route []string) []string {
	if len(route) == 0 {
		if listener == "" {
			return []string{"*"}
		}
		return []string{listener}
	}
	if listener == "" {
		return route
	}
	var out []string
	for _, h := range route {
		switch {
		case HostnameMatches(listener, h):
			out = append(out, h)
		case HostnameMatches(h, listener):
			out = append(out, listener)
		}
	}
	return out
}
