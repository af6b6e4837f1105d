package model

import "testing"

func TestMTLSModeFor(t *testing.T) {
	svc := &Service{Key: Key{Namespace: "db", Name: "ledger"}, Selector: map[string]string{"app": "ledger"}}
	w := &Workload{Key: Key{Namespace: "db", Name: "ledger-0"}, Labels: map[string]string{"app": "ledger"}}
	other := &Workload{Key: Key{Namespace: "db", Name: "cache-0"}, Labels: map[string]string{"app": "cache"}}
	c := &Config{
		Services:  []*Service{svc},
		Workloads: []*Workload{w, other},
		MTLSPolicies: []*MTLSPolicy{
			{Key: Key{Namespace: "db", Name: "ns"}, Mode: MTLSStrict},
			{Key: Key{Namespace: "db", Name: "ledger"}, Mode: MTLSStrict, Ports: []PortMTLS{{Port: 9090, Mode: MTLSPermissive}},
				Targets: []TargetRef{{GroupKind: GroupKind{Kind: "Service"}, Name: "ledger"}}},
			{Key: Key{Namespace: "web", Name: "ns"}, Mode: MTLSDisable},
		},
	}
	ix := NewIndex(c)
	for _, tc := range []struct {
		w    *Workload
		port uint32
		want MTLSMode
	}{
		{w, 8080, MTLSStrict},
		{w, 9090, MTLSPermissive},
		{other, 9090, MTLSStrict},
		{&Workload{Key: Key{Namespace: "shop", Name: "x"}}, 80, MTLSPermissive},
		{&Workload{Key: Key{Namespace: "web", Name: "x"}}, 80, MTLSDisable},
	} {
		if got := MTLSModeFor(c, ix, tc.w, tc.port); got != tc.want {
			t.Errorf("%s port %d: %s, want %s", tc.w.Key, tc.port, got, tc.want)
		}
	}
}
