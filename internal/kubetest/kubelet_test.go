package kubetest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/netnstest"
)

// sandboxRole serves, on $(POD_IP):8080, what a container sees: its
// hostname, a file (?path=), a name resolved with its resolv.conf
// (?name=); /say?text= writes a line to stdout.
func sandboxRole() error {
	fmt.Println("sandbox started")
	return http.ListenAndServe(net.JoinHostPort(os.Getenv("POD_IP"), "8080"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hostname":
			h, _ := os.Hostname()
			io.WriteString(w, h)
		case "/file":
			b, err := os.ReadFile(r.URL.Query().Get("path"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Write(b)
		case "/resolve":
			addrs, err := net.DefaultResolver.LookupHost(r.Context(), r.URL.Query().Get("name"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			slices.Sort(addrs)
			io.WriteString(w, strings.Join(addrs, ","))
		case "/say":
			fmt.Println(r.URL.Query().Get("text"))
		}
	}))
}

// TestNodeHeartbeat: the node keeps a Lease in kube-node-lease renewed, and
// posts its status with a fresh heartbeat, its addresses and the kubelet
// API's port.
func TestNodeHeartbeat(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	node := c.StartNode(t, kubetest.NodeOptions{HeartbeatPeriod: 200 * time.Millisecond})
	var first *coordinationv1.Lease
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		l, err := cs.CoordinationV1().Leases(kubetest.NodeLeaseNamespace).Get(ctx, node.Name, metav1.GetOptions{})
		if err == nil && l.Spec.RenewTime != nil {
			if first == nil {
				first = l
				if *l.Spec.HolderIdentity != node.Name || len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Name != node.Name {
					t.Errorf("lease %+v", l)
				}
			} else if l.Spec.RenewTime.After(first.Spec.RenewTime.Time) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's lease was never renewed: %v %+v", err, first)
		}
	}
	n1, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n1.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 || len(n1.Status.Addresses) != 2 {
		t.Errorf("node status %+v", n1.Status)
	}
	beat := func(n *corev1.Node) time.Time {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return c.LastHeartbeatTime.Time
			}
		}
		return time.Time{}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n2, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err == nil && beat(n2).After(beat(n1)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's Ready heartbeat never advanced from %s", beat(n1))
		}
	}
}

