package resource

import (
	"os"
	"reflect"
	"runtime"
	"testing"
	"time"

	"trellis.dev/trellis/internal/model"
)

// TestAppendConfigCoversEveryKind fails when the model gains a kind that
// appendConfig does not carry.
func TestAppendConfigCoversEveryKind(t *testing.T) {
	src := &model.Config{}
	v := reflect.ValueOf(src).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Slice {
			continue
		}
		elem := reflect.New(f.Type().Elem().Elem())
		f.Set(reflect.Append(f, elem))
	}
	dst := &model.Config{}
	appendConfig(dst, src)
	if !reflect.DeepEqual(dst, src) {
		t.Fatalf("appendConfig drops a kind:\n got %+v\nwant %+v", dst, src)
	}
}

func TestModelCacheConvertsAsModel(t *testing.T) {
	data, err := os.ReadFile("testdata/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, findings := Load([]File{{Name: "mesh.yaml", Data: data}}, "default")
	if len(findings) > 0 {
		t.Fatal(findings)
	}
	// A duplicate and an object that does not convert take the same path.
	dup, _ := Load([]File{{Name: "dup.yaml", Data: data}}, "default")
	objs = append(objs, dup[0])

	want, wantErr := Model(objs)
	mc := NewModelCache()
	for round := range 2 {
		got, err := mc.Model(objs)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: cached model differs", round)
		}
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("round %d: error %v, want %v", round, err, wantErr)
		}
	}
	if got, want := mc.Analyze(objs, nil), Analyze(objs, nil); !reflect.DeepEqual(got, want) {
		t.Fatalf("cached analysis differs:\n got %v\nwant %v", got, want)
	}
}

// TestModelCacheForgetsCollectedObjects checks that an entry lives only as
// long as its object.
func TestModelCacheForgetsCollectedObjects(t *testing.T) {
	data, err := os.ReadFile("testdata/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mc := NewModelCache()
	func() {
		objs, _ := Load([]File{{Name: "mesh.yaml", Data: data}}, "default")
		if _, err := mc.Model(objs); err != nil {
			t.Fatal(err)
		}
		if mc.len() == 0 {
			t.Fatal("nothing cached")
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for mc.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries outlive their objects", mc.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
