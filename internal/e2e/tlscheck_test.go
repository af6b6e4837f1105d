package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/usage"
)

// TestTLSCheck runs `trellis tls-check` against a live control plane: the
// stored policies and a sidecar that registered itself are judged
// together, and the verdict follows a change.
func TestTLSCheck(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: web-plain, namespace: demo}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  tls: {mode: Disable}
---
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: demo}
spec:
  selector: {app: ledger}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: ledger-vm, namespace: demo, labels: {app: ledger}}
spec:
  address: 10.9.0.5
  serviceAccount: ledger
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: ledger, namespace: demo}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger}]
  mode: STRICT
`)
	ip := s.ip(11)
	startProxy(t, cp, nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: "web-1", Namespace: "demo", ServiceAccount: "web",
		Address: ip, AppAddress: ip, MeshPort: 15008, Labels: map[string]string{"app": "web"},
		Ports: []nodemeta.Port{{Name: "http", Port: 8080, Protocol: "HTTP"}},
	})

	// The sidecar registers itself when it connects.
	var out string
	eventually(t, 30*time.Second, "web-1 registered and judged", func() error {
		var err error
		out, _, err = trellis(t, cp, "tls-check")
		if !strings.Contains(out, "workload demo/web-1 has a sidecar") {
			return fmt.Errorf("no verdict on web-1 yet (%v):\n%s", err, out)
		}
		if err == nil || usage.Is(err) {
			return fmt.Errorf("tls-check with conflicts: %v, want exit code 1", err)
		}
		return nil
	})
	if header, _, _ := strings.Cut(out, "\n"); strings.Join(strings.Fields(header), " ") != "SERVICE PORT SERVER mTLS CLIENT mTLS STATUS REASON" {
		t.Errorf("header %q", header)
	}
	for _, want := range []string{
		"demo/ledger   80/http   DISABLE (no sidecar; policy: STRICT)   Mesh: plaintext     CONFLICT   MTLSPolicy demo/ledger asks for STRICT on port 8080, but workload demo/ledger-vm has no sidecar to enforce it",
		"demo/web      80/http   STRICT                                 Disable: left out   CONFLICT   BackendPolicy demo/web-plain: Disable: workload demo/web-1 has a sidecar",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tls-check output lacks %q:\n%s", want, out)
		}
	}

	out, _, err := trellis(t, cp, "tls-check", "demo/web", "-o", "json")
	if err == nil {
		t.Error("tls-check demo/web -o json: no error, want exit code 1 for the CONFLICT")
	}
	var res struct {
		Ports []struct {
			Status  string
			Members []struct {
				Workload struct{ Namespace, Name string }
				Sidecar  bool
				Client   string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Ports) != 1 || res.Ports[0].Status != "CONFLICT" || len(res.Ports[0].Members) != 1 ||
		res.Ports[0].Members[0].Workload.Name != "web-1" || !res.Ports[0].Members[0].Sidecar || res.Ports[0].Members[0].Client != "left out" {
		t.Errorf("json: %+v", res)
	}

	// Without the BackendPolicy the clients use mesh mTLS again.
	if _, _, err := trellis(t, cp, "delete", "backendpolicy", "web-plain", "-n", "demo"); err != nil {
		t.Fatal(err)
	}
	out, _, err = trellis(t, cp, "tls-check", "web", "-n", "demo")
	if err != nil || !strings.Contains(out, "demo/web   80/http   STRICT        Mesh: mTLS    OK") {
		t.Errorf("tls-check web -n demo after the BackendPolicy is gone: %v\n%s", err, out)
	}

	if _, _, err := trellis(t, cp, "tls-check", "demo/nope"); err == nil || usage.Is(err) || !strings.Contains(err.Error(), "Service demo/nope does not exist") {
		t.Errorf("tls-check of an unknown Service: %v", err)
	}
	if _, _, err := trellis(t, cp, "tls-check", "a/b/c"); !usage.Is(err) {
		t.Errorf("tls-check a/b/c: %v, want a usage error", err)
	}
}
