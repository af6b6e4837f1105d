// Package v1alpha1 holds the trellis.dev/v1alpha1 resource kinds: Workload,
// MTLSPolicy, AccessPolicy and BackendPolicy. Everything else Trellis reads
// is a Gateway API kind or a core v1 Service.
//
// Policies attach to their targets with targetRefs, as in Gateway API policy
// attachment.
package v1alpha1

import "k8s.io/apimachinery/pkg/runtime/schema"

// GroupVersion is trellis.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: "trellis.dev", Version: "v1alpha1"}
