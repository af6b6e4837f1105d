// Package analyze judges a whole mesh configuration and reports what would
// break at run time: listeners that cannot share a port, routes that shadow
// another team's, references to nothing, policies that lock clients out,
// ports whose protocol nobody declared.
//
//	resource.Decode ─► Default ─► Validate ─► resource.Model ─► analyze.Analyze ─► []Finding
//	   (TRL0001)                  (TRL0002)      (TRL0003)        (TRL1xxx-TRL5xxx)
//
// It is the one place where config is judged: `trellis analyze` runs it on
// files, the control plane runs it on every apply (an apply that adds an
// error is refused whole), and later the Kubernetes admission webhook.
// Analyze is pure: the same model gives the same findings, in a stable
// order, whatever the order of the resources. Every finding has a stable
// code (see Codes and docs/analyzer.md), a severity, the resource, the
// field path, a message and a hint.
//
// Checks index the model (by parent, port, hostname and path) instead of
// comparing pairs, so the cost grows with the number of resources, not its
// square.
package analyze
