package conformancetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/netnstest"
	"trellis.dev/trellis/internal/testcert"
)

// manifests are the objects of a YAML file of the conformance module, by
// kind.
type manifests struct {
	namespaces  []*corev1.Namespace
	configMaps  []*corev1.ConfigMap
	services    []*corev1.Service
	deployments []*appsv1.Deployment
	other       []string // kind/name of the rest, not applied here
}

func readManifests(t *testing.T, path string) *manifests {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{}
	for _, doc := range strings.Split(string(b), "\n---") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		decode := func(obj any) {
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s: %v", path, meta.Kind, err)
			}
		}
		switch meta.Kind {
		case "":
		case "Namespace":
			var ns corev1.Namespace
			decode(&ns)
			m.namespaces = append(m.namespaces, &ns)
		case "ConfigMap":
			var cm corev1.ConfigMap
			decode(&cm)
			m.configMaps = append(m.configMaps, &cm)
		case "Service":
			var svc corev1.Service
			decode(&svc)
			m.services = append(m.services, &svc)
		case "Deployment":
			var d appsv1.Deployment
			decode(&d)
			m.deployments = append(m.deployments, &d)
		default:
			var obj metav1.PartialObjectMetadata
			_ = yaml.Unmarshal([]byte(doc), &obj)
			m.other = append(m.other, meta.Kind+"/"+obj.Name)
		}
	}
	return m
}

// usesImage tells whether every container of d runs an image of repo.
func usesImage(d *appsv1.Deployment, repo string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		if !strings.HasPrefix(c.Image, repo+":") {
			return false
		}
	}
	return true
}

