package resource

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Default fills in what the user may leave out, in place, as the API
// server would: the namespace of namespaced kinds (defaultNamespace, or
// "default" when that is empty; cluster-scoped kinds lose theirs), the
// defaults of the Gateway API CRDs (applied by the CRDs themselves, see
// package schema), Service defaults (port protocol TCP, targetPort =
// port, type ClusterIP, sessionAffinity None) and Workload defaults
// (serviceAccount "default", port protocol TCP). Default is idempotent.
//
// A Gateway API object gets a new Obj: the object with its CRD's defaults,
// as the strict decoder reads it back, so that it equals what the store
// returns. Should the CRD fail to apply (an internal error, which the tests
// rule out for the embedded CRDs), Obj is left as it was; Validate, which
// applies the CRD's defaults to its own copy, still judges the object as
// the apiserver would, and reports a CRD that does not compile.
func Default(o *Object, defaultNamespace string) {
	if o == nil || o.Obj == nil {
		return
	}
	if defaultNamespace == "" {
		defaultNamespace = metav1.NamespaceDefault
	}
	if meta, ok := o.Obj.(metav1.Object); ok {
		info, _ := kindByName(o.Kind)
		switch {
		case !info.Namespaced:
			meta.SetNamespace("")
		case meta.GetNamespace() == "":
			meta.SetNamespace(defaultNamespace)
		}
		o.Namespace = meta.GetNamespace()
		o.Name = meta.GetName()
	}
	if v, ok, err := crdValidator(o); ok {
		if err == nil {
			_ = defaultCRD(o, v)
		}
		return
	}
	if obj, ok := o.Obj.(*corev1.Service); ok {
		defaultService(&obj.Spec)
	}
}

func defaultService(spec *corev1.ServiceSpec) {
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}
