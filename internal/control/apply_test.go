package control

import (
	"slices"
	"testing"

	"trellis.dev/trellis/internal/controlapi"
)

func TestNextWave(t *testing.T) {
	job := func(name string, dry bool, keys ...string) *applyJob {
		return &applyJob{req: controlapi.ApplyRequest{Namespace: name, DryRun: dry}, keys: keys}
	}
	names := func(js []*applyJob) []string {
		var out []string
		for _, j := range js {
			out = append(out, j.req.Namespace)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		pending []*applyJob
		waves   [][]string
	}{
		{"distinct", []*applyJob{job("a", false, "x"), job("b", false, "y")}, [][]string{{"a", "b"}}},
		{
			// c touches what b (deferred behind a) touches: it must not
			// overtake b, though it does not conflict with a.
			"order kept per key",
			[]*applyJob{job("a", false, "x"), job("b", false, "x", "y"), job("c", false, "y"), job("d", false, "z")},
			[][]string{{"a", "d"}, {"b"}, {"c"}},
		},
		{
			"dry runs alone",
			[]*applyJob{job("a", false, "x"), job("dry", true, "x"), job("b", false, "y")},
			[][]string{{"a", "b"}, {"dry"}},
		},
		{"dry run first", []*applyJob{job("dry", true, "x"), job("a", false, "x")}, [][]string{{"dry"}, {"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]string
			pending := tc.pending
			for len(pending) > 0 {
				var wave []*applyJob
				wave, pending = nextWave(pending)
				got = append(got, names(wave))
			}
			if !slices.EqualFunc(got, tc.waves, slices.Equal) {
				t.Errorf("waves %v, want %v", got, tc.waves)
			}
		})
	}
}
