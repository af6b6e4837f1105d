package resource

import (
	"errors"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
)

// errLines splits a joined error into its messages.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func checkErrors(t *testing.T, err error, want []string) {
	t.Helper()
	got := errLines(err)
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

const routeHead = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: demo
`

func TestDecodeErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []string
	}{{
		name: "unknown field with suggestion",
		in: routeHead + `spec:
  parentRefs:
  - name: gw
  rules:
  - backendRef:
    - name: api
`,
		want: []string{`t.yaml:10: HTTPRoute demo/web: spec.rules[0].backendRef: unknown field "backendRef"; did you mean "backendRefs"?`},
	}, {
		name: "unknown field, wrong case",
		in:   routeHead + "spec:\n  ParentRefs: []\n",
		want: []string{`t.yaml:7: HTTPRoute demo/web: spec.ParentRefs: unknown field "ParentRefs"; did you mean "parentRefs"?`},
	}, {
		name: "unknown field without suggestion",
		in:   routeHead + "spec:\n  frobnicate: 1\n",
		want: []string{`t.yaml:7: HTTPRoute demo/web: spec.frobnicate: unknown field "frobnicate"`},
	}, {
		name: "unknown top-level field",
		in:   routeHead + "sepc: {}\n",
		want: []string{`t.yaml:6: HTTPRoute demo/web: sepc: unknown field "sepc"; did you mean "spec"?`},
	}, {
		name: "duplicate key",
		in: routeHead + `spec:
  rules:
  - name: a
    name: b
`,
		want: []string{`t.yaml:9: HTTPRoute demo/web: spec.rules[0].name: duplicate field "name" (first at line 8)`},
	}, {
		name: "duplicate map key",
		in:   routeHead + "  labels: {app: a, app: b}\n",
		want: []string{`t.yaml:6: HTTPRoute demo/web: metadata.labels.app: duplicate field "app" (first at line 6)`},
	}, {
		name: "list for a mapping",
		in:   "apiVersion: v1\nkind: Service\nmetadata:\n- name: web\n",
		want: []string{`t.yaml:4: Service: metadata: expected a mapping, got a list`},
	}, {
		name: "mapping for a list",
		in:   routeHead + "spec:\n  hostnames:\n    a: b\n",
		want: []string{`t.yaml:8: HTTPRoute demo/web: spec.hostnames: expected a list, got a mapping`},
	}, {
		name: "string for an integer",
		in:   routeHead + "spec:\n  parentRefs:\n  - name: gw\n    port: abc\n",
		want: []string{`t.yaml:9: HTTPRoute demo/web: spec.parentRefs[0].port: expected an integer, got string "abc"`},
	}, {
		name: "quoted integer",
		in:   routeHead + "spec:\n  parentRefs:\n  - name: gw\n    port: \"80\"\n",
		want: []string{`t.yaml:9: HTTPRoute demo/web: spec.parentRefs[0].port: expected an integer, got string "80" (remove the quotes)`},
	}, {
		name: "float for an integer",
		in:   routeHead + "spec:\n  parentRefs:\n  - name: gw\n    port: 80.5\n",
		want: []string{`t.yaml:9: HTTPRoute demo/web: spec.parentRefs[0].port: expected an integer, got number 80.5`},
	}, {
		name: "integer overflow",
		in:   routeHead + "spec:\n  parentRefs:\n  - name: gw\n    port: 99999999999\n",
		want: []string{`t.yaml:9: HTTPRoute demo/web: spec.parentRefs[0].port: 99999999999 is out of range for int32 (-2147483648 to 2147483647)`},
	}, {
		name: "negative unsigned",
		in: routeHead + `spec:
  rules:
  - filters:
    - type: ExternalAuth
      externalAuth:
        backendRef: {name: auth}
        forwardBody: {maxSize: -1}
