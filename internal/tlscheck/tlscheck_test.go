package tlscheck_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/tlscheck"
)

// load builds the model from YAML, as `trellis tls-check -f` does.
func load(t *testing.T, yaml string) (*model.Config, *model.Index) {
	t.Helper()
	objs, findings := resource.Load([]resource.File{{Name: "test.yaml", Data: []byte(yaml)}}, "default")
	for _, f := range findings {
		if f.Severity == analyze.Error {
			t.Fatalf("test config: %s", f)
		}
	}
	c, err := resource.Model(objs)
	if err != nil {
		t.Fatal(err)
	}
	return c, model.NewIndex(c)
}

// Pieces of config.
const (
	ledger = `
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: finance}
spec:
  selector: {app: ledger}
  ports: [{name: http, port: 80, targetPort: 8080}]
`
	meshed = `
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: ledger-1, namespace: finance, labels: {app: ledger}}
spec:
  address: 10.0.0.5
  serviceAccount: ledger
  meshPort: 15008
  ports: [{name: http, port: 8080, protocol: HTTP}]
`
	vm = `
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: ledger-vm, namespace: finance, labels: {app: ledger}}
spec:
  address: 10.0.0.6
  serviceAccount: ledger
  ports: [{name: http, port: 8080, protocol: HTTP}]
`
)

func mtls(mode string) string {
	return fmt.Sprintf(`
---
apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: ledger, namespace: finance}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger}]
  mode: %s
`, mode)
}

func backend(mode string) string {
	return fmt.Sprintf(`
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: clients, namespace: finance}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger}]
  tls: {mode: %s}
`, mode)
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config string
		server string
		client string
		status tlscheck.Status
		reason string // a substring of the reasons; "" for none
		// captured: the sidecars capture inbound traffic (as registered
		// with trellis-proxy --capture; a Workload resource cannot say so).
		captured bool
	}{
		{
			name:   "no policies: mesh mTLS to the sidecar",
			config: ledger + meshed,
			server: "STRICT", client: "Mesh: mTLS", status: tlscheck.OK,
		},
		{
			name:   "STRICT and clients told to send plaintext",
			config: ledger + meshed + mtls("STRICT") + backend("Disable"),
			server: "STRICT", client: "Disable: left out", status: tlscheck.Conflict,
			reason: "BackendPolicy finance/clients: Disable: workload finance/ledger-1 has a sidecar, which accepts only mesh mTLS",
		},
		{
			// PERMISSIVE would accept the plaintext, but a sidecar without
			// inbound capture has only its mesh port: the translator
			// leaves it out.
			name:   "PERMISSIVE and Disable toward a sidecar",
			config: ledger + meshed + mtls("PERMISSIVE") + backend("Disable"),
			server: "STRICT (policy: PERMISSIVE)", client: "Disable: left out", status: tlscheck.Conflict,
			reason: "MTLSPolicy finance/ledger asks for PERMISSIVE, which its sidecar does not enforce without inbound capture",
		},
		{
			// With inbound capture the policy is in effect; clients still
			// leave the sidecar out rather than send it plaintext.
			name:   "PERMISSIVE with capture and Disable toward a sidecar",
			config: ledger + meshed + mtls("PERMISSIVE") + backend("Disable"), captured: true,
			server: "PERMISSIVE", client: "Disable: left out", status: tlscheck.Conflict,
			reason: "BackendPolicy finance/clients: Disable: workload finance/ledger-1 has a sidecar",
		},
		{
			name:   "DISABLE with capture and Mesh clients",
			config: ledger + meshed + mtls("DISABLE"), captured: true,
			server: "DISABLE", client: "Mesh: mTLS", status: tlscheck.OK,
		},
		{
			name:   "PERMISSIVE and Disable toward a workload without sidecar",
			config: ledger + vm + mtls("PERMISSIVE") + backend("Disable"),
			server: "DISABLE (no sidecar; policy: PERMISSIVE)", client: "Disable: plaintext", status: tlscheck.OK,
		},
		{
			// The sidecar still requires mTLS, which Mesh clients use:
			// calls work, over mTLS.
			name:   "DISABLE and Mesh clients toward a sidecar",
			config: ledger + meshed + mtls("DISABLE"),
			server: "STRICT (policy: DISABLE)", client: "Mesh: mTLS", status: tlscheck.OK,
			reason: "asks for DISABLE on port 8080, which a sidecar enforces only with inbound capture (trellis-proxy --capture): workload finance/ledger-1 accepts only mesh mTLS, which clients use",
		},
		{
			name:   "DISABLE and RequireMesh toward a sidecar",
			config: ledger + meshed + mtls("DISABLE") + backend("RequireMesh"),
			server: "STRICT (policy: DISABLE)", client: "RequireMesh: mTLS", status: tlscheck.OK,
			reason: "which a sidecar enforces only with inbound capture",
		},
		{
			name:   "DISABLE and Disable toward a workload without sidecar",
			config: ledger + vm + mtls("DISABLE") + backend("Disable"),
			server: "DISABLE (no sidecar)", client: "Disable: plaintext", status: tlscheck.OK,
		},
		{
			// The translator sends plaintext to a member without a
			// sidecar whatever the MTLSPolicy says.
			name:   "STRICT on a workload without sidecar",
			config: ledger + vm + mtls("STRICT"),
			server: "DISABLE (no sidecar; policy: STRICT)", client: "Mesh: plaintext", status: tlscheck.Conflict,
			reason: "MTLSPolicy finance/ledger asks for STRICT on port 8080, but workload finance/ledger-vm has no sidecar to enforce it: clients reach it in plaintext",
		},
		{
			name:   "RequireMesh toward a workload without sidecar",
			config: ledger + vm + backend("RequireMesh"),
			server: "DISABLE (no sidecar)", client: "RequireMesh: left out", status: tlscheck.Conflict,
			reason: "RequireMesh: workload finance/ledger-vm has no sidecar to speak mesh mTLS with; clients leave it out",
		},
		{
			name:   "members with and without sidecar",
			config: ledger + meshed + vm,
			server: "STRICT, DISABLE (no sidecar)", client: "Mesh: mTLS, plaintext", status: tlscheck.OK,
		},
		{
			name:   "members with and without sidecar, Disable",
			config: ledger + meshed + vm + backend("Disable"),
			server: "STRICT, DISABLE (no sidecar)", client: "Disable: left out, plaintext", status: tlscheck.Conflict,
			reason: "calls go to the 1 member(s) reached",
		},
		{
			name:   "members with and without sidecar, RequireMesh",
			config: ledger + meshed + vm + backend("RequireMesh"),
			server: "STRICT, DISABLE (no sidecar)", client: "RequireMesh: mTLS, left out", status: tlscheck.Conflict,
			reason: "workload finance/ledger-vm has no sidecar",
		},
		{
			name:   "no members",
			config: ledger,
			server: "-", client: "Mesh: -", status: tlscheck.OK,
			reason: "no member workload",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ix := load(t, tc.config)
			if tc.captured {
				for _, w := range c.Workloads {
					w.InboundCapture = w.HasSidecar()
				}
			}
			ports, err := tlscheck.Check(c, ix, "finance", "ledger")
			if err != nil {
				t.Fatal(err)
			}
			if len(ports) != 1 {
				t.Fatalf("%d ports, want 1", len(ports))
			}
			p := ports[0]
			if p.Server != tc.server || p.Client != tc.client || p.Status != tc.status {
				t.Errorf("server %q, client %q, %s; want %q, %q, %s", p.Server, p.Client, p.Status, tc.server, tc.client, tc.status)
			}
			reasons := strings.Join(p.Reasons, "\n")
			if tc.reason == "" && reasons != "" || !strings.Contains(reasons, tc.reason) {
				t.Errorf("reasons:\n%s\nwant %q", reasons, tc.reason)
			}
		})
	}
}

