package e2e

import (
	"context"
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
	return startKubeMeshImages(ctx, t, images, nil, edit...)
}

// startKubeMeshImages is startKubeMesh with more images on the node,
// played by other commands than this test binary (kubetest.Image).
func startKubeMeshImages(ctx context.Context, t *testing.T, images map[string]string, more map[string]kubetest.Image, edit ...func(*control.Options)) *kubeMesh {
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
	maps.Copy(imgs, more)
	m.node = c.StartNode(t, kubetest.NodeOptions{Images: imgs})

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
