package model

import "testing"

func TestPolicySelects(t *testing.T) {
	c := &Config{
		Services: []*Service{
			{Key: Key{Namespace: "shop", Name: "cart"}, Selector: map[string]string{"app": "cart"}},
			{Key: Key{Namespace: "shop", Name: "manual"}},
		},
		Workloads: []*Workload{
			{Key: Key{Namespace: "shop", Name: "cart-1"}, Labels: map[string]string{"app": "cart"}},
			{Key: Key{Namespace: "shop", Name: "vm"}, Services: []string{"manual"}},
			{Key: Key{Namespace: "web", Name: "cart-1"}, Labels: map[string]string{"app": "cart"}},
		},
	}
	ix := NewIndex(c)
	svc := func(name string) TargetRef { return TargetRef{GroupKind: GroupKind{Kind: "Service"}, Name: name} }
	gw := TargetRef{GroupKind: GroupKind{Group: GatewayGroup, Kind: "Gateway"}, Name: "cart"}
	for _, tc := range []struct {
		targets []TargetRef
		want    [3]bool // cart-1, vm, web/cart-1
	}{
		{nil, [3]bool{true, true, false}},
		{[]TargetRef{svc("cart")}, [3]bool{true, false, false}},
		{[]TargetRef{svc("manual")}, [3]bool{false, true, false}},
		{[]TargetRef{svc("missing"), svc("manual")}, [3]bool{false, true, false}},
		{[]TargetRef{gw}, [3]bool{false, false, false}},
		{[]TargetRef{{GroupKind: GroupKind{Group: "apps", Kind: "Service"}, Name: "cart"}}, [3]bool{false, false, false}},
	} {
		for i, w := range c.Workloads {
			if got := ix.PolicySelects("shop", tc.targets, w); got != tc.want[i] {
				t.Errorf("targets %v: selects %s = %v, want %v", tc.targets, w.Key, got, tc.want[i])
			}
		}
	}
}

func TestParseAccessPath(t *testing.T) {
	for in, want := range map[string]struct {
		kind AccessPathKind
		lit  string
	}{
		"*":         {AccessPathAny, ""},
		"/api/*":    {AccessPathPrefix, "/api/"},
		"*.png":     {AccessPathSuffix, ".png"},
		"/a":        {AccessPathExact, "/a"},
		"/a/*/b":    {AccessPathExact, "/a/*/b"},
		"*/admin/*": {AccessPathPrefix, "*/admin/"},
	} {
		if kind, lit := ParseAccessPath(in); kind != want.kind || lit != want.lit {
			t.Errorf("ParseAccessPath(%q) = %v %q, want %v %q", in, kind, lit, want.kind, want.lit)
		}
	}
}
