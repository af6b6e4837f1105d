package kubesource

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/testcert"
)

// memory is a Sink and View standing in for the control plane: it keeps
// what the source delivers and analyzes it as the control plane does.
type memory struct {
	mu         sync.Mutex
	values     map[string][]byte
	namespaces map[string]map[string]string
	proxies    []GatewayProxy
}

func (m *memory) Update(events []store.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range events {
		if ev.Deleted {
			delete(m.values, ev.Key)
		} else {
			m.values[ev.Key] = ev.Value
		}
	}
}

func (m *memory) SetNamespaces(l map[string]map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.namespaces = l
}

func (m *memory) Analysis() *Analysis {
	m.mu.Lock()
	defer m.mu.Unlock()
	var objs []*resource.Object
	for k, v := range m.values {
		kind, _, _ := strings.Cut(strings.TrimPrefix(k, "resources/"), "/")
		o, err := resource.DecodeOne(kind, v)
		if err != nil {
			panic(err)
		}
		objs = append(objs, o)
	}
	stored := resource.NewStored(objs, nil)
	ns := m.namespaces
	cfg := *stored.Model()
	cfg.Namespaces = ns
	return &Analysis{
		Config:      &cfg,
		Findings:    stored.Analyze(func(c *model.Config) { c.Namespaces = ns }),
		Attachments: analyze.Attachments(&cfg),
		Proxies:     m.proxies,
	}
}

