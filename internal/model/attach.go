package model

import (
	"cmp"
	"slices"
	"strings"
)

// Route attachment to Gateway listeners, as the Gateway API defines it.
// The analyzer (which reports why a route does not attach) and the
// translator (which builds what does) both decide with these functions,
// so that what is reported and what is served never disagree.

// Route kinds, as parentRefs and allowedRoutes name them.
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
	KindTLSRoute  = "TLSRoute"
	KindTCPRoute  = "TCPRoute"
	KindUDPRoute  = "UDPRoute"
)

// Rejection says why a route does not attach to a listener.
type Rejection int

// Reasons a route does not attach to a listener, in the order they are
// judged.
const (
	Attached Rejection = iota
	// RejectSection: the parentRef's sectionName or port names another
	// listener.
	RejectSection
	// RejectKind: the listener's allowedRoutes.kinds (or its protocol)
	// does not admit the route's kind.
	RejectKind
	// RejectSelectorUnknown: the listener admits namespaces by label
	// selector, and the route namespace's labels are unknown.
	RejectSelectorUnknown
	// RejectNamespace: allowedRoutes.namespaces does not admit the route's
	// namespace.
	RejectNamespace
	// RejectHostname: no hostname of the route falls under the listener's.
	RejectHostname
)

// DefaultRouteKinds are the route kinds a listener admits when
// allowedRoutes names none.
func DefaultRouteKinds(l *Listener) []string {
	switch l.Protocol {
	case ProtocolHTTP, ProtocolHTTPS:
		return []string{KindHTTPRoute, KindGRPCRoute}
	case ProtocolTLS:
		if l.TLS != nil && l.TLS.Mode == TLSTerminate {
			return []string{KindTCPRoute}
		}
		return []string{KindTLSRoute}
	case ProtocolTCP:
		return []string{KindTCPRoute}
	case ProtocolUDP:
		return []string{KindUDPRoute}
	}
	return nil
}

// AdmitsKind reports whether listener l admits routes of kind: a kind
// its protocol serves, and one of allowedRoutes.kinds when they are set
// (a kind listed there that the protocol does not serve is not admitted:
// the listener's ResolvedRefs says InvalidRouteKinds).
func (l *Listener) AdmitsKind(kind string) bool {
	if !slices.Contains(DefaultRouteKinds(l), kind) {
		return false
	}
	if len(l.AllowedRoutes.Kinds) == 0 {
		return true
	}
	for _, k := range l.AllowedRoutes.Kinds {
		if k.Kind == kind && (k.Group == GatewayGroup || k.Group == "") {
			return true
		}
	}
	return false
}

// Transport groups the listener protocols that can share a port: HTTP
// alone, HTTPS and TLS together (connections told apart by SNI), TCP
// alone, UDP alone.
func Transport(p Protocol) string {
	switch p {
	case ProtocolHTTPS, ProtocolTLS:
		return "TLS"
	case ProtocolUDP:
		return "UDP"
	default:
		return string(p)
	}
}

// HasHostnames reports whether listeners of protocol p match hostnames
// (Host headers or SNI names).
func HasHostnames(p Protocol) bool {
	return p == ProtocolHTTP || p == ProtocolHTTPS || p == ProtocolTLS
}

// Admits evaluates a namespace filter owned by an object in namespace
// owner for namespace ns, with the labels of the known namespaces. known
// is false when the filter is a selector and ns's labels are unknown.
func (f NamespaceFilter) Admits(owner, ns string, labels map[string]map[string]string) (admitted, known bool) {
	switch f.From {
	case FromAll:
		return true, true
	case FromSelector:
		l, ok := labels[ns]
		if !ok || f.Selector == nil {
			return false, false
		}
		return f.Selector.Matches(l), true
	default:
		return ns == owner, true
	}
}

// SelectsListener reports whether parentRef p names listener l (by
// sectionName and port, when set).
func (p ParentRef) SelectsListener(l *Listener) bool {
	return (p.SectionName == "" || p.SectionName == l.Name) && (p.Port == 0 || p.Port == l.Port)
}

// AttachToListener decides whether route r, of kind, attaches through
// parentRef p to listener l of a Gateway (or ListenerSet) in namespace
// owner, and returns the hostnames it serves there: those of
// IntersectHostnames, or [""] on a listener without hostnames. labels are
// the known namespaces' labels (Config.Namespaces).
func AttachToListener(kind string, r *Route, p ParentRef, l *Listener, owner string, labels map[string]map[string]string) ([]string, Rejection) {
	if !p.SelectsListener(l) {
		return nil, RejectSection
	}
	if !l.AdmitsKind(kind) {
		return nil, RejectKind
	}
	ok, known := l.AllowedRoutes.Namespaces.Admits(owner, r.Namespace, labels)
	switch {
	case !known:
		return nil, RejectSelectorUnknown
	case !ok:
		return nil, RejectNamespace
	}
	if !HasHostnames(l.Protocol) {
		return []string{""}, Attached
	}
	hosts := IntersectHostnames(l.Hostname, r.Hostnames)
	if len(hosts) == 0 {
		return nil, RejectHostname
	}
	return hosts, Attached
}

// MostSpecificListener returns which of the listener hostnames of one
// port (empty: any host) serves host, a concrete or wildcard hostname: an
// exact match, else the longest wildcard that covers it, else a listener
// without a hostname. The Gateway API gives requests (and TLS connections)
// to the most specific listener, so a route attached to a less specific
// one does not serve that host: a team's route on a catch-all listener
// cannot take the hostname of another team's listener. ok is false when
// no listener covers host.
func MostSpecificListener(listenerHosts []string, host string) (best string, ok bool) {
	rank := func(h string) int {
		switch {
		case h == "":
			return 0
		case strings.HasPrefix(h, "*"):
			return len(h)
		}
		return 1 << 20
	}
	for _, lh := range listenerHosts {
		if lh != "" && !HostnameMatches(lh, host) {
			continue
		}
		if !ok || cmp.Compare(rank(lh), rank(best)) > 0 {
			best, ok = lh, true
		}
	}
	return best, ok
}
