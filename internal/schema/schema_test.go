package schema

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/api/v1alpha1"
)

// TestCRDsMatchModule fails when the embedded CRDs are not those of the
// sigs.k8s.io/gateway-api version in go.mod: run `go run ./hack/dev crds`.
func TestCRDsMatchModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/gateway-api: %v", err)
	}
	dir, version, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if dir == "" {
		t.Fatalf("sigs.k8s.io/gateway-api %s is not in the module cache (go mod download)", version)
	}
	const fix = "; run `go run ./hack/dev crds`"
	files, err := fs.Glob(crdFiles, crdDir+"/*.yaml")
	if err != nil || len(files) < 9 {
		t.Fatalf("embedded CRDs: %v, %v", files, err)
	}
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(dir, "config", "crd", "standard", filepath.Base(f)))
		if err != nil {
			t.Errorf("%s is not in sigs.k8s.io/gateway-api %s%s: %v", f, version, fix, err)
			continue
		}
		if got, _ := crdFiles.ReadFile(f); !bytes.Equal(got, want) {
			t.Errorf("%s differs from sigs.k8s.io/gateway-api %s%s", f, version, fix)
		}
	}
	readme, err := os.ReadFile(filepath.Join(crdDir, "README.md"))
	if err != nil || !bytes.Contains(readme, []byte("sigs.k8s.io/gateway-api "+version+",")) {
		t.Errorf("%s/README.md does not name version %s%s", crdDir, version, fix)
	}
}

// TestTrellisCRDsGenerated fails when the embedded trellis.dev CRDs or
// the deep-copy functions of api/v1alpha1 are not what controller-gen
// makes of the types' markers now: run `go run ./hack/dev crds`.
func TestTrellisCRDsGenerated(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "controller-gen")
	build := exec.Command("go", "build", "-C", filepath.Join(root, "hack", "codegen"), "-o", bin, "sigs.k8s.io/controller-tools/cmd/controller-gen")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building controller-gen from hack/codegen: %v\n%s", err, out)
	}
	crdOut, objOut := filepath.Join(tmp, "crds"), filepath.Join(tmp, "object")
	gen := exec.Command(bin, "object", "crd:crdVersions=v1", "paths=./api/...", "output:crd:dir="+crdOut, "output:object:dir="+objOut)
	gen.Dir = root
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, out)
	}
	const fix = "; run `go run ./hack/dev crds`"
	generated, _ := filepath.Glob(filepath.Join(crdOut, "*.yaml"))
	embedded, _ := fs.Glob(crdFiles, trellisCRDDir+"/*.yaml")
	if len(generated) != len(embedded) || len(generated) == 0 {
		t.Errorf("controller-gen makes %d CRDs, %d are embedded%s", len(generated), len(embedded), fix)
	}
	for _, f := range generated {
		want, _ := os.ReadFile(f)
		got, err := crdFiles.ReadFile(trellisCRDDir + "/" + filepath.Base(f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/%s is not what controller-gen makes of api/v1alpha1%s", trellisCRDDir, filepath.Base(f), fix)
		}
	}
	want, err := os.ReadFile(filepath.Join(objOut, "zz_generated.deepcopy.go"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "api", "v1alpha1", "zz_generated.deepcopy.go")); !bytes.Equal(got, want) {
		t.Errorf("api/v1alpha1/zz_generated.deepcopy.go is not what controller-gen makes of the types%s", fix)
	}
}

// wantKinds are the kinds with a CRD that Trellis reads (DESIGN §4), by
// group/kind.
var wantKinds = map[Kind]any{
	{v1alpha1.GroupVersion.Group, "AccessPolicy"}:  v1alpha1.AccessPolicy{},
	{v1alpha1.GroupVersion.Group, "BackendPolicy"}: v1alpha1.BackendPolicy{},
	{v1alpha1.GroupVersion.Group, "MTLSPolicy"}:    v1alpha1.MTLSPolicy{},
	{v1alpha1.GroupVersion.Group, "Workload"}:      v1alpha1.Workload{},
}

func init() {
	for k, v := range gatewayKinds {
		wantKinds[Kind{gwv1.GroupName, k}] = v
	}
}

// gatewayKinds are the Gateway API kinds Trellis reads.
var gatewayKinds = map[string]any{
	"BackendTLSPolicy": gwv1.BackendTLSPolicy{},
	"Gateway":          gwv1.Gateway{},
	"GatewayClass":     gwv1.GatewayClass{},
	"GRPCRoute":        gwv1.GRPCRoute{},
	"HTTPRoute":        gwv1.HTTPRoute{},
	"ListenerSet":      gwv1.ListenerSet{},
	"ReferenceGrant":   gwv1.ReferenceGrant{},
	"TCPRoute":         gwv1.TCPRoute{},
	"TLSRoute":         gwv1.TLSRoute{},
}

