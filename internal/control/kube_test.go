package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/kubetest"
	trellisresource "trellis.dev/trellis/internal/resource"
)

// kubeControlPlane is a control plane reading from a test cluster.
type kubeControlPlane struct {
	api *controlapi.Client
	// xds is the address of its xDS and CA port.
	xds string
	// statusWrites counts its writes of status subresources.
	statusWrites *atomic.Int64
	stop         func()
}

// startKube starts a control plane on the cluster of cfg.
func startKube(t *testing.T, cfg *rest.Config, status kubesource.StatusOptions) *kubeControlPlane {
	t.Helper()
	writes := new(atomic.Int64)
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet && strings.HasSuffix(r.URL.Path, "/status") {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	ready := make(chan [2]string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- control.Run(ctx, control.Options{
			DataDir: t.TempDir(), XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0",
			Kube: cfg, KubeStatus: status,
			Ready: func(x, api net.Addr) { ready <- [2]string{x.String(), api.String()} },
		})
	}()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("control plane did not start in 60s")
	}
	api, err := controlapi.NewClient(addrs[1])
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	}
	t.Cleanup(stop)
	return &kubeControlPlane{api: api, xds: addrs[0], statusWrites: writes, stop: stop}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// startCluster starts a cluster with the CRDs of `trellis install`.
func startCluster(ctx context.Context, t *testing.T) (*kubetest.Cluster, *kubernetes.Clientset, dynamic.Interface) {
	c := kubetest.Start(t)
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	c.CreateCRDs(ctx, t, crds)
	return c, kubernetes.NewForConfigOrDie(c.Config), dynamic.NewForConfigOrDie(c.Config)
}

// createYAML creates the custom resources of a YAML stream.
func createYAML(ctx context.Context, t *testing.T, dyn dynamic.Interface, docs string) {
	t.Helper()
	for _, doc := range strings.Split(docs, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		k, ok := trellisresource.LookupKind(u.GetKind())
		if !ok {
			t.Fatalf("kind %s", u.GetKind())
		}
		gvr := schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Plural}
		var err error
		if u.GetNamespace() == "" {
			_, err = dyn.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
		} else {
			_, err = dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

var (
	gatewayGVR   = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "gateways"}
	httpRouteGVR = schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "httproutes"}
)

