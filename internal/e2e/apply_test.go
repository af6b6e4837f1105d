package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/cli"
	"trellis.dev/trellis/internal/usage"
)

// trellis runs the CLI against cp and returns stdout, stderr and the error.
func trellis(t *testing.T, cp *controlPlane, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), append([]string{"--control-plane", cp.api}, args...), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestApplyMalformedChangesNothing applies a good file, then a file with
// one good and several bad resources: the bad apply fails with errors that
// name the file, the line, the resource and the field, and nothing stored
// changes.
func TestApplyMalformedChangesNothing(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(twoServices), 0o644)
	out, _, err := trellis(t, cp, "apply", "-f", good)
	if err != nil {
		t.Fatalf("apply good.yaml: %v", err)
	}
	if !strings.Contains(out, "Service demo/web created") || !strings.Contains(out, "Service demo/catalog created") {
		t.Errorf("apply output:\n%s", out)
	}
	before, _, err := trellis(t, cp, "get", "services", "-A", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web-v2}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
  namespace: demo
spec:
  parentRefs: [{name: ingress}]
  rules:
  - backendRef:
    - name: web
      port: 80
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: demo}
spec:
  ports: [{name: http, port: 70000}]
`), 0o644)
	_, _, err = trellis(t, cp, "apply", "-f", bad)
	if err == nil {
		t.Fatal("apply of bad.yaml succeeded")
	}
	if usage.Is(err) {
		t.Errorf("a validation failure is not a usage error: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"bad.yaml:16",         // the line of the unknown field
		"HTTPRoute demo/shop", // the resource
		`spec.rules[0].backendRef`,
		`unknown field "backendRef"`,
		`"backendRefs"`, // the fix
		"bad.yaml:24",
		"Service demo/catalog",
		"spec.ports[0].port",
		"nothing was applied",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	after, _, err := trellis(t, cp, "get", "services", "-A", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Errorf("stored services changed although the apply failed:\nbefore %s\nafter  %s", before, after)
	}
	if _, _, err := trellis(t, cp, "get", "httproute", "shop", "-n", "demo"); err == nil {
		t.Error("HTTPRoute demo/shop was stored although the apply failed")
	}

	// Usage errors are told apart from failures.
	if _, _, err := trellis(t, cp, "apply"); !usage.Is(err) {
		t.Errorf("apply without -f: %v, want a usage error", err)
	}
}

// TestGetAndDelete covers the read and delete commands: table and JSON
// output, short kind names, cluster-scoped kinds, and clear errors.
func TestGetAndDelete(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	f := filepath.Join(t.TempDir(), "mesh.yaml")
	os.WriteFile(f, []byte(twoServices+`---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
