package analyze_test

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/resource"
)

var update = flag.Bool("update", false, "rewrite golden files and docs/analyzer.md")

// run decodes, validates and analyzes files as `trellis analyze` does.
func run(t *testing.T, files ...resource.File) []analyze.Finding {
	t.Helper()
	objs, findings := resource.Load(files, "default")
	findings = append(findings, resource.Analyze(objs, nil)...)
	analyze.Sort(findings)
	return findings
}

func readFile(t *testing.T, path string) resource.File {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return resource.File{Name: filepath.Base(path), Data: b}
}

func render(fs []analyze.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("findings differ from %s (run go test -update and review the diff):\n%s", path, got)
	}
}

// TestCodes runs one example per code: each must produce its code, and
// its findings are pinned by a golden file.
func TestCodes(t *testing.T) {
	for _, c := range analyze.Codes {
		t.Run(c.ID, func(t *testing.T) {
			path := filepath.Join("testdata", "codes", c.ID+".yaml")
			fs := run(t, readFile(t, path))
			if !slices.ContainsFunc(fs, func(f analyze.Finding) bool { return f.Code == c.ID }) {
				t.Errorf("%s does not produce %s:\n%s", path, c.ID, render(fs))
			}
			for _, f := range fs {
				if f.Severity == "" || f.Message == "" || f.Hint == "" {
					t.Errorf("incomplete finding: %+v", f)
				}
				if f.Code == c.ID && f.Severity != c.Severity {
					t.Errorf("%s reported as %s, registered as %s", c.ID, f.Severity, c.Severity)
				}
			}
			golden(t, strings.TrimSuffix(path, ".yaml")+".golden", render(fs))
		})
	}
}

// TestClean checks realistic configurations that must produce nothing.
func TestClean(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "clean", "*.yaml"))
	paths = append(paths, filepath.Join("..", "demo", "mesh.yaml"))
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f := readFile(t, path)
			f.Data = bytes.ReplaceAll(f.Data, []byte("{{INGRESS_PORT}}"), []byte("18080"))
			if fs := run(t, f); len(fs) > 0 {
				t.Errorf("%s should be clean:\n%s", path, render(fs))
			}
		})
	}
}

// TestOrderDoesNotMatter shuffles the documents of every example: the
// findings must not change.
func TestOrderDoesNotMatter(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	for _, path := range paths {
		f := readFile(t, path)
		docs := strings.Split(string(f.Data), "\n---\n")
		want := strip(run(t, f))
		for i := range 5 {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			r.Shuffle(len(docs), func(a, b int) { docs[a], docs[b] = docs[b], docs[a] })
			shuffled := resource.File{Name: f.Name, Data: []byte(strings.Join(docs, "\n---\n"))}
			if got := strip(run(t, shuffled)); got != want {
				t.Errorf("%s: reordering the documents changed the findings:\nbefore\n%s\nafter\n%s", path, want, got)
				break
			}
		}
	}
}

// strip renders findings without line numbers, which move with the
// documents.
func strip(fs []analyze.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		f.Line = 0
		fmt.Fprintln(&b, lineNumbers.ReplaceAllString(f.String(), ":N"))
	}
	return b.String()
}

var lineNumbers = regexp.MustCompile(`:[0-9]+`)

// TestPartRestReadsNoWorkload checks the promise of PartRest on every
// configuration of the corpus: its findings do not change whatever
// happens to the workloads (here, all gone, or each moved and relabelled),
// and the parts together are the whole analysis.
func TestPartRestReadsNoWorkload(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*/*.yaml")
	for _, p := range paths {
		objs, _ := resource.Load([]resource.File{readFile(t, p)}, "default")
		c, _ := resource.Model(objs)
		rest := render(analyze.AnalyzeParts(c, analyze.PartRest))
		both := append(analyze.AnalyzeParts(c, analyze.PartRest), analyze.AnalyzeParts(c, analyze.PartWorkloads)...)
		analyze.Sort(both)
		if got, want := render(both), render(analyze.Analyze(c)); got != want {
			t.Errorf("%s: the parts find\n%s\nthe whole analysis\n%s", p, got, want)
		}
		if len(c.Workloads) == 0 {
			continue
		}
		none := *c
		none.Workloads = nil
		moved := *c
		moved.Workloads = nil
		for i, w := range c.Workloads {
			m := *w
			m.Address = fmt.Sprintf("10.200.0.%d", i+1)
			m.Labels = map[string]string{"moved": "yes"}
			m.MeshPort = 0
			m.ServiceAccount = "other"
			moved.Workloads = append(moved.Workloads, &m)
		}
		for name, cfg := range map[string]*model.Config{"without workloads": &none, "workloads changed": &moved} {
			if got := render(analyze.AnalyzeParts(cfg, analyze.PartRest)); got != rest {
				t.Errorf("%s %s: PartRest finds\n%s\nwhere it found\n%s", p, name, got, rest)
			}
		}
	}
}
