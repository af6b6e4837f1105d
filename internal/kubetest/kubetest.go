// Package kubetest runs a real Kubernetes control plane for tests, on
// loopback, started by the test itself:
//
//	etcd (internal/etcdtest) ◄── kube-apiserver ◄── kube-controller-manager
//	                                   ▲             (EndpointSlices, namespaces,
//	                                   │              service accounts)
//	                              test's client (*rest.Config, kubeconfig)
//
//	c := kubetest.Start(t)
//	cs := kubernetes.NewForConfigOrDie(c.Config)
//
// There is no kubelet and no scheduler: tests either create Pods and set
// their status (phase, pod IP, conditions) themselves, or start a Node
// (node.go), which binds pods to itself and runs their containers as
// processes in network namespaces of their own (package netnstest), with
// an Image function per image reference saying which command plays it.
//
// kube-apiserver and kube-controller-manager are built from
// k8s.io/kubernetes at the version matching the client-go in go.mod by
//
//	go run ./hack/dev k8s-binaries
//
// into $TRELLIS_K8S_BIN, or else the user's cache directory under
// trellis/k8s/VERSION. Without them Start skips the test, naming that
// command; under CI (CI=true) it fails instead, since .ci/run builds them.
// Every process is killed when the test ends, and on Linux also when the
// test process dies.
package kubetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"trellis.dev/trellis/internal/etcdtest"
)

// BuildCommand builds the binaries that Start needs.
const BuildCommand = "go run ./hack/dev k8s-binaries"

// ServiceCIDR is the cluster's --service-cluster-ip-range. ClusterIPs are
// only allocated from it; nothing routes it.
const ServiceCIDR = "10.96.0.0/16"

// APIServerPort is kube-apiserver's secure port on the cluster's address.
const APIServerPort = "6443"

// Cluster is a running control plane.
type Cluster struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for the same admin.
	Kubeconfig string
	// Version is the Kubernetes version, such as v1.37.2.
	Version string
	// IP is the loopback address that etcd and kube-apiserver listen on.
	IP string

	t     testing.TB
	dir   string
	procs []*process
	pki   *pki
}

// Version returns the Kubernetes version matching the client-go that the
// module requires (client-go v0.X.Y goes with Kubernetes v1.X.Y), asking
// the go command, since test binaries carry no module information.
func Version() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/client-go").Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: go list -m k8s.io/client-go: %w", err)
	}
	clientGo := strings.TrimSpace(string(out))
	if rest, ok := strings.CutPrefix(clientGo, "v0."); ok {
		return "v1." + rest, nil
	}
	return "", fmt.Errorf("kubetest: unexpected k8s.io/client-go version %q", clientGo)
}

// BinDir returns the directory holding kube-apiserver and
// kube-controller-manager for version: $TRELLIS_K8S_BIN, or else
// trellis/k8s/VERSION in the user's cache directory (as hack/dev
// k8s-binaries writes it).
func BinDir(version string) (string, error) {
	if dir := os.Getenv("TRELLIS_K8S_BIN"); dir != "" {
		return filepath.Abs(dir)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "trellis", "k8s", version), nil
}

// binaries returns the paths of kube-apiserver and kube-controller-manager,
// skipping the test (failing it under CI) when they are missing.
func binaries(t testing.TB) (version, apiserver, controllerManager string) {
	t.Helper()
	version, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := BinDir(version)
	if err != nil {
		t.Fatal(err)
	}
	apiserver = filepath.Join(dir, "kube-apiserver")
	controllerManager = filepath.Join(dir, "kube-controller-manager")
	for _, p := range []string{apiserver, controllerManager} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("kubetest: no %s %s in %s; build them with `%s` (a few minutes, once per version)",
				filepath.Base(p), version, dir, BuildCommand)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return version, apiserver, controllerManager
}

