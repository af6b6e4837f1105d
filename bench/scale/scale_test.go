package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the benchmark's child processes,
// as the command's binary does.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(loaderEnv); cfg != "" {
		os.Exit(loaderMain(cfg))
	}
	if cfg := os.Getenv(controlEnv); cfg != "" {
		os.Exit(controlMain(cfg))
	}
	os.Exit(m.Run())
}

// TestQuick runs the benchmark small, in both modes, so that it keeps
// compiling and measuring. It checks what the run observed, not how fast
// it was: timings on a shared machine are not a test.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and a loader process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, quickOptions(), &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var last result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("the last line of the report is not the JSON result: %v", err)
	}
	if len(last.Modes) != 2 || last.Goals.RSSUnderOneGB.Pass == nil || last.Goals.DeltaEndpointChangeUnderTenth.Pass == nil {
		t.Errorf("the JSON result lacks modes or goals: %s", lines[len(lines)-1])
	}
	for name, m := range res.Modes {
		for phase, p := range map[string]*phaseResult{"route": m.Route, "endpoint": m.Endpoint, "churn": m.Churn} {
			switch {
			case p == nil:
				t.Errorf("%s: no %s phase", name, phase)
			case p.Completed == 0 || p.TimedOut > 0 || p.ApplyErrors > 0:
				t.Errorf("%s %s: %d changes reached every proxy, %d timed out, %d apply errors", name, phase, p.Completed, p.TimedOut, p.ApplyErrors)
			case p.Affected != float64(quickOptions().Layout.upstreamsPerProxy()):
				t.Errorf("%s %s: %.1f proxies per change, want %d", name, phase, p.Affected, quickOptions().Layout.upstreamsPerProxy())
			case p.BytesPerAffectedProxy <= 0 || p.PushRounds < 1:
				t.Errorf("%s %s: %.0f bytes per proxy, %.0f push rounds", name, phase, p.BytesPerAffectedProxy, p.PushRounds)
			}
		}
		if m.ServerBytes != m.LoaderBytes || m.ServerBytes == 0 {
			t.Errorf("%s: the control plane counted %d bytes sent, the proxies %d received", name, m.ServerBytes, m.LoaderBytes)
		}
		if m.RSSPeakMB <= 0 || m.ConfigBytesPerProxy <= 0 {
			t.Errorf("%s: peak RSS %.0f MB, config %.0f bytes", name, m.RSSPeakMB, m.ConfigBytesPerProxy)
		}
	}
	// Scoped, a proxy gets its ten upstreams of the quick mesh's 50
	// services, each with two ports: unscoped, ten times as many.
	if sc := last.Scoping; sc == nil || sc.ScopedBytes == 0 || sc.Ratio < 5 {
		t.Errorf("scoping: %+v, want the unscoped config several times the scoped one", sc)
	}
	// Delta resends one RouteConfiguration of a proxy's ten; state of the
	// world all ten.
	if s, d := res.Modes["sotw"].Route, res.Modes["delta"].Route; d.BytesPerAffectedProxy*3 > s.BytesPerAffectedProxy {
		t.Errorf("a route change cost %.0f bytes per proxy in delta, %.0f in state of the world: want delta under a third", d.BytesPerAffectedProxy, s.BytesPerAffectedProxy)
	}
}

func TestLayout(t *testing.T) {
	l := layout{Services: 1000, Endpoints: 5, Proxies: 1000, Upstreams: 10}
	for _, s := range []int{0, 1, 499, 999} {
		if n := len(l.callers(s)); n != 10 {
			t.Errorf("service %d has %d callers, want 10", s, n)
		}
	}
	ups := l.upstreams(7)
	seen := map[int]bool{}
	for _, u := range ups {
		seen[u] = true
	}
	if len(ups) != 10 || len(seen) != 10 {
		t.Errorf("proxy 7 calls %v: want 10 distinct services", ups)
	}
	if got := l.service(999); got.Namespace != "team-49" || got.Name != "svc-19" {
		t.Errorf("service 999 is %v", got)
	}
	small := layout{Services: 3, Endpoints: 1, Proxies: 2, Upstreams: 10}
	if n := len(small.upstreams(1)); n != 3 {
		t.Errorf("with 3 services a proxy calls %d", n)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP x
trellis_control_push_rounds_total 7
trellis_control_push_round_seconds_sum 1.5
trellis_control_proxy_pushes_total{result="changed"} 30
trellis_control_proxy_pushes_total{result="unchanged"} 40
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Rounds != 7 || m.RoundSecondsSum != 1.5 || m.Changed != 30 || m.Unchanged != 40 {
		t.Errorf("parsed %+v", m)
	}
}

func TestDist(t *testing.T) {
	var xs []float64
	for i := 1; i <= 100; i++ {
		xs = append(xs, float64(i))
	}
	d := distOf(xs)
	if d.P50 != 50 || d.P99 != 99 || d.Max != 100 || d.N != 100 {
		t.Errorf("%+v", d)
	}
}
