package resource

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

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

// modelErrorLines returns the messages of the errors joined in err.
func modelErrorLines(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, modelErrorLines(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func jsonText(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func mkey(ns, name string) model.Key { return model.Key{Namespace: ns, Name: name} }

// svc is a Service backend with weight 1.
func svc(ns, name string, port uint32) model.Backend {
	return model.Backend{Kind: "Service", Service: mkey(ns, name), Port: port, Weight: 1}
}

func prefixMatch(path string) model.HTTPMatch {
	return model.HTTPMatch{PathType: model.PathPrefix, PathValue: path}
}

var sameNamespace = model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromSame}}

func TestModelMesh(t *testing.T) {
	const file = "testdata/mesh.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Model(decodeAll(t, file, data))
	if err != nil {
		t.Fatal(err)
	}
	src := func(kind, ns, name string, line int) model.Source {
		return model.Source{Kind: kind, Key: mkey(ns, name), File: file, Line: line}
	}
	gwSource := src("Gateway", "demo", "ingress", 10)
	gwSource.Generation = 3
	gwSource.CreationUnix = 1735787045 // 2025-01-02T03:04:05Z
	want := &model.Config{
		GatewayClasses: []*model.GatewayClass{{
			Name:           "trellis",
			Source:         src("GatewayClass", "", "trellis", 3),
			ControllerName: "trellis.dev/gateway-controller",
		}},
		Services: []*model.Service{{
			Key:      mkey("demo", "api"),
			Source:   src("Service", "demo", "api", 100),
			Selector: map[string]string{"app": "api"},
			Ports: []model.ServicePort{
				{Name: "http", Port: 8080, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
				{Name: "grpc-admin", Port: 9090, TargetPortName: "admin", Protocol: model.ProtocolGRPC, ProtocolDeclared: true},
				{Name: "metrics", Port: 9102, TargetPort: 9102, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
			},
		}, {
			Key:      mkey("demo", "api-v2"),
			Source:   src("Service", "demo", "api-v2", 121),
			Selector: map[string]string{"app": "api", "version": "v2"},
			Ports:    []model.ServicePort{{Port: 8080, TargetPort: 8080, Protocol: model.ProtocolHTTP2, ProtocolDeclared: true}},
		}, {
			Key:      mkey("demo", "db"),
			Source:   src("Service", "demo", "db", 145),
			Selector: map[string]string{"app": "db"},
			Ports:    []model.ServicePort{{Name: "tcp-postgres", Port: 5432, TargetPort: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true}},
			Headless: true,
		}, {
			Key:    mkey("frontend", "web"),
			Source: src("Service", "frontend", "web", 134),
			Ports:  []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8000, Protocol: model.ProtocolHTTP, ProtocolDeclared: true}},
		}},
		Workloads: []*model.Workload{{
			Key:            mkey("frontend", "web-vm-1"),
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
			Key:       mkey("demo", "ingress"),
			Source:    gwSource,
			ClassName: "trellis",
			Listeners: []model.Listener{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, Hostname: "*.example.com", AllowedRoutes: sameNamespace},
				{
					Name: "https", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "shop.example.com",
					TLS: &model.ListenerTLS{
						Mode:            model.TLSTerminate,
						CertificateRefs: []model.Ref{{Kind: "Secret", Key: mkey("demo", "shop-cert")}},
					},
					AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}},
				},
			},
		}},
		HTTPRoutes: []*model.HTTPRoute{{
			Route: model.Route{
				Key:     mkey("demo", "api-split"),
				Source:  src("HTTPRoute", "demo", "api-split", 80),
				Parents: []model.ParentRef{{Kind: model.ParentService, Key: mkey("demo", "api"), Port: 8080}},
			},
			Rules: []model.HTTPRouteRule{{
				// Default gave the rule its match.
				Matches: []model.HTTPMatch{prefixMatch("/")},
				Backends: []model.Backend{
					{Kind: "Service", Service: mkey("demo", "api"), Port: 8080, Weight: 80},
					{Kind: "Service", Service: mkey("demo", "api-v2"), Port: 8080, Weight: 20},
				},
			}},
		}, {
			Route: model.Route{
				Key:       mkey("demo", "shop"),
				Source:    src("HTTPRoute", "demo", "shop", 35),
				Parents:   []model.ParentRef{{Kind: model.ParentGateway, Key: mkey("demo", "ingress"), SectionName: "https"}},
				Hostnames: []string{"shop.example.com"},
			},
			Rules: []model.HTTPRouteRule{{
				Name: "api",
				Matches: []model.HTTPMatch{{
					PathType: model.PathPrefix, PathValue: "/api", Method: "GET",
					Headers: []model.ValueMatch{{Type: model.MatchExact, Name: "x-canary", Value: "true"}},
				}},
				Backends: []model.Backend{{Kind: "Service", Service: mkey("demo", "api-v2"), Port: 8080, Weight: 10}},
			}, {
				Matches: []model.HTTPMatch{
					prefixMatch("/api"),
					{PathType: model.PathPrefix, PathValue: "/", Query: []model.ValueMatch{{Type: model.MatchRegularExpression, Name: "version", Value: "v[12]"}}},
				},
				Backends: []model.Backend{
					{Kind: "Service", Service: mkey("demo", "api"), Port: 8080, Weight: 90},
					{Kind: "Service", Service: mkey("demo", "api-v2"), Port: 8080, Weight: 10},
				},
			}, {
				Matches:  []model.HTTPMatch{prefixMatch("/")},
				Backends: []model.Backend{svc("frontend", "web", 80)},
			}},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Model:\n got  %s\n want %s", jsonText(c), jsonText(want))
	}
}

