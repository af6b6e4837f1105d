package resource

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics and that everything it
// accepts survives storage: for each decoded object o, Encode(o) succeeds,
// DecodeOne reads it back as the same resource with a DeepEqual Obj, and
// encoding that again gives the same bytes. The same holds after Default,
// and Validate and Model do not panic on whatever Decode returns.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"---\n---\n",
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80}]}}`,
		"kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: &m {name: a, labels: {x: y}}\nspec: {selector: {<<: {a: b}}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: a, creationTimestamp: 2024-01-02T03:04:05.5+02:00}\n",
		"apiVersion: trellis.dev/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec: {address: 10.0.0.1, meshPort: 15008, ports: [{port: 0x50}]}\n",
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {rules: [{matches: [], backendRefs: [{name: s, port: 80, weight: 0}]}]}\n",
		"a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _ := Decode("fuzz.yaml", data)
		for _, o := range objs {
			checkRoundTrip(t, o)
			Default(o, "default")
			checkRoundTrip(t, o)
			_ = Validate(o)
		}
		_, _ = Model(objs)
	})
}

func checkRoundTrip(t *testing.T, o *Object) {
	t.Helper()
	b1, err := Encode(o)
	if err != nil {
		t.Fatalf("Encode(%s): %v", o.Ref(), err)
	}
	o2, err := DecodeOne(o.Kind, b1)
	if err != nil {
		t.Fatalf("DecodeOne(Encode(%s)): %v\n%s", o.Ref(), err, b1)
	}
	if o2.Kind != o.Kind || o2.APIVersion != o.APIVersion || o2.Namespace != o.Namespace || o2.Name != o.Name {
		t.Fatalf("round trip changed the resource: %s %s → %s %s", o.APIVersion, o.Ref(), o2.APIVersion, o2.Ref())
	}
	if !reflect.DeepEqual(o.Obj, o2.Obj) {
		t.Fatalf("round trip changed %s:\nbefore %#v\nafter  %#v\njson %s", o.Ref(), o.Obj, o2.Obj, b1)
	}
	b2, err := Encode(o2)
	if err != nil {
		t.Fatalf("Encode(DecodeOne(Encode(%s))): %v", o.Ref(), err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("Encode is not canonical for %s:\n%s\n%s", o.Ref(), b1, b2)
	}
}