`), 0o644)
	if _, _, err := trellis(t, cp, "apply", "-f", f); err != nil {
		t.Fatal(err)
	}
	out, _, err := trellis(t, cp, "get", "svc", "-n", "demo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Service   demo        catalog") || !strings.Contains(out, "web") {
		t.Errorf("get svc -n demo:\n%s", out)
	}
	out, _, err = trellis(t, cp, "get", "service", "web", "-n", "demo", "-o", "json")
	if err != nil || !strings.Contains(out, `"creationTimestamp"`) || !strings.Contains(out, `"generation": 1`) {
		t.Errorf("get service web -o json: %v\n%s", err, out)
	}
	// Applying the same file again changes nothing.
	out, _, err = trellis(t, cp, "apply", "-f", f)
	if err != nil || strings.Count(out, "unchanged") != 3 {
		t.Errorf("second apply: %v\n%s", err, out)
	}
	out, _, err = trellis(t, cp, "delete", "gatewayclass", "trellis")
	if err != nil || strings.TrimSpace(out) != "GatewayClass trellis deleted" {
		t.Errorf("delete gatewayclass: %q, %v", out, err)
	}
	out, _, err = trellis(t, cp, "delete", "svc", "web", "-n", "demo")
	if err != nil || strings.TrimSpace(out) != "Service demo/web deleted" {
		t.Errorf("delete svc: %q, %v", out, err)
	}
	if _, _, err := trellis(t, cp, "delete", "svc", "web", "-n", "demo"); err == nil || !strings.Contains(err.Error(), "Service demo/web not found") {
		t.Errorf("deleting a missing service: %v", err)
	}
	// A deletion is judged as an apply is: deleting the backend of a route
	// is refused, and nothing changes, unless forced.
	route := filepath.Join(t.TempDir(), "route.yaml")
	os.WriteFile(route, []byte(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catalog, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: catalog, port: 80}]
  rules:
  - backendRefs: [{name: catalog-v2, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: catalog-v2, namespace: demo}
spec:
  selector: {app: catalog, version: v2}
  ports: [{name: http, port: 80, targetPort: 8080}]
`), 0o644)
	if _, _, err := trellis(t, cp, "apply", "-f", route); err != nil {
		t.Fatal(err)
	}
	_, _, err = trellis(t, cp, "delete", "svc", "catalog-v2", "-n", "demo")
	if err == nil || !strings.Contains(err.Error(), "TRL3001") || !strings.Contains(err.Error(), "HTTPRoute demo/catalog") ||
		!strings.Contains(err.Error(), "nothing was deleted") {
		t.Errorf("deleting a route's backend: %v", err)
	}
	if _, _, err := trellis(t, cp, "get", "svc", "catalog-v2", "-n", "demo"); err != nil {
		t.Errorf("a refused deletion deleted: %v", err)
	}
	out, stderr, err := trellis(t, cp, "delete", "svc", "catalog-v2", "-n", "demo", "--force")
	if err != nil || strings.TrimSpace(out) != "Service demo/catalog-v2 deleted" || !strings.Contains(stderr, "TRL3001") {
		t.Errorf("forced deletion: %v\n%s%s", err, out, stderr)
	}
	if _, _, err := trellis(t, cp, "get", "widgets"); err == nil || !strings.Contains(err.Error(), `unknown kind "widgets"`) {
		t.Errorf("get of an unknown kind: %v", err)
	}
}

// TestProxyConfig reads a running proxy's config back: what was sent,
// what was acknowledged, and never a private key.
func TestProxyConfig(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, twoServices)
	startWorkload(t, s, cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 11, next: "catalog"})
	startWorkload(t, s, cp, sidecar{name: "catalog-1", service: "catalog", account: "catalog", version: "v1", host: 12})
	eventually(t, 30*time.Second, "web-1 has catalog's endpoint", func() error {
		out, _, err := trellis(t, cp, "proxy-config", "web-1.demo", "endpoints", "--acked")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "outbound|80||catalog.demo.svc.cluster.local  "+s.ip(12)+":15008  HEALTHY") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	out, _, err := trellis(t, cp, "proxy-config", "web-1.demo", "all", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var configs []struct {
		Type, State string
		Sent, Acked struct {
			Version   string
			Resources []json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(out), &configs); err != nil {
		t.Fatal(err)
	}
	if len(configs) != 5 {
		t.Fatalf("%d types, want 5", len(configs))
	}
	for _, c := range configs {
		if c.State != "SYNCED" || c.Sent.Version != c.Acked.Version || len(c.Sent.Resources) == 0 {
			t.Errorf("%s: state %s, sent %s, acked %s, %d resources", c.Type, c.State, c.Sent.Version, c.Acked.Version, len(c.Sent.Resources))
		}
	}
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "privateKey") {
		t.Error("proxy-config shows a private key")
	}
	secrets, _, err := trellis(t, cp, "proxy-config", "web-1.demo", "secrets")
	if err != nil || !strings.Contains(secrets, "spiffe://cluster.local/ns/demo/sa/web") {
		t.Errorf("secrets: %v\n%s", err, secrets)
	}
	resp, err := http.Get("http://" + cp.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"trellis_control_proxies_connected 2", `trellis_control_proxy_pushes_total{result="changed"}`, "trellis_control_push_round_seconds_bucket"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if _, _, err := trellis(t, cp, "proxy-config", "nobody.demo", "clusters"); err == nil || !strings.Contains(err.Error(), "not known") {
		t.Errorf("unknown proxy: %v", err)
	}
	if _, _, err := trellis(t, cp, "proxy-config", "web-1.demo", "widgets"); !usage.Is(err) {
		t.Errorf("unknown type: %v, want a usage error", err)
	}
}