// onlyObject returns the one object of c, its Source cleared.
func onlyObject(t *testing.T, c *model.Config) any {
	t.Helper()
	var found []reflect.Value
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice {
			for j := range f.Len() {
				found = append(found, f.Index(j))
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one object, got %d: %s", len(found), jsonText(c))
	}
	found[0].Elem().FieldByName("Source").SetZero()
	return found[0].Interface()
}

const (
	gatewayAPI = "apiVersion: gateway.networking.k8s.io/v1\n"
	trellisAPI = "apiVersion: trellis.dev/v1alpha1\n"
)

// TestModelKinds converts one object of each kind, as written and after
// Default (and Validate, unless the object is invalid on purpose): unset
// fields read as their defaults either way.
func TestModelKinds(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want any
		// wantDefaulted, when set, is the result after Default, which adds
		// what the CRDs default (a rule, a match).
		wantDefaulted any
		// invalid objects are not validated.
		invalid bool
	}{{
		name: "GatewayClass",
		in: gatewayAPI + `kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway-controller}
`,
		want: &model.GatewayClass{Name: "trellis", ControllerName: "trellis.dev/gateway-controller"},
	}, {
		name: "Gateway",
		in: gatewayAPI + `kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: trellis
  addresses:
  - value: 10.0.0.1
  - {type: Hostname, value: gw.example.com}
  allowedListeners:
    namespaces:
      from: Selector
      selector:
        matchLabels: {team: a}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.example.com"
    tls:
      certificateRefs:
      - name: wildcard
      - {group: core, kind: Secret, name: shared, namespace: certs}
    allowedRoutes:
      namespaces: {from: All}
  - name: passthrough
    port: 8443
    protocol: TLS
    tls: {mode: Passthrough}
    allowedRoutes:
      kinds:
      - kind: TLSRoute
      - {group: example.com, kind: FooRoute}
  - name: tcp
    port: 5432
    protocol: TCP
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels: {env: prod}
          matchExpressions:
          - {key: team, operator: In, values: [a, b]}
          - {key: legacy, operator: DoesNotExist}
  - {name: dns, port: 53, protocol: UDP}
  - {name: quic, port: 443, protocol: example.com/quic}
`,
		want: &model.Gateway{
			Key:       mkey("infra", "gw"),
			ClassName: "trellis",
			Addresses: []string{"10.0.0.1", "gw.example.com"},
			Listeners: []model.Listener{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: sameNamespace},
				{
					Name: "https", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "*.example.com",
					TLS: &model.ListenerTLS{Mode: model.TLSTerminate, CertificateRefs: []model.Ref{
						{Kind: "Secret", Key: mkey("infra", "wildcard")},
						{Kind: "Secret", Key: mkey("certs", "shared")},
					}},
					AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}},
				},
				{
					Name: "passthrough", Port: 8443, Protocol: model.ProtocolTLS,
					TLS: &model.ListenerTLS{Mode: model.TLSPassthrough},
					AllowedRoutes: model.AllowedRoutes{
						Namespaces: model.NamespaceFilter{From: model.FromSame},
						Kinds:      []model.GroupKind{{Group: model.GatewayGroup, Kind: "TLSRoute"}, {Group: "example.com", Kind: "FooRoute"}},
					},
				},
				{
					Name: "tcp", Port: 5432, Protocol: model.ProtocolTCP,
					AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{
						From: model.FromSelector,
						Selector: &model.Selector{
							MatchLabels: map[string]string{"env": "prod"},
							Expressions: []model.SelectorRequirement{
								{Key: "team", Operator: "In", Values: []string{"a", "b"}},
								{Key: "legacy", Operator: "DoesNotExist"},
							},
						},
					}},
				},
				{Name: "dns", Port: 53, Protocol: model.ProtocolUDP, AllowedRoutes: sameNamespace},
				{Name: "quic", Port: 443, Protocol: "example.com/quic", AllowedRoutes: sameNamespace},
			},
			AllowListenerSets: &model.NamespaceFilter{
				From:     model.FromSelector,
				Selector: &model.Selector{MatchLabels: map[string]string{"team": "a"}},
			},
		},
	}, {
		name: "Gateway allowedListeners without from allows none",
		in: gatewayAPI + `kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: trellis
  allowedListeners: {}
  listeners: [{name: http, port: 80, protocol: HTTP}]
`,
		want: &model.Gateway{
			Key: mkey("default", "gw"), ClassName: "trellis",
			Listeners: []model.Listener{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: sameNamespace}},
		},
	}, {
		name: "Gateway allowedListeners from Same",
		in: gatewayAPI + `kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: trellis
  allowedListeners: {namespaces: {from: Same}}
  listeners: [{name: http, port: 80, protocol: HTTP}]
`,
		want: &model.Gateway{
			Key: mkey("default", "gw"), ClassName: "trellis",
			Listeners:         []model.Listener{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: sameNamespace}},
			AllowListenerSets: &model.NamespaceFilter{From: model.FromSame},
		},
	}, {
		name: "ListenerSet",
		in: gatewayAPI + `kind: ListenerSet
metadata: {name: team-a, namespace: team-a}
spec:
  parentRef: {name: shared, namespace: infra}
  listeners:
  - name: api
    port: 443
    protocol: HTTPS
    hostname: api.a.example.com
    tls: {certificateRefs: [{name: api-cert}]}
  - {name: plain, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
`,
		want: &model.ListenerSet{
			Key:     mkey("team-a", "team-a"),
			Gateway: mkey("infra", "shared"),
			Listeners: []model.Listener{{
				Name: "api", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "api.a.example.com",
				TLS:           &model.ListenerTLS{Mode: model.TLSTerminate, CertificateRefs: []model.Ref{{Kind: "Secret", Key: mkey("team-a", "api-cert")}}},
				AllowedRoutes: sameNamespace,
			}, {
				Name: "plain", Port: 80, Protocol: model.ProtocolHTTP,
				AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}},
			}},
		},
	}, {
		name: "ListenerSet parent in its own namespace",
		in: gatewayAPI + `kind: ListenerSet
metadata: {name: ls, namespace: team-b}
spec:
  parentRef: {group: gateway.networking.k8s.io, kind: Gateway, name: shared}
  listeners: [{name: plain, port: 80, protocol: HTTP}]
`,
		want: &model.ListenerSet{
			Key:       mkey("team-b", "ls"),
			Gateway:   mkey("team-b", "shared"),
			Listeners: []model.Listener{{Name: "plain", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: sameNamespace}},
		},
	}, {
		name: "HTTPRoute",
		in: gatewayAPI + `kind: HTTPRoute
metadata: {name: shop, namespace: shop}
spec:
  parentRefs:
  - {name: gw, namespace: infra, sectionName: https}
  - {group: "", kind: Service, name: cart, port: 8080}
  - {group: core, kind: Service, name: cart2}
  - {kind: ListenerSet, name: team}
  hostnames: [shop.example.com, "*.shop.example.com"]
  rules:
  - name: cart
    matches:
    - path: {type: Exact, value: /cart}
      method: POST
      headers:
      - {name: x-user, value: "42"}
      - {type: RegularExpression, name: x-tier, value: "gold|silver"}
      queryParams:
      - {name: debug, value: "1"}
    - path: {type: RegularExpression, value: "/cart/[0-9]+"}
    - path: {value: /legacy}
    - method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: a}]
        add: [{name: x-add, value: b}]
        remove: [x-remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {remove: [server]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}, percent: 10}
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, namespace: other, port: 80}
        fraction: {numerator: 1, denominator: 3}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}, fraction: {numerator: 5}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 80}, fraction: {numerator: 1, denominator: 1000}}
    - type: RequestMirror
      requestMirror: {backendRef: {group: example.com, kind: Sink, name: sink}}
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Plugin, name: p}
    - type: CORS
      cors:
        allowOrigins: ["https://shop.example.com", "https://*.shop.example.com"]
        allowMethods: [GET, POST]
        allowHeaders: [x-a]
        exposeHeaders: [x-b]
        allowCredentials: true
        maxAge: 60
    backendRefs:
    - name: cart
      port: 8080
      weight: 3
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {add: [{name: x-backend, value: cart}]}
    - {name: cart-v2, namespace: canary, port: 8080}
    timeouts: {request: 1m30s, backendRequest: 10s}
  - matches: [{path: {value: /moved-from}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: secure.example.com
        port: 8443
        path: {type: ReplaceFullPath, replaceFullPath: /moved}
        statusCode: 301
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {scheme: https}}
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    timeouts: {request: 0s}
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /new}}
    backendRefs:
    - name: cart
      port: 8080
      filters:
      - type: URLRewrite
        urlRewrite:
          hostname: cart.internal
          path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
`,
		want: &model.HTTPRoute{
			Route: model.Route{
				Key: mkey("shop", "shop"),
				Parents: []model.ParentRef{
					{Kind: model.ParentGateway, Key: mkey("infra", "gw"), SectionName: "https"},
					{Kind: model.ParentService, Key: mkey("shop", "cart"), Port: 8080},
					{Kind: model.ParentService, Key: mkey("shop", "cart2")},
					{Kind: model.ParentListenerSet, Key: mkey("shop", "team")},
				},
				Hostnames: []string{"shop.example.com", "*.shop.example.com"},
			},
			Rules: []model.HTTPRouteRule{{
				Name: "cart",
				Matches: []model.HTTPMatch{{
					PathType: model.PathExact, PathValue: "/cart", Method: "POST",
					Headers: []model.ValueMatch{
						{Type: model.MatchExact, Name: "x-user", Value: "42"},
						{Type: model.MatchRegularExpression, Name: "x-tier", Value: "gold|silver"},
					},
					Query: []model.ValueMatch{{Type: model.MatchExact, Name: "debug", Value: "1"}},
				},
					{PathType: model.PathRegularExpression, PathValue: "/cart/[0-9]+"},
					prefixMatch("/legacy"),
					{PathType: model.PathPrefix, PathValue: "/", Method: "GET"},
				},
				Filters: []model.HTTPFilter{
					{Type: model.FilterRequestHeaderModifier, RequestHeaders: &model.HeaderModifier{
						Set:    []model.Header{{Name: "x-set", Value: "a"}},
						Add:    []model.Header{{Name: "x-add", Value: "b"}},
						Remove: []string{"x-remove"},
					}},
					{Type: model.FilterResponseHeaderModifier, ResponseHeaders: &model.HeaderModifier{Remove: []string{"server"}}},
					{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: svc("shop", "shadow", 80), Percent: 10}},
					{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: svc("other", "shadow", 80), Percent: 33}},
					{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: svc("shop", "shadow", 80), Percent: 5}},
					{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: svc("shop", "shadow", 80), Percent: 1}},
					{Type: model.FilterRequestMirror, Mirror: &model.Mirror{
						Backend: model.Backend{Kind: "Sink.example.com", Service: mkey("shop", "sink"), Weight: 1}, Percent: 100,
					}},
					{Type: model.FilterExtensionRef, ExtensionRef: &model.Ref{Group: "example.com", Kind: "Plugin", Key: mkey("shop", "p")}},
					{Type: model.FilterCORS, CORS: &model.CORS{
						AllowOrigins: []string{"https://shop.example.com", "https://*.shop.example.com"},
						AllowMethods: []string{"GET", "POST"}, AllowHeaders: []string{"x-a"}, ExposeHeaders: []string{"x-b"},
						AllowCredentials: true, MaxAge: 60,
					}},
				},
				Backends: []model.Backend{{
					Kind: "Service", Service: mkey("shop", "cart"), Port: 8080, Weight: 3,
					Filters: []model.HTTPFilter{{Type: model.FilterRequestHeaderModifier, RequestHeaders: &model.HeaderModifier{
						Add: []model.Header{{Name: "x-backend", Value: "cart"}},
					}}},
				},
					svc("canary", "cart-v2", 8080),
				},
				Timeout:        ptrTo(90 * time.Second),
				BackendTimeout: ptrTo(10 * time.Second),
			}, {
				Matches: []model.HTTPMatch{prefixMatch("/moved-from")},
				Filters: []model.HTTPFilter{{Type: model.FilterRequestRedirect, Redirect: &model.Redirect{
					Scheme: "https", Hostname: "secure.example.com", Port: 8443,
					Path:       &model.PathModifier{Type: model.ReplaceFullPath, Value: "/moved"},
					StatusCode: 301,
				}}},
			}, {
				Matches: []model.HTTPMatch{prefixMatch("/old")},
				Filters: []model.HTTPFilter{{Type: model.FilterRequestRedirect, Redirect: &model.Redirect{Scheme: "https", StatusCode: 302}}},
			}, {
				Matches: []model.HTTPMatch{prefixMatch("/v1")},
				Timeout: ptrTo(time.Duration(0)),
				Filters: []model.HTTPFilter{{Type: model.FilterURLRewrite, Rewrite: &model.URLRewrite{
					Path: &model.PathModifier{Type: model.ReplaceFullPath, Value: "/new"},
				}}},
				Backends: []model.Backend{{
					Kind: "Service", Service: mkey("shop", "cart"), Port: 8080, Weight: 1,
					Filters: []model.HTTPFilter{{Type: model.FilterURLRewrite, Rewrite: &model.URLRewrite{
						Hostname: "cart.internal",
						Path:     &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/v2"},
					}}},
				}},
			}},
		},
	}, {
		// Index alignment: what Trellis cannot serve keeps its place.
		name: "HTTPRoute keeps unsupported parents and backends in place",
		in: gatewayAPI + `kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs:
  - {name: gw}
  - {group: example.com, kind: Mesh, name: m}
  - {group: "", kind: Service, name: api, port: 80}
  rules:
  - backendRefs:
    - {name: api, port: 80}
    - {group: storage.example.com, kind: Bucket, name: b}
    - {name: noport}
    - {group: core, kind: Pod, name: p, port: 8080}
    - {name: api, port: 81, weight: 0}
`,
		invalid: true, // a Service backend needs a port
		want: &model.HTTPRoute{
			Route: model.Route{
				Key: mkey("ns", "r"),
				Parents: []model.ParentRef{
					{Kind: model.ParentGateway, Key: mkey("ns", "gw")},
					{Kind: "Mesh.example.com", Key: mkey("ns", "m")},
					{Kind: model.ParentService, Key: mkey("ns", "api"), Port: 80},
				},
			},
			Rules: []model.HTTPRouteRule{{Backends: []model.Backend{
				svc("ns", "api", 80),
				{Kind: "Bucket.storage.example.com", Service: mkey("ns", "b"), Weight: 1},
				svc("ns", "noport", 0),
				{Kind: "Pod", Service: mkey("ns", "p"), Port: 8080, Weight: 1},
				{Kind: "Service", Service: mkey("ns", "api"), Port: 81, Weight: 0},
			}}},
		},
		wantDefaulted: &model.HTTPRoute{
			Route: model.Route{
				Key: mkey("ns", "r"),
				Parents: []model.ParentRef{
					{Kind: model.ParentGateway, Key: mkey("ns", "gw")},
					{Kind: "Mesh.example.com", Key: mkey("ns", "m")},
					{Kind: model.ParentService, Key: mkey("ns", "api"), Port: 80},
				},
			},
			Rules: []model.HTTPRouteRule{{
				Matches: []model.HTTPMatch{prefixMatch("/")},
				Backends: []model.Backend{
					svc("ns", "api", 80),
					{Kind: "Bucket.storage.example.com", Service: mkey("ns", "b"), Weight: 1},
					svc("ns", "noport", 0),
					{Kind: "Pod", Service: mkey("ns", "p"), Port: 8080, Weight: 1},
					{Kind: "Service", Service: mkey("ns", "api"), Port: 81, Weight: 0},
				},
			}},
		},
	}, {
		name: "HTTPRoute without rules keeps none",
		in: gatewayAPI + `kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
`,
		want: &model.HTTPRoute{Route: model.Route{
			Key:     mkey("default", "r"),
			Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: mkey("default", "gw")}},
		}},
		wantDefaulted: &model.HTTPRoute{
			Route: model.Route{
				Key:     mkey("default", "r"),
				Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: mkey("default", "gw")}},
			},
			Rules: []model.HTTPRouteRule{{Matches: []model.HTTPMatch{prefixMatch("/")}}},
		},
	}, {
		name: "GRPCRoute",
		in: gatewayAPI + `kind: GRPCRoute
metadata: {name: g, namespace: ns}
spec:
  parentRefs: [{name: gw, sectionName: grpc}]
  hostnames: [grpc.example.com]
  rules:
  - name: hello
    matches:
    - method: {service: helloworld.Greeter, method: SayHello}
      headers: [{name: x-tenant, value: a}]
    - method: {type: RegularExpression, service: "helloworld\\..*"}
    - headers: [{type: RegularExpression, name: x-env, value: "prod|stage"}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-via, value: trellis}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 9000}}
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Plugin, name: p}
    backendRefs:
    - name: greeter
      port: 9000
      weight: 2
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-backend, value: greeter}]}
  - backendRefs: [{name: fallback, port: 9000}]
`,
		want: &model.GRPCRoute{
			Route: model.Route{
				Key:       mkey("ns", "g"),
				Parents:   []model.ParentRef{{Kind: model.ParentGateway, Key: mkey("ns", "gw"), SectionName: "grpc"}},
				Hostnames: []string{"grpc.example.com"},
			},
			Rules: []model.GRPCRouteRule{{
				Name: "hello",
				Matches: []model.GRPCMatch{
					{Type: model.MatchExact, Service: "helloworld.Greeter", Method: "SayHello",
						Headers: []model.ValueMatch{{Type: model.MatchExact, Name: "x-tenant", Value: "a"}}},
					{Type: model.MatchRegularExpression, Service: `helloworld\..*`},
					{Type: model.MatchExact, Headers: []model.ValueMatch{{Type: model.MatchRegularExpression, Name: "x-env", Value: "prod|stage"}}},
				},
				Filters: []model.HTTPFilter{
					{Type: model.FilterRequestHeaderModifier, RequestHeaders: &model.HeaderModifier{Set: []model.Header{{Name: "x-via", Value: "trellis"}}}},
					{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: svc("ns", "shadow", 9000), Percent: 100}},
					{Type: model.FilterExtensionRef, ExtensionRef: &model.Ref{Group: "example.com", Kind: "Plugin", Key: mkey("ns", "p")}},
				},
				Backends: []model.Backend{{
					Kind: "Service", Service: mkey("ns", "greeter"), Port: 9000, Weight: 2,
					Filters: []model.HTTPFilter{{Type: model.FilterResponseHeaderModifier, ResponseHeaders: &model.HeaderModifier{
						Add: []model.Header{{Name: "x-backend", Value: "greeter"}},
					}}},
				}},
			}, {
				Backends: []model.Backend{svc("ns", "fallback", 9000)},
			}},
		},
	}, {
		name: "TLSRoute",
		in: gatewayAPI + `kind: TLSRoute
metadata: {name: t, namespace: ns}
spec:
  parentRefs: [{name: gw, sectionName: passthrough}]
  hostnames: [db.example.com]
  rules:
  - name: db
    backendRefs: [{name: db, port: 5432}, {name: db-replica, port: 5432, weight: 0}]
`,
		want: &model.TLSRoute{
			Route: model.Route{
				Key:       mkey("ns", "t"),
				Parents:   []model.ParentRef{{Kind: model.ParentGateway, Key: mkey("ns", "gw"), SectionName: "passthrough"}},
				Hostnames: []string{"db.example.com"},
			},
			Rules: []model.L4Rule{{Name: "db", Backends: []model.Backend{
				svc("ns", "db", 5432),
				{Kind: "Service", Service: mkey("ns", "db-replica"), Port: 5432},
			}}},
		},
	}, {
		name: "TCPRoute",
		in: gatewayAPI + `kind: TCPRoute
metadata: {name: t, namespace: ns}
spec:
  parentRefs: [{name: gw, port: 5432}]
  rules:
  - backendRefs: [{name: db, port: 5432, weight: 9}, {name: db, namespace: other, port: 5432}]
`,
		want: &model.TCPRoute{
			Route: model.Route{
				Key:     mkey("ns", "t"),
				Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: mkey("ns", "gw"), Port: 5432}},
			},
			Rules: []model.L4Rule{{Backends: []model.Backend{
				{Kind: "Service", Service: mkey("ns", "db"), Port: 5432, Weight: 9},
				svc("other", "db", 5432),
			}}},
		},
	}, {
		name: "ReferenceGrant",
		in: gatewayAPI + `kind: ReferenceGrant
metadata: {name: allow, namespace: backends}
spec:
  from:
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}
  - {group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}
  to:
  - {group: "", kind: Service}
  - {group: core, kind: Secret, name: wildcard}
`,
		want: &model.ReferenceGrant{
			Key: mkey("backends", "allow"),
			From: []model.GrantFrom{
				{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "HTTPRoute"}, Namespace: "shop"},
				{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, Namespace: "infra"},
			},
			To: []model.GrantTo{
				{GroupKind: model.GroupKind{Kind: "Service"}},
				{GroupKind: model.GroupKind{Kind: "Secret"}, Name: "wildcard"},
			},
		},
	}, {
		name: "Service ports and protocols",
		in: `apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec:
  selector: {app: api}
  ports:
  - {name: http-web, port: 80, targetPort: 8080}
  - {name: web, port: 81, targetPort: 8081, appProtocol: kubernetes.io/h2c}
  - {name: grpc, port: 9090, targetPort: grpc}
  - {name: tcp-db, port: 5432, targetPort: 5432}
  - {name: metrics, port: 9102, targetPort: 9102}
  - {name: custom, port: 7000, targetPort: 7000, appProtocol: example.com/custom}
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
  - {name: sctp, port: 9999, targetPort: 9999, protocol: SCTP}
`,
		want: &model.Service{
			Key:      mkey("ns", "api"),
			Selector: map[string]string{"app": "api"},
			Ports: []model.ServicePort{
				{Name: "http-web", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
				{Name: "web", Port: 81, TargetPort: 8081, Protocol: model.ProtocolHTTP2, ProtocolDeclared: true},
				{Name: "grpc", Port: 9090, TargetPortName: "grpc", Protocol: model.ProtocolGRPC, ProtocolDeclared: true},
				{Name: "tcp-db", Port: 5432, TargetPort: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true},
				{Name: "metrics", Port: 9102, TargetPort: 9102, Protocol: model.ProtocolTCP},
				{Name: "custom", Port: 7000, TargetPort: 7000, Protocol: model.ProtocolTCP},
				{Name: "dns", Port: 53, TargetPort: 53, Protocol: model.ProtocolUDP, ProtocolDeclared: true},
				{Name: "sctp", Port: 9999, TargetPort: 9999, Protocol: "SCTP", ProtocolDeclared: true},
			},
		},
	}, {
		name: "Service ExternalName",
		in: `apiVersion: v1
kind: Service
metadata: {name: ext, namespace: ns}
spec:
  type: ExternalName
  externalName: api.example.com
`,
		want: &model.Service{Key: mkey("ns", "ext"), ExternalName: "api.example.com"},
	}, {
		name: "Service headless without selector",
		in: `apiVersion: v1
kind: Service
metadata: {name: db, namespace: ns}
spec:
  clusterIP: None
  ports: [{port: 5432, targetPort: 5432}]
`,
		want: &model.Service{
			Key:      mkey("ns", "db"),
			Headless: true,
			Ports:    []model.ServicePort{{Port: 5432, TargetPort: 5432, Protocol: model.ProtocolTCP}},
		},
	}, {
		name: "Workload",
		in: trellisAPI + `kind: Workload
metadata: {name: vm, namespace: ns, labels: {app: api}}
spec:
  address: "2001:DB8::1"
  services: [api]
  ports:
  - {name: http, port: 8080, protocol: HTTP}
  - {name: db, port: 5432}
  locality: region/zone
`,
		want: &model.Workload{
			Key:            mkey("ns", "vm"),
			Address:        "2001:db8::1",
			Labels:         map[string]string{"app": "api"},
			ServiceAccount: "default",
			Services:       []string{"api"},
			Ports: []model.WorkloadPort{
				{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP},
				{Name: "db", Port: 5432, Protocol: model.ProtocolTCP},
			},
			Locality: "region/zone",
		},
	}, {
		name: "MTLSPolicy",
		in: trellisAPI + `kind: MTLSPolicy
metadata: {name: strict, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: api}, {group: core, kind: Service, name: db}]
  mode: STRICT
  ports: [{port: 8080, mode: PERMISSIVE}, {port: 9090, mode: DISABLE}]
`,
		want: &model.MTLSPolicy{
			Key: mkey("ns", "strict"),
			Targets: []model.TargetRef{
				{GroupKind: model.GroupKind{Kind: "Service"}, Name: "api"},
				{GroupKind: model.GroupKind{Kind: "Service"}, Name: "db"},
			},
			Mode:  model.MTLSStrict,
			Ports: []model.PortMTLS{{Port: 8080, Mode: model.MTLSPermissive}, {Port: 9090, Mode: model.MTLSDisable}},
		},
	}, {
		name: "MTLSPolicy for the namespace",
		in: trellisAPI + `kind: MTLSPolicy
metadata: {name: ns-wide, namespace: ns}
spec: {mode: PERMISSIVE}
`,
		want: &model.MTLSPolicy{Key: mkey("ns", "ns-wide"), Mode: model.MTLSPermissive},
	}, {
		name: "AccessPolicy",
		in: trellisAPI + `kind: AccessPolicy
metadata: {name: ap, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: api}, {group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: DENY
  rules:
  - from:
    - identities: ["spiffe://cluster.local/ns/shop/sa/*"]
    - namespaces: [shop, billing]
    to:
    - ports: [8080, 9090]
      paths: [/api, "*/health"]
      methods: [GET, POST]
      headers:
      - {name: x-tenant, value: a}
      - {type: RegularExpression, name: x-env, value: "prod.*"}
  - {}
`,
		want: &model.AccessPolicy{
			Key: mkey("ns", "ap"),
			Targets: []model.TargetRef{
				{GroupKind: model.GroupKind{Kind: "Service"}, Name: "api"},
				{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, Name: "gw"},
			},
			Action: model.AccessDeny,
			Rules: []model.AccessRule{{
				From: []model.AccessSource{
					{Identities: []string{"spiffe://cluster.local/ns/shop/sa/*"}},
					{Namespaces: []string{"shop", "billing"}},
				},
				To: []model.AccessTarget{{
					Ports:   []uint32{8080, 9090},
					Paths:   []string{"/api", "*/health"},
					Methods: []string{"GET", "POST"},
					Headers: []model.ValueMatch{
						{Type: model.MatchExact, Name: "x-tenant", Value: "a"},
						{Type: model.MatchRegularExpression, Name: "x-env", Value: "prod.*"},
					},
				}},
			}, {}},
		},
	}, {
		name: "BackendPolicy",
		in: trellisAPI + `kind: BackendPolicy
metadata: {name: bp, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  tls: {mode: RequireMesh}
  loadBalancer: {type: ConsistentHash, hashHeader: x-user}
  connectionLimits: {maxConnections: 100, maxPendingRequests: 10, maxRequests: 1000}
  outlierDetection: {consecutive5xx: 5, consecutiveConnectErrors: 3, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  retryBudget: {percent: 20, minRetriesConcurrency: 3}
  idleTimeout: 1h
  rateLimit: {requests: 100, per: 1s, burst: 20}
`,
		want: &model.BackendPolicy{
			Key:              mkey("ns", "bp"),
			Targets:          []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "api"}},
			TLS:              model.BackendTLSRequireMesh,
			LoadBalancer:     &model.LoadBalancer{Type: "ConsistentHash", HashHeader: "x-user"},
			ConnectionLimits: &model.ConnectionLimits{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 1000},
			OutlierDetection: &model.OutlierDetection{
				Consecutive5xx: 5, ConsecutiveConnectErrors: 3,
				Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionPercent: 50,
			},
			RetryBudget: &model.RetryBudget{Percent: 20, MinRetries: 3},
			IdleTimeout: time.Hour,
			RateLimit:   &model.RateLimit{Requests: 100, Per: time.Second, Burst: 20},
		},
	}, {
		name: "BackendPolicy defaults to mesh TLS",
		in: trellisAPI + `kind: BackendPolicy
metadata: {name: bp, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
`,
		want: &model.BackendPolicy{
			Key:     mkey("ns", "bp"),
			Targets: []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "api"}},
			TLS:     model.BackendTLSMesh,
		},
	}, {
		name: "BackendPolicy TLS disabled",
		in: trellisAPI + `kind: BackendPolicy
metadata: {name: bp, namespace: ns}
spec:
  targetRefs: [{group: "", kind: Service, name: api, sectionName: http}]
  tls: {mode: Disable}
`,
		want: &model.BackendPolicy{
			Key:     mkey("ns", "bp"),
			Targets: []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "api", SectionName: "http"}},
			TLS:     model.BackendTLSDisable,
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			for _, defaulted := range []bool{false, true} {
				objs, err := Decode("t.yaml", []byte(tt.in))
				if err != nil {
					t.Fatal(err)
				}
				want := tt.want
				if defaulted {
					for _, o := range objs {
						Default(o, "default")
						if err := Validate(o); err != nil && !tt.invalid {
							t.Fatal(err)
						}
					}
					if tt.wantDefaulted != nil {
						want = tt.wantDefaulted
					}
				}
				c, err := Model(objs)
				if err != nil {
					t.Fatal(err)
				}
				if got := onlyObject(t, c); !reflect.DeepEqual(got, want) {
					t.Errorf("defaulted=%t:\n got  %s\n want %s", defaulted, jsonText(got), jsonText(want))
				}
			}
		})
	}
}

