package control

import (
	"testing"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
)

// TestGatewayWithMeshPortIsAWorkload: a gateway registered with a mesh
// port (an egress gateway) is a workload of the mesh that Services can
// select; one without (an ingress gateway) is not.
func TestGatewayWithMeshPortIsAWorkload(t *testing.T) {
	regs := map[string]*nodemeta.Metadata{
		"egress":  {Kind: nodemeta.KindGateway, Gateway: "egress/egress", Namespace: "egress", Name: "egress-1", Address: "10.0.9.1", MeshPort: 15008, Labels: map[string]string{"app": "egress-gateway"}},
		"ingress": {Kind: nodemeta.KindGateway, Gateway: "infra/edge", Namespace: "infra", Name: "edge", Address: "10.0.9.2"},
	}
	cfg := &model.Config{}
	addRegistered(cfg, regs, false)
	if len(cfg.Workloads) != 1 || cfg.Workloads[0].Key != (model.Key{Namespace: "egress", Name: "egress-1"}) || cfg.Workloads[0].MeshPort != 15008 ||
		cfg.Workloads[0].Labels["app"] != "egress-gateway" {
		t.Fatalf("workloads %+v, want the egress gateway alone, with its mesh port and labels", cfg.Workloads)
	}
}
