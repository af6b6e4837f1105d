package resource

import (
	"encoding/json"
	"reflect"
	"testing"

	"trellis.dev/trellis/internal/model"
)

func decodeAll(t *testing.T, file string, data []byte) []*Object {
	t.Helper()
	objs, err := Decode(file, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o, "default")
		if err := Validate(o); err != nil {
			t.Fatal(err)
		}
	}
	return objs
}

func TestModelMesh(t *testing.T) {
	const file = "testdata/mesh.yaml"
	c, err := Model(decodeAll(t, file, mustRead(t, file)))
	if err != nil {
		t.Fatal(err)
	}
	key := func(ns, name string) model.Key { return model.Key{Namespace: ns, Name: name} }
	src := func(kind, ns, name string, line int) model.Source {
		return model.Source{Kind: kind, Key: key(ns, name), File: file, Line: line}
	}
	gwSource := src("Gateway", "demo", "ingress", 10)
	gwSource.Generation = 3
	gwSource.CreationUnix = 1735787045 // 2025-01-02T03:04:05Z
	prefix := func(path string) model.HTTPMatch { return model.HTTPMatch{PathType: model.PathPrefix, PathValue: path} }
	want := &model.Config{
		Services: []*model.Service{{
			Key:      key("demo", "api"),
			Source:   src("Service", "demo", "api", 100),
			Selector: map[string]string{"app": "api"},
			Ports: []model.ServicePort{
				{Name: "http", Port: 8080, TargetPort: 8080, Protocol: model.ProtocolHTTP},
				{Name: "grpc-admin", Port: 9090, TargetPortName: "admin", Protocol: model.ProtocolGRPC},
				{Name: "metrics", Port: 9102, TargetPort: 9102, Protocol: model.ProtocolHTTP},
			},
		}, {
			Key:      key("demo", "api-v2"),
			Source:   src("Service", "demo", "api-v2", 121),
			Selector: map[string]string{"app": "api", "version": "v2"},
			Ports:    []model.ServicePort{{Port: 8080, TargetPort: 8080, Protocol: model.ProtocolHTTP2}},
		}, {
			Key:      key("demo", "db"),
			Source:   src("Service", "demo", "db", 145),
			Selector: map[string]string{"app": "db"},
			Ports:    []model.ServicePort{{Name: "tcp-postgres", Port: 5432, TargetPort: 5432, Protocol: model.ProtocolTCP}},
			Headless: true,
		}, {
			Key:    key("frontend", "web"),
			Source: src("Service", "frontend", "web", 134),
			Ports:  []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8000, Protocol: model.ProtocolHTTP}},
		}},
		Workloads: []*model.Workload{{
			Key:            key("frontend", "web-vm-1"),
			Source:         src("Workload", "frontend", "web-vm-1", 159),
			Address:        "10.1.2.3",
			Labels:         map[string]string{"app": "web"},
			ServiceAccount: "web",
			Services:       []string{"web"},
			Ports:          []model.WorkloadPort{{Name: "http", Port: 8000, Protocol: model.ProtocolHTTP}},
			MeshPort:       15008,
			Locality:       "eu-west1/b",
		}},
		Gateways: []*model.Gateway{{
			Key:       key("demo", "ingress"),
			Source:    gwSource,
			ClassName: "trellis",
			Listeners: []model.Listener{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, Hostname: "*.example.com"},
				{Name: "https", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "shop.example.com"},
			},
		}},
		HTTPRoutes: []*model.HTTPRoute{{
			Key:     key("demo", "api-split"),
			Source:  src("HTTPRoute", "demo", "api-split", 80),
			Parents: []model.ParentRef{{Kind: model.ParentService, Key: key("demo", "api"), Port: 8080}},
			Rules: []model.HTTPRouteRule{{
				Matches: []model.HTTPMatch{prefix("/")},
				Backends: []model.Backend{
					{Service: key("demo", "api"), Port: 8080, Weight: 80},
					{Service: key("demo", "api-v2"), Port: 8080, Weight: 20},
				},
			}},
		}, {
			Key:       key("demo", "shop"),
			Source:    src("HTTPRoute", "demo", "shop", 35),
			Parents:   []model.ParentRef{{Kind: model.ParentGateway, Key: key("demo", "ingress"), SectionName: "https"}},
			Hostnames: []string{"shop.example.com"},
			Rules: []model.HTTPRouteRule{{
				Name: "api",
				Matches: []model.HTTPMatch{{
					PathType: model.PathPrefix, PathValue: "/api", Method: "GET",
					Headers: []model.ValueMatch{{Type: model.MatchExact, Name: "x-canary", Value: "true"}},
				}},
				Backends: []model.Backend{{Service: key("demo", "api-v2"), Port: 8080, Weight: 10}},
			}, {
				Matches: []model.HTTPMatch{
					prefix("/api"),
					{PathType: model.PathPrefix, PathValue: "/", Query: []model.ValueMatch{{Type: model.MatchRegularExpression, Name: "version", Value: "v[12]"}}},
				},
				Backends: []model.Backend{
					{Service: key("demo", "api"), Port: 8080, Weight: 90},
					{Service: key("demo", "api-v2"), Port: 8080, Weight: 10},
				},
			}, {
				Matches:  []model.HTTPMatch{prefix("/")},
				Backends: []model.Backend{{Service: key("frontend", "web"), Port: 80, Weight: 1}},
			}},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		g, _ := json.MarshalIndent(c, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("Model:\n got  %s\n want %s", g, w)
	}
}

func TestModelErrors(t *testing.T) {
	in := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: quic, port: 443, protocol: example.com/quic}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs:
  - {kind: ListenerSet, name: team}
  rules:
  - backendRefs:
    - {group: storage.example.com, kind: Bucket, name: b}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  ports: [{port: 81}]
---
apiVersion: v1
kind: Service
metadata: {name: sctp}
spec:
  ports: [{port: 80, protocol: SCTP}]
---
apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: skipped}
spec: {action: ALLOW}
`
	objs, err := Decode("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o, "demo")
	}
	c, err := Model(objs)
	checkErrors(t, err, []string{
		`t.yaml:7: Gateway demo/gw: spec.listeners[0].protocol: protocol "example.com/quic" is not supported; use HTTP, HTTPS, TLS, TCP or UDP`,
		`t.yaml:14: HTTPRoute demo/r: spec.parentRefs[0]: parent ListenerSet.gateway.networking.k8s.io is not supported; use a Gateway (group gateway.networking.k8s.io) or a Service (group "")`,
		`t.yaml:17: HTTPRoute demo/r: spec.rules[0].backendRefs[0]: backend Bucket.storage.example.com is not supported; Trellis routes to Services`,
		`t.yaml:27: Service demo/api: metadata.name: duplicate Service demo/api (first in t.yaml:19)`,
		`t.yaml:35: Service demo/sctp: spec.ports[0].protocol: protocol SCTP is not supported; use TCP or UDP`,
	})
	// The objects that converted are still there.
	if len(c.Services) != 1 || c.Services[0].Ports[0].Port != 80 || len(c.Gateways) != 0 || len(c.HTTPRoutes) != 0 {
		t.Errorf("Model kept the wrong objects: %+v", c)
	}
}

// TestModelUndefaulted checks that Model reads unset fields with their
// default meaning when Default was not run.
func TestModelUndefaulted(t *testing.T) {
	objs, err := Decode("t.yaml", []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{headers: [{name: x, value: y}]}]
    backendRefs: [{name: api, port: 80}]
`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Model(objs)
	if err != nil {
		t.Fatal(err)
	}
	r := c.HTTPRoutes[0]
	want := model.HTTPRouteRule{
		Matches:  []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/", Headers: []model.ValueMatch{{Type: model.MatchExact, Name: "x", Value: "y"}}}},
		Backends: []model.Backend{{Service: model.Key{Namespace: "default", Name: "api"}, Port: 80, Weight: 1}},
	}
	if r.Key.Namespace != "default" || r.Parents[0].Kind != model.ParentGateway || !reflect.DeepEqual(r.Rules[0], want) {
		t.Errorf("route = %+v", r)
	}
}

