package main

import (
	"bytes"
	"context"
	"strings"
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
	// The sidecars' metrics, end to end over mesh mTLS: each side names
	// the other.
	for side, want := range map[string][]string{
		"client-sidecar": {`trellis_requests_total{reporter="source",source_workload="client",source_workload_namespace="bench",source_principal="spiffe://cluster.local/ns/bench/sa/client",destination_workload="backend",destination_workload_namespace="bench",destination_principal="unknown",destination_service="backend.bench.svc.cluster.local",response_code="200"`,
			`trellis_tcp_connections_opened_total{reporter="source",source_workload="client"`},
		"server-sidecar": {`trellis_requests_total{reporter="destination",source_workload="client",source_workload_namespace="bench",source_principal="spiffe://cluster.local/ns/bench/sa/client",destination_workload="backend",destination_workload_namespace="bench",destination_principal="spiffe://cluster.local/ns/bench/sa/backend",destination_service="backend.bench.svc.cluster.local",response_code="200"`,
			`trellis_tcp_connections_closed_total{reporter="destination",source_workload="unknown",source_workload_namespace="bench",source_principal="spiffe://cluster.local/ns/bench/sa/client"`},
	} {
		for _, w := range want {
			if !strings.Contains(res.Metrics[side], w) {
				t.Errorf("%s metrics lack %s\n%s", side, w, res.Metrics[side])
			}
		}
	}
	if res.RSSIdleMB["client-sidecar"] <= 0 {
		t.Errorf("no RSS of the client sidecar")
	}
	if f := res.Fleet; f == nil || f.RSSMB <= 0 || f.Resources["RDS"] < f.Services {
		t.Errorf("no RSS of the capture sidecar seeing %d services: %+v", quickOptions().Services, f)
	}
}
