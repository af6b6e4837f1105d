package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	sigsyaml "sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubetest"
	trellisresource "trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/webhook"
)

// TestKubernetesStatefulSet runs the mesh on a real API server with the
// test node (kubetest.Node) as kubelet, the way Cassandra replicas run:
//   - a StatefulSet of three pods behind a headless Service, in a namespace
//     labelled for injection and under STRICT mTLS; the control plane's
//     webhook injects them (capture init container, native sidecar, probes
//     rewritten), the sidecars get their certificates for their projected
//     service account tokens (TokenReview) and verify the control plane
//     with the roots it published in trellis-ca-root;
//   - the pods turn Ready: kubelet's plaintext readiness probes reach the
//     app through the sidecar's stats port under STRICT;
//   - each pod talks to each other pod IP to pod IP on the gossip port
//     (TCP), through both sidecars over mTLS, and the server's sidecar saw
//     the caller's identity;
//   - a pod outside the mesh cannot reach the gossip port;
//   - the validating webhook refuses a route by the analyzer, judged against
//     the cluster's state as the informers read it.
func TestKubernetesStatefulSet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := startKubeMesh(ctx, t, map[string]string{"example.com/gossip:1": "app"})
	cs, dyn, node, hookAddr := m.cs, m.dyn, m.node, m.hookAddr

	m.registerInjector(ctx, t)

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{inject.InjectLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "cassandra"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	strict := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trellis.dev/v1alpha1", "kind": "MTLSPolicy",
		"metadata": map[string]any{"name": "strict", "namespace": "shop"},
		"spec":     map[string]any{"mode": "STRICT"},
	}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "trellis.dev", Version: "v1alpha1", Resource: "mtlspolicies"}).Namespace("shop").
		Create(ctx, strict, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cassandra"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "cassandra"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080}, {Name: "tcp-gossip", Port: 7000}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(3)
	labels := map[string]string{"app": "cassandra"}
	if _, err := cs.AppsV1().StatefulSets("shop").Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "cassandra"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: "cassandra", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{ServiceAccountName: "cassandra", Containers: []corev1.Container{{
					Name: "cassandra", Image: "example.com/gossip:1",
					// The app role: HTTP on 8080, gRPC on 9090, a
					// server-first TCP protocol (the gossip) on 7000.
					Args:           []string{"8080", "9090", "7000"},
					Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "tcp-gossip", ContainerPort: 7000}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}},
				}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Three injected pods turn Ready: their readiness probes, plaintext
	// from the node, pass under STRICT through the stats port.
	ips := map[string]string{}
	eventually(t, 3*time.Minute, "three Ready, injected cassandra pods", func() error {
		for i := range 3 {
			name := fmt.Sprintf("cassandra-%d", i)
			p, err := cs.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[1].Name != inject.ProxyContainer {
				return fmt.Errorf("%s was not injected: %v", name, p.Spec.InitContainers)
			}
			if hg := p.Spec.Containers[0].ReadinessProbe.HTTPGet; hg == nil || hg.Port.IntValue() != inject.StatsPort {
				return fmt.Errorf("%s's probe was not rewritten", name)
			}
			if !kubetest.PodReady(p) {
				return fmt.Errorf("%s is not ready (%s): sidecar log:\n%s", name, p.Status.Phase, node.Log(p, inject.ProxyContainer))
			}
			ips[name] = p.Status.PodIP
		}
		return nil
	})

	// Peers talk pod IP to pod IP on the gossip port, from inside each
	// pod (captured by its sidecar), over mTLS between the sidecars.
	for from := range 3 {
		fromName := fmt.Sprintf("cassandra-%d", from)
		ns := node.PodNS("shop", fromName)
		for to := range 3 {
			if to == from {
				continue
			}
			toName := fmt.Sprintf("cassandra-%d", to)
			target := net.JoinHostPort(ips[toName], "7000")
			eventually(t, 30*time.Second, fromName+" to "+target, func() error {
				out, err := n(node).run(ns, "banner", target)
				if err != nil || !strings.HasPrefix(out, "220 ") {
					return fmt.Errorf("%v: %q\n%s's sidecar:\n%s\n%s's sidecar:\n%s", err, out,
						fromName, sidecarLog(ctx, cs, node, fromName), toName, sidecarLog(ctx, cs, node, toName))
				}
				return nil
			})
		}
	}
	// The server's sidecar saw the caller's SPIFFE ID on the connection.
	wantID := "spiffe://cluster.local/ns/shop/sa/cassandra"
	p1, err := cs.CoreV1().Pods("shop").Get(ctx, "cassandra-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if log := node.Log(p1, inject.ProxyContainer); !strings.Contains(log, `"source_principal":"`+wantID+`"`) {
		t.Errorf("cassandra-1's sidecar logged no connection from %s:\n%s", wantID, log)
	}

	// A pod outside the mesh is refused on the gossip port.
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "outsider", Labels: map[string]string{inject.InjectLabel: "disabled"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/gossip:1", Args: []string{"8080", "9090", "7000"}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var outsiderNS string
	eventually(t, 60*time.Second, "the outsider pod running", func() error {
		if outsiderNS = node.PodNS("shop", "outsider"); outsiderNS == "" {
			return fmt.Errorf("not running yet")
		}
		return nil
	})
	if out, err := n(node).run(outsiderNS, "banner", net.JoinHostPort(ips["cassandra-1"], "7000")); err == nil && strings.HasPrefix(out, "220 ") {
		t.Errorf("a pod outside the mesh reached cassandra-1's gossip port under STRICT: %q", out)
	}

	// The validating webhook judges an object against the cluster's state
	// as the informers read it: team-b's route on the hostname team-a's
	// route serves through a shared Gateway is refused (TRL2010).
	validate := "https://" + hookAddr + webhook.ValidatePath
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: install.ValidatingWebhookName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "validate.trellis.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &validate},
			FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"gateway.networking.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"httproutes"}}}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"infra", "team-a", "team-b"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Until the control plane has set the caBundle, the webhook fails
	// closed: team-a's route is created once it can be judged.
	if err := createDocs(ctx, dyn, teamsMesh, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "team-a's route admitted", func() error {
		return createDocs(ctx, dyn, teamRoute("team-a", "shop.example.com"), false)
	})
	var denied error
	eventually(t, 30*time.Second, "team-b's route on team-a's hostname refused", func() error {
		denied = createDocs(ctx, dyn, teamRoute("team-b", "shop.example.com"), true)
		if denied == nil || !strings.Contains(denied.Error(), "TRL2010") {
			return fmt.Errorf("got %v, want a denial with TRL2010", denied)
		}
		return nil
	})
	if err := createDocs(ctx, dyn, teamRoute("team-b", "b.example.com"), false); err != nil {
		t.Errorf("team-b's route on its own hostname: %v", err)
	}
}

