package analyze

import (
	"fmt"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// scope is what a policy applies to: the workloads behind its target
// Services, or its whole namespace.
type scope struct {
	key      string // "service ns/name" or "namespace ns"
	service  *model.Service
	field    string
	describe string
}

// scopes resolves a policy's targets, reporting those that name nothing.
func (a *analyzer) scopes(res Resource, ns string, targets []model.TargetRef) []scope {
	if len(targets) == 0 {
		return []scope{{key: "namespace " + ns, describe: "namespace " + ns}}
	}
	var out []scope
	for i, t := range targets {
		field := index("spec.targetRefs", i)
		key := model.Key{Namespace: ns, Name: t.Name}
		switch {
		case t.Group == "" && t.Kind == "Service":
			s := a.ix.Service(key)
			if s == nil {
				a.add(CodeNoTarget, res, field, "Service %s does not exist", key)
				continue
			}
			out = append(out, scope{key: "service " + key.String(), service: s, field: field, describe: "Service " + key.String()})
		case t.Group == model.GatewayGroup && t.Kind == "Gateway" && res.Kind == "AccessPolicy":
			if a.gws[key] == nil {
				a.add(CodeNoTarget, res, field, "Gateway %s does not exist", key)
			}
		default:
			a.add(CodeNoTarget, res, field, "%s cannot be the target of a %s", t.GroupKind, res.Kind)
		}
	}
	return out
}

// workloads returns the workloads in a scope, as the translator resolves
// a policy's targets (model.Index.PolicySelects).
func (a *analyzer) workloads(s scope, ns string) []*model.Workload {
	var targets []model.TargetRef
	if s.service != nil {
		targets = []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: s.service.Name}}
	}
	return a.ix.PolicyWorkloads(ns, targets)
}

// policies checks MTLSPolicies, AccessPolicies and BackendPolicies against
// each other and against the workloads they select.
func (a *analyzer) policies() {
	backendTLS := map[string][]*model.BackendPolicy{} // by service key
	for _, p := range a.c.BackendPolicies {
		for _, s := range a.scopes(resource(p.Source), p.Namespace, p.Targets) {
			if s.service != nil {
				backendTLS[s.service.Key.String()] = append(backendTLS[s.service.Key.String()], p)
			}
		}
	}
	a.accessPolicies()
	a.accessTranslation()
	a.backendPolicies()

	byScope := map[string]*model.MTLSPolicy{}
	for _, p := range a.c.MTLSPolicies {
		res := resource(p.Source)
		for _, s := range a.scopes(res, p.Namespace, p.Targets) {
			if prev, ok := byScope[s.key]; ok && (prev.Mode != p.Mode || !slices.Equal(prev.Ports, p.Ports)) {
				a.add(CodeMTLSConflict, res, "spec.mode", "MTLSPolicy %s also applies to %s with mode %s; which one wins is not defined", prev.Key, s.describe, prev.Mode)
			} else if !ok {
				byScope[s.key] = p
			}
			if s.service == nil {
				continue
			}
			for _, bp := range backendTLS[s.service.Key.String()] {
				a.mtlsAgainstBackend(p, s, bp)
			}
			a.strictAgainstClients(p, s)
		}
	}
}

// modeField is a mode an MTLSPolicy sets: its default (port 0) or a
// port override.
type modeField struct {
	field string
	mode  model.MTLSMode
	port  uint32
}

// modeFields lists the modes an MTLSPolicy sets.
func modeFields(p *model.MTLSPolicy) []modeField {
	out := []modeField{{"spec.mode", p.Mode, 0}}
	for i, pm := range p.Ports {
		out = append(out, modeField{fmt.Sprintf("spec.ports[%d].mode", i), pm.Mode, pm.Port})
	}
	return out
}

func portSuffix(port uint32) string {
	if port == 0 {
		return ""
	}
	return fmt.Sprintf(" on port %d", port)
}

// mtlsAgainstBackend finds a server mode that the clients' BackendPolicy
// cannot talk to.
func (a *analyzer) mtlsAgainstBackend(p *model.MTLSPolicy, s scope, bp *model.BackendPolicy) {
	res := resource(p.Source)
	for _, mf := range modeFields(p) {
		switch {
		case mf.mode == model.MTLSStrict && bp.TLS == model.BackendTLSDisable:
			a.add(CodeStrictClients, res, mf.field, "STRICT%s on %s, but BackendPolicy %s makes its clients send plaintext (tls.mode Disable): "+
				"they leave out every member with a sidecar (whose STRICT would refuse plaintext anyway), so their calls to those members fail",
				portSuffix(mf.port), s.describe, bp.Key)
		case mf.mode == model.MTLSDisable && bp.TLS == model.BackendTLSRequireMesh:
			a.add(CodeDisableMesh, res, mf.field, "DISABLE%s on %s, but BackendPolicy %s requires mesh mTLS to it (tls.mode RequireMesh): the two disagree. "+
				"Sidecars still accept mesh mTLS on their mesh port (DISABLE concerns what arrives at the application's ports), so these clients reach members with a sidecar and leave out those without one",
				portSuffix(mf.port), s.describe, bp.Key)
		}
	}
}

