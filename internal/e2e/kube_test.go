package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/nodemeta"
)

// TestKubernetesProxylessGRPC: with its config from a Kubernetes API
// server, the control plane sends a proxyless gRPC client the endpoints
// of a Service's running Pods, and stops sending a Pod once it is
// deleted. The Pods' IPs are the test's loopback addresses, where plain
// gRPC servers answer.
func TestKubernetesProxylessGRPC(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)

	s := newSubnet(t)
	var xdsAddr string
	cp := startControlPlane(t, s, t.TempDir(), func(o *control.Options) {
		o.XDSAddress = "127.0.0.1:0"
		o.Kube = c.Config
		o.KubeStatus = kubesource.StatusOptions{LeaseNamespace: "default", LeaseDuration: 2 * time.Second}
		ready := o.Ready
		o.Ready = func(x, d net.Addr) {
			xdsAddr = x.String()
			ready(x, d)
		}
	})

	const ns = "demo"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the default ServiceAccount", func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return err
		}
		return err
	})
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "echo"},
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 8080, TargetPort: intstr.FromString("grpc")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"echo-0", "echo-1"} {
		ip := s.ip(byte(21 + i))
		servePlainEcho(t, ip, name)
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "echo"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: "echo",
				Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	client := dialXDS(t, grpcBootstrap(t, cp, xdsAddr, "client-1.demo", nodemeta.Metadata{
		Kind: nodemeta.KindGRPC, Name: "client-1", Namespace: ns, ServiceAccount: "client", Address: s.ip(30),
	}), "xds:///echo.demo.svc.cluster.local:8080")
	eventually(t, 60*time.Second, "calls answered by both Pods", func() error {
		seen, err := client.calls(40)
		if err != nil {
			return err
		}
		if seen["echo-0"] == 0 || seen["echo-1"] == 0 {
			return fmt.Errorf("40 calls answered by %v", seen)
		}
		return nil
	})

	if err := cs.CoreV1().Pods(ns).Delete(ctx, "echo-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "only the remaining Pod answers", func() error {
		return client.onlyFrom(20, "echo-0")
	})
}

// servePlainEcho runs a gRPC echo server, with no xDS, on addr:8080
// until the test ends.
func servePlainEcho(t *testing.T, addr, name string) {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(addr, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &echoServer{name: name})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
}
