package model

// DefaultMTLSMode is the mode of a workload no MTLSPolicy selects: mesh
// mTLS and plaintext are both accepted, so that workloads can join the
// mesh one at a time.
const DefaultMTLSMode = MTLSPermissive

// MTLSModeFor returns the server-side mTLS mode of workload w's port: the
// mode of the MTLSPolicy targeting a Service that selects w, else of the
// policy without targets in w's namespace, else DefaultMTLSMode. A policy
// whose spec.ports names the port sets it there. Among several policies
// of one kind (the analyzer reports them, TRL4005) the first in key order
// wins. Port zero asks for the policy's own mode, without port overrides.
func MTLSModeFor(c *Config, ix *Index, w *Workload, port uint32) MTLSMode {
	var targeted, namespace *MTLSPolicy
	for _, p := range c.MTLSPolicies {
		if p.Namespace != w.Namespace {
			continue
		}
		if len(p.Targets) == 0 {
			if namespace == nil {
				namespace = p
			}
			continue
		}
		if targeted != nil {
			continue
		}
		for _, t := range p.Targets {
			if t.Kind != "Service" || (t.Group != "" && t.Group != "core") {
				continue
			}
			if s := ix.Service(Key{Namespace: p.Namespace, Name: t.Name}); s != nil && s.Selects(w) {
				targeted = p
				break
			}
		}
	}
	p := targeted
	if p == nil {
		p = namespace
	}
	if p == nil {
		return DefaultMTLSMode
	}
	if port == 0 {
		return p.Mode
	}
	return p.ModeFor(port)
}
