package model

import (
	"slices"
	"strings"
)

// Policy attachment and AccessPolicy patterns, shared by the analyzer and
// the translator so that both agree on what a policy applies to.

// IsService reports whether the target names a core Service.
func (t TargetRef) IsService() bool { return t.Group == "" && t.Kind == "Service" }

// IsGateway reports whether the target names a Gateway API Gateway.
func (t TargetRef) IsGateway() bool { return t.Group == GatewayGroup && t.Kind == "Gateway" }

// PolicySelects reports whether a policy of namespace ns with targets
// applies to workload w. With no targets it applies to every workload of
// ns; else to the members of the Services it targets in ns. A target of
// another kind (a Gateway) or naming a Service that does not exist
// selects no workload.
func (ix *Index) PolicySelects(ns string, targets []TargetRef, w *Workload) bool {
	if w.Namespace != ns {
		return false
	}
	if len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		if !t.IsService() {
			continue
		}
		if s := ix.Service(Key{Namespace: ns, Name: t.Name}); s != nil && s.Selects(w) {
			return true
		}
	}
	return false
}

// AccessPoliciesFor returns the AccessPolicies of c that apply to w, in
// key order. ix must be built from c.
func AccessPoliciesFor(c *Config, ix *Index, w *Workload) []*AccessPolicy {
	var out []*AccessPolicy
	for _, p := range ix.accessPolicies[w.Namespace] {
		if ix.PolicySelects(p.Namespace, p.Targets, w) {
			out = append(out, p)
		}
	}
	return out
}

// PolicyWorkloads returns the workloads a policy of namespace ns with
// targets applies to, in key order: those PolicySelects selects, found
// through the indexes rather than by testing every workload.
func (ix *Index) PolicyWorkloads(ns string, targets []TargetRef) []*Workload {
	if len(targets) == 0 {
		return ix.nsWorkloads[ns]
	}
	var out []*Workload
	services := 0
	for _, t := range targets {
		if t.IsService() {
			out = append(out, ix.Members(Key{Namespace: ns, Name: t.Name})...)
			services++
		}
	}
	if services > 1 {
		slices.SortFunc(out, func(a, b *Workload) int { return a.Key.Compare(b.Key) })
		out = slices.Compact(out)
	}
	return out
}

// TargetsGateway reports whether any target of p names Gateway g (in p's
// namespace).
func (p *AccessPolicy) TargetsGateway(g Key) bool {
	if p.Namespace != g.Namespace {
		return false
	}
	for _, t := range p.Targets {
		if t.IsGateway() && t.Name == g.Name {
			return true
		}
	}
	return false
}

// HTTPOnly reports whether the target has conditions only HTTP requests
// carry: paths, methods or headers.
func (t AccessTarget) HTTPOnly() bool {
	return len(t.Paths) > 0 || len(t.Methods) > 0 || len(t.Headers) > 0
}

// AccessPathKind is how an AccessPolicy path pattern matches.
type AccessPathKind int

// Path pattern kinds, as in Istio: "*" matches every path, "/api/*" a
// prefix ("/api/"), "*.png" a suffix (".png"), anything else exactly.
const (
	AccessPathExact AccessPathKind = iota
	AccessPathPrefix
	AccessPathSuffix
	AccessPathAny
)

// ParseAccessPath splits a path pattern into its kind and the literal
// part to match. Only a leading or a trailing * is a wildcard; a * elsewhere
// is a literal character.
func ParseAccessPath(pattern string) (AccessPathKind, string) {
	switch {
	case pattern == "*":
		return AccessPathAny, ""
	case strings.HasSuffix(pattern, "*"):
		return AccessPathPrefix, strings.TrimSuffix(pattern, "*")
	case strings.HasPrefix(pattern, "*"):
		return AccessPathSuffix, strings.TrimPrefix(pattern, "*")
	default:
		return AccessPathExact, pattern
	}
}
