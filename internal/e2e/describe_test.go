package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/controlapi"
)

// describeObjects: Service web and its member web-1 (behind a sidecar),
// with an MTLSPolicy, an AccessPolicy and a BackendPolicy on the Service,
// a mesh route splitting its calls and a second Service's route sending
// to it; api-1 is a member of nothing.
const describeObjects = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: shop}
spec:
  selector: {app: front}
  ports: [{name: http, port: 80}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: web-1, namespace: shop, labels: {app: web, version: v1}}
spec:
  address: 10.1.0.1
  serviceAccount: web
  meshPort: 15008
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: api-1, namespace: shop, labels: {app: api}}
spec:
  address: 10.1.0.2
  ports: [{name: http, port: 9090, protocol: HTTP}]
---
apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: strict, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  mode: STRICT
---
apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: callers, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  action: ALLOW
  rules: [{from: [{namespaces: [ops]}]}]
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  loadBalancer: {type: RoundRobin}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: front-to-web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: front, port: 80}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
`

// TestDescribeWorkload: trellis describe workload says which Services,
// policies and routes apply to a workload, and why; nothing for a
// workload of no Service; an unknown workload is an error.
func TestDescribeWorkload(t *testing.T) {
	cp := startControlPlane(t, newSubnet(t), t.TempDir())
	cp.apply(t, describeObjects)
	out, _, err := trellis(t, cp, "describe", "workload", "web-1", "-n", "shop", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var d controlapi.Description
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	names := func(list []controlapi.Applied) string {
		var out []string
		for _, a := range list {
			out = append(out, a.Kind+" "+a.Namespace+"/"+a.Name)
		}
		return strings.Join(out, ", ")
	}
	for what, got := range map[string]string{
		"identity":         d.Identity,
		"services":         names(d.Services),
		"access policies":  names(d.AccessPolicies),
		"routes":           names(d.Routes),
		"backend policies": names(d.BackendPolicies),
	} {
		want := map[string]string{
			"identity":         "spiffe://cluster.local/ns/shop/sa/web",
			"services":         "Service shop/web",
			"access policies":  "AccessPolicy shop/callers",
			"routes":           "HTTPRoute shop/front-to-web, HTTPRoute shop/web-split",
			"backend policies": "BackendPolicy shop/web",
		}[what]
		if got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	if len(d.Services) == 1 && !strings.Contains(d.Services[0].Why, "app=web") {
		t.Errorf("why Service web: %q, want its selector named", d.Services[0].Why)
	}
	if len(d.Ports) != 1 || d.Ports[0].Mode != "STRICT" {
		t.Errorf("ports %+v, want 8080 STRICT", d.Ports)
	}
	if len(d.Routes) == 2 && (d.Routes[0].Why != "rule 0 sends to Service shop/web" || !strings.Contains(d.Routes[1].Why, "its parentRef is Service shop/web")) {
		t.Errorf("why the routes: %q and %q", d.Routes[0].Why, d.Routes[1].Why)
	}

	table, _, err := trellis(t, cp, "describe", "workload", "api-1", "-n", "shop")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Workload:  shop/api-1", "9090 (http)  DISABLE: no sidecar fronts the workload", "Routes:\n  (none)"} {
		if !strings.Contains(table, want) {
			t.Errorf("describe api-1 says\n%s\nwant %q in it", table, want)
		}
	}
	if _, _, err := trellis(t, cp, "describe", "workload", "nobody", "-n", "shop"); err == nil || !strings.Contains(err.Error(), "no workload shop/nobody") {
		t.Errorf("describe an unknown workload: %v", err)
	}
}