// sidecarLog is the end of what a pod's sidecar wrote.
func sidecarLog(ctx context.Context, cs kubernetes.Interface, node *kubetest.Node, name string) string {
	p, err := cs.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	return node.Log(p, inject.ProxyContainer)
}

// teamsMesh is a shared Gateway that admits routes from every namespace,
// and the teams' Services.
const teamsMesh = `
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
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-b}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
`

// teamRoute is a team's route on host.
func teamRoute(team, host string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: ` + team + `}
spec:
  parentRefs: [{name: public, namespace: infra}]
  hostnames: [` + host + `]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`
}

// createDocs creates the objects of a YAML stream; dryRun stores nothing.
func createDocs(ctx context.Context, dyn dynamic.Interface, docs string, dryRun bool) error {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, doc := range strings.Split(docs, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := sigsyaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return err
		}
		k, ok := trellisresource.LookupKind(u.GetKind())
		if !ok {
			return fmt.Errorf("kind %s", u.GetKind())
		}
		gvr := schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Plural}
		var err error
		if u.GetNamespace() == "" {
			_, err = dyn.Resource(gvr).Create(ctx, u, opts)
		} else {
			_, err = dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, opts)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// n runs this test binary's roles in the node's namespaces.
func n(node *kubetest.Node) *netns { return &netns{Net: node.Net} }

// worldExecutable copies this test binary where any user may run it: the
// go command keeps it in a directory only its owner may enter.
func worldExecutable(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "trellis-e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "e2e.test")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