// strictAgainstClients finds workloads without a sidecar that an
// AccessPolicy lets call a STRICT service: they cannot present an
// identity, so STRICT refuses them.
func (a *analyzer) strictAgainstClients(p *model.MTLSPolicy, s scope) {
	strict := false
	for _, mf := range modeFields(p) {
		strict = strict || mf.mode == model.MTLSStrict
	}
	if !strict {
		return
	}
	for _, ap := range a.c.AccessPolicies {
		if ap.Action != model.AccessAllow || ap.Namespace != s.service.Namespace || !targetsService(ap.Targets, s.service) {
			continue
		}
		for _, w := range a.c.Workloads {
			if w.MeshPort != 0 || !allowsWorkload(ap, w) {
				continue
			}
			a.add(CodeStrictClients, resource(p.Source), "spec.mode",
				"STRICT on %s, but Workload %s has no sidecar (no meshPort) and AccessPolicy %s allows it to call: its plaintext calls will be refused",
				s.describe, w.Key, ap.Key)
			return
		}
	}
}

func targetsService(ts []model.TargetRef, s *model.Service) bool {
	if len(ts) == 0 {
		return true
	}
	for _, t := range ts {
		if t.Group == "" && t.Kind == "Service" && t.Name == s.Name {
			return true
		}
	}
	return false
}

// allowsWorkload reports whether some rule of p names w as a caller, by
// identity or namespace.
func allowsWorkload(p *model.AccessPolicy, w *model.Workload) bool {
	suffix := "/ns/" + w.Namespace + "/sa/" + w.ServiceAccount
	for _, r := range p.Rules {
		for _, f := range r.From {
			if slices.Contains(f.Namespaces, w.Namespace) {
				return true
			}
			for _, id := range f.Identities {
				if strings.HasSuffix(id, suffix) {
					return true
				}
			}
		}
	}
	return false
}

// accessPolicies finds policies that select no workload and DENY rules
// that leave an ALLOW nothing to do.
func (a *analyzer) accessPolicies() {
	type denial struct {
		p    *model.AccessPolicy
		rule int
	}
	denyAll := map[string]denial{} // by scope key: a DENY rule that matches every request
	type allowed struct {
		p      *model.AccessPolicy
		scopes []scope
	}
	var allows []allowed
	for _, p := range a.c.AccessPolicies {
		res := resource(p.Source)
		scopes := a.scopes(res, p.Namespace, p.Targets)
		if len(a.c.Workloads) > 0 {
			for _, s := range scopes {
				if len(a.workloads(s, p.Namespace)) == 0 {
					field := s.field
					if field == "" {
						field = "spec"
					}
					a.add(CodeAccessNoWL, res, field, "%s selects no workload: the policy protects nothing", s.describe)
				}
			}
		}
		switch p.Action {
		case model.AccessDeny:
			for i, r := range p.Rules {
				if len(r.From) == 0 && len(r.To) == 0 {
					for _, s := range scopes {
						if _, ok := denyAll[s.key]; !ok {
							denyAll[s.key] = denial{p, i}
						}
					}
				}
			}
		case model.AccessAllow:
			allows = append(allows, allowed{p, scopes})
		}
	}
	for _, al := range allows {
		for _, s := range al.scopes {
			d, ok := denyAll[s.key]
			if !ok {
				d, ok = denyAll["namespace "+al.p.Namespace]
			}
			if ok {
				a.add(CodeDenyAll, resource(al.p.Source), "spec.rules",
					"AccessPolicy %s spec.rules[%d] denies every request to %s, and DENY is evaluated before ALLOW: this policy allows nothing",
					d.p.Key, d.rule, s.describe)
				break
			}
		}
	}
}

// servicePorts finds Service ports whose protocol nobody declared.
func (a *analyzer) servicePorts() {
	for _, s := range a.c.Services {
		for i, p := range s.Ports {
			if p.Protocol == model.ProtocolTCP && !p.ProtocolDeclared {
				name := p.Name
				if name == "" {
					name = "(unnamed)"
				}
				a.add(CodeNoProtocol, resource(s.Source), index("spec.ports", i),
					"port %d %s declares no protocol (no appProtocol, no known name prefix): its traffic is treated as opaque TCP, without HTTP routing, retries or metrics",
					p.Port, name)
			}
		}
	}
}