func (m *memory) keys(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.values {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// create creates the objects of a YAML stream.
func create(ctx context.Context, t *testing.T, dyn dynamic.Interface, docs string) {
	t.Helper()
	for _, doc := range strings.Split(docs, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		gvr := gvrOf(t, u.GetKind())
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

func gvrOf(t *testing.T, kind string) schema.GroupVersionResource {
	if kind == "Namespace" {
		return schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	}
	k, ok := resource.LookupKind(kind)
	if !ok {
		t.Fatalf("kind %s", kind)
	}
	return schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Plural}
}

// get reads an object into a typed value.
func get(ctx context.Context, t *testing.T, dyn dynamic.Interface, kind, ns, name string, into any) {
	t.Helper()
	u, err := dyn.Resource(gvrOf(t, kind)).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatal(err)
	}
}

// cond formats the condition typ of conds as "Status/Reason".
func cond(conds []metav1.Condition, typ string) string {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return "none"
	}
	return string(c.Status) + "/" + c.Reason
}

const statusObjects = `apiVersion: v1
kind: Namespace
metadata: {name: edge, labels: {gw: "yes"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
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
metadata: {name: good, namespace: edge}
spec:
  gatewayClassName: trellis
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gw: "yes"}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: edge}
spec:
  parentRef: {name: good}
  listeners: [{name: admin, port: 9090, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: clashing, namespace: edge}
spec:
  parentRef: {name: good}
  listeners: [{name: raw, port: 80, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: stray, namespace: other}
spec:
  parentRef: {name: good, namespace: edge}
  listeners: [{name: admin, port: 9091, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: clash, namespace: edge}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: web, port: 8080, protocol: HTTP}
  - {name: raw, port: 8080, protocol: TCP}
  - name: tls
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: missing-cert}]}
  - name: tls-ok
    hostname: ok.example.com
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: real-cert}]}
  - name: tls-bad
    hostname: bad.example.com
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: malformed-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: odd, namespace: edge}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: http, port: 8081, protocol: HTTP, hostname: odd.example.com}
  - {name: invalid, port: 1111, protocol: INVALID}
  - name: tls-kinds
    port: 9443
    protocol: TLS
    tls: {mode: Passthrough}
    allowedRoutes: {kinds: [{kind: TCPRoute}, {kind: TLSRoute}]}
  - name: tls-terminate
    port: 9444
    protocol: TLS
    hostname: terminate.example.com
    tls: {mode: Terminate, certificateRefs: [{name: real-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: unserved, namespace: edge}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: invalid, port: 1111, protocol: INVALID}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: params, namespace: edge}
spec:
  gatewayClassName: trellis
  infrastructure:
    parametersRef: {group: example.com, kind: ProxyConfig, name: big}
  listeners: [{name: http, port: 8081, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: edge}
spec:
  gatewayClassName: someone-else
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: edge}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: edge}
spec:
  parentRefs: [{name: good}, {name: theirs}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: stranger, namespace: other}
spec:
  parentRefs: [{name: good, namespace: edge}]
  rules: [{backendRefs: [{name: nothing, port: 80}]}]
---
apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: strict, namespace: edge}
spec:
  mode: STRICT
  targetRefs: [{group: "", kind: Service, name: absent}]`

// TestStatus: Gateways, routes and trellis.dev resources get the status
// the analyzer's judgement implies, Gateways of other controllers are left
// alone, and a second round with nothing changed writes nothing.
func TestStatus(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	c.CreateCRDs(ctx, t, crds)
	dyn := dynamic.NewForConfigOrDie(c.Config)
	create(ctx, t, dyn, statusObjects)
	certPEM, keyPEM := testKeyPair(t)
	for name, data := range map[string][2][]byte{"real-cert": {certPEM, keyPEM}, "malformed-cert": {[]byte("Hello world\n"), []byte("Hello world\n")}} {
		if _, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().Secrets("edge").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: data[0], corev1.TLSPrivateKeyKey: data[1]},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	mem := &memory{values: map[string][]byte{}}
	src := startSource(ctx, t, Options{Config: c.Config, Sink: mem})
	if got := mem.keys("resources/Gateway/"); !slices.Equal(got, []string{"resources/Gateway/edge/clash", "resources/Gateway/edge/good", "resources/Gateway/edge/odd", "resources/Gateway/edge/params", "resources/Gateway/edge/theirs", "resources/Gateway/edge/unserved"}) {
		t.Fatalf("Gateways delivered: %v", got)
	}

	written, err := src.reconcile(ctx, mem)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range written {
		names = append(names, u.GetKind()+" "+u.GetName())
	}
	slices.Sort(names)
	want := []string{"GatewayClass trellis", "Gateway clash", "Gateway good", "Gateway odd", "Gateway params", "Gateway unserved", "HTTPRoute stranger", "HTTPRoute web", "ListenerSet clashing", "ListenerSet extra", "ListenerSet stray", "MTLSPolicy strict"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("first round wrote %q, want %q", names, want)
	}

	var class gwv1.GatewayClass
	get(ctx, t, dyn, "GatewayClass", "", "trellis", &class)
	var claimed []string
	for _, f := range class.Status.SupportedFeatures {
		claimed = append(claimed, string(f.Name))
	}
	if !slices.IsSorted(claimed) || !slices.Contains(claimed, "Gateway") || !slices.Contains(claimed, "HTTPRoute") || len(claimed) != len(SupportedFeatures) {
		t.Errorf("GatewayClass trellis supportedFeatures %q: want the %d of SupportedFeatures, sorted", claimed, len(SupportedFeatures))
	}

	var good, clash, theirs gwv1.Gateway
	get(ctx, t, dyn, "Gateway", "edge", "good", &good)
	get(ctx, t, dyn, "Gateway", "edge", "clash", &clash)
	get(ctx, t, dyn, "Gateway", "edge", "theirs", &theirs)
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %s, want %s", what, got, want)
		}
	}
	check("good Accepted", cond(good.Status.Conditions, "Accepted"), "True/Accepted")
	// No pod runs good yet.
	check("good Programmed", cond(good.Status.Conditions, "Programmed"), "False/Pending")
	if len(good.Status.Addresses) != 0 {
		t.Errorf("good addresses %v, want none: no pod runs it", good.Status.Addresses)
	}
	if c := meta.FindStatusCondition(good.Status.Conditions, "Accepted"); c == nil || c.ObservedGeneration != good.Generation {
		t.Errorf("good Accepted: observedGeneration %v, want %d", c, good.Generation)
	}
	if len(good.Status.Listeners) != 1 || good.Status.Listeners[0].AttachedRoutes != 1 {
		t.Errorf("good listeners %+v: want one with 1 attached route (web; stranger is not admitted)", good.Status.Listeners)
	} else {
		check("good http Programmed", cond(good.Status.Listeners[0].Conditions, "Programmed"), "True/Programmed")
		check("good http Conflicted", cond(good.Status.Listeners[0].Conditions, "Conflicted"), "False/NoConflicts")
	}
	listener := func(gw gwv1.Gateway, name string) []metav1.Condition {
		for _, l := range gw.Status.Listeners {
			if string(l.Name) == name {
				return l.Conditions
			}
		}
		t.Errorf("Gateway %s: no status of listener %s", gw.Name, name)
		return nil
	}
	check("clash web Programmed", cond(listener(clash, "web"), "Programmed"), "True/Programmed")
	check("clash raw Conflicted", cond(listener(clash, "raw"), "Conflicted"), "True/ProtocolConflict")
	check("clash raw Programmed", cond(listener(clash, "raw"), "Programmed"), "False/ProtocolConflict")
	check("clash raw Accepted", cond(listener(clash, "raw"), "Accepted"), "False/ProtocolConflict")
	check("clash tls ResolvedRefs", cond(listener(clash, "tls"), "ResolvedRefs"), "False/InvalidCertificateRef")
	check("clash tls-ok ResolvedRefs", cond(listener(clash, "tls-ok"), "ResolvedRefs"), "True/ResolvedRefs")
	// A Secret whose data is no certificate and key (the conformance
	// suite's malformed-certificate) is no usable reference either.
	check("clash tls-bad ResolvedRefs", cond(listener(clash, "tls-bad"), "ResolvedRefs"), "False/InvalidCertificateRef")
	if sec, ok := src.Secret("edge", "real-cert"); !ok || sec.Data != nil {
		t.Errorf("the source's copy of the TLS Secret: %v (found %v), want it without data", sec, ok)
	}
	check("clash Programmed", cond(clash.Status.Conditions, "Programmed"), "False/Pending")
	// A listener of a protocol no gateway serves is not accepted; a
	// Gateway with another is, saying some are not.
	var odd, unserved gwv1.Gateway
	get(ctx, t, dyn, "Gateway", "edge", "odd", &odd)
	get(ctx, t, dyn, "Gateway", "edge", "unserved", &unserved)
	check("odd invalid Accepted", cond(listener(odd, "invalid"), "Accepted"), "False/UnsupportedProtocol")
	check("odd http Accepted", cond(listener(odd, "http"), "Accepted"), "True/Accepted")
	check("odd Accepted", cond(odd.Status.Conditions, "Accepted"), "True/ListenersNotValid")
	// A kind the protocol does not serve is listed but not supported; TLS
	// is served in mode Passthrough only.
	check("odd tls-kinds ResolvedRefs", cond(listener(odd, "tls-kinds"), "ResolvedRefs"), "False/InvalidRouteKinds")
	for _, l := range odd.Status.Listeners {
		if l.Name == "tls-kinds" && (len(l.SupportedKinds) != 1 || l.SupportedKinds[0].Kind != "TLSRoute") {
			t.Errorf("odd tls-kinds supportedKinds %v, want TLSRoute alone", l.SupportedKinds)
		}
	}
	check("odd tls-terminate Accepted", cond(listener(odd, "tls-terminate"), "Accepted"), "False/UnsupportedValue")
	check("unserved Accepted", cond(unserved.Status.Conditions, "Accepted"), "False/ListenersNotValid")
	// Parameters Trellis does not read: the Gateway is not accepted, and
	// none of its listeners is programmed.
	var params gwv1.Gateway
	get(ctx, t, dyn, "Gateway", "edge", "params", &params)
	check("params Accepted", cond(params.Status.Conditions, "Accepted"), "False/InvalidParameters")
	check("params Programmed", cond(params.Status.Conditions, "Programmed"), "False/Invalid")
	check("params http Programmed", cond(listener(params, "http"), "Programmed"), "False/Invalid")
	// The CRD's default status, untouched.
	check("theirs Accepted", cond(theirs.Status.Conditions, "Accepted"), "Unknown/Pending")
	if len(theirs.Status.Listeners) != 0 {
		t.Errorf("another controller's Gateway got listener status %+v", theirs.Status.Listeners)
	}

	if n := good.Status.AttachedListenerSets; n == nil || *n != 1 {
		t.Errorf("good attachedListenerSets %v, want 1", n)
	}
	var extra, stray gwv1.ListenerSet
	get(ctx, t, dyn, "ListenerSet", "edge", "extra", &extra)
	get(ctx, t, dyn, "ListenerSet", "other", "stray", &stray)
	check("extra Accepted", cond(extra.Status.Conditions, "Accepted"), "True/Accepted")
	check("extra Programmed", cond(extra.Status.Conditions, "Programmed"), "True/Programmed")
	if len(extra.Status.Listeners) != 1 || cond(extra.Status.Listeners[0].Conditions, "Programmed") != "True/Programmed" {
		t.Errorf("extra listeners %+v", extra.Status.Listeners)
	}
	check("stray Accepted", cond(stray.Status.Conditions, "Accepted"), "False/NotAllowed")
	check("stray Programmed", cond(stray.Status.Conditions, "Programmed"), "False/NotAllowed")
	// A ListenerSet whose only listener conflicts with the Gateway's is
	// attached but not accepted, and not counted in attachedListenerSets.
	var clashing gwv1.ListenerSet
	get(ctx, t, dyn, "ListenerSet", "edge", "clashing", &clashing)
	check("clashing Accepted", cond(clashing.Status.Conditions, "Accepted"), "False/ListenersNotValid")
	check("clashing Programmed", cond(clashing.Status.Conditions, "Programmed"), "False/ListenersNotValid")
	check("clashing raw Accepted", cond(listener(gwv1.Gateway{Status: gwv1.GatewayStatus{Listeners: listenerEntries(clashing.Status.Listeners)}}, "raw"), "Accepted"), "False/ProtocolConflict")

	var web, stranger gwv1.HTTPRoute
	get(ctx, t, dyn, "HTTPRoute", "edge", "web", &web)
	get(ctx, t, dyn, "HTTPRoute", "other", "stranger", &stranger)
	if len(web.Status.Parents) != 1 || web.Status.Parents[0].ParentRef.Name != "good" {
		t.Fatalf("web parents %+v: want good only (theirs is another controller's)", web.Status.Parents)
	}
	check("web Accepted", cond(web.Status.Parents[0].Conditions, "Accepted"), "True/Accepted")
	check("web ResolvedRefs", cond(web.Status.Parents[0].Conditions, "ResolvedRefs"), "True/ResolvedRefs")
	if len(stranger.Status.Parents) != 1 {
		t.Fatalf("stranger parents %+v", stranger.Status.Parents)
	}
	check("stranger Accepted", cond(stranger.Status.Parents[0].Conditions, "Accepted"), "False/NotAllowedByListeners")
	check("stranger ResolvedRefs", cond(stranger.Status.Parents[0].Conditions, "ResolvedRefs"), "False/BackendNotFound")

	var strict v1alpha1.MTLSPolicy
	get(ctx, t, dyn, "MTLSPolicy", "edge", "strict", &strict)
	check("strict ResolvedRefs", cond(strict.Status.Conditions, "ResolvedRefs"), "False/TargetNotFound")
	if c := meta.FindStatusCondition(strict.Status.Conditions, "Analyzed"); c == nil || !strings.Contains(c.Message, analyze.CodeNoTarget) {
		t.Errorf("strict Analyzed: %+v, want the finding %s in the message", c, analyze.CodeNoTarget)
	}

	// Once the informers have seen the writes, nothing differs: a second
	// round writes nothing.
	waitSeen(ctx, t, src, written)
	again, err := src.reconcile(ctx, mem)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Errorf("a second round with nothing changed wrote %d objects", len(again))
	}

	// A change writes what it changes: labelling namespace other admits
	// stranger to good, whose listener then counts two routes.
	ns, err := dyn.Resource(gvrOf(t, "Namespace")).Get(ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.SetLabels(map[string]string{"gw": "yes"})
	if _, err := dyn.Resource(gvrOf(t, "Namespace")).Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the namespace's new labels", func() bool {
		mem.mu.Lock()
		defer mem.mu.Unlock()
		return mem.namespaces["other"]["gw"] == "yes"
	})
	third, err := src.reconcile(ctx, mem)
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, u := range third {
		names = append(names, u.GetKind()+" "+u.GetName())
	}
	slices.Sort(names)
	if want := []string{"Gateway good", "HTTPRoute stranger"}; !slices.Equal(names, want) {
		t.Errorf("after the label change wrote %q, want %q", names, want)
	}
	get(ctx, t, dyn, "HTTPRoute", "other", "stranger", &stranger)
	check("stranger Accepted", cond(stranger.Status.Parents[0].Conditions, "Accepted"), "True/Accepted")

	// A Ready pod of good's Deployment gives good its address; good is
	// Programmed once the proxy registered from that address has
	// acknowledged its config.
	cs := kubernetes.NewForConfigOrDie(c.Config)
	pod, err := cs.CoreV1().Pods("edge").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "good-trellis-1", Labels: gatewaySelector("good")},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "gateway", Image: "trellis-proxy"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.2.3", PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := cs.CoreV1().Pods("edge").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// goodStatus is good's status once written with the pod's address:
	// the pod informer sees the pod's status a moment after the update.
	goodStatus := func(proxies []GatewayProxy) gwv1.GatewayStatus {
		t.Helper()
		mem.mu.Lock()
		mem.proxies = proxies
		mem.mu.Unlock()
		var gw gwv1.Gateway
		waitFor(ctx, t, "good's status written with its pod's address", func() bool {
			written, err := src.reconcile(ctx, mem)
			if err != nil {
				return false
			}
			waitSeen(ctx, t, src, written)
			get(ctx, t, dyn, "Gateway", "edge", "good", &gw)
			return len(gw.Status.Addresses) > 0
		})
		return gw.Status
	}
	proxy := GatewayProxy{ID: "good-trellis-1.edge", Gateway: model.Key{Namespace: "edge", Name: "good"}, Address: "10.1.2.3", Connected: true}
	st := goodStatus([]GatewayProxy{proxy})
	check("good Programmed, its pod's proxy not acknowledging", cond(st.Conditions, "Programmed"), "False/Pending")
	if len(st.Addresses) != 1 || st.Addresses[0].Value != "10.1.2.3" || *st.Addresses[0].Type != gwv1.IPAddressType {
		t.Errorf("good addresses %+v, want the Ready pod's IP 10.1.2.3", st.Addresses)
	}
	proxy.Acked = true
	st = goodStatus([]GatewayProxy{proxy})
	check("good Programmed, its pod's proxy acknowledging", cond(st.Conditions, "Programmed"), "True/Programmed")
}

