package resource

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// decodeDefault decodes one object from YAML and defaults it.
func decodeDefault(t *testing.T, in, namespace string) *Object {
	t.Helper()
	objs, err := Decode("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("decoded %d objects, want 1", len(objs))
	}
	Default(objs[0], namespace)
	return objs[0]
}

// TestDefault compares a defaulted object with the same object written
// out in full.
func TestDefault(t *testing.T) {
	for _, tt := range []struct {
		name      string
		in, want  string
		namespace string
	}{{
		name: "HTTPRoute without rules",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
`,
		namespace: "demo",
		want: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: demo}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
`,
	}, {
		name: "HTTPRoute rules",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: other}
spec:
  parentRefs: [{group: "", kind: Service, name: api}]
  rules:
  - backendRefs: [{name: api, port: 80}]
  - matches:
    - path: {value: /a}
    - path: {type: Exact}
    - headers: [{name: x, value: "1"}]
      queryParams: [{name: q, value: "2"}]
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: shadow, port: 80}
        fraction: {numerator: 5}
    - type: RequestRedirect
      requestRedirect: {scheme: https}
    backendRefs:
    - name: api
      port: 80
      weight: 0
      filters:
      - type: RequestMirror
        requestMirror: {backendRef: {name: shadow, port: 80}}
      - type: CORS
        cors: {allowOrigins: ["https://example.com"]}
`,
		namespace: "demo",
		want: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: other}
spec:
  parentRefs: [{group: "", kind: Service, name: api}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{group: "", kind: Service, name: api, port: 80, weight: 1}]
  - matches:
    - path: {type: PathPrefix, value: /a}
    - path: {type: Exact, value: /}
    - path: {type: PathPrefix, value: /}
      headers: [{type: Exact, name: x, value: "1"}]
      queryParams: [{type: Exact, name: q, value: "2"}]
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {group: "", kind: Service, name: shadow, port: 80}
        fraction: {numerator: 5, denominator: 100}
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 302}
    backendRefs:
    - group: ""
      kind: Service
      name: api
      port: 80
      weight: 0
      filters:
      - type: RequestMirror
        requestMirror: {backendRef: {group: "", kind: Service, name: shadow, port: 80}}
      - type: CORS
        cors: {allowOrigins: ["https://example.com"], maxAge: 5}
`,
	}, {
		name: "Gateway",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: trellis
  addresses: [{value: 10.0.0.1}]
  listeners:
  - name: http
    port: 80
    protocol: HTTP
  - name: https
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: cert}]}
    allowedRoutes: {kinds: [{kind: HTTPRoute}]}
  allowedListeners: {}
  tls:
    backend: {clientCertificateRef: {name: client}}
    frontend:
      default: {validation: {caCertificateRefs: [{name: ca, kind: ConfigMap}]}}
`,
		want: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: trellis
  addresses: [{type: IPAddress, value: 10.0.0.1}]
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Same}}
  - name: https
    port: 443
    protocol: HTTPS
    tls: {mode: Terminate, certificateRefs: [{group: "", kind: Secret, name: cert}]}
    allowedRoutes:
      namespaces: {from: Same}
      kinds: [{group: gateway.networking.k8s.io, kind: HTTPRoute}]
  allowedListeners: {namespaces: {from: None}}
  tls:
    backend: {clientCertificateRef: {group: "", kind: Secret, name: client}}
    frontend:
      default: {validation: {mode: AllowValidOnly, caCertificateRefs: [{name: ca, kind: ConfigMap}]}}
`,
	}, {
		name: "ListenerSet",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: team}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners: [{name: a, port: 8080, protocol: HTTP}]
`,
		want: `apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls, namespace: team}
spec:
  parentRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw, namespace: infra}
  listeners: [{name: a, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}]
`,
	}, {
		name: "GRPCRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - method: {service: helloworld.Greeter}
      headers: [{name: x, value: y}]
    - headers: [{name: z, value: w}]
    backendRefs: [{name: greeter, port: 50051}]
`,
		want: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: default}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  rules:
  - matches:
    - method: {type: Exact, service: helloworld.Greeter}
      headers: [{type: Exact, name: x, value: y}]
    - headers: [{type: Exact, name: z, value: w}]
    backendRefs: [{group: "", kind: Service, name: greeter, port: 50051, weight: 1}]
