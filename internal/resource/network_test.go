package resource

import "testing"

// TestModelNetwork: the trellis.dev/network label of a Workload (a Pod's
// on Kubernetes) and of a Gateway is their network; a listener's
// tls.options reach the model.
func TestModelNetwork(t *testing.T) {
	objs, err := Decode("mesh.yaml", []byte(`apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm, namespace: shop, labels: {app: vm, trellis.dev/network: west}}
spec: {address: 10.0.0.5, meshPort: 15008}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: eastwest, namespace: shop, labels: {trellis.dev/network: west}}
spec:
  gatewayClassName: trellis
  listeners:
  - name: cross-network
    port: 15443
    protocol: TLS
    tls: {mode: Passthrough, options: {trellis.dev/listener-mode: auto-passthrough}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := NewModelCache().Model(objs)
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Workloads[0]; w.Network != "west" {
		t.Errorf("workload network %q", w.Network)
	}
	g := cfg.Gateways[0]
	if g.Network != "west" {
		t.Errorf("gateway network %q", g.Network)
	}
	if l := &g.Listeners[0]; !l.EastWestValid() {
		t.Errorf("listener %+v is not a valid east-west listener", l.TLS)
	}
}
