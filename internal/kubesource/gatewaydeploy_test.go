package kubesource

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubetest"
)

func TestGatewayObjectName(t *testing.T) {
	for _, tc := range []struct{ gateway, want string }{
		{"public", "^public-trellis$"},
		{"a.b", `^gw-a-b-[0-9a-f]{8}-trellis$`},
		{"9lives", `^gw-9lives-[0-9a-f]{8}-trellis$`},
		{strings.Repeat("x", 60), `^gw-x{43}-[0-9a-f]{8}-trellis$`},
	} {
		got := GatewayObjectName(tc.gateway)
		if len(got) > 63 || !regexp.MustCompile("^"+strings.TrimPrefix(tc.want, "^")).MatchString(got) {
			t.Errorf("GatewayObjectName(%q) = %q, want %s (at most 63 characters)", tc.gateway, got, tc.want)
		}
	}
	if GatewayObjectName("a.b") == GatewayObjectName("a-b") {
		t.Error("Gateways a.b and a-b share their objects' name")
	}
}

const deployObjects = `apiVersion: v1
kind: Namespace
metadata: {name: edge}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: someone-else}
spec: {controllerName: example.com/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a.b, namespace: edge}
spec:
  gatewayClassName: trellis
  infrastructure:
    labels: {team: edge}
    annotations: {trellis.dev/service-type: ClusterIP, example.com/x: "y"}
  allowedListeners: {namespaces: {from: Same}}
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: edge}
spec:
  parentRef: {name: a.b}
  listeners: [{name: admin, port: 9090, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: typo, namespace: edge, annotations: {trellis.dev/service-type: LoadBalncer}}
spec:
  gatewayClassName: trellis
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: edge}
spec:
  gatewayClassName: someone-else
  listeners: [{name: http, port: 80, protocol: HTTP}]`

// TestGatewayDeploy: the leader keeps a ServiceAccount, a Deployment and
// a Service for a Gateway of Trellis's class (its name shortened to a DNS
// label, its ListenerSets' ports included, its infrastructure labels and
// annotations, its Service type from its annotation, ClusterIP for a
// type it does not know) and the mesh's roots
// in its namespace, nothing for another controller's Gateway, and sweeps
// the objects of Gateways that are gone; an object deleted by someone is
// made again.
func TestGatewayDeploy(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	c.CreateCRDs(ctx, t, crds)
	dyn := dynamic.NewForConfigOrDie(c.Config)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	create(ctx, t, dyn, deployObjects)

	mem := &memory{values: map[string][]byte{}}
	src := startSource(ctx, t, Options{Config: c.Config, Sink: mem})
	src.gateways = GatewayOptions{Inject: inject.Options{Image: "example.com/trellis-proxy:1", ControlPlane: "cp.example:15012"},
		TrustDomain: "example.org", TrustBundle: func() []byte { return []byte("roots") }}
	if err := src.deployGateways(ctx, mem); err != nil {
		t.Fatal(err)
	}

	name := GatewayObjectName("a.b")
	d, err := cs.AppsV1().Deployments("edge").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Labels["team"] != "edge" || d.Annotations["example.com/x"] != "y" || d.Labels[GatewayNameLabel] != "a.b" {
		t.Errorf("Deployment labels %v, annotations %v", d.Labels, d.Annotations)
	}
	pod := d.Spec.Template
	if pod.Labels[inject.InjectLabel] != "disabled" || pod.Labels["team"] != "edge" || pod.Spec.ServiceAccountName != name {
		t.Errorf("pod labels %v, service account %s", pod.Labels, pod.Spec.ServiceAccountName)
	}
	ct := pod.Spec.Containers[0]
	args := strings.Join(ct.Args, " ")
	for _, want := range []string{"--gateway edge/a.b", "--control-plane cp.example:15012", "--trust-domain example.org", "--address $(POD_IP)"} {
		if !strings.Contains(args, want) {
			t.Errorf("gateway args %q: no %q", args, want)
		}
	}
	if ct.Image != "example.com/trellis-proxy:1" || strings.Contains(args, "--certs-dir") {
		t.Errorf("gateway image %s, args %q: want the image given and no certificates", ct.Image, args)
	}
	svc, err := cs.CoreV1().Services("edge").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ports []int32
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Port)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || !slices.Equal(ports, []int32{80, 9090}) {
		t.Errorf("Service type %s ports %v, want ClusterIP with 80 and 9090 (the ListenerSet's)", svc.Spec.Type, ports)
	}
	if _, err := cs.CoreV1().ServiceAccounts("edge").Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if cm, err := cs.CoreV1().ConfigMaps("edge").Get(ctx, inject.CARootConfigMap, metav1.GetOptions{}); err != nil || cm.Data["root-cert.pem"] != "roots" {
		t.Errorf("the mesh's roots in edge: %v", err)
	}
	// A Service type Trellis does not make (TRL2050) exposes the Gateway
	// no further than the cluster.
	if typo, err := cs.CoreV1().Services("edge").Get(ctx, GatewayObjectName("typo"), metav1.GetOptions{}); err != nil || typo.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service of Gateway typo: %v, want type ClusterIP", err)
	}
	list, err := cs.AppsV1().Deployments("edge").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 2 {
		t.Errorf("Deployments in edge: %d, %v; want a.b's and typo's, not theirs", len(list.Items), err)
	}

	// Objects of a Gateway that is gone (made by an earlier leader) are
	// swept.
	stray := d.DeepCopy()
	stray.ObjectMeta = metav1.ObjectMeta{Name: "gone-trellis", Namespace: "edge", Labels: map[string]string{GatewayNameLabel: "gone", ManagedByLabel: managedBy}}
	if _, err := cs.AppsV1().Deployments("edge").Create(ctx, stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src.deployer.hashes = nil
	if err := src.deployGateways(ctx, mem); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments("edge").Get(ctx, "gone-trellis", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the stray Deployment: %v, want it deleted", err)
	}
	var kept *appsv1.Deployment
	if kept, err = cs.AppsV1().Deployments("edge").Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("a.b's Deployment after the sweep: %v", err)
	} else if kept.Generation != d.Generation {
		t.Errorf("applying what is there changed a.b's Deployment's spec (generation %d, was %d)", kept.Generation, d.Generation)
	}

	// A Deployment someone deleted is made again in the next round.
	if err := cs.AppsV1().Deployments("edge").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the deletion seen", func() bool {
		_, exists, _ := src.managed.Apps().V1().Deployments().Informer().GetStore().GetByKey("edge/" + name)
		return !exists
	})
	if err := src.deployGateways(ctx, mem); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments("edge").Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("a.b's Deployment, deleted: %v; want it made again", err)
	}
}