// apply creates the namespaces and ConfigMaps of m, the Deployments that
// pass keep and their Services, and the Secrets their pods mount, which
// the suite makes itself (self-signed certificates).
func apply(t *testing.T, ctx context.Context, cs kubernetes.Interface, m *manifests, keep func(*appsv1.Deployment) bool) (replicas int, namespaces []string) {
	t.Helper()
	for _, ns := range m.namespaces {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		namespaces = append(namespaces, ns.Name)
	}
	for _, cm := range m.configMaps {
		if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	selected := map[string]bool{}
	for _, d := range m.deployments {
		if !keep(d) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			cert, key := podCert(t)
			_, err := cs.CoreV1().Secrets(d.Namespace).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: v.Secret.SecretName}, Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		if _, err := cs.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		n := 1
		if d.Spec.Replicas != nil {
			n = int(*d.Spec.Replicas)
		}
		replicas += n
		for k, v := range d.Spec.Template.Labels {
			selected[d.Namespace+"/"+k+"="+v] = true
		}
	}
	for _, svc := range m.services {
		for k, v := range svc.Spec.Selector {
			if selected[svc.Namespace+"/"+k+"="+v] {
				if _, err := cs.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return replicas, namespaces
}

// podCert returns a self-signed certificate and its key, PEM-encoded, as
// the suite makes for its TLS Secrets.
func podCert(t *testing.T) (certPEM, keyPEM []byte) {
	p := testcert.Make(t, testcert.Options{Hosts: []string{"abc.example.com"}})
	return p.CertPEM, p.KeyPEM
}

// waitReady waits until the namespaces hold want pods, all Ready, and
// returns them.
func waitReady(t *testing.T, ctx context.Context, cs kubernetes.Interface, node *kubetest.Node, want int, namespaces []string) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	var notReady []string
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		pods, notReady = nil, nil
		for _, ns := range namespaces {
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Items {
				pods = append(pods, p)
				if !kubetest.PodReady(&p) {
					notReady = append(notReady, fmt.Sprintf("%s/%s (%s %s)", p.Namespace, p.Name, p.Status.Phase, p.Status.Message))
				}
			}
		}
		if len(pods) == want && len(notReady) == 0 {
			return pods
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, p := range pods {
				if !kubetest.PodReady(&p) && len(p.Spec.Containers) > 0 {
					fmt.Fprintf(&logs, "%s/%s:\n%s\n", p.Namespace, p.Name, node.Log(&p, p.Spec.Containers[0].Name))
				}
			}
			t.Fatalf("%d pods of %d, not ready: %v\n%s", len(pods), want, notReady, logs.String())
		}
	}
}

// TestBaseBackends applies the Deployments of the suite's base manifests
// (v1.6.3: the echo-basic backends and CoreDNS): every pod comes up Ready
// on the test node, and an echo server answers the test process with its
// namespace and pod name. The manifests' Gateways are not applied here.
func TestBaseBackends(t *testing.T) {
	dir := kubetest.ConformanceModuleDir(t)
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	node := c.StartNode(t, kubetest.NodeOptions{Images: kubetest.ConformanceImages(t)})

	m := readManifests(t, filepath.Join(dir, "base", "manifests.yaml"))
	echoBasic := 0
	for _, d := range m.deployments {
		if !usesImage(d, kubetest.EchoBasicImage) && !usesImage(d, kubetest.CoreDNSImage) {
			t.Errorf("Deployment %s/%s runs an image not mapped here", d.Namespace, d.Name)
		}
		if usesImage(d, kubetest.EchoBasicImage) {
			echoBasic++
		}
	}
	if echoBasic < 10 {
		t.Fatalf("only %d echo-basic Deployments in the base manifests", echoBasic)
	}
	replicas, namespaces := apply(t, ctx, cs, m, func(*appsv1.Deployment) bool { return true })
	pods := waitReady(t, ctx, cs, node, replicas, namespaces)
	t.Logf("%d pods ready in %v", len(pods), namespaces)

	sel := labels.SelectorFromSet(labels.Set{"app": "infra-backend-v1"})
	var pod *corev1.Pod
	for i := range pods {
		if pods[i].Namespace == "gateway-conformance-infra" && sel.Matches(labels.Set(pods[i].Labels)) {
			pod = &pods[i]
		}
	}
	if pod == nil {
		t.Fatal("no infra-backend-v1 pod")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: netnstest.Dialer(node.NS)}}
	resp, err := client.Get("http://" + net.JoinHostPort(pod.Status.PodIP, "3000") + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var echo struct {
		Path      string `json:"path"`
		Namespace string `json:"namespace"`
		Pod       string `json:"pod"`
	}
	if err := json.Unmarshal(body, &echo); err != nil {
		t.Fatalf("echo-basic answered %s: %q: %v", resp.Status, body, err)
	}
	if echo.Path != "/hello" || echo.Namespace != pod.Namespace || echo.Pod != pod.Name {
		t.Errorf("echo-basic answered %+v, want /hello from %s/%s", echo, pod.Namespace, pod.Name)
	}
}

// TestMeshEchoClient applies the echo-v1 Deployment of the suite's mesh
// manifests (Istio's echo server, the echo-advanced image), and, as the
// mesh tests do, execs Istio's echo client in its pod (pods/exec through
// the API server to the node), which resolves a Service's cluster DNS name
// and gets the echo server's answer. The Service is a headless one (its
// name resolves to pod IPs): ClusterIPs lead nowhere without kube-proxy
// or a sidecar.
func TestMeshEchoClient(t *testing.T) {
	dir := kubetest.ConformanceModuleDir(t)
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	node := c.StartNode(t, kubetest.NodeOptions{Images: kubetest.ConformanceImages(t)})

	m := readManifests(t, filepath.Join(dir, "mesh", "manifests.yaml"))
	const ns = "gateway-conformance-mesh"
	replicas, _ := apply(t, ctx, cs, m, func(d *appsv1.Deployment) bool {
		return d.Namespace == ns && d.Name == "echo-v1" && usesImage(d, kubetest.EchoAdvancedImage)
	})
	if replicas != 1 {
		t.Fatalf("%d replicas of %s/echo-v1", replicas, ns)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo-pods"}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "echo", "version": "v1"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := waitReady(t, ctx, cs, node, 1, []string{ns})
	pod := pods[0]

	url := "http://echo-pods." + ns + ".svc.cluster.local:8080/mesh"
	var out, errOut bytes.Buffer
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod.Name).SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "echo", Command: []string{"client", url}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		x, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		errOut.Reset()
		// The headless Service's endpoints follow the pod's readiness.
		err = x.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
		if err == nil && strings.Contains(out.String(), "StatusCode=200") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %s: %v\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s", url, err, out.String(), errOut.String(), node.Log(&pod, "echo"))
		}
	}
	t.Logf("client %s:\n%s", url, out.String())
	for _, want := range []string{"Hostname=" + pod.Name, "URL=/mesh", "StatusCode=200"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the echo client's output has no %q:\n%s", want, out.String())
		}
	}
}