`,
		want: []string{`t.yaml:12: HTTPRoute demo/web: spec.rules[0].filters[0].externalAuth.forwardBody.maxSize: -1 is out of range for uint16 (0 to 65535)`},
	}, {
		name: "number for a string",
		in:   routeHead + "  labels:\n    version: 1.0\n",
		want: []string{`t.yaml:7: HTTPRoute demo/web: metadata.labels[version]: expected a string, got number 1.0 (quote it: "1.0")`},
	}, {
		name: "boolean for a string",
		in:   routeHead + "spec:\n  hostnames: [yes, true]\n",
		want: []string{`t.yaml:7: HTTPRoute demo/web: spec.hostnames[1]: expected a string, got boolean true (quote it: "true")`},
	}, {
		name: "string for a boolean",
		in:   "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  publishNotReadyAddresses: yes\n",
		want: []string{`t.yaml:5: Service web: spec.publishNotReadyAddresses: expected a boolean (true or false), got string "yes"`},
	}, {
		name: "bad timestamp",
		in:   routeHead + "  creationTimestamp: yesterday\n",
		want: []string{`t.yaml:6: HTTPRoute demo/web: metadata.creationTimestamp: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
	}, {
		name: "bad int-or-string",
		in:   "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: 80\n    targetPort: [8080]\n",
		want: []string{`t.yaml:7: Service web: spec.ports[0].targetPort: invalid value a list: cannot unmarshal array into Go value of type int32`},
	}, {
		name: "every error of a document, and of every document",
		in: routeHead + `spec:
  parentRefs:
  - name: gw
    port: x
  hostname: [a]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec:
  ports:
  - port: 80
    protocol: TCP
    protocl: TCP
`,
		want: []string{
			`t.yaml:9: HTTPRoute demo/web: spec.parentRefs[0].port: expected an integer, got string "x"`,
			`t.yaml:10: HTTPRoute demo/web: spec.hostname: unknown field "hostname"; did you mean "hostnames"?`,
			`t.yaml:19: Service demo/api: spec.ports[0].protocl: unknown field "protocl"; did you mean "protocol"?`,
		},
	}, {
		name: "kind missing",
		in:   "apiVersion: v1\nmetadata: {name: x}\n",
		want: []string{`t.yaml:1: kind: required; one of AccessPolicy, BackendPolicy, BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet, MTLSPolicy, ReferenceGrant, Service, TCPRoute, TLSRoute, Workload`},
	}, {
		name: "kind in the wrong case",
		in:   "apiVersion: v1\nkind: service\nmetadata: {name: x}\n",
		want: []string{`t.yaml:2: kind: unknown kind "service"; did you mean "Service"? (supported: AccessPolicy, BackendPolicy, BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet, MTLSPolicy, ReferenceGrant, Service, TCPRoute, TLSRoute, Workload)`},
	}, {
		name: "unsupported kind",
		in:   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
		want: []string{`t.yaml:2: kind: unknown kind "Deployment" (supported: AccessPolicy, BackendPolicy, BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet, MTLSPolicy, ReferenceGrant, Service, TCPRoute, TLSRoute, Workload)`},
	}, {
		name: "apiVersion missing",
		in:   "kind: Workload\nmetadata: {name: vm}\n",
		want: []string{`t.yaml:1: Workload vm: apiVersion: required; Workload is "trellis.dev/v1alpha1"`},
	}, {
		name: "apiVersion of another version",
		in:   "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: web}\n",
		want: []string{`t.yaml:1: HTTPRoute web: apiVersion: HTTPRoute is not served at "gateway.networking.k8s.io/v1beta1"; use "gateway.networking.k8s.io/v1"`},
	}, {
		name: "apiVersion of ReferenceGrant",
		in:   "apiVersion: v1\nkind: ReferenceGrant\nmetadata: {name: g}\n",
		want: []string{`t.yaml:1: ReferenceGrant g: apiVersion: ReferenceGrant is not served at "v1"; use "gateway.networking.k8s.io/v1" or "gateway.networking.k8s.io/v1beta1"`},
	}, {
		name: "not a mapping",
		in:   "- a\n- b\n",
		want: []string{`t.yaml:1: expected a resource (a mapping with apiVersion, kind, metadata and spec), got a list`},
	}, {
		name: "syntax error in a later document",
		in:   "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b\n",
		want: []string{`t.yaml:7: invalid YAML: did not find expected ',' or '}'`},
	}, {
		name: "syntax error on the first line",
		in:   "a: 1: 2\n",
		want: []string{`t.yaml:1: invalid YAML: mapping values are not allowed in this context`},
	}, {
		name: "unknown anchor",
		in:   "apiVersion: v1\nkind: Service\nmetadata:\n  name: *name\n",
		want: []string{`t.yaml:4: invalid YAML: unknown anchor 'name' referenced`},
	}, {
		name: "control character",
		in:   "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\x01\n",
		want: []string{`t.yaml:4: invalid YAML: control characters are not allowed`},
	}, {
		name: "invalid UTF-8",
		in:   "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\xff\n",
		want: []string{`t.yaml:4: invalid YAML: invalid leading UTF-8 octet`},
	}, {
		name: "parser problem",
		in:   "apiVersion: v1\nkind: Service\n- x\n",
		want: []string{`t.yaml:3: invalid YAML: did not find expected key`},
	}, {
		name: "anchor that contains itself",
		in:   "apiVersion: v1\nkind: Service\nmetadata: &m\n  name: web\n  labels: *m\n",
		want: []string{`t.yaml:5: Service web: metadata.labels[labels]: anchor "m" refers to itself`},
	}, {
		name: "custom tag",
		in:   "apiVersion: v1\nkind: Service\nmetadata:\n  name: !secret web\n",
		want: []string{`t.yaml:4: Service: metadata.name: unsupported YAML tag !secret`},
	}, {
		name: "invalid base64 is not a concern of strings",
		in:   "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, appProtocol: [http]}]}\n",
		want: []string{`t.yaml:4: Service web: spec.ports[0].appProtocol: expected a string, got a list`},
	}, {
		name: "unknown field in a List",
		in:   "apiVersion: v1\nkind: List\nitem: []\n",
		want: []string{`t.yaml:3: item: unknown field "item"; a List has apiVersion, kind, metadata and items`},
	}, {
		name: "errors in List items",
		in: `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
  spec: {ports: [{port: x}]}
- apiVersion: v1
  kind: Servic
`,
		want: []string{
			`t.yaml:7: Service a: spec.ports[0].port: expected an integer, got string "x"`,
			`t.yaml:9: kind: unknown kind "Servic"; did you mean "Service"? (supported: AccessPolicy, BackendPolicy, BackendTLSPolicy, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet, MTLSPolicy, ReferenceGrant, Service, TCPRoute, TLSRoute, Workload)`,
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("t.yaml", []byte(tt.in))
			checkErrors(t, err, tt.want)
			for _, e := range unjoin(err) {
				var re *Error
				if !errors.As(e, &re) {
					t.Errorf("%v is not an *Error", e)
				}
			}
		})
	}
}

