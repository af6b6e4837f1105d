package translate

import (
	"maps"
	"slices"

	"trellis.dev/trellis/internal/model"
)

// Dependencies of a proxy's config: the parts of the model it was built
// from, so that a change elsewhere need not rebuild it. A key names
//
//	svc/NS/NAME   a Service, with the routes attached to it and the
//	              BackendPolicies targeting it
//	ns/NS         the Services and Workloads of a namespace (membership, endpoints)
//	gw/NS/NAME    a Gateway, with the routes attached to it
//
// The control plane maps each change to the keys it touches and rebuilds
// the proxies that depend on one of them.

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

// members returns a service's workloads, recording the dependency.
func (b *builder) members(s *model.Service) []*model.Workload {
	b.dependOn(ServiceKey(s.Key), NamespaceKey(s.Namespace))
	return b.in.Index.Members(s.Key)
}

// memberOf returns the services of a workload, recording the dependency.
func (b *builder) memberOf(w *model.Workload) []*model.Service {
	b.dependOn(NamespaceKey(w.Namespace))
	return b.in.Index.MemberOf(w.Key)
}

// gatewayOf looks a Gateway up, recording the dependency.
func (b *builder) gatewayOf(k model.Key) *model.Gateway {
	b.dependOn(GatewayKey(k))
	return b.in.Index.Gateway(k)
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
