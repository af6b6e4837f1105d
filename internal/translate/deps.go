package translate

import (
	"maps"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// Dependencies of a proxy's config: the parts of the model it was built
// from, so that a change elsewhere need not rebuild it. A key names
//
//	svc/NS/NAME   a Service, with the routes attached to it, its members and
//	              the BackendPolicies targeting it
//	ep/NS/NAME    the endpoints of a Service: its members' addresses, ports
//	              and localities
//	ns/NS         the Services of a namespace (which exist, which select a workload)
//	gw/NS/NAME    a Gateway, with the routes attached to it
//	ls/NS/NAME    a ListenerSet, with the routes attached to it
//	net/NAME      the east-west gateways of a network (network.go); their
//	              addresses are under their gw/ keys
//	access/NS     the AccessPolicies of a namespace without targetRefs
//	access/svc/NS/NAME, access/gw/NS/NAME
//	              the AccessPolicies targeting a Service or a Gateway
//
// The control plane maps each change to the keys it touches and rebuilds
// the proxies that depend on one of them: a Service change touches its
// svc/ and ns/ keys; a Workload or a registration touches the svc/ keys of
// the services selecting it (before and after the change), so that
// endpoint churn rebuilds only the callers of those services.
//
// A workload change touches ep/ keys only, never svc/ keys: members are
// read only by outboundCluster (through clusterMembers), and a proxy whose
// changed dependencies are all ep/ keys has just the clusters of those
// services rebuilt (RefreshEndpoints). What else a member might change of
// a cluster (its mesh identities) is caught there by comparing the
// rebuilt cluster with the one pushed: a difference sends the proxy
// through a full translation.

// ServiceKey, NamespaceKey and GatewayKey build dependency keys.
func ServiceKey(k model.Key) string { return "svc/" + k.String() }

// NamespaceKey is the dependency key of what a namespace holds.
func NamespaceKey(ns string) string { return "ns/" + ns }

// GatewayKey is the dependency key of a Gateway.
func GatewayKey(k model.Key) string { return "gw/" + k.String() }

func (b *builder) dependOn(keys ...string) {
	if b.deps == nil {
		b.deps = map[string]bool{}
	}
	for _, k := range keys {
		b.deps[k] = true
	}
}

// service looks a service up, recording the dependency (also when it does
// not exist: its creation matters).
func (b *builder) service(k model.Key) *model.Service {
	b.dependOn(ServiceKey(k), NamespaceKey(k.Namespace))
	return b.in.Index.Service(k)
}

// EndpointsKey is the dependency key of a Service's endpoints.
func EndpointsKey(k model.Key) string { return "ep/" + k.String() }

// EndpointsKeyService returns the Service an ep/ key names.
func EndpointsKeyService(key string) (model.Key, bool) {
	rest, ok := strings.CutPrefix(key, "ep/")
	if !ok {
		return model.Key{}, false
	}
	ns, name, ok := strings.Cut(rest, "/")
	return model.Key{Namespace: ns, Name: name}, ok && ns != "" && name != ""
}

// clusterMembers returns a service's workloads for its outbound cluster,
// recording the dependencies. Nothing but outboundCluster may read
// members: RefreshEndpoints rebuilds only clusters when they change.
func (b *builder) clusterMembers(s *model.Service) []*model.Workload {
	b.dependOn(ServiceKey(s.Key), NamespaceKey(s.Namespace), EndpointsKey(s.Key))
	return b.in.Index.Members(s.Key)
}

// memberOf returns the services of a workload, recording the dependency.
func (b *builder) memberOf(w *model.Workload) []*model.Service {
	b.dependOn(NamespaceKey(w.Namespace))
	return b.in.Index.MemberOf(w.Key)
}

// parentKey is the dependency key of a route parent: the routes attached
// to a Service or a Gateway are part of what its key stands for, and a
// route's change touches the keys of its parents.
func parentKey(kind model.ParentKind, k model.Key) string {
	switch kind {
	case model.ParentGateway:
		return GatewayKey(k)
	case model.ParentListenerSet:
		return ListenerSetKey(k)
	}
	return ServiceKey(k)
}

// ListenerSetKey is the dependency key of a ListenerSet, with the routes
// attached to it. (The control plane rebuilds every proxy when a
// ListenerSet, or a route attached to one, changes.)
func ListenerSetKey(k model.Key) string { return "ls/" + k.String() }

// listenerSetsOf returns the ListenerSets that name Gateway g as their
// parent, in key order, recording the dependency on each.
func (b *builder) listenerSetsOf(g model.Key) []*model.ListenerSet {
	var out []*model.ListenerSet
	for _, s := range b.in.Config.ListenerSets {
		if s.Gateway == g {
			b.dependOn(ListenerSetKey(s.Key))
			out = append(out, s)
		}
	}
	return out
}

// httpRoutesOf, grpcRoutesOf, tcpRoutesOf and tlsRoutesOf return the
// routes attached to a parent, recording the dependency: whoever builds
// from a parent's routes must be rebuilt when one of them changes.
func (b *builder) httpRoutesOf(kind model.ParentKind, k model.Key) []*model.HTTPRoute {
	b.dependOn(parentKey(kind, k))
	return b.in.Index.HTTPRoutesOf(kind, k)
}

func (b *builder) grpcRoutesOf(kind model.ParentKind, k model.Key) []*model.GRPCRoute {
	b.dependOn(parentKey(kind, k))
	return b.in.Index.GRPCRoutesOf(kind, k)
}

func (b *builder) tcpRoutesOf(kind model.ParentKind, k model.Key) []*model.TCPRoute {
	b.dependOn(parentKey(kind, k))
	return b.in.Index.TCPRoutesOf(kind, k)
}

func (b *builder) tlsRoutesOf(kind model.ParentKind, k model.Key) []*model.TLSRoute {
	b.dependOn(parentKey(kind, k))
	return b.in.Index.TLSRoutesOf(kind, k)
}

// backendPoliciesTargeting returns the BackendPolicies that target a
// Service, recording the dependency (a BackendPolicy's change touches the
// keys of the Services it targets).
func (b *builder) backendPoliciesTargeting(k model.Key) []*model.BackendPolicy {
	b.dependOn(ServiceKey(k))
	return b.in.Index.BackendPoliciesTargeting(k)
}

// gatewayOf looks a Gateway up, recording the dependency.
func (b *builder) gatewayOf(k model.Key) *model.Gateway {
	b.dependOn(GatewayKey(k))
	return b.in.Index.Gateway(k)
}

// namespaceLabels returns the labels of the known namespaces, which
// allowedRoutes selectors are evaluated against. There is no dependency
// key for them: a Namespace's change, like a ReferenceGrant's, rebuilds
// every proxy (the control plane maps kinds it has no keys for to all
// proxies).
func (b *builder) namespaceLabels() map[string]map[string]string {
	return b.in.Config.Namespaces
}

// granted reports whether an object of kind from in namespace fromNS may
// reference to (a ReferenceGrant's change rebuilds every proxy; see
// namespaceLabels).
func (b *builder) granted(from model.GroupKind, fromNS string, to model.Ref) bool {
	return b.in.Index.Granted(from, fromNS, to)
}

// namespaceServices returns the services of a namespace, recording the
// dependency.
func (b *builder) namespaceServices(ns string) []*model.Service {
	b.dependOn(NamespaceKey(ns))
	var out []*model.Service
	for _, s := range b.in.Config.Services {
		if s.Namespace == ns {
			out = append(out, s)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// AccessNamespaceKey is the dependency key of the AccessPolicies of a
// namespace that have no targetRefs (they apply to all its workloads).
func AccessNamespaceKey(ns string) string { return "access/" + ns }

// AccessServiceKey is the dependency key of the AccessPolicies that
// target a Service (they apply to its members).
func AccessServiceKey(k model.Key) string { return "access/svc/" + k.String() }

// AccessGatewayKey is the dependency key of the AccessPolicies that
// target a Gateway.
func AccessGatewayKey(k model.Key) string { return "access/gw/" + k.String() }

// AccessPolicyKeys are the dependency keys an AccessPolicy touches: those
// of the proxies it may apply to. A target of another kind concerns no
// proxy.
func AccessPolicyKeys(p *model.AccessPolicy) []string {
	if len(p.Targets) == 0 {
		return []string{AccessNamespaceKey(p.Namespace)}
	}
	var keys []string
	for _, t := range p.Targets {
		k := model.Key{Namespace: p.Namespace, Name: t.Name}
		switch {
		case t.IsService():
			keys = append(keys, AccessServiceKey(k))
		case t.IsGateway():
			keys = append(keys, AccessGatewayKey(k))
		}
	}
	return keys
}