// TestModelSource checks the Source of every kind.
func TestModelSource(t *testing.T) {
	docs := []string{
		gatewayAPI + "kind: GatewayClass\nmetadata: {name: trellis, generation: 2, creationTimestamp: \"2025-01-02T03:04:05Z\"}\nspec: {controllerName: trellis.dev/gateway-controller}\n",
		gatewayAPI + "kind: Gateway\nmetadata: {name: gw, namespace: ns, generation: 4}\nspec: {gatewayClassName: trellis, listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
		gatewayAPI + "kind: ListenerSet\nmetadata: {name: ls, namespace: ns}\nspec: {parentRef: {name: gw}, listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
		gatewayAPI + "kind: HTTPRoute\nmetadata: {name: r, namespace: ns, creationTimestamp: \"2025-01-02T03:04:06Z\"}\nspec: {parentRefs: [{name: gw}]}\n",
		gatewayAPI + "kind: GRPCRoute\nmetadata: {name: r, namespace: ns}\nspec: {parentRefs: [{name: gw}]}\n",
		gatewayAPI + "kind: TLSRoute\nmetadata: {name: r, namespace: ns}\nspec: {parentRefs: [{name: gw}]}\n",
		gatewayAPI + "kind: TCPRoute\nmetadata: {name: r, namespace: ns}\nspec: {parentRefs: [{name: gw}]}\n",
		gatewayAPI + "kind: ReferenceGrant\nmetadata: {name: g, namespace: ns}\nspec: {from: [], to: []}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\nspec: {ports: [{port: 80}]}\n",
		trellisAPI + "kind: Workload\nmetadata: {name: w, namespace: ns}\nspec: {address: 10.0.0.1}\n",
		trellisAPI + "kind: MTLSPolicy\nmetadata: {name: p, namespace: ns}\nspec: {mode: STRICT}\n",
		trellisAPI + "kind: AccessPolicy\nmetadata: {name: p, namespace: ns}\nspec: {action: ALLOW}\n",
		trellisAPI + "kind: BackendPolicy\nmetadata: {name: p, namespace: ns}\nspec: {targetRefs: []}\n",
		// Not in the model.
		gatewayAPI + "kind: BackendTLSPolicy\nmetadata: {name: p, namespace: ns}\nspec: {targetRefs: [], validation: {hostname: a.example.com}}\n",
	}
	c, err := Model(mustDecode(t, "all.yaml", strings.Join(docs, "---\n")))
	if err != nil {
		t.Fatal(err)
	}
	// Each document has four lines and its separator.
	line := func(i int) int { return 1 + 5*i }
	src := func(kind, name string, i int) model.Source {
		return model.Source{Kind: kind, Key: mkey("ns", name), File: "all.yaml", Line: line(i)}
	}
	gcSource := model.Source{Kind: "GatewayClass", Key: model.Key{Name: "trellis"}, File: "all.yaml", Line: 1, Generation: 2, CreationUnix: 1735787045}
	gwSource := src("Gateway", "gw", 1)
	gwSource.Generation = 4
	httpSource := src("HTTPRoute", "r", 3)
	httpSource.CreationUnix = 1735787046
	for _, tt := range []struct {
		got, want model.Source
	}{
		{c.GatewayClasses[0].Source, gcSource},
		{c.Gateways[0].Source, gwSource},
		{c.ListenerSets[0].Source, src("ListenerSet", "ls", 2)},
		{c.HTTPRoutes[0].Source, httpSource},
		{c.GRPCRoutes[0].Source, src("GRPCRoute", "r", 4)},
		{c.TLSRoutes[0].Source, src("TLSRoute", "r", 5)},
		{c.TCPRoutes[0].Source, src("TCPRoute", "r", 6)},
		{c.ReferenceGrants[0].Source, src("ReferenceGrant", "g", 7)},
		{c.Services[0].Source, src("Service", "s", 8)},
		{c.Workloads[0].Source, src("Workload", "w", 9)},
		{c.MTLSPolicies[0].Source, src("MTLSPolicy", "p", 10)},
		{c.AccessPolicies[0].Source, src("AccessPolicy", "p", 11)},
		{c.BackendPolicies[0].Source, src("BackendPolicy", "p", 12)},
	} {
		if tt.got != tt.want {
			t.Errorf("source %+v, want %+v", tt.got, tt.want)
		}
	}
	if c.Namespaces != nil {
		t.Errorf("Namespaces = %v, want nil", c.Namespaces)
	}
}

