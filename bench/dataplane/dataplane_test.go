package main

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestQuick runs the benchmark at 1 s per measurement so that it keeps
// working. It checks that every path answered, not how fast: timings on
// a shared machine are not a test. It skips when fortio or haproxy is
// missing (.ci/run installs them).
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, two sidecars, two haproxies and fortio")
	}
	if missing := missingTools(); len(missing) > 0 {
		t.Skip(missing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	res, err := run(ctx, quickOptions(), &out, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Log(out.String())
	for _, p := range []string{"direct", "trellis-l7", "haproxy-l7", "trellis-l4", "haproxy-l4"} {
		for _, m := range modes {
			ms := res.Paths[p][m.Name]
			if ms == nil || ms.QPS <= 0 || ms.P50ms <= 0 {
				t.Errorf("%s %s: no measurement: %+v", p, m.Name, ms)
				continue
			}
			if ms.Errors > 0 {
				t.Errorf("%s %s: %d requests failed", p, m.Name, ms.Errors)
			}
		}
	}
	if res.RSSIdleMB["client-sidecar"] <= 0 {
		t.Errorf("no RSS of the client sidecar")
	}
}