func TestServicePortProtocol(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tt := range []struct {
		name        string
		appProtocol *string
		want        model.Protocol
	}{
		{"", nil, model.ProtocolTCP},
		{"web", nil, model.ProtocolTCP},
		{"http", nil, model.ProtocolHTTP},
		{"HTTP-web", nil, model.ProtocolHTTP},
		{"httpx", nil, model.ProtocolTCP},
		{"http2", nil, model.ProtocolHTTP2},
		{"http2-api", nil, model.ProtocolHTTP2},
		{"grpc", nil, model.ProtocolGRPC},
		{"grpc-api", nil, model.ProtocolGRPC},
		{"grpc-web", nil, model.ProtocolHTTP},
		{"https-admin", nil, model.ProtocolHTTPS},
		{"tls", nil, model.ProtocolTLS},
		{"tcp-db", nil, model.ProtocolTCP},
		{"web", str("http"), model.ProtocolHTTP},
		{"web", str("HTTP2"), model.ProtocolHTTP2},
		{"web", str("h2c"), model.ProtocolHTTP2},
		{"web", str("kubernetes.io/h2c"), model.ProtocolHTTP2},
		{"web", str("grpc"), model.ProtocolGRPC},
		{"web", str("https"), model.ProtocolHTTPS},
		{"web", str("tls"), model.ProtocolTLS},
		{"http", str("tcp"), model.ProtocolTCP},
		{"http", str("example.com/custom"), model.ProtocolTCP},
		{"http", str(""), model.ProtocolHTTP},
	} {
		if got := servicePortProtocol(tt.name, tt.appProtocol); got != tt.want {
			ap := "<nil>"
			if tt.appProtocol != nil {
				ap = *tt.appProtocol
			}
			t.Errorf("servicePortProtocol(%q, %s) = %s, want %s", tt.name, ap, got, tt.want)
		}
	}
}