// unjoin undoes errors.Join.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestDecodeErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n")
	for i := range 25 {
		b.WriteString("  field" + string(rune('a'+i)) + ": x\n")
	}
	_, err := Decode("t.yaml", []byte(b.String()))
	lines := errLines(err)
	if len(lines) != 21 {
		t.Fatalf("got %d errors, want 20 and a summary:\n%v", len(lines), err)
	}
	if want := "t.yaml: Service web: 5 more errors not shown"; lines[20] != want {
		t.Errorf("last error = %q, want %q", lines[20], want)
	}
}

func TestDecodeAliasBomb(t *testing.T) {
	// Each level doubles the nodes: 2^40 values if aliases were expanded
	// without a bound.
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    a0: &a0 [x, x]\n")
	for i := 1; i <= 40; i++ {
		b.WriteString("    a" + itoa(i) + ": &a" + itoa(i) + " [*a" + itoa(i-1) + ", *a" + itoa(i-1) + "]\n")
	}
	_, err := Decode("t.yaml", []byte(b.String()))
	if err == nil {
		t.Fatal("decoded an alias bomb")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestDecodeMesh(t *testing.T) {
	data, err := os.ReadFile("testdata/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode("testdata/mesh.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.Ref()+" "+o.APIVersion+" line "+itoa(o.Line))
		if o.File != "testdata/mesh.yaml" {
			t.Errorf("%s: File = %q", o.Ref(), o.File)
		}
	}
	want := []string{
		"GatewayClass trellis gateway.networking.k8s.io/v1 line 3",
		"Gateway demo/ingress gateway.networking.k8s.io/v1 line 10",
		"HTTPRoute demo/shop gateway.networking.k8s.io/v1 line 35",
		"HTTPRoute demo/api-split gateway.networking.k8s.io/v1 line 80",
		"Service demo/api v1 line 100",
		"Service demo/api-v2 v1 line 121",
		"Service frontend/web v1 line 134",
		"Service demo/db v1 line 145",
		"Workload frontend/web-vm-1 trellis.dev/v1alpha1 line 159",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}

	route := objs[2].Obj.(*gwv1.HTTPRoute)
	if got := *route.Spec.Rules[1].Matches[1].QueryParams[0].Type; got != gwv1.QueryParamMatchRegularExpression {
		t.Errorf("query match type = %q", got)
	}
	svc := objs[4].Obj.(*corev1.Service)
	if got, want := svc.Spec.Ports[1].TargetPort, intstr.FromString("admin"); got != want {
		t.Errorf("targetPort = %v, want %v", got, want)
	}
	if got := *objs[4].Obj.(*corev1.Service).Spec.Ports[2].AppProtocol; got != "http" {
		t.Errorf("appProtocol = %q", got)
	}
	wl := objs[8].Obj.(*v1alpha1.Workload)
	if wl.Spec.MeshPort == nil || *wl.Spec.MeshPort != 15008 {
		t.Errorf("meshPort = %v", wl.Spec.MeshPort)
	}
	// Field lines are kept for later errors.
	if got := objs[2].lineOf("spec.rules[0].backendRefs[0].port"); got != 58 {
		t.Errorf("line of spec.rules[0].backendRefs[0].port = %d, want 58", got)
	}
	if got := objs[2].lineOf("spec.rules[0].backendRefs[0].filters[0]"); got != 57 {
		t.Errorf("line of an unwritten field = %d, want its closest written ancestor's, 57", got)
	}
}

func TestDecodeForms(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []string // Ref of each object
	}{
		{"JSON", `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "n"}, "spec": {"ports": [{"port": 80}]}}`, []string{"Service n/a"}},
		{"empty documents", "---\n# nothing\n---\n\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n", []string{"Service a"}},
		{"empty input", "", nil},
		{"List", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: trellis.dev/v1alpha1, kind: Workload, metadata: {name: w}, spec: {address: 10.0.0.1}}\n", []string{"Service a", "Workload w"}},
		{"typed List", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRouteList\nmetadata: {}\nitems:\n- {apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: {name: r}}\n", []string{"HTTPRoute r"}},
		{"ReferenceGrant v1beta1", "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: n}\nspec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: m}], to: [{group: '', kind: Service}]}\n", []string{"ReferenceGrant n/g"}},
		{"cluster-scoped", "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: trellis, namespace: ignored}\nspec: {controllerName: trellis.dev/gateway}\n", []string{"GatewayClass trellis"}},
		{"status is ignored", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nstatus:\n  parents: whatever\n  anything: [1, 2]\n", []string{"HTTPRoute r"}},
		{"anchors and merge keys", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  labels: &l {app: a, tier: web}\nspec:\n  selector:\n    <<: *l\n    tier: api\n", []string{"Service a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode("t.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Ref())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	objs, err := Decode("t.yaml", []byte(`apiVersion: v1
kind: Service
metadata:
  name: a
  labels: &l {app: a, tier: web}
  generation: 0x10
  creationTimestamp: 2025-06-01T12:00:00.75+02:00
spec:
  selector:
    <<: *l
    tier: api
  ports:
  - port: 8_080
    targetPort: "http"
    appProtocol: ~
  externalIPs: []
  clusterIPs: null
`))
	if err != nil {
		t.Fatal(err)
	}
	svc := objs[0].Obj.(*corev1.Service)
	if want := map[string]string{"app": "a", "tier": "api"}; !reflect.DeepEqual(svc.Spec.Selector, want) {
		t.Errorf("selector = %v, want %v (explicit keys win over merged ones)", svc.Spec.Selector, want)
	}
	if svc.Generation != 16 {
		t.Errorf("generation = %d, want 16", svc.Generation)
	}
	if got := svc.CreationTimestamp.UTC().Format("2006-01-02T15:04:05.999Z"); got != "2025-06-01T10:00:00Z" {
		t.Errorf("creationTimestamp = %s, want 2025-06-01T10:00:00Z (seconds, as stored)", got)
	}
	p := svc.Spec.Ports[0]
	if p.Port != 8080 || p.TargetPort != intstr.FromString("http") || p.AppProtocol != nil {
		t.Errorf("port = %+v", p)
	}
	if svc.Spec.ExternalIPs != nil || svc.Spec.ClusterIPs != nil {
		t.Errorf("empty and null lists should decode as nil: %#v %#v", svc.Spec.ExternalIPs, svc.Spec.ClusterIPs)
	}
}

func TestDecodeOne(t *testing.T) {
	objs, err := Decode("testdata/mesh.yaml", mustRead(t, "testdata/mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		Default(o, "default")
		b, err := Encode(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeOne(strings.ToLower(o.Kind), b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", o.Ref(), err, b)
		}
		if back.File != "" || back.Line != 0 {
			t.Errorf("%s: DecodeOne set File %q, Line %d", o.Ref(), back.File, back.Line)
		}
		if back.Ref() != o.Ref() || back.APIVersion != o.APIVersion || !reflect.DeepEqual(back.Obj, o.Obj) {
			t.Errorf("%s: round trip changed it:\n%#v\n%#v", o.Ref(), o.Obj, back.Obj)
		}
	}

	if _, err := DecodeOne("Service", []byte(`{"apiVersion":"v1","kind":"Workload"}`)); err == nil {
		t.Error("DecodeOne accepted JSON of another kind")
	}
	if _, err := DecodeOne("Widget", []byte(`{}`)); err == nil {
		t.Error("DecodeOne accepted an unknown kind")
	}
	_, err = DecodeOne("Service", []byte("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\n\"metadata\":{\"name\":\"a\",\"nam\":\"b\"}}"))
	checkErrors(t, err, []string{`line 2: Service a: metadata.nam: unknown field "nam"; did you mean "name"?`})
}

func mustRead(t testing.TB, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestEncode(t *testing.T) {
	objs, err := Decode("t.yaml", []byte(`kind: HTTPRoute
apiVersion: gateway.networking.k8s.io/v1
status: {parents: []}
spec:
  parentRefs: [{name: gw}]
metadata: {name: r, namespace: n, labels: {b: "2", a: "1"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"name":"r","namespace":"n","labels":{"a":"1","b":"2"}},"spec":{"parentRefs":[{"name":"gw"}]}}`
	if string(b) != want {
		t.Errorf("Encode:\n got  %s\n want %s", b, want)
	}

	// Objects built in code need no TypeMeta.
	b, err = Encode(&Object{Kind: "Workload", Obj: &v1alpha1.Workload{}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), `{"apiVersion":"trellis.dev/v1alpha1","kind":"Workload",`) {
		t.Errorf("Encode without TypeMeta: %s", b)
	}
}

func TestLookupKind(t *testing.T) {
	for name, want := range map[string]string{
		"httproute":                            "HTTPRoute",
		"HTTPRoutes":                           "HTTPRoute",
		"Service":                              "Service",
		"svc":                                  "Service",
		"services.core":                        "Service",
		"gtw":                                  "Gateway",
		"gc":                                   "GatewayClass",
		"lset":                                 "ListenerSet",
		"refgrant":                             "ReferenceGrant",
		"btlspolicy":                           "BackendTLSPolicy",
		"grpcroutes.gateway.networking.k8s.io": "GRPCRoute",
		"wl":                                   "Workload",
		"workloads.trellis.dev":                "Workload",
		"mtls":                                 "MTLSPolicy",
		"ap":                                   "AccessPolicy",
		"bp":                                   "BackendPolicy",
		"  TCPRoute ":                          "TCPRoute",
	} {
		k, ok := LookupKind(name)
		if !ok || k.Kind != want {
			t.Errorf("LookupKind(%q) = %q, %v; want %q", name, k.Kind, ok, want)
		}
	}
	for _, name := range []string{"", "deployment", "services.gateway.networking.k8s.io", "httproute.core"} {
		if k, ok := LookupKind(name); ok {
			t.Errorf("LookupKind(%q) = %q, want none", name, k.Kind)
		}
	}

	ks := Kinds()
	if len(ks) != 14 {
		t.Errorf("Kinds() has %d kinds, want 14", len(ks))
	}
	if !slices.IsSortedFunc(ks, func(a, b KindInfo) int { return strings.Compare(a.Kind, b.Kind) }) {
		t.Error("Kinds() is not sorted")
	}
	for _, k := range ks {
		obj := k.New()
		if reflect.TypeOf(obj).Kind() != reflect.Pointer {
			t.Errorf("%s: New returned %T", k.Kind, obj)
		}
		if k.Namespaced != (k.Kind != "GatewayClass") {
			t.Errorf("%s: Namespaced = %v", k.Kind, k.Namespaced)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		err  Error
		want string
	}{
		{Error{File: "demo.yaml", Line: 12, Kind: "HTTPRoute", Namespace: "demo", Name: "web", Field: "spec.rules[0].backendRefs[0].port", Message: "required for a Service backend"},
			"demo.yaml:12: HTTPRoute demo/web: spec.rules[0].backendRefs[0].port: required for a Service backend"},
		{Error{File: "demo.yaml", Kind: "GatewayClass", Name: "trellis", Message: "m"}, "demo.yaml: GatewayClass trellis: m"},
		{Error{Line: 3, Kind: "Service", Field: "metadata.name", Message: "required"}, "line 3: Service: metadata.name: required"},
		{Error{Kind: "Service", Namespace: "a", Name: "b", Message: "m"}, "Service a/b: m"},
		{Error{Message: "m"}, "m"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	o := &Object{Kind: "HTTPRoute", Namespace: "demo", Name: "web"}
	if got := o.Ref(); got != "HTTPRoute demo/web" {
		t.Errorf("Ref() = %q", got)
	}
}

// TestDecodeHugeDocument checks that decoding memory is bounded whatever
// the input: a document over MaxDocumentBytes is refused without being
// parsed, and the documents around it still decode, at their lines.
func TestDecodeHugeDocument(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Service\nmetadata: {name: before, namespace: demo}\nspec:\n  ports: [{name: http, port: 80}]\n---\n")
	b.WriteString("apiVersion: v1\nkind: Service\nmetadata: {name: huge, namespace: demo}\nspec:\n  ports:\n")
	for b.Len() < 4*MaxDocumentBytes {
		b.WriteString("  - {name: http, port: 80}\n")
	}
	b.WriteString("---\napiVersion: v1\nkind: Service\nmetadata: {name: after, namespace: demo}\nspec:\n  ports: [{name: http, port: 80}]\n")
	data := []byte(b.String())
	afterLine := strings.Count(b.String()[:strings.LastIndex(b.String(), "---")], "\n") + 2

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	objs, err := Decode("big.yaml", data)
	runtime.ReadMemStats(&after)

	if err == nil || !strings.Contains(err.Error(), "big.yaml:6: document of 12.0 MiB is larger than the 3 MiB limit") {
		t.Errorf("error = %v", err)
	}
	if len(objs) != 2 || objs[0].Name != "before" || objs[1].Name != "after" || objs[1].Line != afterLine {
		t.Errorf("decoded %d objects; want before and after (line %d)", len(objs), afterLine)
		for _, o := range objs {
			t.Logf("%s at line %d", o.Ref(), o.Line)
		}
	}
	// Parsing the huge document would take about 40 times its size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*uint64(len(data)) {
		t.Errorf("decoding %d MiB allocated %d MiB", len(data)>>20, alloc>>20)
	}
}
