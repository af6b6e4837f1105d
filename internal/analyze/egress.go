package analyze

import (
	"trellis.dev/trellis/internal/model"
)

// Egress: AccessPolicies on Gateways and routes on ExternalName Services
// (TRL2030-TRL2031).
//
// A Gateway enforces the AccessPolicies that target it on every listener,
// but only clients that reach it over mesh mTLS (its mesh port: an egress
// gateway) have an identity: rules matching sources by identity or
// namespace never match the others (TRL2030, information). A route whose
// parent is an ExternalName Service routes what sidecars send through
// explicit upstreams only: a capturing sidecar sees an app's connection
// to the name's address, not the name (TRL2031).

// egress runs the egress checks.
func (a *analyzer) egress() {
	for _, p := range a.c.AccessPolicies {
		if !hasSources(p) {
			continue
		}
		for i, t := range p.Targets {
			key := model.Key{Namespace: p.Namespace, Name: t.Name}
			if t.IsGateway() && a.gws[key] != nil {
				a.add(CodeGatewayIdentity, resource(p.Source), index("spec.targetRefs", i),
					"Gateway %s sees the identity of mesh clients only (through its mesh port); the %s rules naming sources never match its other clients", key, p.Action)
			}
		}
	}
	check := func(src model.Source, parents []model.ParentRef) {
		for i, pr := range parents {
			if pr.Kind != model.ParentService {
				continue
			}
			if s := a.ix.Service(pr.Key); s != nil && s.ExternalName != "" {
				a.add(CodeExternalNameRoute, resource(src), index("spec.parentRefs", i),
					"Service %s is of type ExternalName (%s): the route applies to sidecars' explicit upstreams of it, not to captured connections to %s's addresses",
					pr.Key, s.ExternalName, s.ExternalName)
			}
		}
	}
	for _, r := range a.c.HTTPRoutes {
		check(r.Source, r.Parents)
	}
	for _, r := range a.c.GRPCRoutes {
		check(r.Source, r.Parents)
	}
	for _, r := range a.c.TCPRoutes {
		check(r.Source, r.Parents)
	}
}

// hasSources reports whether a rule of p matches callers by identity or
// namespace.
func hasSources(p *model.AccessPolicy) bool {
	for _, r := range p.Rules {
		for _, f := range r.From {
			if len(f.Identities) > 0 || len(f.Namespaces) > 0 {
				return true
			}
		}
	}
	return false
}
