package analyze

import (
	"fmt"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// backendPolicies checks BackendPolicies against the Service ports they
// target and against each other (model.BackendPoliciesFor decides which
// applies, as the translator does).
func (a *analyzer) backendPolicies() {
	type conflict struct {
		loser, winner model.Key
	}
	reported := map[conflict][]string{}
	var order []conflict
	fields := map[conflict]string{}
	for _, s := range a.c.Services {
		for _, sp := range s.Ports {
			refs := model.BackendPoliciesFor(a.ix.BackendPoliciesTargeting(s.Key), s, sp)
			for _, lose := range refs[min(1, len(refs)):] {
				k := conflict{lose.Policy.Key, refs[0].Policy.Key}
				if _, ok := reported[k]; !ok {
					order = append(order, k)
					fields[k] = index("spec.targetRefs", lose.Target)
				}
				reported[k] = append(reported[k], fmt.Sprintf("%s port %d", s.Key, sp.Port))
			}
		}
	}
	byKey := map[model.Key]*model.BackendPolicy{}
	for _, p := range a.c.BackendPolicies {
		byKey[p.Key] = p
	}
	for _, k := range order {
		a.add(CodeBackendConflict, resource(byKey[k.loser].Source), fields[k],
			"BackendPolicy %s also targets Service %s and takes precedence there; this policy does not apply to it",
			k.winner, strings.Join(reported[k], ", "))
	}
	for _, p := range a.c.BackendPolicies {
		a.backendPolicy(p)
	}
}

// backendPolicy checks one BackendPolicy against the ports it targets.
func (a *analyzer) backendPolicy(p *model.BackendPolicy) {
	res := resource(p.Source)
	if lb := p.LoadBalancer; lb != nil && lb.Type == "ConsistentHash" && lb.HashHeader == "" && lb.HashCookie == "" {
		a.add(CodeHashNoKey, res, "spec.loadBalancer", "ConsistentHash without hashHeader or hashCookie: requests have no hash, so each goes to a random endpoint")
	}
	if f := p.Faults; f != nil {
		if f.DelayPercent == 0 && f.Delay > 0 {
			a.add(CodeFaultsNoEffect, res, "spec.faults.delay.percent", "0 %% of the requests are delayed: the delay does nothing")
		}
		if f.DelayPercent > 0 && f.Delay == 0 {
			a.add(CodeFaultsNoEffect, res, "spec.faults.delay.duration", "a delay of 0 does nothing")
		}
		if f.AbortPercent == 0 && (f.AbortHTTPStatus != 0 || f.AbortGRPCStatus != 0) {
			a.add(CodeFaultsNoEffect, res, "spec.faults.abort.percent", "0 %% of the requests are aborted: the abort does nothing")
		}
	}
	for i, t := range p.Targets {
		if t.Kind != "Service" || (t.Group != "" && t.Group != "core") {
			continue // reported by scopes
		}
		s := a.ix.Service(model.Key{Namespace: p.Namespace, Name: t.Name})
		if s == nil {
			continue // reported by scopes
		}
		field := index("spec.targetRefs", i)
		var ports []model.ServicePort
		for _, sp := range s.Ports {
			if t.SectionName == "" || sp.Name == t.SectionName {
				ports = append(ports, sp)
			}
		}
		if len(ports) == 0 {
			var names []string
			for _, sp := range s.Ports {
				if sp.Name != "" {
					names = append(names, sp.Name)
				}
			}
			a.add(CodeNoTargetPort, res, field+".sectionName", "Service %s has no port named %q (its named ports: %s)", s.Key, t.SectionName, orNone(names))
			continue
		}
		for _, sp := range ports {
			if sp.Protocol.IsHTTP() {
				continue
			}
			if p.IdleTimeout > 0 {
				a.add(CodeHTTPOnlyPolicy, res, "spec.idleTimeout", "port %d of Service %s is %s: the upstream idle timeout applies to HTTP connection pools", sp.Port, s.Key, sp.Protocol)
			}
			if p.RateLimit != nil {
				a.add(CodeHTTPOnlyPolicy, res, "spec.rateLimit", "port %d of Service %s is %s: the rate limit counts HTTP requests", sp.Port, s.Key, sp.Protocol)
			}
			if p.Faults != nil {
				a.add(CodeHTTPOnlyPolicy, res, "spec.faults", "port %d of Service %s is %s: faults are injected into HTTP requests", sp.Port, s.Key, sp.Protocol)
			}
		}
		// The members the translator leaves out of the clients' clusters.
		var left []string
		for _, w := range a.ix.Members(s.Key) {
			if reach, _ := model.ReachMember(p.TLS, w); reach == model.MemberLeftOut {
				left = append(left, w.Key.String())
			}
		}
		switch {
		case len(left) == 0:
		case p.TLS == model.BackendTLSDisable:
			a.add(CodeDisableSidecar, res, "spec.tls.mode", "Disable sends plaintext, so the members of Service %s that have a sidecar are left out (plaintext to their application would bypass it): %s", s.Key, list(left))
		case p.TLS == model.BackendTLSRequireMesh:
			a.add(CodeRequireMeshVM, res, "spec.tls.mode", "RequireMesh leaves out the members of Service %s that have no sidecar: %s", s.Key, list(left))
		}
	}
}

// list names workloads, the first few of them.
func list(ws []string) string {
	const most = 3
	if len(ws) > most {
		return fmt.Sprintf("%s and %d more", strings.Join(ws[:most], ", "), len(ws)-most)
	}
	return strings.Join(ws, ", ")
}
