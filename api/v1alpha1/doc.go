// Package v1alpha1 holds the trellis.dev/v1alpha1 resource kinds: Workload,
// MTLSPolicy, AccessPolicy and BackendPolicy. Everything else Trellis reads
// is a Gateway API kind or a core v1 Service.
//
// Policies attach to their targets with targetRefs, as in Gateway API policy
// attachment.
//
// The kubebuilder markers on the types are the kinds' validation rules:
// `go run ./hack/dev generate` turns them into the CustomResourceDefinitions
// (OpenAPI schemas with CEL rules) under internal/schema/crds/trellis, which
// both a kube-apiserver and Trellis itself (package internal/schema) enforce,
// and into zz_generated.deepcopy.go, which makes the kinds runtime.Objects.
//
// +kubebuilder:object:generate=true
// +groupName=trellis.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is trellis.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: "trellis.dev", Version: "v1alpha1"}

// AddToScheme registers the kinds and their lists with a scheme, as
// client-go's typed and dynamic clients and informers need.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Workload{}, &WorkloadList{},
		&MTLSPolicy{}, &MTLSPolicyList{},
		&AccessPolicy{}, &AccessPolicyList{},
		&BackendPolicy{}, &BackendPolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