func TestKinds(t *testing.T) {
	got := Kinds()
	want := slices.SortedFunc(maps.Keys(wantKinds), func(a, b Kind) int { return strings.Compare(a.Kind, b.Kind) })
	if !slices.Equal(got, want) {
		t.Errorf("Kinds() = %v, want %v", got, want)
	}
	if _, err := For("gateway.networking.k8s.io/v1", "UDPRoute"); err == nil {
		t.Error("For(UDPRoute) = nil error; the standard channel has no UDPRoute")
	}
	if _, err := For("gateway.networking.k8s.io/v2", "HTTPRoute"); err == nil {
		t.Error("For(v2 HTTPRoute) = nil error")
	}
	for _, av := range []string{"gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"} {
		v, err := For(av, "ReferenceGrant")
		if err != nil || v.APIVersion() != av || v.Kind() != "ReferenceGrant" {
			t.Errorf("For(%s, ReferenceGrant) = %v, %v", av, v, err)
		}
	}
}

// TestCRDsValid runs the apiserver's own CRD validation on the embedded
// CRDs: their schemas are structural, their defaults valid, and every CEL
// rule compiles, within its cost limits, in this apiserver version (a
// rule that does not compile would otherwise only show up as an error on
// objects).
func TestCRDsValid(t *testing.T) {
	files, _ := fs.Glob(crdFiles, "crds/*/*.yaml")
	if len(files) != len(wantKinds) {
		t.Errorf("%d embedded CRDs, want %d: %v", len(files), len(wantKinds), files)
	}
	for _, f := range files {
		b, _ := crdFiles.ReadFile(f)
		var v1crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &v1crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// As the apiserver sets it on creation.
		for _, v := range v1crd.Spec.Versions {
			if v.Storage {
				v1crd.Status.StoredVersions = []string{v.Name}
			}
		}
		var crd apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range crdvalidation.ValidateCustomResourceDefinition(context.Background(), &crd) {
			t.Errorf("%s: %v", f, e)
		}
	}
}

// TestCompile compiles every served version of every kind and reports how
// long that takes (each version pays its share once, on first use).
func TestCompile(t *testing.T) {
	var total time.Duration
	for _, c := range loadIndex().crds {
		start := time.Now()
		c.once.Do(c.parse)
		if c.err != nil {
			t.Errorf("%s: %v", c.file, c.err)
			continue
		}
		parse := time.Since(start)
		line := fmt.Sprintf("%-16s parse %3dms", c.Kind.Kind, parse.Milliseconds())
		for _, name := range slices.Sorted(maps.Keys(c.versions)) {
			v := c.versions[name]
			start := time.Now()
			v.once.Do(v.compile)
			if v.err != nil {
				t.Errorf("%s %s: %v", c.file, name, v.err)
			}
			line += fmt.Sprintf(", %s %3dms", name, time.Since(start).Milliseconds())
		}
		total += time.Since(start)
		t.Log(line)
	}
	t.Logf("all kinds, all served versions: %v", total.Round(time.Millisecond))
}

// TestDefaultsOnOmittableFields checks that every CRD default is on a Go
// field that leaves its zero value out of the JSON (a pointer, or
// omitempty), and that every schema property has a Go field: otherwise a
// typed object could not tell the default from a value the user wrote,
// and package resource could not carry the defaults into the typed
// object.
func TestDefaultsOnOmittableFields(t *testing.T) {
	for kind, obj := range wantKinds {
		version := "v1"
		if kind.Group == v1alpha1.GroupVersion.Group {
			version = v1alpha1.GroupVersion.Version
		}
		v, err := For(kind.Group+"/"+version, kind.Kind)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		checkFields(t, kind.Kind, v.structural, reflect.TypeOf(obj), &n)
		if kind.Kind == "HTTPRoute" && n < 20 || kind.Kind == "Workload" && n < 2 {
			t.Errorf("%s: found only %d defaults", kind.Kind, n)
		}
	}
}

