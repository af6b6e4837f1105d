// Package resource reads the resources users write — Gateway API v1 kinds,
// core v1 Services and the trellis.dev/v1alpha1 kinds — and turns them into
// the normalized model. Everything users write goes through it: the CLI
// (trellis apply, analyze), the control plane's write path and the store.
//
//	YAML/JSON ──Decode──► []*Object ──Default──► ──Validate──► ──Model──► *model.Config
//	                         │  ▲
//	                   Encode│  │DecodeOne           (the store keeps canonical JSON)
//	                         ▼  │
//	                        []byte
//
// The steps:
//
//   - Decode parses multi-document YAML or JSON with yaml.v3 node trees and
//     decodes each document strictly into its typed Go struct
//     (*gwv1.HTTPRoute, *corev1.Service, *v1alpha1.Workload, ...), driven
//     by the json tags: unknown fields, duplicate keys, wrong types and
//     out-of-range numbers are errors that name the file, line, resource and
//     field path. Types with their own UnmarshalJSON (metav1.Time,
//     intstr.IntOrString) decode themselves. status is ignored.
//   - Default fills the namespace and the defaults the API server would:
//     for the Gateway API and trellis.dev kinds, the defaults of their
//     CRDs, applied by the apiserver's own code (package schema); Service
//     defaults by hand.
//   - Validate checks each object on its own and reports every problem at
//     once: the Gateway API and trellis.dev kinds against their CRDs
//     (OpenAPI schema, list keys, CEL rules) exactly as a kube-apiserver
//     would, plus the RE2 syntax of regular expressions, which no CRD
//     checks; Services as the apiserver does. Checks across resources
//     belong to the analyzer.
//   - Model converts every kind into the model, keeping lists index-aligned
//     with the resources so that findings can name fields.
//   - Load and Analyze (check.go) run the whole pipeline for `trellis
//     analyze` and the control plane's apply, turning errors into analyzer
//     findings located by file and line.
//
// Every error is an *Error (joined with errors.Join when there are
// several), formatted as
//
//	demo.yaml:12: HTTPRoute demo/web: spec.rules[0].backendRefs[0].port: required for a Service backend
package resource
