package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1alpha2 "sigs.k8s.io/gateway-api/apis/v1alpha2"
	gwv1alpha3 "sigs.k8s.io/gateway-api/apis/v1alpha3"
	gwxv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	"sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/version"
)

// The Gateway API conformance suite (sigs.k8s.io/gateway-api/conformance
// v1.6.3, the version of the CRDs trellis install serves) against Trellis
// on a real API server, with the test node (kubetest.Node) as kubelet,
// cluster DNS and pods/exec, and the suite's own images built by
// `go run ./hack/dev conformance-images`. The suite applies its manifests,
// waits until every Gateway of class trellis is Accepted and Programmed
// (each its own Deployment and address, from the control plane) and every
// pod Ready, and sends its requests to the Gateways' status.addresses
// (their Services' load balancer addresses, which the test node serves on
// this process's loopback) or, for the mesh profile, from Istio's echo
// client in a pod with a sidecar.
//
// By default each profile runs conformanceSubset; with
// TRELLIS_CONFORMANCE=all the whole profile (see docs/conformance/ for
// the command and the report). TRELLIS_CONFORMANCE_REPORT=DIR writes the
// ConformanceReport of each profile to DIR/PROFILE.yaml;
// TRELLIS_CONFORMANCE_TRY=FEATURE,... runs the tests of features Trellis
// does not claim yet as well. Gateway profiles run the features the
// GatewayClass lists (kubesource.SupportedFeatures), mesh profiles those
// of kubesource.MeshSupportedFeatures.

// conformanceSubset are the tests of each profile that run by default.
var conformanceSubset = map[suite.ConformanceProfileName][]string{
	suite.GatewayHTTPConformanceProfileName: {"GatewayWithAttachedRoutes", "HTTPRouteSimpleSameNamespace"},
	suite.MeshHTTPConformanceProfileName:    {"MeshBasic"},
	suite.GatewayGRPCConformanceProfileName: {"GRPCExactMethodMatching"},
	suite.GatewayTLSConformanceProfileName:  {"TLSRouteSimpleSameNamespace"},
	suite.MeshGRPCConformanceProfileName:    {"MeshGRPCRouteWeight"},
	suite.GatewayTCPConformanceProfileName:  {"TCPRouteWeightedRouting"},
}

func TestConformanceGatewayHTTP(t *testing.T) {
	runConformance(t, suite.GatewayHTTPConformanceProfileName, false)
}

func TestConformanceMeshHTTP(t *testing.T) {
	runConformance(t, suite.MeshHTTPConformanceProfileName, true)
}

func TestConformanceGatewayGRPC(t *testing.T) {
	runConformance(t, suite.GatewayGRPCConformanceProfileName, false)
}

func TestConformanceGatewayTLS(t *testing.T) {
	runConformance(t, suite.GatewayTLSConformanceProfileName, false)
}

func TestConformanceMeshGRPC(t *testing.T) {
	runConformance(t, suite.MeshGRPCConformanceProfileName, true)
}

func TestConformanceGatewayTCP(t *testing.T) {
	runConformance(t, suite.GatewayTCPConformanceProfileName, false)
}

