package model

import "slices"

// indexPolicies files AccessPolicies by namespace and BackendPolicies by
// the Services they target, so that finding a workload's or a Service's
// policies does not scan every policy.
func (ix *Index) indexPolicies(c *Config) {
	ix.accessPolicies = map[string][]*AccessPolicy{}
	for _, p := range c.AccessPolicies {
		ix.accessPolicies[p.Namespace] = append(ix.accessPolicies[p.Namespace], p)
	}
	ix.backendPolicies = map[Key][]*BackendPolicy{}
	for _, p := range c.BackendPolicies {
		var seen []string
		for _, t := range p.Targets {
			if t.Kind == "Service" && !slices.Contains(seen, t.Name) {
				seen = append(seen, t.Name)
				k := Key{Namespace: p.Namespace, Name: t.Name}
				ix.backendPolicies[k] = append(ix.backendPolicies[k], p)
			}
		}
	}
}

// BackendPoliciesTargeting returns the BackendPolicies with a targetRef
// of kind Service naming service k (in k's namespace), in key order:
// what BackendPoliciesFor chooses from.
func (ix *Index) BackendPoliciesTargeting(k Key) []*BackendPolicy { return ix.backendPolicies[k] }
