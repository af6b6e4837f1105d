package install_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/resource"
)

// warnings collects the warnings the API server sends with its responses
// (Pod Security, deprecations).
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// applier server-side-applies unstructured objects.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func (a *applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD just established
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

func (a *applier) apply(ctx context.Context, u *unstructured.Unstructured) error {
	r, err := a.resource(u)
	if err != nil {
		return err
	}
	_, err = r.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "trellis-install", Force: true})
	return err
}

func (a *applier) create(ctx context.Context, u *unstructured.Unstructured) error {
	r, err := a.resource(u)
	if err != nil {
		return err
	}
	_, err = r.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"})
	return err
}

func parse(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := new(unstructured.Unstructured)
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

var apiextensionsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func trellisGVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "trellis.dev", Version: "v1alpha1", Resource: resource}
}

// valid has one object of each trellis.dev kind.
var valid = []string{`apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: vm-1, namespace: shop}
spec:
  address: 10.0.0.5
  ports: [{name: http, port: 8080, protocol: HTTP}]
  meshPort: 15008
`, `apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: strict, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  mode: STRICT
  ports: [{port: 9090, mode: PERMISSIVE}]
`, `apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  action: ALLOW
  rules:
  - from: [{namespaces: [shop]}, {identities: ["spiffe://cluster.local/ns/ops/sa/*"]}]
    to: [{ports: [8080], paths: ["/api/*"], methods: [GET], headers: [{name: x-user, value: "^a.*", type: RegularExpression}]}]
`, `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: web, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web, sectionName: http}]
  loadBalancer: {type: ConsistentHash, hashHeader: x-user}
  outlierDetection: {consecutive5xx: 5, interval: 10s, maxEjectionPercent: 50}
  retryBudget: {percent: 20}
  rateLimit: {requests: 100, per: 1s, burst: 10}
  faults: {abort: {percent: 1, grpcStatus: 14}}
`}

// invalid are objects the CRDs refuse, with the field the API server
// names.
var invalid = []struct{ field, doc string }{
	{"spec.ports[0].port", `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: bad-port, namespace: shop}
spec: {address: 10.0.0.6, ports: [{port: 70000}]}
`},
	{"spec.address", `apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: bad-address, namespace: shop}
spec: {address: vm.example.com}
`},
	{"spec.mode", `apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: bad-mode, namespace: shop}
spec: {mode: strict}
`},
	{"spec.targetRefs[0]", `apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: bad-target, namespace: shop}
spec: {mode: STRICT, targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]}
`},
	{"spec.rules[0].to[0].paths[0]", `apiVersion: trellis.dev/v1alpha1
kind: AccessPolicy
metadata: {name: bad-path, namespace: shop}
spec: {action: DENY, rules: [{to: [{paths: [api]}]}]}
`},
	{"spec.faults.abort", `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: bad-abort, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  faults: {abort: {percent: 10, httpStatus: 503, grpcStatus: 14}}
`},
	{"spec.rateLimit.per", `apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: bad-refill, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  rateLimit: {requests: 10, per: 10ms}
`},
}