// Start runs etcd, kube-apiserver and kube-controller-manager on a free
// loopback address, waits until the API server is ready, and stops them
// all when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	version, apiserverBin, kcmBin := binaries(t)
	start := time.Now()
	c := &Cluster{t: t, Version: version, IP: freeIP(t), dir: t.TempDir()}
	etcd := etcdtest.Start(t, c.IP)
	// Registered after etcd's, so run before it: the API server goes first.
	t.Cleanup(c.cleanup)

	pki, err := newPKI(c.dir, c.IP)
	if err != nil {
		t.Fatal(err)
	}
	c.pki = pki
	server := "https://" + net.JoinHostPort(c.IP, APIServerPort)
	c.Config = &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pki.caPEM,
			CertData: pki.adminCertPEM,
			KeyData:  pki.adminKeyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
	c.Kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, server, pki); err != nil {
		t.Fatal(err)
	}

	c.run("kube-apiserver", apiserverBin,
		"--etcd-servers", strings.Join(etcd.Endpoints(), ","),
		"--bind-address", c.IP,
		"--advertise-address", c.IP,
		"--secure-port", APIServerPort,
		"--tls-cert-file", pki.servingCert,
		"--tls-private-key-file", pki.servingKey,
		"--client-ca-file", pki.caCert,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki.saPub,
		"--service-account-signing-key-file", pki.saKey,
		"--service-cluster-ip-range", ServiceCIDR,
		// The default reconciler writes the kubernetes Service's
		// endpoints with the advertise address, which it refuses on
		// loopback.
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(c.dir, "apiserver-certs"),
		// The test nodes' kubelet API (pods/exec, pods/log), which they
		// serve on the cluster's loopback address, given as the node's
		// Hostname address (kubelet.go).
		"--kubelet-client-certificate", pki.kubeletClientCert,
		"--kubelet-client-key", pki.kubeletClientKey,
		"--kubelet-certificate-authority", pki.caCert,
		"--kubelet-preferred-address-types", "Hostname",
		"--v", "1",
	)
	c.waitReady()

	c.run("kube-controller-manager", kcmBin,
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		// No serving port: nothing scrapes it here.
		"--secure-port", "0",
		"--controllers", strings.Join(controllers, ","),
		"--service-account-private-key-file", pki.saKey,
		"--root-ca-file", pki.caCert,
		"--service-cluster-ip-range", ServiceCIDR,
		"--v", "1",
	)
	t.Logf("kubetest: Kubernetes %s on %s ready in %s", version, server, time.Since(start).Round(time.Millisecond))
	return c
}

// controllers are the kube-controller-manager controllers that run: the
// ones a cluster needs for Services, namespaces and service accounts, and
// those that make pods of StatefulSets, Deployments and their ReplicaSets
// (which a Node runs).
var controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"garbage-collector-controller",
}

// freeIP returns an address in 127.0.0.0/8 on which the ports of etcd and
// kube-apiserver are free, so that tests of several packages can run at
// once.
func freeIP(t testing.TB) string {
	t.Helper()
	for range 100 {
		ip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(50), rand.IntN(256), 1+rand.IntN(254))
		free := true
		for _, port := range []string{etcdtest.ClientPort, etcdtest.PeerPort, APIServerPort} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return ip
		}
	}
	t.Fatal("kubetest: no free loopback address")
	return ""
}

// waitReady waits until kube-apiserver answers /readyz with ok.
func (c *Cluster) waitReady() {
	c.t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		c.t.Fatal(err)
	}
	apiserver := c.procs[len(c.procs)-1]
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return
		}
		select {
		case <-apiserver.exited:
			c.t.Fatalf("kubetest: kube-apiserver exited:\n%s", tail(apiserver.logPath))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kubetest: kube-apiserver not ready after 90s: %v %s\n%s", err, body, tail(apiserver.logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process is one running binary of the control plane.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

func (c *Cluster) run(name, bin string, args ...string) {
	c.t.Helper()
	p := &process{name: name, logPath: filepath.Join(c.dir, name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logFile.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("kubetest: starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	c.procs = append(c.procs, p)
}

// cleanup stops the processes in the reverse order of their start, before
// etcdtest stops etcd.
func (c *Cluster) cleanup() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.cmd.Process.Kill()
		<-p.exited
		if c.t.Failed() {
			c.t.Logf("%s log:\n%s", p.name, tail(p.logPath))
		}
	}
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