`,
	}, {
		name: "TCPRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: t}
spec:
  parentRefs: [{name: gw, sectionName: db}]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
`,
		want: `apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: t, namespace: default}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: db}]
  rules: [{backendRefs: [{group: "", kind: Service, name: db, port: 5432, weight: 1}]}]
`,
	}, {
		name: "Service",
		in: `apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  ports:
  - {name: http, port: 80}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
  - {name: named, port: 81, targetPort: http}
`,
		namespace: "demo",
		want: `apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec:
  type: ClusterIP
  sessionAffinity: None
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 80}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
  - {name: named, port: 81, protocol: TCP, targetPort: http}
`,
	}, {
		name: "Workload",
		in: `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm}
spec:
  address: 10.0.0.1
  ports: [{port: 8080}, {port: 9090, protocol: GRPC}]
`,
		want: `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm, namespace: default}
spec:
  address: 10.0.0.1
  serviceAccount: default
  ports: [{port: 8080, protocol: TCP}, {port: 9090, protocol: GRPC}]
`,
	}, {
		name:      "cluster-scoped kinds lose their namespace",
		in:        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: trellis, namespace: x}\nspec: {controllerName: trellis.dev/gateway}\n",
		namespace: "demo",
		want:      "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: trellis}\nspec: {controllerName: trellis.dev/gateway}\n",
	}, {
		name: "no defaults",
		in:   "apiVersion: trellis.dev/v1alpha1\nkind: MTLSPolicy\nmetadata: {name: p}\nspec: {mode: STRICT}\n",
		want: "apiVersion: trellis.dev/v1alpha1\nkind: MTLSPolicy\nmetadata: {name: p, namespace: default}\nspec: {mode: STRICT}\n",
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeDefault(t, tt.in, tt.namespace)
			objs, err := Decode("want.yaml", []byte(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			want := objs[0]
			if !reflect.DeepEqual(got.Obj, want.Obj) {
				gb, _ := Encode(got)
				wb, _ := Encode(want)
				t.Errorf("Default:\n got  %s\n want %s", gb, wb)
			}
			if got.Namespace != want.Namespace {
				t.Errorf("Object.Namespace = %q, want %q", got.Namespace, want.Namespace)
			}
			// Default is idempotent.
			before, _ := Encode(got)
			Default(got, "elsewhere")
			if after, _ := Encode(got); string(after) != string(before) {
				t.Errorf("Default is not idempotent:\n%s\n%s", before, after)
			}
		})
	}
}

// TestDefaultIsCRDs checks that Default gives a Gateway API object exactly
// the defaults its CRD gives the same object as unstructured JSON.
func TestDefaultIsCRDs(t *testing.T) {
	objs, err := Decode("testdata/gateway-api.yaml", mustRead(t, "testdata/gateway-api.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o, "") // the namespace only: the objects name theirs
		v, ok, err := crdValidator(o)
		if !ok || err != nil {
			t.Fatalf("%s: no CRD validator: %v", o.Ref(), err)
		}
		o.Obj = o.Obj.(interface{ DeepCopyObject() runtime.Object }).DeepCopyObject()
		want, err := unstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		v.Default(want)
		delete(want, "status") // the CRD defaults its conditions; Trellis ignores status
		Default(o, "")
		got, err := unstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Default gives\n%v\nthe CRD\n%v", o.Ref(), got, want)
		}
	}
}

// TestDefaultBuiltInCode defaults an object built in Go, without
// TypeMeta or lines.
func TestDefaultBuiltInCode(t *testing.T) {
	route := &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Spec: gwv1.HTTPRouteSpec{
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: "api", Port: ptrTo[gwv1.PortNumber](80)},
			}}}}},
		},
	}
	o := &Object{Kind: "HTTPRoute", Name: "r", Obj: route}
	Default(o, "demo")
	got := o.Obj.(*gwv1.HTTPRoute)
	if o.Namespace != "demo" || got.Namespace != "demo" {
		t.Errorf("namespace %q, %q; want demo", o.Namespace, got.Namespace)
	}
	b := got.Spec.Rules[0].BackendRefs[0]
	if b.Weight == nil || *b.Weight != 1 || b.Kind == nil || *b.Kind != "Service" {
		t.Errorf("backendRef not defaulted: %+v", b)
	}
	if m := got.Spec.Rules[0].Matches; len(m) != 1 || *m[0].Path.Value != "/" {
		t.Errorf("matches not defaulted: %+v", m)
	}
	if err := Validate(o); err != nil {
		t.Error(err)
	}
}

func ptrTo[T any](v T) *T { return &v }