// TestInstallOnKubernetes applies `trellis install` to a real API server
// (no kubelet: nothing runs), then checks the trellis.dev CRDs accept and
// refuse what Trellis itself accepts and refuses, the RBAC grants what the
// control plane needs and no more, and the webhooks are wired.
func TestInstallOnKubernetes(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	warn := new(warnings)
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = warn
	cs := kubernetes.NewForConfigOrDie(cfg)
	a := &applier{
		dyn:    dynamic.NewForConfigOrDie(cfg),
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg))),
	}

	objs, err := install.Objects(install.Options{Image: "registry.example.com/trellis:test"})
	if err != nil {
		t.Fatal(err)
	}
	var crds, others []*unstructured.Unstructured
	for _, o := range objs {
		m, err := install.Unstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u)
		} else {
			others = append(others, u)
		}
	}

	// The CRDs first, established before anything uses them.
	for _, u := range crds {
		if err := a.apply(ctx, u); err != nil {
			t.Fatalf("CRD %s: %v", u.GetName(), err)
		}
	}
	crdClient := a.dyn.Resource(apiextensionsGVR)
	for _, u := range crds {
		waitFor(ctx, t, "CRD "+u.GetName()+" Established", func() (bool, error) {
			got, err := crdClient.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				c, _ := c.(map[string]any)
				if c["type"] == "Established" && c["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
	}
	// Discovery serves a CRD's kind shortly after it is Established.
	for _, u := range crds {
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		waitFor(ctx, t, "discovery of "+u.GetName(), func() (bool, error) {
			a.mapper.Reset()
			_, err := a.mapper.RESTMapping(schema.GroupKind{Group: group, Kind: kind})
			return err == nil, err
		})
	}
	t.Logf("%d CRDs established (Istio 1.0 had 51)", len(crds))
	if w := warn.take(); len(w) > 0 {
		t.Errorf("warnings applying the CRDs: %q", w)
	}

	// One valid object of each trellis.dev kind is created; Trellis's own
	// validation accepts it too.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, doc := range valid {
		u := parse(t, doc)
		if err := a.create(ctx, u); err != nil {
			t.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		if _, findings := resource.Load([]resource.File{{Name: u.GetName() + ".yaml", Data: []byte(doc)}}, ""); len(findings) > 0 {
			t.Errorf("%s %s: trellis refuses what the API server accepts: %v", u.GetKind(), u.GetName(), findings)
		}
	}
	// The API server applied the CRD defaults trellis applies.
	wl, err := a.dyn.Resource(trellisGVR("workloads")).Namespace("shop").Get(ctx, "vm-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sa, _, _ := unstructured.NestedString(wl.Object, "spec", "serviceAccount"); sa != "default" {
		t.Errorf("Workload spec.serviceAccount defaulted to %q, want default", sa)
	}

	// Invalid ones are refused, naming the field; trellis refuses them on
	// the same field.
	for _, tt := range invalid {
		u := parse(t, tt.doc)
		err := a.create(ctx, u)
		switch {
		case err == nil:
			t.Errorf("%s %s: created; want it refused at %s", u.GetKind(), u.GetName(), tt.field)
		case !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.field+":"):
			t.Errorf("%s %s: %v; want Invalid naming %s", u.GetKind(), u.GetName(), err, tt.field)
		default:
			t.Logf("refused: %v", err)
		}
		_, findings := resource.Load([]resource.File{{Name: u.GetName() + ".yaml", Data: []byte(tt.doc)}}, "")
		if len(findings) == 0 || findings[0].Field != tt.field {
			t.Errorf("%s %s: trellis finds %v; want %s", u.GetKind(), u.GetName(), findings, tt.field)
		}
	}

	// Everything else is accepted, without warnings: the Deployment meets
	// the restricted Pod Security Standard its namespace enforces.
	for _, u := range others {
		if err := a.apply(ctx, u); err != nil {
			t.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	if w := warn.take(); len(w) > 0 {
		t.Errorf("warnings applying the manifest: %q", w)
	}
	// Applying it all again changes nothing and fails nothing.
	for _, u := range append(crds, others...) {
		if err := a.apply(ctx, u); err != nil {
			t.Errorf("again: %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}

	checkRBAC(ctx, t, cs)

	// The validating webhook is wired to the control plane's Service,
	// which has no endpoints here: trellis.dev objects are refused
	// (failurePolicy Fail), Services let through (Ignore).
	err = a.create(ctx, parse(t, strings.Replace(valid[0], "name: vm-1", "name: vm-2", 1)))
	if err == nil || !strings.Contains(err.Error(), "validate.trellis.dev") {
		t.Errorf("a Workload with the control plane down: %v; want refused by webhook validate.trellis.dev", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	if _, err := cs.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Errorf("a Service with the control plane down: %v; want it let through", err)
	}
	// The ServiceAccount admission plugin refuses pods until the
	// namespace's default ServiceAccount exists.
	waitFor(ctx, t, "the default ServiceAccount", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("shop").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	// A pod in a namespace without the injection label is not sent to the
	// injector (which would refuse it, being down).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/app"}}},
	}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Errorf("a pod outside injection: %v", err)
	}
	// In a namespace with it, the injector is called, and being down,
	// refuses the pod (failurePolicy Fail) but for a pod that opts out.
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"enabled"}}}`, install.InjectLabel)
	if _, err := cs.CoreV1().Namespaces().Patch(ctx, "shop", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Name = "q"
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "inject.trellis.dev") {
		t.Errorf("a pod to inject with the injector down: %v; want refused by webhook inject.trellis.dev", err)
	}
	pod.Name = "r"
	pod.Labels = map[string]string{install.InjectLabel: "disabled"}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Errorf("a pod that opts out of injection: %v", err)
	}
}

// checkRBAC asks the API server what the control plane's ServiceAccount
// may do.
func checkRBAC(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	user := "system:serviceaccount:" + install.DefaultNamespace + ":" + install.Name
	for _, tt := range []struct {
		attr authorizationv1.ResourceAttributes
		want bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, true},
		{authorizationv1.ResourceAttributes{Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices"}, true},
		{authorizationv1.ResourceAttributes{Verb: "watch", Group: "gateway.networking.k8s.io", Resource: "httproutes"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "gateway.networking.k8s.io", Resource: "gateways", Subresource: "status"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "trellis.dev", Resource: "accesspolicies", Subresource: "status"}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: install.DefaultNamespace, Name: "trellis-control"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: install.MutatingWebhookName}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: install.ValidatingWebhookName}, true},

		{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "kube-controller-manager"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "someone-else"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "trellis.dev", Resource: "accesspolicies"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "gateway.networking.k8s.io", Resource: "httproutes"}, false},
		// What each Gateway runs on, applied server-side: its
		// ServiceAccount, Deployment and Service, and copies of the
		// certificate Secrets a ReferenceGrant lets it use.
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "apps", Resource: "deployments", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "watch", Group: "apps", Resource: "deployments"}, true},
		{authorizationv1.ResourceAttributes{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "services", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "serviceaccounts", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "serviceaccounts", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "secrets", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "secrets", Namespace: "shop"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "configmaps", Namespace: "shop"}, true},

		{authorizationv1.ResourceAttributes{Verb: "update", Resource: "secrets", Namespace: "shop"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "apps", Resource: "deployments", Namespace: "shop"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "apps", Resource: "daemonsets", Namespace: "shop"}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "configmaps", Namespace: "shop"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "shop"}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: "shop"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Resource: "services", Namespace: "shop"}, false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &tt.attr,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + install.DefaultNamespace, "system:authenticated"}}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tt.want {
			a := tt.attr
			t.Errorf("the control plane may %s %s/%s %s in %q (%s): %v, want %v", a.Verb, a.Group, a.Resource, a.Subresource, a.Namespace, a.Name, got.Status.Allowed, tt.want)
		}
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	for {
		ok, err := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
