// Package meshgen writes synthetic mesh configurations of a chosen size,
// as YAML, for benchmarks and load tests: namespaces of services with
// ingress routes on shared Gateways, mesh (GAMMA) routes and policies. The
// output is valid and, by construction, free of conflicts, so that the
// analyzer's cost is measured on the common case of a healthy mesh.
package meshgen

import (
	"bytes"
	"fmt"
)

// Options size the mesh. The defaults (zero values) give about 10,000
// resources: 100 namespaces, 2,000 Services, 6,000 routes, 50 Gateways,
// 2,000 policies.
type Options struct {
	Namespaces           int // default 100
	ServicesPerNamespace int // default 20
	// RoutesPerService: the first is an ingress route on the namespace's
	// Gateway, the second a mesh route, the rest more ingress routes on
	// other paths. Default 3.
	RoutesPerService int
	Gateways         int // default 50
}

// Scale returns options for about n resources, in the proportions of the
// defaults.
func Scale(n int) Options {
	ns := max(1, n/100)
	return Options{Namespaces: ns, ServicesPerNamespace: 20, RoutesPerService: 3, Gateways: max(1, ns/2)}
}

func (o Options) withDefaults() Options {
	if o.Namespaces == 0 {
		o.Namespaces = 100
	}
	if o.ServicesPerNamespace == 0 {
		o.ServicesPerNamespace = 20
	}
	if o.RoutesPerService == 0 {
		o.RoutesPerService = 3
	}
	if o.Gateways == 0 {
		o.Gateways = 50
	}
	return o
}

// Generate returns the mesh as multi-document YAML and the number of
// resources in it.
func Generate(o Options) ([]byte, int) {
	o = o.withDefaults()
	var b bytes.Buffer
	n := 0
	doc := func(format string, args ...any) {
		if n > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, format, args...)
		n++
	}
	doc("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: trellis}\nspec: {controllerName: trellis.dev/gateway}\n")
	for g := range o.Gateways {
		doc(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw-%d, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes: {namespaces: {from: All}}
  - name: https
    protocol: HTTPS
    port: 443
    tls: {certificateRefs: [{name: gw-%d-cert}]}
    allowedRoutes: {namespaces: {from: All}}
`, g, g)
	}
	for i := range o.Namespaces {
		ns := fmt.Sprintf("team-%d", i)
		gw := fmt.Sprintf("gw-%d", i%o.Gateways)
		for j := range o.ServicesPerNamespace {
			svc := fmt.Sprintf("svc-%d", j)
			host := fmt.Sprintf("%s.%s.example.com", svc, ns)
			doc(`apiVersion: v1
kind: Service
metadata: {name: %s, namespace: %s}
spec:
  selector: {app: %s}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc-api, port: 9090}]
`, svc, ns, svc)
			for r := range o.RoutesPerService {
				switch r {
				case 1:
					doc(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s-mesh, namespace: %s}
spec:
  parentRefs: [{group: "", kind: Service, name: %s, port: 80}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "true"}]}]
    backendRefs: [{name: %s, port: 80}]
  - backendRefs: [{name: %s, port: 80}]
`, svc, ns, svc, svc, svc)
				default:
					doc(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s-%d, namespace: %s}
spec:
  parentRefs: [{name: %s, namespace: infra}]
  hostnames: [%s]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v%d}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: %s-%d}]}
    backendRefs: [{name: %s, port: 80}]
  - matches: [{path: {type: Exact, value: /v%d/health}, method: GET}]
    backendRefs: [{name: %s, port: 80}]
`, svc, r, ns, gw, host, r, svc, r, svc, r, svc)
				}
			}
			switch j % 3 {
			case 0:
				doc(`apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: %s, namespace: %s}
spec:
  targetRefs: [{group: "", kind: Service, name: %s}]
  loadBalancer: {type: LeastRequest}
  retryBudget: {percent: 20}
`, svc, ns, svc)
			case 1:
				doc(`apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: %s, namespace: %s}
spec:
  targetRefs: [{group: "", kind: Service, name: %s}]
  action: ALLOW
  rules:
  - from: [{namespaces: [%s, infra]}]
`, svc, ns, svc, ns)
			case 2:
				doc(`apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: %s, namespace: %s}
spec:
  targetRefs: [{group: "", kind: Service, name: %s}]
  mode: STRICT
`, svc, ns, svc)
			}
		}
	}
	return b.Bytes(), n
}
