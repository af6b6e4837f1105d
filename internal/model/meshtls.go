package model

import (
	"cmp"
	"fmt"
	"slices"
)

// Mesh TLS between a client sidecar and the members of a Service: how the
// client reaches each member (the translator builds each endpoint of an
// outbound cluster from ReachMember) and what the member's side accepts
// (MemberAccepts, what the translator's inbound listener enforces). The
// analyzer and `trellis tls-check` read the same functions, so they say
// what the data plane does.

// MemberTLS is how a client sidecar reaches one member of a Service.
type MemberTLS string

// How members are reached.
const (
	// MemberMTLS is mesh mTLS to the member's sidecar, on its mesh port.
	MemberMTLS MemberTLS = "mTLS"
	// MemberPlaintext is plaintext to the member's application port: it
	// has no sidecar.
	MemberPlaintext MemberTLS = "plaintext"
	// MemberLeftOut means the member is not an endpoint of the client's
	// cluster: no call reaches it.
	MemberLeftOut MemberTLS = "left out"
)

// HasSidecar reports whether w has a sidecar, which terminates mesh mTLS
// on its mesh port.
func (w *Workload) HasSidecar() bool { return w.MeshPort != 0 }

// ReachMember decides how a client sidecar reaches member w of a Service
// port whose BackendPolicy has TLS mode mode (empty is Mesh). When it
// leaves w out, why says so, naming the mode, for problems and findings:
//
//	mode          w has a sidecar           w has none
//	Mesh          mTLS                      plaintext
//	RequireMesh   mTLS                      left out
//	Disable       left out                  plaintext
//
// Disable never sends plaintext to a member with a sidecar: the sidecar
// accepts only mesh mTLS (MemberAccepts), and plaintext to the application
// behind it would bypass the sidecar and the policies it enforces.
func ReachMember(mode BackendTLSMode, w *Workload) (reach MemberTLS, why string) {
	switch {
	case w.HasSidecar() && mode == BackendTLSDisable:
		return MemberLeftOut, fmt.Sprintf("Disable: workload %s has a sidecar, which accepts only mesh mTLS, "+
			"and plaintext to its application port would bypass it (and the MTLSPolicy and AccessPolicies that protect it)", w.Key)
	case w.HasSidecar():
		return MemberMTLS, ""
	case mode == BackendTLSRequireMesh:
		return MemberLeftOut, fmt.Sprintf("RequireMesh: workload %s has no sidecar to speak mesh mTLS with", w.Key)
	default:
		return MemberPlaintext, ""
	}
}

// MemberAccepts is the mode member w enforces on its port port: with a
// sidecar that captures inbound traffic, the mode of its MTLSPolicy
// (MTLSModeFor, as the translator builds the inbound capture listener);
// with a sidecar that does not, STRICT, whatever a policy asks, since only
// its mesh port, which accepts only mesh mTLS, is in front of the
// application; DISABLE when it has no sidecar, as nothing in front of the
// application terminates mTLS.
func MemberAccepts(c *Config, ix *Index, w *Workload, port uint32) MTLSMode {
	switch {
	case w.HasSidecar() && w.InboundCapture:
		return MTLSModeFor(c, ix, w, port)
	case w.HasSidecar():
		return MTLSStrict
	}
	return MTLSDisable
}

// PolicyMode is the mode one MTLSPolicy sets on a port.
type PolicyMode struct {
	Policy *MTLSPolicy
	Mode   MTLSMode
}

// MTLSPoliciesFor returns the MTLSPolicies of c that apply to workload w
// (model.Index.PolicySelects, as for AccessPolicies) with the mode each
// sets on its port port: those targeting a Service first, then those for
// the whole namespace, each group in key order. The first is the one in
// effect (MTLSModeFor); when they differ the analyzer reports it.
func MTLSPoliciesFor(c *Config, ix *Index, w *Workload, port uint32) []PolicyMode {
	var out []PolicyMode
	for _, p := range c.MTLSPolicies {
		if ix.PolicySelects(p.Namespace, p.Targets, w) {
			out = append(out, PolicyMode{Policy: p, Mode: p.ModeFor(port)})
		}
	}
	targeted := func(pm PolicyMode) int { return min(1, len(pm.Policy.Targets)) }
	slices.SortStableFunc(out, func(a, b PolicyMode) int { return cmp.Compare(targeted(b), targeted(a)) })
	return out
}
