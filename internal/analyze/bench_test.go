package analyze_test

import (
	"fmt"
	"runtime"
	"testing"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/meshgen"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/resource"
)

// TestGeneratedMeshIsClean checks that the benchmark input is healthy, so
// that the benchmark measures the common case.
func TestGeneratedMeshIsClean(t *testing.T) {
	data, n := meshgen.Generate(meshgen.Scale(1000))
	fs := run(t, resource.File{Name: "mesh.yaml", Data: data})
	if len(fs) > 0 {
		t.Errorf("the generated mesh (%d resources) has %d findings, first: %s", n, len(fs), fs[0])
	}
}

// BenchmarkAnalyze measures the analyzer alone on 1k and 10k resources;
// BenchmarkAnalyzeFiles the whole of `trellis analyze`: decoding,
// validation, the model and the analyzer.
func BenchmarkAnalyze(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		data, n := meshgen.Generate(meshgen.Scale(size))
		objs, fs := resource.Load([]resource.File{{Name: "mesh.yaml", Data: data}}, "default")
		if len(fs) > 0 {
			b.Fatalf("generated mesh: %s", fs[0])
		}
		c, err := resource.Model(objs)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var out []analyze.Finding
			for b.Loop() {
				out = analyze.Analyze(c)
			}
			b.ReportMetric(float64(len(out)), "findings")
			reportHeap(b)
		})
	}
}

func BenchmarkAnalyzeFiles(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		data, n := meshgen.Generate(meshgen.Scale(size))
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				objs, fs := resource.Load([]resource.File{{Name: "mesh.yaml", Data: data}}, "default")
				fs = append(fs, resource.Analyze(objs, func(*model.Config) {})...)
				if len(fs) > 0 {
					b.Fatalf("findings: %s", fs[0])
				}
			}
			reportHeap(b)
		})
	}
}

// reportHeap reports the peak heap seen by the runtime, in MB.
func reportHeap(b *testing.B) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapSys)/(1<<20), "heapMB")
}