// runConformance runs the suite for one profile on a cluster of its own;
// mesh puts every test namespace under injection.
func runConformance(t *testing.T, profile suite.ConformanceProfileName, mesh bool) {
	images := kubetest.ConformanceImages(t)
	whole := os.Getenv("TRELLIS_CONFORMANCE") == "all"
	timeout := 10 * time.Minute
	if whole {
		timeout = 90 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Gateways' Services get addresses on this process's loopback, as
	// from a cloud's load balancer: the suite's clients (HTTP, gRPC, TLS,
	// TCP) dial them as they are.
	m := startKubeMeshNode(ctx, t, nil, kubetest.NodeOptions{Images: images, LoadBalancers: true})
	trellisClass(ctx, t, m)

	opts := conformanceOptions(t, m)
	opts.GatewayClassName = "trellis"
	opts.ConformanceProfiles = []suite.ConformanceProfileName{profile}
	opts.Mode = "default"
	opts.CleanupBaseResources = false // the cluster goes with the test
	opts.CleanupTestResources = true
	opts.TimeoutConfig = config.DefaultTimeoutConfig()
	opts.Implementation = confv1.Implementation{
		Organization: "trellis.dev",
		Project:      "trellis",
		URL:          "https://trellis.dev",
		Version:      version.Version,
		Contact:      []string{"https://trellis.dev/community"},
	}
	// The gateway profiles' features are those the GatewayClass lists
	// (the suite reads them); the mesh profiles' are handed over, as
	// Trellis has no XMesh (kubesource.MeshSupportedFeatures).
	if mesh {
		m.registerInjector(ctx, t)
		opts.NamespaceLabels = map[string]string{inject.InjectLabel: "enabled"}
		opts.SupportedFeatures = slices.Clone(kubesource.MeshSupportedFeatures)
	}
	if !whole {
		opts.SkipTests = skipAllBut(conformanceSubset[profile])
	}
	// TRELLIS_CONFORMANCE_TRY=F1,F2 runs the tests of features not claimed
	// yet besides those claimed.
	if try := os.Getenv("TRELLIS_CONFORMANCE_TRY"); try != "" {
		if !mesh {
			opts.SupportedFeatures = slices.Clone(kubesource.SupportedFeatures)
		}
		for f := range strings.SplitSeq(try, ",") {
			opts.SupportedFeatures = append(opts.SupportedFeatures, features.FeatureName(strings.TrimSpace(f)))
		}
	}
	// A failed test shows what the pods of its namespaces said.
	opts.Hook = func(t *testing.T, test suite.ConformanceTest, _ *suite.ConformanceTestSuite) {
		if t.Failed() {
			conformancePodLogs(ctx, t, m)
			if mesh {
				meshClientOutput(ctx, t, m)
			}
		}
	}
	if dir := os.Getenv("TRELLIS_CONFORMANCE_REPORT"); dir != "" {
		opts.ReportOutputPath = filepath.Join(dir, strings.ToLower(string(profile))+".yaml")
	}
	conformance.RunConformanceWithOptions(t, opts)
}

// trellisClass creates the GatewayClass trellis and waits until the
// control plane has accepted it and listed its supported features, which
// the suite reads.
func trellisClass(ctx context.Context, t *testing.T, m *kubeMesh) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
		"metadata": map[string]any{"name": "trellis"},
		"spec":     map[string]any{"controllerName": "trellis.dev/gateway"},
	}}
	if _, err := m.dyn.Resource(gvr).Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "GatewayClass trellis accepted, with its features", func() error {
		u, err := m.dyn.Resource(gvr).Get(ctx, "trellis", metav1.GetOptions{})
		if err != nil {
			return err
		}
		features, _, _ := unstructured.NestedSlice(u.Object, "status", "supportedFeatures")
		if len(features) == 0 {
			return fmt.Errorf("no supportedFeatures in %v", u.Object["status"])
		}
		return nil
	})
}

// skipAllBut lists the suite's tests but those of keep.
func skipAllBut(keep []string) []string {
	var skip []string
	for _, ct := range tests.ConformanceTests {
		if !slices.Contains(keep, ct.ShortName) {
			skip = append(skip, ct.ShortName)
		}
	}
	return skip
}

// conformancePodLogs logs the end of the log of every container of the
// suite's pods.
func conformancePodLogs(ctx context.Context, t *testing.T, m *kubeMesh) {
	pods, err := m.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("listing pods: %v", err)
		return
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !strings.HasPrefix(p.Namespace, "gateway-conformance") {
			continue
		}
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			log := m.node.Log(p, c.Name)
			if lines := strings.Split(strings.TrimSpace(log), "\n"); len(lines) > 40 {
				log = strings.Join(lines[len(lines)-40:], "\n")
			}
			t.Logf("pod %s/%s container %s (%s):\n%s", p.Namespace, p.Name, c.Name, p.Status.Phase, log)
		}
	}
}

// meshClientOutput runs the mesh tests' echo client once in the echo-v1
// pod, as the suite does, and logs what it printed.
func meshClientOutput(ctx context.Context, t *testing.T, m *kubeMesh) {
	const ns = "gateway-conformance-mesh"
	pods, err := m.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo,version=v1"})
	if err != nil || len(pods.Items) == 0 {
		t.Logf("no echo-v1 pod: %v", err)
		return
	}
	req := m.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pods.Items[0].Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "echo", Command: []string{"client", "http://echo"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	x, err := remotecommand.NewSPDYExecutor(m.c.Config, "POST", req.URL())
	if err != nil {
		t.Logf("exec: %v", err)
		return
	}
	var out, errOut strings.Builder
	err = x.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	t.Logf("client http://echo in %s: %v\nstdout:\n%s\nstderr:\n%s", pods.Items[0].Name, err, out.String(), errOut.String())
}

// conformanceOptions are the suite's clients for m's cluster, as
// conformance.DefaultOptions makes them, but with a scheme of their own:
// DefaultOptions installs the Gateway API types into client-go's global
// scheme, which the control plane running in this process reads at the
// same time.
func conformanceOptions(t *testing.T, m *kubeMesh) suite.ConformanceOptions {
	t.Helper()
	sch := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{
		scheme.AddToScheme, apiextensionsv1.AddToScheme,
		gwv1.Install, gwv1alpha2.Install, gwv1alpha3.Install, gwxv1alpha1.Install,
	} {
		if err := add(sch); err != nil {
			t.Fatal(err)
		}
	}
	ctrllog.SetLogger(logr.Discard())
	clientOpts := ctrlclient.Options{Scheme: sch}
	cl, err := ctrlclient.New(m.c.Config, clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	return suite.ConformanceOptions{
		Client:        cl,
		ClientOptions: clientOpts,
		Clientset:     m.cs,
		RestConfig:    m.c.Config,
		ManifestFS:    []fs.FS{&conformance.Manifests},
	}
}
