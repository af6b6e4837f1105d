package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestGatewayStatusOffKubernetes: off Kubernetes, where no status is
// written back, trellis get shows a Gateway with the status computed as on
// Kubernetes: its address is the one its gateway proxy registered, it is
// Programmed once that proxy has acknowledged its config, and its
// listeners have their conditions and attached routes; a Gateway no proxy
// serves has no address and is not Programmed.
func TestGatewayStatusOffKubernetes(t *testing.T) {
	e := newGatewayEnv(t)
	e.cp.apply(t, gatewayClass+`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: http, port: 18080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: https
    port: 18443
    protocol: HTTPS
    hostname: secure.example.com
    tls: {mode: Terminate, certificateRefs: [{name: cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: idle, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners: [{name: http, port: 18081, protocol: HTTP}]
---
`+backendYAML("shop", "web", e.s.ip(21), 8080, "HTTP")+`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: http}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
`)
	get := func(name string) (gwv1.Gateway, error) {
		var gw gwv1.Gateway
		out, _, err := trellis(t, e.cp, "get", "gateway", name, "-n", "infra", "-o", "json")
		if err != nil {
			return gw, err
		}
		return gw, json.Unmarshal([]byte(out), &gw)
	}
	var edge gwv1.Gateway
	eventually(t, 30*time.Second, "Gateway edge Programmed at the proxy's address", func() error {
		var err error
		if edge, err = get("edge"); err != nil {
			return err
		}
		if got := conditionOf(edge.Status.Conditions, "Programmed"); got != "True/Programmed" {
			return fmt.Errorf("Programmed %s", got)
		}
		if len(edge.Status.Addresses) != 1 || edge.Status.Addresses[0].Value != e.ip || *edge.Status.Addresses[0].Type != gwv1.IPAddressType {
			return fmt.Errorf("addresses %+v, want %s", edge.Status.Addresses, e.ip)
		}
		return nil
	})
	if got := conditionOf(edge.Status.Conditions, "Accepted"); got != "True/Accepted" {
		t.Errorf("edge Accepted %s", got)
	}
	if len(edge.Status.Listeners) != 2 {
		t.Fatalf("edge listeners %+v", edge.Status.Listeners)
	}
	http, https := edge.Status.Listeners[0], edge.Status.Listeners[1]
	for typ, want := range map[string]string{"Accepted": "True/Accepted", "Conflicted": "False/NoConflicts", "ResolvedRefs": "True/ResolvedRefs", "Programmed": "True/Programmed"} {
		if got := conditionOf(http.Conditions, typ); got != want {
			t.Errorf("listener http %s: %s, want %s", typ, got, want)
		}
	}
	if http.AttachedRoutes != 1 || https.AttachedRoutes != 0 {
		t.Errorf("attached routes: http %d, https %d; want 1 and 0", http.AttachedRoutes, https.AttachedRoutes)
	}
	if got := conditionOf(https.Conditions, "ResolvedRefs"); got != "True/ResolvedRefs" {
		t.Errorf("listener https ResolvedRefs %s, want True/ResolvedRefs", got)
	}

	idle, err := get("idle")
	if err != nil {
		t.Fatal(err)
	}
	if got := conditionOf(idle.Status.Conditions, "Programmed"); got != "False/Pending" || len(idle.Status.Addresses) != 0 {
		t.Errorf("Gateway idle, which no proxy serves: Programmed %s, addresses %+v; want False/Pending and none", got, idle.Status.Addresses)
	}

	out, _, err := trellis(t, e.cp, "get", "gateways", "-n", "infra")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "ADDRESSES") || !strings.Contains(lines[0], "PROGRAMMED") ||
		strings.Join(strings.Fields(lines[1])[:5], " ") != "Gateway infra edge "+e.ip+" True" ||
		strings.Join(strings.Fields(lines[2])[:6], " ") != "Gateway infra idle - False (Pending)" {
		t.Errorf("trellis get gateways:\n%s", out)
	}
}

// conditionOf formats the condition typ of conds as STATUS/REASON.
func conditionOf(conds []metav1.Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return "none"
}
