package control

import (
	"testing"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
)

// TestAddRegisteredReplaces: on Kubernetes a sidecar's registration
// stands for the Pod of its name instead of adding a second workload;
// elsewhere both stay, as before.
func TestAddRegisteredReplaces(t *testing.T) {
	pod := &model.Workload{Key: model.Key{Namespace: "shop", Name: "cart-0"}, Address: "10.0.0.1"}
	other := &model.Workload{Key: model.Key{Namespace: "shop", Name: "cart-1"}, Address: "10.0.0.2"}
	regs := map[string]*nodemeta.Metadata{"n1": {Kind: nodemeta.KindSidecar, Namespace: "shop", Name: "cart-0", Address: "10.0.0.1", MeshPort: 15008}}
	for _, tc := range []struct {
		replace bool
		want    []string
	}{
		{true, []string{"shop/cart-1 ", "shop/cart-0 Registration"}},
		{false, []string{"shop/cart-0 ", "shop/cart-1 ", "shop/cart-0 Registration"}},
	} {
		cfg := &model.Config{Workloads: []*model.Workload{pod, other}}
		addRegistered(cfg, regs, tc.replace)
		var got []string
		for _, w := range cfg.Workloads {
			got = append(got, w.Key.String()+" "+w.Source.Kind)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("replace=%v: workloads %q, want %q", tc.replace, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("replace=%v: workload %d %q, want %q", tc.replace, i, got[i], tc.want[i])
			}
		}
	}
}
