package resource

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/meshgen"
	"trellis.dev/trellis/internal/model"
)

// storedUniverse loads every resource of the analyzer's test corpus and a
// generated mesh: many resources appear in several files, differently.
func storedUniverse(t *testing.T) []*Object {
	t.Helper()
	var files []File
	paths, _ := filepath.Glob("../analyze/testdata/*/*.yaml")
	paths = append(paths, "testdata/mesh.yaml")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Name: filepath.Base(p), Data: data})
	}
	mesh, _ := meshgen.Generate(meshgen.Scale(40))
	files = append(files, File{Name: "meshgen.yaml", Data: mesh})
	var all []*Object
	for _, f := range files {
		objs, _ := Load([]File{f}, "default")
		all = append(all, objs...)
	}
	if len(all) < 200 {
		t.Fatalf("universe of %d objects only", len(all))
	}
	return all
}

// TestStoredWithIsStoredAnew changes a set at random, step after step,
// and checks that With gives the model, errors and findings of the set
// built anew from its objects.
func TestStoredWithIsStoredAnew(t *testing.T) {
	all := storedUniverse(t)
	rng := rand.New(rand.NewPCG(1, 2))
	mc := NewModelCache()
	current := map[analyze.Resource]*Object{}
	s := NewStored(nil, mc)
	regs := func(c *model.Config) {
		c.Workloads = append(c.Workloads, &model.Workload{Key: model.Key{Namespace: "demo", Name: "registered"}, Address: "10.9.9.9",
			ServiceAccount: "web", Labels: map[string]string{"app": "web"}, MeshPort: 15008})
	}
	for step := range 60 {
		var changed []*Object
		var removed []analyze.Resource
		for range 1 + rng.IntN(40) {
			o := all[rng.IntN(len(all))]
			changed = append(changed, o)
		}
		for r := range current {
			if rng.IntN(20) == 0 {
				removed = append(removed, r)
			}
		}
		s = s.With(changed, removed)
		for _, r := range removed {
			delete(current, r)
		}
		for _, o := range changed {
			current[refOf(o)] = o
		}
		var objs []*Object
		for _, o := range current {
			objs = append(objs, o)
		}
		anew := NewStored(objs, mc)
		if s.Len() != len(current) {
			t.Fatalf("step %d: %d objects, want %d", step, s.Len(), len(current))
		}
		if !reflect.DeepEqual(s.Model(), anew.Model()) {
			a, b := reflect.ValueOf(s.Model()).Elem(), reflect.ValueOf(anew.Model()).Elem()
			for i := range a.NumField() {
				if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
					t.Errorf("%s: %d vs %d", a.Type().Field(i).Name, a.Field(i).Len(), b.Field(i).Len())
				}
			}
			t.Fatalf("step %d: patched model differs from the model built anew", step)
		}
		if got, want := s.Errors(), anew.Errors(); (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Fatalf("step %d: errors %v, want %v", step, got, want)
		}
		if step%10 == 0 {
			// The set's model and analysis are the package's, whose input
			// here has no duplicates.
			m, err := Model(anew.Objects())
			if !reflect.DeepEqual(m, anew.Model()) {
				t.Fatalf("step %d: the model of the set differs from Model's", step)
			}
			if got := anew.Errors(); (got == nil) != (err == nil) || (err != nil && got.Error() != err.Error()) {
				t.Fatalf("step %d: errors %v, Model's %v", step, got, err)
			}
			want := Analyze(anew.Objects(), regs)
			if got := s.Analyze(regs); !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d: findings differ:\n got %v\nwant %v", step, got, want)
			}
		}
	}
}

// BenchmarkStoredChange measures judging a change of one resource in a
// mesh of 10k: the whole pipeline over every object (Analyze, the
// baseline) against the set patched with the change (Stored.With, then
// Analyze).
func BenchmarkStoredChange(b *testing.B) {
	data, n := meshgen.Generate(meshgen.Scale(10000))
	objs, fs := Load([]File{{Name: "mesh.yaml", Data: data}}, "default")
	if len(fs) > 0 {
		b.Fatalf("generated mesh: %s", fs[0])
	}
	mc := NewModelCache()
	stored := NewStored(objs, mc)
	// The change: a Service's copy, as an apply decodes it anew.
	var changed *Object
	for _, o := range objs {
		if o.Kind == "Service" {
			changed = &Object{Kind: o.Kind, APIVersion: o.APIVersion, Namespace: o.Namespace, Name: o.Name, Obj: o.Obj}
			break
		}
	}
	next := append(slices.Clone(objs), changed)
	b.Logf("%d resources", n)
	b.Run("baseline=all", func(b *testing.B) {
		for b.Loop() {
			mc.Analyze(next, nil)
		}
	})
	b.Run("stored=with", func(b *testing.B) {
		for b.Loop() {
			stored.With([]*Object{changed}, nil).Analyze(nil)
		}
	})
}
