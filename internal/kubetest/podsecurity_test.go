package kubetest_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/netnstest"
)

// TestNodeSysctlsAndProjectedSecret runs a pod as a non-root user that
// binds port 80, which its pod's sysctl net.ipv4.ip_unprivileged_port_start=0
// allows (as gateways run), and reads a file of a Secret projected under
// a path of its own (an optional projection of a missing Secret adds
// nothing); a pod asking for a sysctl outside its network namespace
// fails.
func TestNodeSysctlsAndProjectedSecret(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	node := c.StartNode(t, kubetest.NodeOptions{Images: map[string]kubetest.Image{
		"example.com/web:1": func(ct *corev1.Container) ([]string, []string, bool) {
			return append([]string{os.Args[0]}, ct.Args...), []string{roleEnv + "=web"}, true
		},
	}})
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "greeting"},
		Data: map[string][]byte{"text": []byte("secret hello"), "other": []byte("x")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	uid, yes := int64(1337), true
	pod := func(name string, sysctl corev1.Sysctl) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}, Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, Sysctls: []corev1.Sysctl{sysctl}},
			Volumes: []corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"},
					Items: []corev1.KeyToPath{{Key: "text", Path: "shop/greeting/text"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Optional: &yes,
					Items: []corev1.KeyToPath{{Key: "text", Path: "shop/missing/text"}}}},
			}}}}},
			Containers: []corev1.Container{{
				Name: "web", Image: "example.com/web:1",
				Args:         []string{"$(POD_IP):80", "/certs/shop/greeting/text", "/certs/shop/missing/text", "/certs/ready", "/certs/init"},
				Env:          []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}, {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "certs", MountPath: "/certs"}},
			}},
		}}
	}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod("low-port", corev1.Sysctl{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	waitPod(t, ctx, cs, "low-port", "running with an IP", func(p *corev1.Pod) bool {
		ip = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && ip != ""
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: netnstest.Dialer(node.NS)}}
	body := getEventually(t, client, "http://"+net.JoinHostPort(ip, "80")+"/", func(err error) {
		p, _ := cs.CoreV1().Pods("shop").Get(ctx, "low-port", metav1.GetOptions{})
		t.Fatalf("the pod's server on port 80 of %s: %v\n%s", ip, err, node.Log(p, "web"))
	})
	if want := "secret hello from low-port uid=1337 token=false init=false"; body != want {
		t.Errorf("the pod says %q, want %q", body, want)
	}

	if _, err := cs.CoreV1().Pods("shop").Create(ctx, pod("kernel", corev1.Sysctl{Name: "kernel.shm_rmid_forced", Value: "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, cs, "kernel", "failed for its sysctl", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed && strings.Contains(p.Status.Message, "kernel.shm_rmid_forced")
	})
}
