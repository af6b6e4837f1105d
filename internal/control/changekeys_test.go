package control

import (
	"slices"
	"testing"

	"trellis.dev/trellis/internal/resource"
)

// TestAccessPolicyChangeKeys: a change to an AccessPolicy rebuilds only
// the proxies it may apply to.
func TestAccessPolicyChangeKeys(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string
	}{
		{`apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: all, namespace: shop}
spec: {action: ALLOW}
`, []string{"access/shop"}},
		{`apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs:
  - {group: "", kind: Service, name: cart}
  - {group: gateway.networking.k8s.io, kind: Gateway, name: ingress}
  action: DENY
  rules: [{from: [{namespaces: [web]}]}]
`, []string{"access/svc/shop/cart", "access/gw/shop/ingress"}},
	} {
		objs, err := resource.Decode("test.yaml", []byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		cp := &controlPlane{models: resource.NewModelCache()}
		if got := cp.changeKeysLocked(objs[0]); !slices.Equal(got, tc.want) {
			t.Errorf("changeKeys = %v, want %v", got, tc.want)
		}
	}
}
