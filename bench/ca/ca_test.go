package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestQuick runs the benchmark with 50 proxies so that it keeps working.
// It checks that every proxy was certified and every figure measured, not
// how fast: timings on a shared machine are not a test.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	res, err := run(ctx, quickOptions(), &out, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Log(out.String())
	if res.Signing.PerSecond <= 0 || res.Signing.BarePerSecond <= 0 {
		t.Errorf("no signing figures: %+v", res.Signing)
	}
	if c := res.Certify; c.Proxies != 50 || c.Seconds <= 0 || c.Latency.N != 50 || c.ControlCPUSeconds < 0 {
		t.Errorf("certification: %+v", c)
	}
	if len(res.Handshakes) != 2 {
		t.Fatalf("handshakes: %+v", res.Handshakes)
	}
	for _, h := range res.Handshakes {
		if h.BareMicros <= 0 || h.TrellisMicros <= 0 {
			t.Errorf("handshake %s: %+v", h.Curve, h)
		}
	}
	if len(res.Goals) != 4 {
		t.Errorf("goals: %+v", res.Goals)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var last result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Errorf("the last line is not the JSON result: %v", err)
	}
}
