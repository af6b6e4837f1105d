package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/cli"
	"trellis.dev/trellis/internal/usage"
)

const sharedGateway = `
apiVersion: gateway.networking.k8s.io/v1
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
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: team-a}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: team-b}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: team-a}
spec:
  parentRefs: [{name: public, namespace: infra}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: api, port: 80}]
`

func teamBRoute(path, backend string) string {
	return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: team-b}
spec:
  parentRefs: [{name: public, namespace: infra}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: ` + path + `}}]
    backendRefs: [{name: ` + backend + `, port: 80}]
`
}

// TestApplyRunsTheAnalyzer shows the analyzer on the write path: a second
// team's route that would silently shadow the first team's is refused,
// with the reason; one that takes part of the first team's space is
// accepted with a warning.
func TestApplyRunsTheAnalyzer(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	if _, _, err := trellis(t, cp, "apply", "-f", write("base.yaml", sharedGateway)); err != nil {
		t.Fatal(err)
	}

	_, _, err := trellis(t, cp, "apply", "-f", write("shadow.yaml", teamBRoute("/api", "api")))
	if err == nil {
		t.Fatal("a route shadowing another team's was accepted")
	}
	for _, want := range []string{"shadow.yaml:8", "error TRL2010", "HTTPRoute team-b/api", "HTTPRoute team-a/api", "nothing was applied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if _, _, err := trellis(t, cp, "get", "httproute", "api", "-n", "team-b"); err == nil {
		t.Error("the refused route was stored")
	}

	if _, _, err := trellis(t, cp, "apply", "-f", write("missing.yaml", teamBRoute("/api/v3", "api-v3"))); err == nil || !strings.Contains(err.Error(), "TRL3001") {
		t.Errorf("a route to a missing Service: %v, want TRL3001", err)
	}

	out, stderr, err := trellis(t, cp, "apply", "-f", write("overlap.yaml", teamBRoute("/api/v2", "api")))
	if err != nil {
		t.Fatalf("overlapping route refused: %v", err)
	}
	if !strings.Contains(out, "HTTPRoute team-b/api created") || !strings.Contains(stderr, "warning TRL2013") {
		t.Errorf("overlapping route: stdout %q, stderr %q; want created with a TRL2013 warning", out, stderr)
	}
	// The stored configuration, analyzed by the control plane.
	out, _, err = trellis(t, cp, "analyze")
	if err != nil || !strings.Contains(out, "warning TRL2013: HTTPRoute team-b/api") {
		t.Errorf("analyze of the stored config: %v\n%s", err, out)
	}
	if _, _, err := trellis(t, cp, "analyze", "--fail-on", "warning"); err == nil || usage.Is(err) {
		t.Errorf("analyze --fail-on warning: %v, want a failure", err)
	}
	// Re-applying the unchanged base adds nothing new: no warning again.
	if _, stderr, err := trellis(t, cp, "apply", "-f", filepath.Join(dir, "base.yaml")); err != nil || stderr != "" {
		t.Errorf("re-apply: %v, stderr %q", err, stderr)
	}

	// A change of Workloads alone is judged by the checks that read
	// workloads only: their findings still reach the caller.
	if _, _, err := trellis(t, cp, "apply", "-f", write("ledger.yaml", `apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: finance}
spec:
  selector: {app: ledger}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: ledger, namespace: finance}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger}]
  tls: {mode: Disable}
`)); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = trellis(t, cp, "apply", "-f", write("ledger-1.yaml", `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: ledger-1, namespace: finance, labels: {app: ledger}}
spec:
  address: 10.0.0.5
  meshPort: 15008
  ports: [{name: http, port: 8080, protocol: HTTP}]
`))
	if err != nil || !strings.Contains(stderr, "warning TRL3013: BackendPolicy finance/ledger") {
		t.Errorf("a Workload left out by a BackendPolicy: %v, stderr %q; want a TRL3013 warning", err, stderr)
	}
}

// TestAnalyzeCommand runs trellis analyze offline: exit status, JSON
// output, thresholds.
func TestAnalyzeCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "base.yaml"), []byte(sharedGateway), 0o644)
	os.MkdirAll(filepath.Join(dir, "team-b"), 0o755)
	os.WriteFile(filepath.Join(dir, "team-b", "route.yaml"), []byte(teamBRoute("/api", "api")), 0o644)
	run := func(args ...string) (string, error) {
		var stdout, stderr strings.Builder
		err := cli.Run(context.Background(), append([]string{"analyze"}, args...), &stdout, &stderr)
		return stdout.String(), err
	}
	out, err := run("-f", dir, "-o", "json")
	if err == nil || usage.Is(err) {
		t.Fatalf("analyze of a conflicting directory: %v, want a failure", err)
	}
	var res struct {
		Findings []struct {
			Code     string
			Severity string
			Resource struct{ Kind, Namespace, Name string }
			Field    string
			File     string
			Line     int
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Findings) != 1 || res.Findings[0].Code != "TRL2010" || res.Findings[0].Resource.Namespace != "team-b" ||
		res.Findings[0].Field != "spec.rules[0].matches[0]" || !strings.HasSuffix(res.Findings[0].File, "route.yaml") || res.Findings[0].Line != 8 {
		t.Errorf("findings: %+v", res.Findings)
	}
	if out, err := run("-f", filepath.Join(dir, "base.yaml")); err != nil || !strings.Contains(out, "no findings") {
		t.Errorf("clean file: %v\n%s", err, out)
	}
	if _, err := run("-f", dir, "--fail-on", "fatal"); !usage.Is(err) {
		t.Errorf("--fail-on fatal: %v, want a usage error", err)
	}
}