// waitSeen waits until the source's informers hold the versions written.
func waitSeen(ctx context.Context, t *testing.T, src *Source, written []*unstructured.Unstructured) {
	t.Helper()
	for _, w := range written {
		gvr := src.gvrs[w.GetKind()]
		waitFor(ctx, t, fmt.Sprintf("%s %s at %s", w.GetKind(), w.GetName(), w.GetResourceVersion()), func() bool {
			var obj runtime.Object
			var err error
			if w.GetNamespace() == "" {
				obj, err = src.crds.ForResource(gvr).Lister().Get(w.GetName())
			} else {
				obj, err = src.crds.ForResource(gvr).Lister().ByNamespace(w.GetNamespace()).Get(w.GetName())
			}
			if err != nil {
				return false
			}
			return obj.(*unstructured.Unstructured).GetResourceVersion() == w.GetResourceVersion()
		})
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("no %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// testKeyPair is a self-signed ECDSA certificate and its key, in PEM.
func testKeyPair(t *testing.T) (certPEM, keyPEM []byte) {
	p := testcert.Make(t, testcert.Options{Hosts: []string{"ok.example.com"}})
	return p.CertPEM, p.KeyPEM
}

// listenerEntries turns a ListenerSet's listener statuses into a
// Gateway's, to read them with the same helper.
func listenerEntries(es []gwv1.ListenerEntryStatus) []gwv1.ListenerStatus {
	var out []gwv1.ListenerStatus
	for _, e := range es {
		out = append(out, gwv1.ListenerStatus{Name: e.Name, Conditions: e.Conditions})
	}
	return out
}
