package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/controlapi"
)

// TestConcurrentApplies sends applies at once, as CI pipelines of many
// teams do: they are judged together where that changes nothing, and one
// by one where their combination adds an error, so that exactly the
// applies a one-by-one order accepts are stored.
func TestConcurrentApplies(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	api, err := controlapi.NewClient(cp.api)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	apply := func(content string) error {
		_, err := api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "c.yaml", Content: content}}})
		return err
	}
	if err := apply(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: web, protocol: HTTP, port: 80, allowedRoutes: {namespaces: {from: All}}}
`); err != nil {
		t.Fatal(err)
	}
	team := func(i int, path string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: api, namespace: team-%d}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: team-%d}
spec:
  parentRefs: [{name: public, namespace: infra}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: %s}}]
    backendRefs: [{name: api, port: 80}]
`, i, i, path)
	}
	run := func(n int, content func(i int) string) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = apply(content(i)) })
		}
		wg.Wait()
		return errs
	}

	// Forty teams, forty distinct paths: every apply is stored.
	for i, err := range run(40, func(i int) string { return team(i, fmt.Sprintf("/team-%d", i)) }) {
		if err != nil {
			t.Errorf("team %d: %v", i, err)
		}
	}
	// Eight more teams all claim /shared: whichever comes first gets it,
	// the others take another namespace's requests (TRL2010) and are
	// refused.
	stored := 0
	for _, err := range run(8, func(i int) string { return team(100+i, "/shared") }) {
		if err == nil {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d of 8 applies claiming the same path were stored, want exactly 1", stored)
	}
	list, err := api.List(ctx, "HTTPRoute", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 41 {
		t.Errorf("%d HTTPRoutes stored, want 41", len(list))
	}
	t.Logf("apply waves: %s", metricLines(t, cp.api, "trellis_control_apply_waves_total"))
	findings, err := api.Findings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		if f.Severity == analyze.Error {
			t.Errorf("the stored config has an error: %s", f)
		}
	}
}

// metricLines returns the lines of one metric the control plane at api
// exports.
func metricLines(t *testing.T, api, name string) string {
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}
