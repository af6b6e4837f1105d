package kubetest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/netnstest"
)

// roleEnv names the part a re-executed test binary plays: the image of a
// container that the test node runs.
const roleEnv = "TRELLIS_KUBETEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "web":
		if err := web(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "web:", err)
			os.Exit(3)
		}
		os.Exit(0)
	case "sandbox":
		if err := sandboxRole(); err != nil {
			fmt.Fprintln(os.Stderr, "sandbox:", err)
			os.Exit(3)
		}
		os.Exit(0)
	case "touch":
		// An init container: creates the file args[0].
		if err := os.WriteFile(os.Args[1], []byte("done"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "touch:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// web serves, on the address args[0], what the pod it runs in was given:
// its name from the downward API, the file args[1] (a ConfigMap volume's)
// and whether the file args[2] (a projected token) is there, and the uid
// it runs as. /ready answers 200 once the file args[3] (in an emptyDir)
// exists, which /make-ready creates.
func web(args []string) error {
	listen, greetingFile, tokenFile, readyFile, initFile := args[0], args[1], args[2], args[3], args[4]
	return http.ListenAndServe(listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ready":
			if _, err := os.Stat(readyFile); err != nil {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
			}
			return
		case "/make-ready":
			if err := os.WriteFile(readyFile, nil, 0o644); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
			return
		}
		greeting, _ := os.ReadFile(greetingFile)
		token, _ := os.ReadFile(tokenFile)
		_, initErr := os.Stat(initFile)
		fmt.Fprintf(w, "%s from %s uid=%d token=%t init=%t", strings.TrimSpace(string(greeting)), os.Getenv("POD_NAME"), os.Getuid(), len(token) > 100, initErr == nil)
	}))
}

// TestNode runs a pod on the test node: it is bound and given an IP, its
// init container runs first, its volumes (ConfigMap, emptyDir, projected
// token) and downward API env reach its process, which runs as its
// runAsUser in its own network namespace; it turns Ready when its
// readiness probe, sent from the node's namespace, passes; deleting it
// stops it and removes it.
func TestNode(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	node := c.StartNode(t, kubetest.NodeOptions{Images: map[string]kubetest.Image{
		"example.com/web:1": func(ct *corev1.Container) ([]string, []string, bool) {
			return append([]string{os.Args[0]}, ct.Args...), []string{roleEnv + "=web"}, true
		},
		"example.com/touch:1": func(ct *corev1.Container) ([]string, []string, bool) {
			return append([]string{os.Args[0]}, ct.Args...), []string{roleEnv + "=touch"}, true
		},
	}})

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "greeting"},
		Data: map[string]string{"text": "hello"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	uid, expiry := int64(1000), int64(3600)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"}, Spec: corev1.PodSpec{
		ServiceAccountName: "web",
		Volumes: []corev1.Volume{
			{Name: "greeting", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"}}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
				ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "trellis.dev", ExpirationSeconds: &expiry, Path: "token"}}}}}},
		},
		InitContainers: []corev1.Container{{Name: "init", Image: "example.com/touch:1", Args: []string{"/scratch/init-done"},
			VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}}},
		Containers: []corev1.Container{{
			Name: "web", Image: "example.com/web:1",
			Args:            []string{"$(POD_IP):8080", "/etc/greeting/text", "/var/run/token/token", "/scratch/ready", "/scratch/init-done"},
			Env:             []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}, {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
			Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			SecurityContext: &corev1.SecurityContext{RunAsUser: &uid},
			VolumeMounts: []corev1.VolumeMount{{Name: "greeting", MountPath: "/etc/greeting"}, {Name: "scratch", MountPath: "/scratch"},
				{Name: "token", MountPath: "/var/run/token"}},
		}},
	}}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	waitPod(t, ctx, cs, "web-0", "running, with an IP and not ready", func(p *corev1.Pod) bool {
		ip = p.Status.PodIP
		return p.Spec.NodeName == node.Name && p.Status.Phase == corev1.PodRunning && ip != "" && !kubetest.PodReady(p)
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: netnstest.Dialer(node.NS)}}
	body := getEventually(t, client, "http://"+net.JoinHostPort(ip, "8080")+"/", func(err error) {
		t.Fatalf("the pod's server at %s: %v\n%s", ip, err, node.Log(pod, "web"))
	})
	if want := "hello from web-0 uid=1000 token=true init=true"; body != want {
		t.Errorf("the pod says %q, want %q", body, want)
	}
	// The readiness probe passes once the app says so.
	resp, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + "/make-ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("make-ready: %s", resp.Status)
	}
	waitPod(t, ctx, cs, "web-0", "ready", kubetest.PodReady)
	// pods/exec runs as the container's user, where it sees its volumes.
	if out, err := podExec(ctx, c, "shop", "web-0", "web", "sh", "-c", "id -u; cat /etc/greeting/text"); err != nil || out != "1000\nhello" {
		t.Errorf("exec: %q %v", out, err)
	}

	if err := cs.CoreV1().Pods("shop").Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := cs.CoreV1().Pods("shop").Get(ctx, "web-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted pod is still there: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + "/"); err == nil {
		t.Error("the deleted pod's server still answers")
	}
}

func waitPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, what string, ok func(*corev1.Pod) bool) {
	t.Helper()
	var last *corev1.Pod
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		p, err := cs.CoreV1().Pods("shop").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return
			}
		}
	}
	t.Fatalf("pod %s never %s: %+v", name, what, last.Status)
}

// getEventually GETs url until it answers, for 30 s at most, and returns
// the body; fail says why it never did.
func getEventually(t *testing.T, client *http.Client, url string, fail func(err error)) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			fail(err)
			return ""
		}
		time.Sleep(200 * time.Millisecond)
	}
}