// TestNodeSandbox runs a pod in a headless Service's subdomain (and
// behind a LoadBalancer Service, which the test reaches on its loopback
// address) and checks
// what its container sees: its hostname, its /etc/hosts and resolv.conf
// (the node's DNS server, the namespace's search path), a Secret volume's
// items at their mountPath below /etc, an emptyDir over /tmp, /cert.crt;
// that the cluster DNS
// answers it, from the pod and from the test; that pods/exec (SPDY,
// through the API server, to the node's kubelet API) runs commands in its
// namespaces with stdin, a tty and the exit code; that pods/log returns
// its output, and follows it; and that the host sees none of it.
func TestNodeSandbox(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	hostHostname, _ := os.Hostname()
	node := c.StartNode(t, kubetest.NodeOptions{LoadBalancers: true, Images: map[string]kubetest.Image{
		"example.com/sandbox:1": func(ct *corev1.Container) ([]string, []string, bool) {
			return []string{os.Args[0]}, []string{roleEnv + "=sandbox"}, true
		},
	}})
	create := func(obj interface{ GetName() string }, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("creating: %v", err)
		}
	}
	create(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	create(cs.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls"},
		Data: map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY")}}, metav1.CreateOptions{}))
	create(cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}, metav1.CreateOptions{}))
	create(cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}))
	create(cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lb"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "db"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{}))
	create(cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{
			Hostname: "db-0", Subdomain: "db",
			Volumes: []corev1.Volume{{Name: "secret-volume", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "tls", Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "crt"}}}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{Name: "app", Image: "example.com/sandbox:1",
				Env: []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				// The emptyDir at /tmp hides the host's, where this
				// test's binary, the container's command, is.
				VolumeMounts: []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume", ReadOnly: true},
					{Name: "tmp", MountPath: "/tmp"}}}},
		}}, metav1.CreateOptions{}))
	var ip string
	waitPod(t, ctx, cs, "db-0", "running and ready", func(p *corev1.Pod) bool {
		ip = p.Status.PodIP
		return kubetest.PodReady(p) && ip != ""
	})

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: netnstest.Dialer(node.NS)}}
	get := func(path string) (string, error) {
		var last error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			resp, err := client.Get("http://" + net.JoinHostPort(ip, "8080") + path)
			if err != nil {
				last = err
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("%s: %s: %s", path, resp.Status, b)
			}
			return string(b), nil
		}
		return "", last
	}
	check := func(path, want string) {
		t.Helper()
		got, err := get(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		} else if strings.TrimSpace(got) != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	contains := func(path string, want ...string) {
		t.Helper()
		got, err := get(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s = %q, without %q", path, got, w)
			}
		}
	}
	check("/hostname", "db-0")
	check("/file?path=/etc/hostname", "db-0")
	contains("/file?path=/etc/hosts", ip+"\tdb-0.db.shop.svc.cluster.local\tdb-0")
	contains("/file?path=/etc/resolv.conf", "nameserver "+node.IP, "search shop.svc.cluster.local svc.cluster.local cluster.local")
	check("/file?path=/etc/secret-volume/crt", "CERT")
	if _, err := get("/file?path=/etc/secret-volume/key"); err == nil {
		t.Error("the Secret's key not among the volume's items is there")
	}
	contains("/file?path=/cert.crt", "BEGIN CERTIFICATE")
	// The host's own /etc is still there below the volume's mount point.
	contains("/file?path=/etc/passwd", "root:")
	check("/resolve?name=db-0.db.shop.svc.cluster.local", ip)
	check("/resolve?name=db", ip) // the search path
	web, err := cs.CoreV1().Services("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check("/resolve?name=web.shop", web.Spec.ClusterIP)
	if _, err := get("/resolve?name=nope.shop.svc.cluster.local"); err == nil {
		t.Error("a name that is no Service resolved")
	}
	// From the test, through the node's resolver.
	if addrs, err := node.Resolver().LookupHost(ctx, "web.shop.svc.cluster.local"); err != nil || !slices.Equal(addrs, []string{web.Spec.ClusterIP}) {
		t.Errorf("web.shop.svc.cluster.local: %v %v", addrs, err)
	}
	var dnsErr *net.DNSError
	if _, err := node.Resolver().LookupHost(ctx, "nope.shop.svc.cluster.local"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("nope.shop.svc.cluster.local: %v, want not found", err)
	}
	if _, err := node.Resolver().LookupHost(ctx, "example.com"); err == nil {
		t.Error("example.com resolved: the cluster DNS must refuse names outside the cluster domain")
	}

	// The LoadBalancer Service, from the test's own namespace, with any
	// dialer.
	var lbIP string
	for deadline := time.Now().Add(30 * time.Second); lbIP == ""; time.Sleep(100 * time.Millisecond) {
		svc, err := cs.CoreV1().Services("shop").Get(ctx, "lb", metav1.GetOptions{})
		if err == nil && len(svc.Status.LoadBalancer.Ingress) == 1 {
			lbIP = svc.Status.LoadBalancer.Ingress[0].IP
		}
		if time.Now().After(deadline) {
			t.Fatalf("the LoadBalancer Service has no address: %v", err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + lbIP + "/hostname")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == "db-0" {
				break
			}
			err = fmt.Errorf("%s: %q", resp.Status, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("through the load balancer at %s: %v", lbIP, err)
		}
	}

	// pods/exec.
	exec := func(cmd []string, stdin string, tty bool) (string, string, error) {
		req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("shop").Name("db-0").SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "app", Command: cmd, Stdin: stdin != "", Stdout: true, Stderr: !tty, TTY: tty}, scheme.ParameterCodec)
		x, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		opts := remotecommand.StreamOptions{Stdout: &out, Tty: tty}
		if !tty {
			opts.Stderr = &errOut
		}
		if stdin != "" {
			opts.Stdin = strings.NewReader(stdin)
		}
		err = x.StreamWithContext(ctx, opts)
		return out.String(), errOut.String(), err
	}
	if out, _, err := exec([]string{"hostname"}, "", false); err != nil || strings.TrimSpace(out) != "db-0" {
		t.Errorf("exec hostname: %q %v", out, err)
	}
	if out, _, err := exec([]string{"cat", "/etc/secret-volume/crt"}, "", false); err != nil || out != "CERT" {
		t.Errorf("exec cat: %q %v", out, err)
	}
	if out, _, err := exec([]string{"ls", "-A", "/tmp"}, "", false); err != nil || out != "" {
		t.Errorf("exec ls /tmp: %q %v (want the empty emptyDir)", out, err)
	}
	if out, _, err := exec([]string{"cat"}, "from stdin", false); err != nil || out != "from stdin" {
		t.Errorf("exec cat with stdin: %q %v", out, err)
	}
	out, errOut, err := exec([]string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "", false)
	var exitErr utilexec.CodeExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 3 || out != "out\n" || errOut != "err\n" {
		t.Errorf("exec exit 3: %q %q %v", out, errOut, err)
	}
	if out, _, err := exec([]string{"tty"}, "", true); err != nil || !strings.HasPrefix(out, "/dev/pts/") {
		t.Errorf("exec tty: %q %v", out, err)
	}
	if out, _, err := exec([]string{"ip", "-4", "-o", "addr", "show", "eth0"}, "", false); err != nil || !strings.Contains(out, ip+"/") {
		t.Errorf("exec ip addr: %q %v", out, err)
	}

	// pods/log.
	logs := cs.CoreV1().Pods("shop").GetLogs("db-0", &corev1.PodLogOptions{Container: "app"})
	if b, err := logs.DoRaw(ctx); err != nil || !strings.Contains(string(b), "sandbox started") {
		t.Errorf("logs: %q %v", b, err)
	}
	stream, err := cs.CoreV1().Pods("shop").GetLogs("db-0", &corev1.PodLogOptions{Container: "app", Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if _, err := get("/say?text=" + url.QueryEscape("followed line")); err != nil {
		t.Fatal(err)
	}
	for followed := false; !followed; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the followed log ended")
			}
			followed = l == "followed line"
		case <-ctx.Done():
			t.Fatal("the followed log never had the new line")
		}
	}
	if b, err := cs.CoreV1().Pods("shop").GetLogs("db-0", &corev1.PodLogOptions{Container: "app", TailLines: ptrTo[int64](1)}).DoRaw(ctx); err != nil || string(b) != "followed line\n" {
		t.Errorf("logs tailLines=1: %q %v", b, err)
	}

	// timestamps, and sinceTime (whole seconds on the wire): a line written
	// after a second's boundary is the only one since it.
	if b, err := cs.CoreV1().Pods("shop").GetLogs("db-0", &corev1.PodLogOptions{Container: "app", Timestamps: true}).DoRaw(ctx); err != nil {
		t.Error(err)
	} else if first, _, _ := strings.Cut(string(b), "\n"); !strings.HasSuffix(first, " sandbox started") {
		t.Errorf("logs with timestamps: first line %q", first)
	} else if _, err := time.Parse(time.RFC3339Nano, strings.TrimSuffix(first, " sandbox started")); err != nil {
		t.Errorf("logs with timestamps: %v", err)
	}
	mark := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(mark))
	if _, err := get("/say?text=late"); err != nil {
		t.Fatal(err)
	}
	if b, err := cs.CoreV1().Pods("shop").GetLogs("db-0", &corev1.PodLogOptions{Container: "app", SinceTime: &metav1.Time{Time: mark}}).DoRaw(ctx); err != nil || string(b) != "late\n" {
		t.Errorf("logs sinceTime: %q %v", b, err)
	}

	// The host is untouched.
	if h, _ := os.Hostname(); h != hostHostname {
		t.Errorf("the host's hostname is now %q", h)
	}
	for _, p := range []string{"/etc/secret-volume", "/cert.crt"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists on the host", p)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestNodeTrellisProxyInit runs trellis-proxy's init, the init container
// that injection adds, from the real binary (TrellisProxyImage): it
// installs the capture rules in the pod's network namespace, where
// pods/exec sees them, and the app container starts after it.
func TestNodeTrellisProxyInit(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	c.StartNode(t, kubetest.NodeOptions{Images: map[string]kubetest.Image{
		"trellis-proxy:test": kubetest.TrellisProxyImage(t),
		"example.com/sandbox:1": func(ct *corev1.Container) ([]string, []string, bool) {
			return []string{os.Args[0]}, []string{roleEnv + "=sandbox"}, true
		},
	}})
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "trellis-init", Image: "trellis-proxy:test",
			Args: []string{"init", "--mode", "iptables", "--proxy-uid", "1337"}}},
		Containers: []corev1.Container{{Name: "app", Image: "example.com/sandbox:1",
			Env: []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, cs, "app", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	out, err := podExec(ctx, c, "shop", "app", "app", "iptables-save", "-t", "nat")
	if err != nil || !strings.Contains(out, "--to-ports 15001") || !strings.Contains(out, "--to-ports 15006") {
		t.Errorf("the pod's nat table: %v\n%s", err, out)
	}
}

// podExec runs a command in a pod's container through pods/exec and
// returns its output.
func podExec(ctx context.Context, c *kubetest.Cluster, ns, pod, container string, cmd ...string) (string, error) {
	cs := kubernetes.NewForConfigOrDie(c.Config)
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	x, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var out, errOut bytes.Buffer
	err = x.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, errOut.String())
	}
	return out.String(), nil
}