// getTyped reads a custom resource into a typed value.
func getTyped(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string, into any) error {
	u, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

func isTrue(conds []metav1.Condition, typ string) bool {
	return meta.IsStatusConditionTrue(conds, typ)
}

// workloads lists the Workloads the control plane holds in ns, by name.
func workloads(ctx context.Context, api *controlapi.Client, ns string) (map[string]v1alpha1.Workload, error) {
	list, err := api.List(ctx, "Workload", ns, "")
	if err != nil {
		return nil, err
	}
	out := map[string]v1alpha1.Workload{}
	for _, r := range list {
		var w v1alpha1.Workload
		if err := json.Unmarshal(r.Object, &w); err != nil {
			return nil, err
		}
		out[r.Name] = w
	}
	return out, nil
}

// runPod creates a Pod and sets the status a kubelet would: Running and
// ready, with ip.
func runPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, ip string) {
	t.Helper()
	pod, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	if _, err := cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesSource: on Kubernetes the control plane's config is the
// cluster's: Pods become workloads (the sidecar's mesh port from its
// container), a selector-less Service's EndpointSlice addresses become
// its members, a mesh route is judged against them and gets its status,
// trellis apply is refused, and a deleted Pod's workload goes.
func TestKubernetesSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, cs, dyn := startCluster(ctx, t)
	cp := startKube(t, c.Config, kubesource.StatusOptions{LeaseNamespace: "default", LeaseDuration: 2 * time.Second})

	const ns = "shop"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": "shop"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "the default ServiceAccount", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cart"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "cart"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	app := corev1.Container{Name: "app", Image: "cart", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	runPod(ctx, t, cs, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cart-0", Namespace: ns, Labels: map[string]string{"app": "cart"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{app,
			{Name: kubesource.SidecarContainer, Image: "trellis-proxy", Ports: []corev1.ContainerPort{{Name: kubesource.MeshPortName, ContainerPort: 15008}}}}},
	}, "10.244.0.10")
	runPod(ctx, t, cs, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cart-1", Namespace: ns, Labels: map[string]string{"app": "cart"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{app}},
	}, "10.244.0.11")
	// A database outside the cluster: a Service without selector and its
	// EndpointSlice.
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pg, port, ready := "pg", int32(5432), true
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.9"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &pg, Port: &port}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createYAML(ctx, t, dyn, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules:
  - backendRefs: [{name: cart, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: db-typo, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 80}]
  rules:
  - backendRefs: [{name: dbb, port: 5432}]`)

	var got map[string]v1alpha1.Workload
	waitUntil(ctx, t, "the workloads of the Pods and the EndpointSlice", func() (bool, error) {
		var err error
		got, err = workloads(ctx, cp.api, ns)
		return len(got) == 3, err
	})
	if w := got["cart-0"]; w.Spec.Address != "10.244.0.10" || w.Spec.MeshPort == nil || *w.Spec.MeshPort != 15008 ||
		len(w.Spec.Ports) != 1 || w.Spec.Ports[0].Name != "http" || w.Spec.Ports[0].Port != 8080 || w.Labels["app"] != "cart" || w.Spec.ServiceAccount != "default" {
		t.Errorf("cart-0 (with the sidecar): %+v", w)
	}
	if w := got["cart-1"]; w.Spec.Address != "10.244.0.11" || w.Spec.MeshPort != nil {
		t.Errorf("cart-1 (no sidecar): %+v", w)
	}
	if w := got["db-192-0-2-9"]; w.Spec.Address != "192.0.2.9" || !slices.Equal(w.Spec.Services, []string{"db"}) || len(w.Spec.Ports) != 1 || w.Spec.Ports[0].Port != 5432 {
		t.Errorf("the EndpointSlice's workload: %+v (all: %v)", w, got)
	}

	// The model the translator gets is what the analyzer judges: the
	// route to a Service that exists has no finding, the one with a typo
	// has its backend reported missing; both say so in their status.
	waitUntil(ctx, t, "the routes' findings", func() (bool, error) {
		findings, err := cp.api.Findings(ctx)
		if err != nil {
			return false, err
		}
		typo := false
		for _, f := range findings {
			if f.Resource.Name == "cart" && f.Resource.Kind == "HTTPRoute" {
				return false, fmt.Errorf("finding about the route cart: %s", f)
			}
			typo = typo || f.Resource.Name == "db-typo" && f.Code == analyze.CodeNoBackend
		}
		return typo, nil
	})
	waitUntil(ctx, t, "the routes' status", func() (bool, error) {
		var good, typo gwv1.HTTPRoute
		if err := getTyped(ctx, dyn, httpRouteGVR, ns, "cart", &good); err != nil {
			return false, err
		}
		if err := getTyped(ctx, dyn, httpRouteGVR, ns, "db-typo", &typo); err != nil {
			return false, err
		}
		if len(good.Status.Parents) != 1 || len(typo.Status.Parents) != 1 {
			return false, nil
		}
		bad := meta.FindStatusCondition(typo.Status.Parents[0].Conditions, "ResolvedRefs")
		return isTrue(good.Status.Parents[0].Conditions, "Accepted") && isTrue(good.Status.Parents[0].Conditions, "ResolvedRefs") &&
			bad != nil && bad.Status == metav1.ConditionFalse && bad.Reason == string(gwv1.RouteReasonBackendNotFound), nil
	})

	// Kubernetes holds the config: writes through the API are refused,
	// naming kubectl.
	_, err := cp.api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "x.yaml", Content: "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\n"}}})
	if err == nil || !strings.Contains(err.Error(), "kubectl") {
		t.Errorf("trellis apply on Kubernetes: %v, want a refusal naming kubectl", err)
	}

	if err := cs.CoreV1().Pods(ns).Delete(ctx, "cart-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "the deleted Pod's workload gone", func() (bool, error) {
		got, err := workloads(ctx, cp.api, ns)
		_, still := got["cart-1"]
		return err == nil && !still && len(got) == 2, err
	})
}

// TestKubernetesLeaderElection: of two control planes on one cluster only
// the leader writes status; when it stops, the other takes over.
func TestKubernetesLeaderElection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, cs, dyn := startCluster(ctx, t)
	createYAML(ctx, t, dyn, `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: trellis
  listeners: [{name: http, port: 80, protocol: HTTP}]`)

	status := func(id string) kubesource.StatusOptions {
		return kubesource.StatusOptions{LeaseNamespace: "default", Identity: id, LeaseDuration: 2 * time.Second}
	}
	cps := map[string]*kubeControlPlane{"a": startKube(t, c.Config, status("a")), "b": startKube(t, c.Config, status("b"))}

	var gw gwv1.Gateway
	waitUntil(ctx, t, "the Gateway accepted", func() (bool, error) {
		err := getTyped(ctx, dyn, gatewayGVR, "default", "edge", &gw)
		return err == nil && isTrue(gw.Status.Conditions, "Accepted") && len(gw.Status.Listeners) == 1, err
	})
	lease, err := cs.CoordinationV1().Leases("default").Get(ctx, "trellis-control", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leader := *lease.Spec.HolderIdentity
	other := map[string]string{"a": "b", "b": "a"}[leader]
	if cps[leader] == nil {
		t.Fatalf("Lease held by %q", leader)
	}
	if n := cps[other].statusWrites.Load(); n != 0 {
		t.Errorf("%s, not leading, wrote status %d times", other, n)
	}
	if cps[leader].statusWrites.Load() == 0 {
		t.Errorf("%s leads and wrote no status", leader)
	}

	cps[leader].stop()
	gw.Spec.Listeners = append(gw.Spec.Listeners, gwv1.Listener{Name: "admin", Port: 9090, Protocol: gwv1.HTTPProtocolType})
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&gw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(gatewayGVR).Namespace("default").Update(ctx, &unstructured.Unstructured{Object: u}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "the other control plane to write the new listener's status", func() (bool, error) {
		err := getTyped(ctx, dyn, gatewayGVR, "default", "edge", &gw)
		return err == nil && len(gw.Status.Listeners) == 2, err
	})
	if cps[other].statusWrites.Load() == 0 {
		t.Errorf("%s took over and wrote no status", other)
	}
}

func waitUntil(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
