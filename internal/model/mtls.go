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
	// The policies in the order MTLSPoliciesFor gives them, which is what
	// tls-check reports: the first one is in effect.
	ps := MTLSPoliciesFor(c, ix, w, port)
	switch {
	case len(ps) == 0:
		return DefaultMTLSMode
	case port == 0:
		return ps[0].Policy.Mode
	}
	return ps[0].Mode
}
