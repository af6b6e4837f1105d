package main

import (
	"bytes"
	"fmt"
	"net/netip"

	"trellis.dev/trellis/internal/meshgen"
	"trellis.dev/trellis/internal/model"
)

// layout is the shape of the benchmark's mesh, computed the same way by
// the orchestrator and the loader so that both know, without asking each
// other, which proxies call which service.
//
// Services come from meshgen: namespaces team-0…team-N of svc-0…svc-M,
// each with an HTTP port 80 (target 8080), a GRPC port 9090, one mesh
// (GAMMA) HTTPRoute svc-M-mesh, two ingress HTTPRoutes on shared Gateways
// and one policy. Service s is svc-(s%perNS) in team-(s/perNS).
//
// Proxy p is a client sidecar in namespace team-(p%N) with its own service
// account client-p, calling `upstreams` services on port 80: s = (p +
// k·stride) mod S for k < upstreams, stride = S/upstreams. With as many
// proxies as services every service has exactly `upstreams` callers, so a
// change to one service's routes or endpoints concerns upstreams/proxies
// of the proxies (1% at 1,000 proxies and 10 upstreams). The proxies serve
// nothing themselves (no mesh port): the endpoints are the Workload
// resources, `endpoints` per service.
type layout struct {
	Services  int `json:"services"`
	Endpoints int `json:"endpoints"`
	Proxies   int `json:"proxies"`
	Upstreams int `json:"upstreams"`
}

// perNamespace is how many services share a namespace.
func (l layout) perNamespace() int {
	switch {
	case l.Services%20 == 0:
		return 20
	case l.Services%10 == 0:
		return 10
	default:
		return l.Services
	}
}

func (l layout) namespaces() int { return l.Services / l.perNamespace() }

// service is the key of service s.
func (l layout) service(s int) model.Key {
	per := l.perNamespace()
	return model.Key{Namespace: fmt.Sprintf("team-%d", s/per), Name: fmt.Sprintf("svc-%d", s%per)}
}

func (l layout) upstreamsPerProxy() int { return min(l.Upstreams, l.Services) }

// upstreams are the services proxy p calls.
func (l layout) upstreams(p int) []int {
	n := l.upstreamsPerProxy()
	stride := l.Services / n
	out := make([]int, n)
	for k := range n {
		out[k] = (p + k*stride) % l.Services
	}
	return out
}

// callers are the proxies that call service s.
func (l layout) callers(s int) []int {
	var out []int
	for p := range l.Proxies {
		for _, u := range l.upstreams(p) {
			if u == s {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func (l layout) proxyNamespace(p int) string { return fmt.Sprintf("team-%d", p%l.namespaces()) }
func (l layout) proxyName(p int) string      { return fmt.Sprintf("client-%d", p) }
func (l layout) proxyID(p int) string        { return l.proxyName(p) + "." + l.proxyNamespace(p) }

// proxyAddress is the address a proxy registers; nothing listens on it.
func proxyAddress(p int) string { return addr(0x0afa0000 + uint32(p)) } // 10.250.0.0/16

// workloadAddress is the initial address of endpoint k of service s.
func (l layout) workloadAddress(s, k int) string { return addr(0x0a000000 + uint32(s*l.Endpoints+k)) } // 10.0.0.0/9

// churnAddress is the address of the n-th endpoint change.
func churnAddress(n int) string { return addr(0x0a800000 + uint32(n)) } // 10.128.0.0/9

func addr(v uint32) string {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

// meshYAML is the base mesh: meshgen's services, routes, gateways and
// policies.
func (l layout) meshYAML() ([]byte, int) {
	ns := l.namespaces()
	return meshgen.Generate(meshgen.Options{
		Namespaces: ns, ServicesPerNamespace: l.perNamespace(), RoutesPerService: 3, Gateways: max(1, ns/2),
	})
}

// workloadsYAML are the endpoints: `endpoints` Workloads per service,
// selected by the service's app label, with a mesh port.
func (l layout) workloadsYAML() ([]byte, int) {
	var b bytes.Buffer
	n := 0
	for s := range l.Services {
		for k := range l.Endpoints {
			if n > 0 {
				b.WriteString("---\n")
			}
			b.WriteString(l.workloadYAML(s, k, l.workloadAddress(s, k)))
			n++
		}
	}
	return b.Bytes(), n
}

func (l layout) workloadYAML(s, k int, address string) string {
	key := l.service(s)
	return fmt.Sprintf(`apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: %s-%d, namespace: %s, labels: {app: %s}}
spec:
  address: %s
  serviceAccount: %s
  ports: [{name: http, port: 8080, protocol: HTTP}, {name: grpc-api, port: 9090, protocol: GRPC}]
  meshPort: 15008
`, key.Name, k, key.Namespace, key.Name, address, key.Name)
}

// meshRouteName is the name of meshgen's mesh HTTPRoute of a service.
func meshRouteName(svc string) string { return svc + "-mesh" }

// meshRouteYAML is meshgen's mesh route of service s with marker as the
// value of its header match: the route change the benchmark applies.
func (l layout) meshRouteYAML(s int, marker string) string {
	key := l.service(s)
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: %s}
spec:
  parentRefs: [{group: "", kind: Service, name: %s, port: 80}]
  rules:
  - matches: [{headers: [{name: x-canary, value: %q}]}]
    backendRefs: [{name: %s, port: 80}]
  - backendRefs: [{name: %s, port: 80}]
`, meshRouteName(key.Name), key.Namespace, key.Name, marker, key.Name, key.Name)
}
