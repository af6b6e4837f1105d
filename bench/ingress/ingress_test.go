package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestQuick runs the benchmark at 1 s per measurement so that it keeps
// working. It checks that every path answered every scenario without an
// error and that the report and its JSON line are complete, not how fast:
// timings on a shared machine are not a test. It skips when fortio,
// haproxy, nginx or taskset is missing (.ci/run installs them).
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, a gateway, haproxy, nginx and fortio")
	}
	if missing := missingTools(); len(missing) > 0 {
		t.Skip(strings.Join(missing, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	o := quickOptions()
	res, err := run(ctx, o, &out, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Log(out.String())
	for _, p := range pathNames {
		for _, s := range scenarios(o) {
			m := res.Paths[p][s.Name]
			if m == nil || m.QPS <= 0 || m.P50ms <= 0 || m.P999ms < m.P50ms {
				t.Errorf("%s %s: no measurement: %+v", p, s.Name, m)
				continue
			}
			if m.Errors > 0 {
				t.Errorf("%s %s: %d requests failed", p, s.Name, m.Errors)
			}
			// At saturation a proxy spends a good share of a CPU: some
			// of it is counted whatever the machine's state.
			if p != "direct" && !s.LatencyKey() && m.CPU <= 0 {
				t.Errorf("%s %s: no CPU counted for the proxy", p, s.Name)
			}
		}
	}
	if _, ok := res.Ratios["trellis"]["fixed_p99_x_nginx"]; !ok {
		t.Errorf("no p99 ratio to nginx: %v", res.Ratios["trellis"])
	}
	for _, g := range []string{"fixed_p99_le_nginx", "saturation_qps_ge_0.8x_haproxy", "handshakes_qps_ge_0.8x_haproxy"} {
		if _, ok := res.Goals[g]; !ok {
			t.Errorf("goal %s not checked: %v", g, res.Goals)
		}
	}
	// The report ends with the JSON line, and says PASS or MISS.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var last result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Bench != "trellis-ingress" {
		t.Errorf("the last line is not the JSON result (%v): %s", err, lines[len(lines)-1])
	}
	if !strings.Contains(out.String(), "PASS") && !strings.Contains(out.String(), "MISS") {
		t.Errorf("no goal printed")
	}
}

func TestParseCPUs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "1", want: []int{1}},
		{in: "0,2", want: []int{0, 2}},
		{in: "2-4,1,3", want: []int{2, 3, 4, 1}},
		{in: "", bad: true},
		{in: "a", bad: true},
		{in: "3-1", bad: true},
		{in: "1-", bad: true},
	} {
		got, err := parseCPUs(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseCPUs(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseCPUs(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}
