package model

import (
	"cmp"
	"slices"
)

// BackendPolicyRef is a BackendPolicy that targets a Service port, and the
// targetRef by which it does.
type BackendPolicyRef struct {
	Policy *BackendPolicy
	Target int // index in Policy.Targets
}

// ByPort reports whether the targetRef names the port (sectionName).
func (r BackendPolicyRef) ByPort() bool { return r.Policy.Targets[r.Target].SectionName != "" }

// BackendPoliciesFor returns the BackendPolicies that target port sp of
// service s, the one in effect first. A policy applies to Services of its
// own namespace, through a targetRef naming the Service (group "" or
// "core", kind Service) and, with a sectionName, the port's name. Among
// several, precedence follows Gateway API policy attachment: a targetRef
// naming the port wins over one naming the whole Service; then the oldest
// policy; then the first by namespace and name. Policies do not merge:
// the others do not apply to the port at all.
func BackendPoliciesFor(policies []*BackendPolicy, s *Service, sp ServicePort) []BackendPolicyRef {
	var out []BackendPolicyRef
	for _, p := range policies {
		if p.Namespace != s.Namespace {
			continue
		}
		best := -1
		for i, t := range p.Targets {
			if t.Kind != "Service" || (t.Group != "" && t.Group != "core") || t.Name != s.Name {
				continue
			}
			if t.SectionName != "" && t.SectionName != sp.Name {
				continue
			}
			if best < 0 || t.SectionName != "" && p.Targets[best].SectionName == "" {
				best = i
			}
		}
		if best >= 0 {
			out = append(out, BackendPolicyRef{Policy: p, Target: best})
		}
	}
	slices.SortStableFunc(out, CompareBackendPolicyRefs)
	return out
}

// CompareBackendPolicyRefs orders two policies targeting the same Service
// port by precedence, the one in effect first.
func CompareBackendPolicyRefs(a, b BackendPolicyRef) int {
	if a.ByPort() != b.ByPort() {
		if a.ByPort() {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.Policy.Source.CreationUnix, b.Policy.Source.CreationUnix); c != 0 {
		return c
	}
	return a.Policy.Key.Compare(b.Policy.Key)
}
