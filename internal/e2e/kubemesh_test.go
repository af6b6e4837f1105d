package e2e

import (
	"context"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"maps"
	"net"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/netnstest"
	"trellis.dev/trellis/internal/webhook"
)

// proxyImage is the trellis-proxy image of the Kubernetes tests: the
// test binary's proxy role.
const proxyImage = "trellis-proxy:test"

// kubeMesh is the mesh on a real API server: the cluster with the CRDs,
// the test node (kubetest.Node) as kubelet, and a control plane reading
// from the cluster and writing status back.
type kubeMesh struct {
	c    *kubetest.Cluster
	cs   kubernetes.Interface
	dyn  dynamic.Interface
	node *kubetest.Node
	cp   *controlPlane
	// hookAddr is where the control plane serves its webhooks.
	hookAddr string
	// xdsAddr is its xDS and CA address, on the node's bridge.
	xdsAddr string
}

// startKubeMesh starts the cluster, the node and the control plane. The
// node runs proxyImage as the proxy role and each of images (image
// reference to role) as its role, from a copy of this test binary that
// the proxy's user (1337) may run. Pods reach the control plane's xDS
// and CA port in a namespace on the node's bridge; the API server reaches
// its webhooks on loopback. Injected sidecars and gateways get proxyImage;
// edit may change the control plane's options further.
func startKubeMesh(ctx context.Context, t *testing.T, images map[string]string, edit ...func(*control.Options)) *kubeMesh {
	t.Helper()
	return startKubeMeshNode(ctx, t, images, kubetest.NodeOptions{}, edit...)
}

// startKubeMeshNode is startKubeMesh with the node's options: more
// images, played by other commands than this test binary, and its load
// balancers.
func startKubeMeshNode(ctx context.Context, t *testing.T, images map[string]string, node kubetest.NodeOptions, edit ...func(*control.Options)) *kubeMesh {
	t.Helper()
	c := kubetest.Start(t)
	m := &kubeMesh{c: c, cs: kubernetes.NewForConfigOrDie(c.Config), dyn: dynamic.NewForConfigOrDie(c.Config)}
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	c.CreateCRDs(ctx, t, crds)

	bin := worldExecutable(t)
	role := func(name string) kubetest.Image {
		return func(ct *corev1.Container) ([]string, []string, bool) {
			return append([]string{bin}, ct.Args...), []string{roleEnv + "=" + name}, true
		}
	}
	imgs := map[string]kubetest.Image{proxyImage: role("proxy")}
	for ref, r := range images {
		imgs[ref] = role(r)
	}
	maps.Copy(imgs, node.Images)
	node.Images = imgs
	m.node = c.StartNode(t, node)

	cpNS, cpIP := m.node.Net.Add("cp")
	xdsLn, err := netnstest.Listen(cpNS, "tcp", net.JoinHostPort(cpIP, "15012"))
	if err != nil {
		t.Fatal(err)
	}
	m.xdsAddr = xdsLn.Addr().String()
	hookLn, err := net.Listen("tcp", net.JoinHostPort(c.IP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	m.hookAddr = hookLn.Addr().String()
	hookLn.Close()
	m.cp = startControlPlane(t, newSubnet(t), t.TempDir(), append([]func(*control.Options){func(o *control.Options) {
		o.XDSListener, o.WebhookAddress = xdsLn, m.hookAddr
		o.Kube, o.KubeStatus = c.Config, kubesource.StatusOptions{LeaseNamespace: "default"}
		o.Inject = inject.Options{Image: proxyImage, ControlPlane: m.xdsAddr}
	}}, edit...)...)
	return m
}

// registerInjector registers the control plane's injection webhook, by
// URL, for pods in namespaces labelled for injection, and waits until the
// control plane has filled in its caBundle.
func (m *kubeMesh) registerInjector(ctx context.Context, t *testing.T) {
	t.Helper()
	url := "https://" + m.hookAddr + webhook.InjectPath
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	hooks := m.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := hooks.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: install.MutatingWebhookName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "inject.trellis.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
			FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{inject.InjectLabel: "enabled"}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: inject.InjectLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bundle, err := m.cp.client(t).CABundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the injector's caBundle", func() error {
		h, err := hooks.Get(ctx, install.MutatingWebhookName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if string(h.Webhooks[0].ClientConfig.CABundle) != bundle {
			return fmt.Errorf("caBundle not set yet")
		}
		return nil
	})
}