func checkFields(t *testing.T, path string, s *structuralschema.Structural, typ reflect.Type, defaults *int) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Slice:
		if s.Items != nil {
			checkFields(t, path+"[]", s.Items, typ.Elem(), defaults)
		}
		return
	case reflect.Map:
		if s.AdditionalProperties != nil && s.AdditionalProperties.Structural != nil {
			checkFields(t, path+"{}", s.AdditionalProperties.Structural, typ.Elem(), defaults)
		}
		return
	case reflect.Struct:
	default:
		return
	}
	if path == "Gateway.status" || strings.HasSuffix(path, ".metadata") || typ.String() == "v1.Condition" {
		return
	}
	fields := map[string]reflect.StructField{}
	var collect func(reflect.Type)
	collect = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && name == "" {
				collect(f.Type)
				continue
			}
			fields[name] = f
		}
	}
	collect(typ)
	for name, prop := range s.Properties {
		f, ok := fields[name]
		if !ok {
			t.Errorf("%s.%s: no field in Go type %s", path, name, typ)
			continue
		}
		tag := f.Tag.Get("json")
		omits := f.Type.Kind() == reflect.Pointer || strings.Contains(tag, ",omitempty") || strings.Contains(tag, ",omitzero")
		if prop.Default.Object != nil {
			*defaults++
			if !omits && !strings.Contains(path, "status") {
				t.Errorf("%s.%s: default %v on a Go field (%s %s) that keeps its zero value", path, name, prop.Default.Object, f.Type, tag)
			}
		}
		checkFields(t, path+"."+name, &prop, f.Type, defaults)
	}
}

// object parses YAML into unstructured JSON as the apiserver sees it.
func object(t testing.TB, in string) map[string]any {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

const route = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: https}]
  hostnames: [shop.example.com, "*.shop.example.com"]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-canary, value: "true"}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: api}]}
    backendRefs:
    - {name: api-v2, port: 8080, weight: 10}
    - {name: api, port: 8080, weight: 90}
    timeouts: {request: 10s}
  - matches: [{path: {type: Exact, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
  - backendRefs: [{name: web, port: 80}]
`

func TestDefault(t *testing.T) {
	v, err := For("gateway.networking.k8s.io/v1", "HTTPRoute")
	if err != nil {
		t.Fatal(err)
	}
	obj := object(t, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: gw, group: null}]\n  rules: [{backendRefs: [{name: s, port: 80}]}]\n")
	v.Default(obj)
	want := object(t, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{group: "", kind: Service, name: s, port: 80, weight: 1}]
`)
	if !reflect.DeepEqual(obj, want) {
		t.Errorf("Default:\n got  %v\n want %v", obj, want)
	}
	v.Default(obj)
	if !reflect.DeepEqual(obj, want) {
		t.Errorf("Default is not idempotent: %v", obj)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		kind string
		in   string
		want []string
	}{{
		kind: "HTTPRoute",
		in:   route,
	}, {
		kind: "HTTPRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  hostnames: [Shop.example.com]
  rules:
  - matches: [{path: {value: api}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {scheme: https}}
    - {type: URLRewrite, urlRewrite: {hostname: shop.example.com}}
    backendRefs: [{name: api, weight: 1000001}]
`,
		want: []string{
			`spec.hostnames[0]: invalid value "Shop.example.com": should match '^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'`,
			`spec.rules[0]: RequestRedirect filter must not be used together with backendRefs`,
			`spec.rules[0].backendRefs[0]: Must have port for Service reference`,
			`spec.rules[0].backendRefs[0].weight: invalid value 1000001: should be less than or equal to 1000000`,
			`spec.rules[0].filters: May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both`,
			`spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']`,
		},
	}, {
		kind: "Gateway",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  addresses: [{type: IPAddress, value: 10.0.0.1}, {value: 10.0.0.1}]
  listeners:
  - {name: a, port: 80, protocol: HTTP, tls: {certificateRefs: [{name: cert}]}}
  - {name: a, port: 443, protocol: HTTPS, tls: {mode: Passthrough}}
  - {name: b, port: 9000, protocol: TCP, hostname: db.example.com}
`,
		want: []string{
			`spec.addresses: IPAddress values must be unique`,
			`spec.gatewayClassName: required`,
			`spec.listeners: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']`,
			`spec.listeners: tls mode must be Terminate for protocol HTTPS`,
			`spec.listeners: hostname must not be specified for protocols ['TCP', 'UDP']`,
			`spec.listeners[1]: duplicate entry with name "a"`,
		},
	}, {
		kind: "TLSRoute",
		in: `apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: t}
spec:
  hostnames: [a.example.com]
  rules: [{backendRefs: [{name: a, port: 443}]}, {backendRefs: [{name: b, port: 443}]}]
`,
		want: []string{
			`spec.rules: too many items (2): must have at most 1 item`,
			celSkipped,
		},
	}, {
		kind: "Workload",
		in: `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm}
spec:
  address: 10.0.0.5
  ports: [{name: http, port: 8080, protocol: HTTP}, {name: grpc, port: 9090, protocol: GRPC}]
  meshPort: 15008
`,
	}, {
		kind: "Workload",
		in: `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm}
spec:
  serviceAccount: Web
  ports: [{name: http, port: 0}, {name: http, port: 8080, protocol: QUIC}]
  meshPort: 8080
  zone: a
`,
		want: []string{
			`spec.address: required`,
			`spec.meshPort: the mesh port is also an application port (spec.ports); the sidecar needs its own port`,
			`spec.ports: names must be unique`,
			`spec.ports[0].port: invalid value 0: should be greater than or equal to 1`,
			`spec.ports[1].protocol: unsupported value "QUIC"; supported values: "HTTP", "HTTP2", "GRPC", "TLS", "TCP"`,
			`spec.serviceAccount: invalid value "Web": must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)`,
			`spec.zone: unknown field "zone"`,
		},
	}, {
		kind: "MTLSPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  mode: NONE
  ports: [{port: 70000, mode: STRICT}]
`,
		want: []string{
			`spec.mode: unsupported value "NONE"; supported values: "STRICT", "PERMISSIVE", "DISABLE"`,
			`spec.ports[0].port: invalid value 70000: should be less than or equal to 65535`,
			`spec.targetRefs[0]: an MTLSPolicy targets Services: set group "" and kind Service`,
		},
	}, {
		kind: "AccessPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: p}
spec:
  action: ALLOW
  rules: [{from: [{identities: [web]}], to: [{paths: [api]}]}]
`,
		want: []string{
			`spec.rules[0].from[0].identities[0]: invalid value "web": must be a SPIFFE ID (spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT), optionally ending in *`,
			`spec.rules[0].to[0].paths[0]: invalid value "api": must start with "/" (or "*" for a suffix match)`,
		},
	}, {
		kind: "BackendPolicy",
		in: `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: api, sectionName: a.b}]
  loadBalancer: {type: RoundRobin, hashCookie: session}
  retryBudget: {percent: 120}
  rateLimit: {requests: 10, per: 10ms}
  faults: {abort: {percent: 10}}
`,
		want: []string{
			`spec.faults.abort: set httpStatus (200-599) or grpcStatus (0-16)`,
			`spec.loadBalancer: hashHeader and hashCookie need type ConsistentHash`,
			`spec.rateLimit.per: invalid value "10ms": shorter than 50ms, the shortest refill interval of the proxies' token bucket`,
			`spec.retryBudget.percent: invalid value 120: should be less than or equal to 100`,
			`spec.targetRefs[0].sectionName: sectionName must name a Service port: at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)`,
		},
	}} {
		t.Run(tt.kind, func(t *testing.T) {
			obj := object(t, tt.in)
			v, err := For(obj["apiVersion"].(string), tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			v.Default(obj)
			var got []string
			for _, e := range v.Validate(obj) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
		})
	}
}

// TestConcurrent uses one validator from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			kind := []string{"HTTPRoute", "Gateway"}[i%2]
			v, err := For("gateway.networking.k8s.io/v1", kind)
			if err != nil {
				t.Error(err)
				return
			}
			for range 5 {
				obj := object(t, route)
				obj["kind"] = kind
				v.Default(obj)
				_ = v.Validate(obj)
			}
		})
	}
	wg.Wait()
}