// TestPerPort checks port overrides of an MTLSPolicy (on the workload's
// port) and a BackendPolicy that names one Service port.
func TestPerPort(t *testing.T) {
	c, ix := load(t, `
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: finance}
spec:
  selector: {app: ledger}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http-metrics, port: 90, targetPort: 9090}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: ledger-vm, namespace: finance, labels: {app: ledger}}
spec:
  address: 10.0.0.6
  ports: [{name: http, port: 8080, protocol: HTTP}, {name: http-metrics, port: 9090, protocol: HTTP}]
---
apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: ledger, namespace: finance}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger}]
  mode: PERMISSIVE
  ports: [{port: 8080, mode: STRICT}]
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: metrics, namespace: finance}
spec:
  targetRefs: [{group: "", kind: Service, name: ledger, sectionName: http-metrics}]
  tls: {mode: RequireMesh}
`)
	ports, err := tlscheck.Check(c, ix, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 {
		t.Fatalf("%d ports, want 2", len(ports))
	}
	http, metrics := ports[0], ports[1]
	if http.Port != 80 || http.Status != tlscheck.Conflict || http.Server != "DISABLE (no sidecar; policy: STRICT)" || http.Client != "Mesh: plaintext" {
		t.Errorf("port 80: %+v; want STRICT unenforced on 8080, plaintext: CONFLICT", http)
	}
	if metrics.Port != 90 || metrics.Status != tlscheck.Conflict || metrics.Client != "RequireMesh: left out" || metrics.BackendPolicy != "finance/metrics" ||
		metrics.Server != "DISABLE (no sidecar; policy: PERMISSIVE)" {
		t.Errorf("port 90: %+v; want the BackendPolicy for http-metrics only, RequireMesh leaving the member out: CONFLICT", metrics)
	}
	if m := metrics.Members; len(m) != 1 || m[0].TargetPort != 9090 || len(m[0].Policies) != 1 || m[0].Policies[0].Mode != model.MTLSPermissive {
		t.Errorf("port 90 members: %+v", m)
	}
}

func TestFilter(t *testing.T) {
	c, ix := load(t, ledger+meshed+`
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 80}]
`)
	all, err := tlscheck.Check(c, ix, "", "")
	if err != nil || len(all) != 2 || all[0].Service.String() != "finance/ledger" || all[1].Service.String() != "shop/cart" {
		t.Errorf("every namespace: %+v, %v", all, err)
	}
	shop, err := tlscheck.Check(c, ix, "shop", "")
	if err != nil || len(shop) != 1 || shop[0].Service.Name != "cart" {
		t.Errorf("namespace shop: %+v, %v", shop, err)
	}
	var noService *tlscheck.NoServiceError
	if _, err := tlscheck.Check(c, ix, "shop", "ledger"); !errors.As(err, &noService) || err.Error() != "tls-check: Service shop/ledger does not exist" {
		t.Errorf("unknown service: %v", err)
	}
	if n := tlscheck.Conflicts(all); n != 0 {
		t.Errorf("%d conflicts, want 0", n)
	}
}
