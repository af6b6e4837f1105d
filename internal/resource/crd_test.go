package resource

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/schema"
)

// TestTestdataAgreesWithCRDs reads every resource of a CRD kind in the
// repository's testdata and checks that Load (trellis apply, analyze) and
// the CRD alone, on the document as a kube-apiserver receives it, agree:
// what the CRD rejects, Load rejects on the same field, and what Load
// rejects the CRD rejects too, but for the checks CRDs cannot express
// (regular expressions the proxies' RE2 cannot compile).
func TestTestdataAgreesWithCRDs(t *testing.T) {
	var files []string
	filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".yaml") && strings.Contains(filepath.ToSlash(path), "/testdata/") {
			files = append(files, path)
		}
		return nil
	})
	checked := map[string]int{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			obj := rawObject(doc)
			apiVersion, _ := obj["apiVersion"].(string)
			kind, _ := obj["kind"].(string)
			v, err := schema.For(apiVersion, kind)
			if err != nil {
				continue // not a CRD kind, or not a resource at all
			}
			meta, _ := obj["metadata"].(map[string]any)
			name := file + ": " + kind + " " + cmpString(meta["name"])
			v.Default(obj)
			crdErrs := v.Validate(obj)

			_, findings := Load([]File{{Name: file, Data: doc}}, "")
			var loadErrs []analyze.Finding
			for _, f := range findings {
				if f.Code == analyze.CodeDecode || f.Code == analyze.CodeInvalid {
					loadErrs = append(loadErrs, f)
				}
			}
			checked[kind]++
			for _, e := range crdErrs {
				found := false
				for _, f := range loadErrs {
					found = found || f.Field == e.Field || e.Field == ""
				}
				if !found {
					t.Errorf("%s: the CRD rejects %s, Load does not: %v", name, e.Field, loadErrs)
				}
			}
			if len(crdErrs) == 0 {
				for _, f := range loadErrs {
					if !strings.Contains(f.Message, "regular expression") {
						t.Errorf("%s: Load rejects %s: %s; the CRD accepts it", name, f.Field, f.Message)
					}
				}
			}
		}
	}
	t.Logf("checked by kind: %v", checked)
	for _, k := range []string{"Workload", "MTLSPolicy", "AccessPolicy", "BackendPolicy", "HTTPRoute", "Gateway"} {
		if checked[k] == 0 {
			t.Errorf("no %s in any testdata", k)
		}
	}
}

// rawObject parses one YAML document as the apiserver does; nil if it is
// not a JSON object.
func rawObject(doc []byte) map[string]any {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil
	}
	return obj
}

func cmpString(v any) string {
	s, _ := v.(string)
	return s
}

// TestKindsMatchCRDs checks that the names kinds.go gives each kind with
// a CRD (plural, short names, scope) are the CRD's, so that `trellis get
// wl` and `kubectl get wl` mean the same.
func TestKindsMatchCRDs(t *testing.T) {
	files, err := fs.Glob(schema.CRDs(), "*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded CRDs: %v, %v", files, err)
	}
	seen := 0
	for _, f := range files {
		b, _ := fs.ReadFile(schema.CRDs(), f)
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatal(err)
		}
		info, ok := kindByName(crd.Spec.Names.Kind)
		if !ok || info.Group != crd.Spec.Group {
			t.Errorf("%s: kind %s of group %s is not in kinds.go", f, crd.Spec.Names.Kind, crd.Spec.Group)
			continue
		}
		seen++
		names := crd.Spec.Names
		if info.Plural != names.Plural || !slices.Equal(info.ShortNames, names.ShortNames) ||
			info.Namespaced != (crd.Spec.Scope == apiextensionsv1.NamespaceScoped) {
			t.Errorf("%s: kinds.go has plural %q, short names %v, namespaced %v; the CRD %q, %v, %s",
				info.Kind, info.Plural, info.ShortNames, info.Namespaced, names.Plural, names.ShortNames, crd.Spec.Scope)
		}
	}
	if seen != len(files) {
		t.Errorf("%d of %d CRDs match a kind", seen, len(files))
	}
}
