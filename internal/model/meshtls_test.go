package model

import (
	"strings"
	"testing"
)

func TestReachMember(t *testing.T) {
	meshed := &Workload{Key: Key{Namespace: "shop", Name: "cart-1"}, MeshPort: 15008}
	vm := &Workload{Key: Key{Namespace: "shop", Name: "cart-vm"}}
	for _, tc := range []struct {
		mode BackendTLSMode
		w    *Workload
		want MemberTLS
		why  string
	}{
		{"", meshed, MemberMTLS, ""},
		{"", vm, MemberPlaintext, ""},
		{BackendTLSMesh, meshed, MemberMTLS, ""},
		{BackendTLSMesh, vm, MemberPlaintext, ""},
		{BackendTLSRequireMesh, meshed, MemberMTLS, ""},
		{BackendTLSRequireMesh, vm, MemberLeftOut, "RequireMesh: workload shop/cart-vm has no sidecar"},
		{BackendTLSDisable, meshed, MemberLeftOut, "Disable: workload shop/cart-1 has a sidecar, which accepts only mesh mTLS"},
		{BackendTLSDisable, vm, MemberPlaintext, ""},
	} {
		got, why := ReachMember(tc.mode, tc.w)
		if got != tc.want || !strings.HasPrefix(why, tc.why) || (tc.why == "") != (why == "") {
			t.Errorf("ReachMember(%q, %s) = %q, %q; want %q, %q...", tc.mode, tc.w.Key, got, why, tc.want, tc.why)
		}
	}
	permissive := &MTLSPolicy{Key: Key{Namespace: "shop", Name: "ns"}, Mode: MTLSPermissive}
	c := &Config{MTLSPolicies: []*MTLSPolicy{permissive}, Workloads: []*Workload{meshed, vm}}
	ix := NewIndex(c)
	if got := MemberAccepts(c, ix, meshed, 8080); got != MTLSStrict {
		t.Errorf("a member with a sidecar without capture accepts %s, want STRICT whatever its policy", got)
	}
	captured := *meshed
	captured.InboundCapture = true
	if got := MemberAccepts(c, ix, &captured, 8080); got != MTLSPermissive {
		t.Errorf("a member whose sidecar captures inbound accepts %s, want its policy's PERMISSIVE", got)
	}
	if got := MemberAccepts(c, ix, vm, 8080); got != MTLSDisable {
		t.Errorf("a member without a sidecar accepts %s, want DISABLE", got)
	}
}

func TestMTLSPoliciesFor(t *testing.T) {
	svc := func(name string) TargetRef { return TargetRef{GroupKind: GroupKind{Kind: "Service"}, Name: name} }
	c := &Config{
		Services: []*Service{
			{Key: Key{Namespace: "shop", Name: "cart"}, Selector: map[string]string{"app": "cart"}},
			{Key: Key{Namespace: "shop", Name: "db"}, Selector: map[string]string{"app": "db"}},
		},
		Workloads: []*Workload{
			{Key: Key{Namespace: "shop", Name: "cart-1"}, Labels: map[string]string{"app": "cart"}, MeshPort: 15008},
		},
		MTLSPolicies: []*MTLSPolicy{
			{Key: Key{Namespace: "other", Name: "a-elsewhere"}, Mode: MTLSDisable},
			{Key: Key{Namespace: "shop", Name: "b-namespace"}, Mode: MTLSPermissive},
			{Key: Key{Namespace: "shop", Name: "c-cart"}, Targets: []TargetRef{svc("cart")}, Mode: MTLSStrict,
				Ports: []PortMTLS{{Port: 9090, Mode: MTLSDisable}}},
			{Key: Key{Namespace: "shop", Name: "d-db"}, Targets: []TargetRef{svc("db")}, Mode: MTLSDisable},
		},
	}
	ix := NewIndex(c)
	w := c.Workloads[0]
	got := MTLSPoliciesFor(c, ix, w, 8080)
	if len(got) != 2 || got[0].Policy.Name != "c-cart" || got[0].Mode != MTLSStrict || got[1].Policy.Name != "b-namespace" || got[1].Mode != MTLSPermissive {
		t.Errorf("port 8080: %+v; want c-cart STRICT (it targets the Service), then b-namespace PERMISSIVE", got)
	}
	got = MTLSPoliciesFor(c, ix, w, 9090)
	if len(got) != 2 || got[0].Mode != MTLSDisable {
		t.Errorf("port 9090: %+v; want c-cart's port override DISABLE first", got)
	}
}