func TestComparePaths(t *testing.T) {
	paths := []string{"spec.rules[10]", "", "spec.rules[2].name", "spec.hostnames[0]", "spec.rules[2]", "spec", "spec.rules[10].a", "metadata.labels[a.b]"}
	slices.SortFunc(paths, comparePaths)
	want := []string{"", "metadata.labels[a.b]", "spec", "spec.hostnames[0]", "spec.rules[2]", "spec.rules[2].name", "spec.rules[10]", "spec.rules[10].a"}
	if !slices.Equal(paths, want) {
		t.Errorf("sorted: %q, want %q", paths, want)
	}
}

// BenchmarkValidateHTTPRoute measures Default and Validate of a typical
// HTTPRoute (three rules, header match, filters, weighted backends).
func BenchmarkValidateHTTPRoute(b *testing.B) {
	v, err := For("gateway.networking.k8s.io/v1", "HTTPRoute")
	if err != nil {
		b.Fatal(err)
	}
	in := object(b, route)
	b.ReportAllocs()
	for b.Loop() {
		obj := copyJSON(in)
		v.Default(obj)
		if errs := v.Validate(obj); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkCompileHTTPRoute measures compiling the HTTPRoute CRD's v1
// schema (parsing the YAML, building the structural schema, the OpenAPI
// validator and the CEL programs).
func BenchmarkCompileHTTPRoute(b *testing.B) {
	data, err := crdFiles.ReadFile(crdDir + "/gateway.networking.k8s.io_httproutes.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			b.Fatal(err)
		}
		if _, err := newValidator("gateway.networking.k8s.io/v1", "HTTPRoute", crd.Spec.Versions[0].Schema.OpenAPIV3Schema); err != nil {
			b.Fatal(err)
		}
	}
}

func copyJSON(m map[string]any) map[string]any {
	b, err := utiljson.Marshal(m)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprint(err))
	}
	return out
}
