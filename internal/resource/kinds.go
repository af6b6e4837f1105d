package resource

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
)

// KindInfo describes a supported resource kind.
type KindInfo struct {
	Kind       string // canonical kind, e.g. "HTTPRoute"
	Group      string // API group; "" for core
	Version    string // preferred version
	Namespaced bool
	Plural     string // lowercase plural, e.g. "httproutes"
	ShortNames []string
	// New returns a new, empty typed object: *gwv1.HTTPRoute,
	// *corev1.Service, *v1alpha1.Workload, ...
	New func() any

	// otherVersions are further versions accepted on input with the same
	// schema (ReferenceGrant is served at v1beta1 too).
	otherVersions []string
}

// APIVersion returns the preferred apiVersion, group/version ("v1" for core).
func (k KindInfo) APIVersion() string { return groupVersion(k.Group, k.Version) }

// APIVersions returns every apiVersion accepted for the kind, the preferred
// one first.
func (k KindInfo) APIVersions() []string {
	out := []string{k.APIVersion()}
	for _, v := range k.otherVersions {
		out = append(out, groupVersion(k.Group, v))
	}
	return out
}

func groupVersion(group, version string) string {
	if group == "" {
		return version
	}
	return group + "/" + version
}

const (
	gatewayGroup = gwv1.GroupName // gateway.networking.k8s.io
	trellisGroup = "trellis.dev"
)

// kinds is sorted by Kind.
var kinds = func() []KindInfo {
	ks := []KindInfo{
		{Kind: "GatewayClass", Group: gatewayGroup, Version: "v1", Plural: "gatewayclasses", ShortNames: []string{"gc"},
			New: func() any { return new(gwv1.GatewayClass) }},
		{Kind: "Gateway", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "gateways", ShortNames: []string{"gtw"},
			New: func() any { return new(gwv1.Gateway) }},
		{Kind: "ListenerSet", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "listenersets", ShortNames: []string{"lset"},
			New: func() any { return new(gwv1.ListenerSet) }},
		{Kind: "HTTPRoute", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "httproutes",
			New: func() any { return new(gwv1.HTTPRoute) }},
		{Kind: "GRPCRoute", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "grpcroutes",
			New: func() any { return new(gwv1.GRPCRoute) }},
		{Kind: "TLSRoute", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "tlsroutes",
			New: func() any { return new(gwv1.TLSRoute) }},
		{Kind: "TCPRoute", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "tcproutes",
			New: func() any { return new(gwv1.TCPRoute) }},
		// v1beta1 ReferenceGrant has the v1 schema (and is still the
		// storage version in v1.6), so both decode into gwv1.ReferenceGrant.
		{Kind: "ReferenceGrant", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "referencegrants", ShortNames: []string{"refgrant"},
			New: func() any { return new(gwv1.ReferenceGrant) }, otherVersions: []string{"v1beta1"}},
		{Kind: "BackendTLSPolicy", Group: gatewayGroup, Version: "v1", Namespaced: true, Plural: "backendtlspolicies", ShortNames: []string{"btlspolicy"},
			New: func() any { return new(gwv1.BackendTLSPolicy) }},
		{Kind: "Service", Group: "", Version: "v1", Namespaced: true, Plural: "services", ShortNames: []string{"svc"},
			New: func() any { return new(corev1.Service) }},
		{Kind: "Workload", Group: trellisGroup, Version: "v1alpha1", Namespaced: true, Plural: "workloads", ShortNames: []string{"wl"},
			New: func() any { return new(v1alpha1.Workload) }},
		{Kind: "MTLSPolicy", Group: trellisGroup, Version: "v1alpha1", Namespaced: true, Plural: "mtlspolicies", ShortNames: []string{"mtls"},
			New: func() any { return new(v1alpha1.MTLSPolicy) }},
		{Kind: "AccessPolicy", Group: trellisGroup, Version: "v1alpha1", Namespaced: true, Plural: "accesspolicies", ShortNames: []string{"ap"},
			New: func() any { return new(v1alpha1.AccessPolicy) }},
		{Kind: "BackendPolicy", Group: trellisGroup, Version: "v1alpha1", Namespaced: true, Plural: "backendpolicies", ShortNames: []string{"bp"},
			New: func() any { return new(v1alpha1.BackendPolicy) }},
	}
	slices.SortFunc(ks, func(a, b KindInfo) int { return strings.Compare(a.Kind, b.Kind) })
	return ks
}()

// Kinds returns every supported kind, sorted by Kind.
func Kinds() []KindInfo { return slices.Clone(kinds) }

// LookupKind finds a kind by name, case-insensitively: the kind itself
// ("HTTPRoute", "httproute"), its plural ("httproutes") or a short name
// ("svc", "gtw"), optionally qualified by its group as kubectl accepts
// ("httproutes.gateway.networking.k8s.io", "services.core").
func LookupKind(name string) (KindInfo, bool) {
	name = strings.ToLower(strings.TrimSpace(name))
	base, group, qualified := strings.Cut(name, ".")
	if group == "core" {
		group = ""
	}
	for _, k := range kinds {
		if qualified && group != k.Group {
			continue
		}
		if base == strings.ToLower(k.Kind) || base == k.Plural || slices.Contains(k.ShortNames, base) {
			return k, true
		}
	}
	return KindInfo{}, false
}

// kindByName returns the kind spelled exactly kind, as in a document's
// kind field.
func kindByName(kind string) (KindInfo, bool) {
	for _, k := range kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

func kindNames() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Kind
	}
	return names
}
