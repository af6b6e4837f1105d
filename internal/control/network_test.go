package control

import (
	"slices"
	"testing"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/resource"
)

// TestNetworkChangeKeys: a Gateway's change touches its network's key
// (it may become or stop being the network's east-west gateway), a
// gateway proxy's registration its Gateway's key (its address is where
// other networks' clients reach it), and registered gateways' addresses
// reach the model.
func TestNetworkChangeKeys(t *testing.T) {
	objs, err := resource.Decode("test.yaml", []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: eastwest, namespace: mesh, labels: {trellis.dev/network: west}}
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
	cp := &controlPlane{models: resource.NewModelCache()}
	if got, want := cp.changeKeysLocked(objs[0]), []string{"gw/mesh/eastwest", "net/west"}; !slices.Equal(got, want) {
		t.Errorf("Gateway change keys = %v, want %v", got, want)
	}
	reg := &nodemeta.Metadata{Kind: nodemeta.KindGateway, Name: "eastwest-0", Namespace: "mesh", ServiceAccount: "eastwest",
		Address: "192.0.2.10", Gateway: "mesh/eastwest"}
	if got, want := cp.registrationKeysLocked("eastwest-0.mesh", reg), []string{"proxy/eastwest-0.mesh", "gw/mesh/eastwest"}; !slices.Equal(got, want) {
		t.Errorf("registration keys = %v, want %v", got, want)
	}
	side := &nodemeta.Metadata{Kind: nodemeta.KindSidecar, Name: "web-0", Namespace: "shop", ServiceAccount: "web", Address: "10.0.0.5", Network: "east"}
	got := gatewayProxies(map[string]*nodemeta.Metadata{"eastwest-0.mesh": reg, "web-0.shop": side})
	if want := map[model.Key][]string{{Namespace: "mesh", Name: "eastwest"}: {"192.0.2.10"}}; len(got) != 1 || !slices.Equal(got[model.Key{Namespace: "mesh", Name: "eastwest"}], want[model.Key{Namespace: "mesh", Name: "eastwest"}]) {
		t.Errorf("gatewayProxies = %v, want %v", got, want)
	}
	if w := workloadOf(side); w.Network != "east" {
		t.Errorf("registered workload's network %q, want east", w.Network)
	}
}