func mustDecode(t *testing.T, file, in string) []*Object {
	t.Helper()
	objs, err := Decode(file, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestModelSorted checks that the model is sorted whatever the input
// order.
func TestModelSorted(t *testing.T) {
	in := `apiVersion: v1
kind: Service
metadata: {name: b, namespace: y}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: y}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: z, namespace: x}
spec: {ports: [{port: 80}]}
---
` + gatewayAPI + `kind: GatewayClass
metadata: {name: b}
spec: {controllerName: x.example.com/c}
---
` + gatewayAPI + `kind: GatewayClass
metadata: {name: a}
spec: {controllerName: x.example.com/c}
`
	c, err := Model(mustDecode(t, "t.yaml", in))
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range c.Services {
		services = append(services, s.Key.String())
	}
	if want := []string{"x/z", "y/a", "y/b"}; !slices.Equal(services, want) {
		t.Errorf("services %v, want %v", services, want)
	}
	if c.GatewayClasses[0].Name != "a" || c.GatewayClasses[1].Name != "b" {
		t.Errorf("gateway classes not sorted: %s", jsonText(c.GatewayClasses))
	}
}

// TestModelErrors checks that only what cannot be represented is an
// error: the object is left out, the others are converted.
func TestModelErrors(t *testing.T) {
	in := `apiVersion: v1
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
` + gatewayAPI + `kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway-controller}
---
` + gatewayAPI + `kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: example.com/other}
---
` + gatewayAPI + `kind: HTTPRoute
metadata: {name: slow}
spec:
  parentRefs: [{name: gw}]
  rules:
  - timeouts: {request: 1.5s, backendRequest: 10d}
---
` + gatewayAPI + `kind: HTTPRoute
metadata: {name: mirror}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, port: 80}
        fraction: {numerator: 1, denominator: 0}
---
` + trellisAPI + `kind: BackendPolicy
metadata: {name: bp}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  idleTimeout: "10"
  rateLimit: {requests: 1, per: 1 s}
---
` + gatewayAPI + `kind: ListenerSet
metadata: {name: ls}
spec:
  parentRef: {kind: ListenerSet, name: other}
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
` + trellisAPI + `kind: Workload
metadata: {name: w}
spec:
  address: 10.0.0.1
  ports: [{port: 70000}]
---
` + gatewayAPI + `kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: quic, port: 443, protocol: example.com/quic}
---
` + gatewayAPI + `kind: HTTPRoute
metadata: {name: odd}
spec:
  parentRefs:
  - {kind: Mesh, group: example.com, name: m}
  rules:
  - backendRefs:
    - {group: storage.example.com, kind: Bucket, name: b}
    - {name: api}
---
apiVersion: v1
kind: Service
metadata: {name: sctp}
spec:
  ports: [{port: 80, protocol: SCTP}]
`
	objs, err := Decode("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o, "demo")
	}
	c, err := Model(objs)
	want := []string{
		`t.yaml:9: Service demo/api: metadata.name: duplicate Service demo/api (first in t.yaml:1)`,
		`t.yaml:20: GatewayClass trellis: metadata.name: duplicate GatewayClass trellis (first in t.yaml:13)`,
		`t.yaml:29: HTTPRoute demo/slow: spec.rules[0].timeouts.request: invalid duration "1.5s": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
		`t.yaml:29: HTTPRoute demo/slow: spec.rules[0].timeouts.backendRequest: invalid duration "10d": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
		`t.yaml:41: HTTPRoute demo/mirror: spec.rules[0].filters[0].requestMirror.fraction.denominator: must be at least 1`,
		`t.yaml:48: BackendPolicy demo/bp: spec.idleTimeout: invalid duration "10": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
		`t.yaml:49: BackendPolicy demo/bp: spec.rateLimit.per: invalid duration "1 s": use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms`,
		`t.yaml:55: ListenerSet demo/ls: spec.parentRef: parent ListenerSet.gateway.networking.k8s.io cannot be represented; a ListenerSet attaches to a Gateway (group gateway.networking.k8s.io)`,
		`t.yaml:63: Workload demo/w: spec.ports[0].port: port 70000 is out of range 1-65535`,
	}
	if got := modelErrorLines(err); !slices.Equal(got, want) {
		t.Errorf("errors:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	var rerr *Error
	if !errors.As(err, &rerr) {
		t.Errorf("errors are not *Error: %T", err)
	}
	// The first of the duplicates and the objects that converted are
	// there; unsupported protocols, parents and backends are not errors.
	if len(c.Services) != 2 || c.Services[0].Ports[0].Port != 80 || c.Services[1].Ports[0].Protocol != "SCTP" {
		t.Errorf("services: %s", jsonText(c.Services))
	}
	if len(c.GatewayClasses) != 1 || c.GatewayClasses[0].ControllerName != "trellis.dev/gateway-controller" {
		t.Errorf("gateway classes: %s", jsonText(c.GatewayClasses))
	}
	if len(c.Gateways) != 1 || c.Gateways[0].Listeners[0].Protocol != "example.com/quic" {
		t.Errorf("gateways: %s", jsonText(c.Gateways))
	}
	if len(c.HTTPRoutes) != 1 || c.HTTPRoutes[0].Name != "odd" || len(c.HTTPRoutes[0].Rules[0].Backends) != 2 {
		t.Errorf("routes: %s", jsonText(c.HTTPRoutes))
	}
	if len(c.BackendPolicies)+len(c.ListenerSets)+len(c.Workloads) != 0 {
		t.Errorf("objects with errors were kept: %s", jsonText(c))
	}
}

func TestModelDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"0s", 0, true},
		{"500ms", 500 * time.Millisecond, true},
		{"1h30m", 90 * time.Minute, true},
		{"1h2m3s4ms", time.Hour + 2*time.Minute + 3*time.Second + 4*time.Millisecond, true},
		{"99999s", 99999 * time.Second, true},
		{"1.5s", 0, false},
		{"-1s", 0, false},
		{"1us", 0, false},
		{"1d", 0, false},
		{"10", 0, false},
		{"100000s", 0, false},
		{"1h1m1s1ms1h", 0, false},
		{"1H", 0, false},
	} {
		c := &converter{o: &Object{Kind: "BackendPolicy"}}
		d := gwv1.Duration(tt.in)
		got := c.duration("spec.idleTimeout", &d)
		if got != tt.want || (len(c.errs) == 0) != tt.ok {
			t.Errorf("duration(%q) = %v, errors %v; want %v, ok %t", tt.in, got, c.errs, tt.want, tt.ok)
		}
	}
}

func TestServicePortProtocol(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tt := range []struct {
		name        string
		appProtocol *string
		want        model.Protocol
		declared    bool
	}{
		{"", nil, model.ProtocolTCP, false},
		{"web", nil, model.ProtocolTCP, false},
		{"http", nil, model.ProtocolHTTP, true},
		{"HTTP-web", nil, model.ProtocolHTTP, true},
		{"httpx", nil, model.ProtocolTCP, false},
		{"http2", nil, model.ProtocolHTTP2, true},
		{"http2-api", nil, model.ProtocolHTTP2, true},
		{"grpc", nil, model.ProtocolGRPC, true},
		{"grpc-api", nil, model.ProtocolGRPC, true},
		{"grpc-web", nil, model.ProtocolHTTP, true},
		{"https-admin", nil, model.ProtocolHTTPS, true},
		{"tls", nil, model.ProtocolTLS, true},
		{"tcp-db", nil, model.ProtocolTCP, true},
		{"tcp", nil, model.ProtocolTCP, true},
		{"web", str("http"), model.ProtocolHTTP, true},
		{"web", str("HTTP2"), model.ProtocolHTTP2, true},
		{"web", str("h2c"), model.ProtocolHTTP2, true},
		{"web", str("kubernetes.io/h2c"), model.ProtocolHTTP2, true},
		{"web", str("grpc"), model.ProtocolGRPC, true},
		{"web", str("https"), model.ProtocolHTTPS, true},
		{"web", str("tls"), model.ProtocolTLS, true},
		{"http", str("tcp"), model.ProtocolTCP, true},
		{"http", str("example.com/custom"), model.ProtocolTCP, false},
		{"http", str(""), model.ProtocolHTTP, true},
	} {
		got, declared := servicePortProtocol(tt.name, tt.appProtocol)
		if got != tt.want || declared != tt.declared {
			ap := "<nil>"
			if tt.appProtocol != nil {
				ap = *tt.appProtocol
			}
			t.Errorf("servicePortProtocol(%q, %s) = %s, %t; want %s, %t", tt.name, ap, got, declared, tt.want, tt.declared)
		}
	}
}
