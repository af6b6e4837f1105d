package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/usage"
)

func TestServiceArg(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		ns       string
		nsSet    bool
		wantNS   string
		wantName string
		usage    bool
	}{
		{nil, "default", false, "", "", false},
		{nil, "shop", true, "shop", "", false},
		{[]string{"cart"}, "default", false, "default", "cart", false},
		{[]string{"cart"}, "shop", true, "shop", "cart", false},
		{[]string{"shop/cart"}, "default", false, "shop", "cart", false},
		{[]string{"shop/cart"}, "shop", true, "shop", "cart", false},
		{[]string{"shop/cart"}, "web", true, "", "", true},
		{[]string{"/cart"}, "default", false, "", "", true},
		{[]string{"shop/"}, "default", false, "", "", true},
		{[]string{"a/b/c"}, "default", false, "", "", true},
	} {
		ns, name, err := serviceArg(tc.args, tc.ns, tc.nsSet)
		if tc.usage {
			if !usage.Is(err) {
				t.Errorf("%q -n %s: %v, want a usage error", tc.args, tc.ns, err)
			}
			continue
		}
		if err != nil || ns != tc.wantNS || name != tc.wantName {
			t.Errorf("%q -n %s (set %v) = %q, %q, %v; want %q, %q", tc.args, tc.ns, tc.nsSet, ns, name, err, tc.wantNS, tc.wantName)
		}
	}
}

// TestTLSCheckFiles runs tls-check on files: no control plane needed; exit
// status 1 with a CONFLICT, 0 without.
func TestTLSCheckFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mesh.yaml")
	os.WriteFile(file, []byte(`
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: finance}
spec:
  selector: {app: ledger}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: ledger-1, namespace: finance, labels: {app: ledger}}
spec:
  address: 10.0.0.5
  meshPort: 15008
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: cart}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: cart-1, labels: {app: cart}}
spec:
  address: 10.0.0.6
  meshPort: 15008
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: cart-plain}
spec:
  targetRefs: [{group: "", kind: Service, name: cart}]
  tls: {mode: Disable}
`), 0o644)
	run := func(args ...string) (string, string, error) {
		var stdout, stderr strings.Builder
		err := Run(context.Background(), append([]string{"tls-check", "-f", file}, args...), &stdout, &stderr)
		return stdout.String(), stderr.String(), err
	}

	out, _, err := run("finance/ledger")
	if err != nil || !strings.Contains(out, "finance/ledger   80/http   STRICT        Mesh: mTLS    OK") {
		t.Errorf("finance/ledger: %v\n%s", err, out)
	}
	// cart has no namespace in the file: -n gives it one, "default"
	// otherwise; without SERVICE every namespace is checked.
	out, _, err = run("-o", "json")
	if err == nil || usage.Is(err) || !strings.Contains(err.Error(), "1 port(s) in CONFLICT") {
		t.Errorf("every namespace: %v, want exit code 1 for one CONFLICT", err)
	}
	var res struct {
		Ports []struct {
			Service struct{ Namespace, Name string }
			Status  string
			Client  string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Ports) != 2 || res.Ports[0].Service.Namespace != "default" || res.Ports[0].Status != "CONFLICT" ||
		res.Ports[0].Client != "Disable: left out" || res.Ports[1].Status != "OK" {
		t.Errorf("json: %+v", res.Ports)
	}
	// -n also places cart, which names no namespace, in finance.
	out, _, _ = run("-n", "finance", "-o", "json")
	res.Ports = nil
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Ports) != 2 || res.Ports[0].Service.Namespace != "finance" || res.Ports[0].Service.Name != "cart" || res.Ports[1].Service.Name != "ledger" {
		t.Errorf("-n finance: %+v", res.Ports)
	}
	if _, _, err := run("cart", "-o", "yaml"); !usage.Is(err) {
		t.Errorf("-o yaml: %v, want a usage error", err)
	}
	if _, _, err := run("finance/cart"); err == nil || usage.Is(err) || err.Error() != "tls-check: Service finance/cart does not exist" {
		t.Errorf("unknown Service: %v", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n"), 0o644)
	var stdout, stderr strings.Builder
	err = Run(context.Background(), []string{"tls-check", "-f", bad}, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "portz") {
		t.Errorf("a file with errors: %v, stderr %q", err, stderr.String())
	}
}
