package v1alpha1

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestScheme checks what client-go's clients and informers need: every
// kind and its list is registered, a runtime.Object, and deep-copied
// without sharing memory.
func TestScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	objs := []runtime.Object{
		&Workload{ObjectMeta: metav1.ObjectMeta{Name: "vm"}, Spec: WorkloadSpec{Address: "10.0.0.1", MeshPort: &three, Ports: []WorkloadPort{{Port: 80}}}},
		&MTLSPolicy{Spec: MTLSPolicySpec{Mode: MTLSStrict, Ports: []PortMTLS{{Port: 80, Mode: MTLSDisable}}}},
		&AccessPolicy{Spec: AccessPolicySpec{Action: AccessDeny, Rules: []AccessRule{{From: []AccessSource{{Namespaces: []string{"a"}}}}}}},
		&BackendPolicy{Spec: BackendPolicySpec{
			TargetRefs: []gwv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gwv1.LocalPolicyTargetReference{Kind: "Service", Name: "a"}}},
			Faults:     &Faults{Abort: &FaultAbort{Percent: 1, GRPCStatus: &three}},
		}, Status: Status{Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue}}}},
		&WorkloadList{}, &MTLSPolicyList{}, &AccessPolicyList{}, &BackendPolicyList{},
	}
	for _, o := range objs {
		gvks, _, err := s.ObjectKinds(o)
		if err != nil || len(gvks) != 1 || gvks[0].GroupVersion() != GroupVersion {
			t.Errorf("%T: kinds %v, %v", o, gvks, err)
		}
		c := o.DeepCopyObject()
		if !reflect.DeepEqual(c, o) {
			t.Errorf("%T: the deep copy differs", o)
		}
	}
	// The copy shares nothing: changing it leaves the original.
	w := objs[0].(*Workload)
	c := w.DeepCopy()
	*c.Spec.MeshPort = 4
	c.Spec.Ports[0].Port = 81
	if *w.Spec.MeshPort != 3 || w.Spec.Ports[0].Port != 80 {
		t.Error("the deep copy of a Workload shares memory with it")
	}
}
