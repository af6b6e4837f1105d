package inject

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/kubetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testOpts = Options{Image: "trellis-proxy:test", ControlPlane: "trellis-control.trellis-system.svc:15012"}

// TestFile injects testdata/web.yaml and compares the result with
// testdata/web.golden (go test -update rewrites it): a Deployment's
// template gets the init container, the native sidecar before the pod's
// own init containers, the volumes, and its probes rewritten; a Service
// passes through; a pod labelled disabled is left alone; a CronJob's pod
// is injected.
func TestFile(t *testing.T) {
	in, err := os.ReadFile("testdata/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, results, err := File("web.yaml", in, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results {
		got = append(got, r.Object+" injected="+map[bool]string{true: "yes", false: "no"}[r.Injected]+" "+string(r.Skipped))
	}
	want := []string{
		"Deployment shop/web injected=yes ",
		"Service shop/web injected=no ",
		"Pod shop/debug injected=no labelled trellis.dev/inject=disabled",
		"CronJob shop/report injected=yes ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	golden := filepath.Join("testdata", "web.golden")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantOut, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, wantOut) {
		t.Errorf("output differs from %s (go test -update, then review the diff):\n%s", golden, out)
	}

	// Injecting again changes nothing.
	again, results, err := File("web.golden", out, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, out) {
		t.Errorf("a second injection changed the manifest:\n%s", again)
	}
	if results[0].Skipped != "already injected" {
		t.Errorf("second injection of the Deployment: %+v", results[0])
	}
}

func TestSpecRefuses(t *testing.T) {
	for name, spec := range map[string]corev1.PodSpec{
		"a probe on an undeclared named port": {Containers: []corev1.Container{{Name: "web",
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrString("http")}}}}}},
		"an app on the sidecar's port": {Containers: []corev1.Container{{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 15020}}}}},
	} {
		if _, err := Spec(&metav1.ObjectMeta{}, &spec, testOpts); err == nil {
			t.Errorf("%s: injected", name)
		}
	}
	host := corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "agent"}}}
	if skipped, err := Spec(&metav1.ObjectMeta{}, &host, testOpts); err != nil || skipped == "" || len(host.InitContainers) != 0 {
		t.Errorf("a host-network pod: %q %v %v", skipped, err, host.InitContainers)
	}
	if _, err := Spec(&metav1.ObjectMeta{}, &corev1.PodSpec{}, Options{CaptureMode: "ebpf"}); err == nil {
		t.Error("an unknown capture mode was accepted")
	}
}

// TestInjectedAccepted creates the injected manifest on a real API server:
// the pod specs (native sidecar, projected token, probes) are valid
// Kubernetes.
func TestInjectedAccepted(t *testing.T) {
	c := kubetest.Start(t)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join("testdata", "web.golden"))
	if err != nil {
		t.Fatal(err)
	}
	strict := metav1.CreateOptions{FieldValidation: "Strict"}
	created := 0
	for _, doc := range strings.Split(string(out), "---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatal(err)
		}
		var err error
		switch tm.Kind {
		case "Deployment":
			var o appsv1.Deployment
			if err = yaml.UnmarshalStrict([]byte(doc), &o); err == nil {
				_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, &o, strict)
			}
		case "CronJob":
			var o batchv1.CronJob
			if err = yaml.UnmarshalStrict([]byte(doc), &o); err == nil {
				_, err = cs.BatchV1().CronJobs(o.Namespace).Create(ctx, &o, strict)
			}
		case "Pod":
			var o corev1.Pod
			if err = yaml.UnmarshalStrict([]byte(doc), &o); err == nil {
				_, err = cs.CoreV1().Pods(o.Namespace).Create(ctx, &o, strict)
			}
		case "Service":
			var o corev1.Service
			if err = yaml.UnmarshalStrict([]byte(doc), &o); err == nil {
				_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, &o, strict)
			}
		default:
			t.Fatalf("unexpected %s in the golden file", tm.Kind)
		}
		if err != nil {
			t.Errorf("%s: %v", tm.Kind, err)
		}
		created++
	}
	if created != 4 {
		t.Errorf("created %d objects, want 4", created)
	}
}

func intOrString(s string) intstr.IntOrString { return intstr.FromString(s) }
