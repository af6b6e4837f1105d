package install

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/schema"
)

var update = flag.Bool("update", false, "rewrite testdata/install.golden")

// istio10CRDs is how many CRDs Istio 1.0 installed, which DESIGN.md holds
// Trellis to beat by far.
const istio10CRDs = 51

func manifest(t *testing.T, opts Options, format string) []byte {
	t.Helper()
	objs, err := Objects(opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, objs, format); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// documents splits YAML documents written by Write.
func documents(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split(string(b), "---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestManifestGolden pins everything but the CRDs (which are the embedded
// files, checked by TestCRDs) in testdata/install.golden, and checks that
// the manifest is the same bytes every time.
func TestManifestGolden(t *testing.T) {
	opts := Options{Image: "registry.example.com/trellis:v1.2.3"}
	full := manifest(t, opts, "yaml")
	for range 3 {
		if again := manifest(t, opts, "yaml"); !bytes.Equal(again, full) {
			t.Fatal("two manifests of the same options differ")
		}
	}
	crds := manifest(t, Options{CRDsOnly: true}, "yaml")
	rest, ok := bytes.CutPrefix(full, crds)
	if !ok {
		t.Fatal("the manifest does not start with the CRDs of --crds-only")
	}
	golden := filepath.Join("testdata", "install.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, rest, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/install -update)", err)
	}
	if !bytes.Equal(rest, want) {
		t.Errorf("the manifest after the CRDs differs from %s; if that is intended, run go test ./internal/install -update and review the diff", golden)
	}
	var kinds []string
	for _, d := range documents(t, rest) {
		kinds = append(kinds, d["kind"].(string))
	}
	wantKinds := []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"Service", "Deployment", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("kinds after the CRDs: %v, want %v", kinds, wantKinds)
	}
	t.Logf("manifest: %d lines, %d of them after the CRDs", bytes.Count(full, []byte("\n")), bytes.Count(rest, []byte("\n")))
}

// TestCRDs checks --crds-only: only CRDs, one for each kind package
// schema validates, each as embedded.
func TestCRDs(t *testing.T) {
	docs := documents(t, manifest(t, Options{CRDsOnly: true}, "yaml"))
	var got []schema.Kind
	for _, d := range docs {
		if d["kind"] != "CustomResourceDefinition" {
			t.Errorf("--crds-only prints a %v", d["kind"])
			continue
		}
		spec := d["spec"].(map[string]any)
		got = append(got, schema.Kind{Group: spec["group"].(string), Kind: spec["names"].(map[string]any)["kind"].(string)})
	}
	want := schema.Kinds()
	sortKinds := func(k []schema.Kind) {
		slices.SortFunc(k, func(a, b schema.Kind) int { return strings.Compare(a.Group+"/"+a.Kind, b.Group+"/"+b.Kind) })
	}
	sortKinds(got)
	sortKinds(want)
	if !slices.Equal(got, want) {
		t.Errorf("CRDs of %v, want %v", got, want)
	}
	// Each printed CRD is its embedded file, parsed.
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range crds {
		u, err := Unstructured(c)
		if err != nil {
			t.Fatal(err)
		}
		printed, _ := json.Marshal(docs[i])
		embedded, _ := json.Marshal(u)
		if !bytes.Equal(printed, embedded) {
			t.Errorf("CRD %s is not printed as embedded", c.Name)
		}
	}
	t.Logf("%d CRDs (Istio 1.0 had %d)", len(docs), istio10CRDs)
	if len(docs) > 14 {
		t.Errorf("%d CRDs: the Gateway API standard channel and at most five trellis.dev kinds make at most 14", len(docs))
	}
}

// TestJSON checks -o json: one List of the same objects as the YAML.
func TestJSON(t *testing.T) {
	var list struct {
		APIVersion, Kind string
		Items            []map[string]any
	}
	if err := json.Unmarshal(manifest(t, Options{}, "json"), &list); err != nil {
		t.Fatal(err)
	}
	docs := documents(t, manifest(t, Options{}, "yaml"))
	if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != len(docs) {
		t.Fatalf("-o json: %s %s of %d items, want a v1 List of %d", list.APIVersion, list.Kind, len(list.Items), len(docs))
	}
	for i := range docs {
		a, _ := json.Marshal(list.Items[i])
		b, _ := json.Marshal(docs[i])
		if !bytes.Equal(a, b) {
			t.Errorf("item %d differs between -o json and -o yaml", i)
		}
	}
	if err := Write(new(bytes.Buffer), nil, "table"); err == nil {
		t.Error("Write(table) = nil error")
	}
}

// TestOptions checks that --namespace and --image reach every object
// that names them, and that a namespace that is no DNS label is refused.
func TestOptions(t *testing.T) {
	objs, err := Objects(Options{Namespace: "mesh", Image: "example.com/t:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Namespace:
			if o.Name != "mesh" {
				t.Errorf("namespace %s", o.Name)
			}
		case *corev1.ServiceAccount, *corev1.Service, *appsv1.Deployment, *rbacv1.Role, *rbacv1.RoleBinding:
			if o.GetNamespace() != "mesh" {
				t.Errorf("%T %s in namespace %q", o, o.GetName(), o.GetNamespace())
			}
		case *rbacv1.ClusterRoleBinding:
			if o.Subjects[0].Namespace != "mesh" {
				t.Errorf("ClusterRoleBinding subject %v", o.Subjects)
			}
		case *apiextensionsv1.CustomResourceDefinition:
			if o.GetNamespace() != "" {
				t.Errorf("CRD %s namespaced", o.Name)
			}
		}
		if d, ok := o.(*appsv1.Deployment); ok {
			c := d.Spec.Template.Spec.Containers[0]
			if c.Image != "example.com/t:1" || !slices.Contains(c.Args, "--server-names=trellis-control.mesh.svc") {
				t.Errorf("container %s %v", c.Image, c.Args)
			}
		}
	}
	b := manifest(t, Options{Namespace: "mesh"}, "yaml")
	if bytes.Contains(b, []byte(DefaultNamespace)) {
		t.Errorf("the manifest of namespace mesh names %s", DefaultNamespace)
	}
	if !bytes.Contains(b, []byte("image: "+DefaultImage()+"\n")) {
		t.Errorf("no image %s by default", DefaultImage())
	}
	if _, err := Objects(Options{Namespace: "Trellis_System"}); err == nil {
		t.Error("namespace Trellis_System accepted")
	}
}

// TestClusterRole checks that the ClusterRole covers every CRD kind (read,
// and status where the kind has one) and grants no verb that writes
// anything but status, tokenreviews, the two webhook configurations, the
// roots' ConfigMaps and what Gateways run on.
func TestClusterRole(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	role := clusterRole(crds)
	allows := func(group, resource, verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, c := range crds {
		if !allows(c.Spec.Group, c.Spec.Names.Plural, "watch") {
			t.Errorf("cannot watch %s", c.Name)
		}
		if got := allows(c.Spec.Group, c.Spec.Names.Plural+"/status", "patch"); got != hasStatus(c) {
			t.Errorf("%s: may patch status %v, has a status subresource %v", c.Name, got, hasStatus(c))
		}
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if slices.Contains(readVerbs, v) {
				continue
			}
			for _, res := range r.Resources {
				switch {
				case strings.HasSuffix(res, "/status") && (v == "update" || v == "patch"):
				case res == "tokenreviews" && v == "create":
				case res == "configmaps" && (v == "create" || v == "update" || v == "patch"):
					// trellis-ca-root in the injected namespaces and
					// those of Gateways.
				case slices.Contains([]string{"secrets", "serviceaccounts", "services", "deployments"}, res) && slices.Contains([]string{"create", "patch", "delete"}, v):
					// What each Gateway runs on, applied server-side.
				case strings.HasSuffix(res, "webhookconfigurations") && len(r.ResourceNames) == 1:
				default:
					t.Errorf("the ClusterRole may %s %s", v, res)
				}
			}
		}
	}
}
