package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"trellis.dev/trellis/internal/netnstest"
)

// A Node plays the scheduler and the kubelet of a test cluster, which
// has neither: pods that name no node are bound to it, and each pod bound
// to it runs as processes in a network namespace of its own (package
// netnstest), whose address is the pod's IP.
//
//	node registered ──► Lease in kube-node-lease renewed, status heartbeats (lease.go)
//	pod created ──bind──► nodeName = node ──► namespace + address (status.podIP)
//	  volumes: emptyDir, configMap, secret (with items), projected service
//	           account tokens (TokenRequest, bound to the pod), in a
//	           directory per pod
//	  init containers one after the other; a native sidecar (restartPolicy
//	  Always) is started, and the next waits for its startup probe
//	  containers, each a process: Image maps the container's image to a
//	  command line; $(VAR) references expanded, env from the downward API,
//	  run as the container's runAsUser/runAsGroup, in UTS and mount
//	  namespaces of its own (sandbox.go, podenv.go): the pod's hostname,
//	  /etc/hosts and /etc/resolv.conf (the node's cluster DNS, dns.go),
//	  volumes at their mountPaths, /cert.crt and /cert.key
//	  output to a log per container, served with /exec by the node's
//	  kubelet API (kubelet.go) for pods/log and pods/exec
//	  probes (httpGet, tcpSocket) sent from the node's own namespace on the
//	  bridge, as kubelet probes from the node ──► Ready conditions; a
//	  container without a readiness probe is Ready once it listens
//	  (readiness.go)
//	pod deleted ──► processes stopped, the pod object removed
type Node struct {
	Name string
	// Net holds the pods' namespaces; NS and IP are the node's own.
	Net    *netnstest.Net
	NS, IP string

	c      *Cluster
	cs     kubernetes.Interface
	images map[string]Image
	dir    string
	t      testing.TB
	ctx    context.Context

	certFile, keyFile string // every container's /cert.crt and /cert.key
	kubeletPort       int
	records           *informerRecords // Services and EndpointSlices (dns.go)

	mu   sync.Mutex
	pods map[types.UID]*podRun
	wg   sync.WaitGroup
}

// Image plays a container: the command line of a process, and environment
// to add, for the container as resolved: its command and args, expanded,
// are all in Args.
// ok false means the image is unknown here: the pod fails.
type Image func(c *corev1.Container) (argv, env []string, ok bool)

// NodeOptions configure StartNode.
type NodeOptions struct {
	// Name of the node; default "trellis-node".
	Name string
	// Images by image reference, or by repository (the reference without
	// tag or digest) for every tag; ConformanceImages has the Gateway API
	// conformance suite's.
	Images map[string]Image
	// HeartbeatPeriod is how often the node renews its Lease and posts
	// its status; default 10 s, as kubelet.
	HeartbeatPeriod time.Duration
	// LoadBalancers makes the node serve Services of type LoadBalancer on
	// loopback addresses of the test process (loadbalancer.go); without
	// it they get no address, as on a cluster without a load balancer.
	LoadBalancers bool
}

// StartNode registers a node and runs the cluster's pods on it until the
// test ends.
func (c *Cluster) StartNode(t testing.TB, o NodeOptions) *Node {
	t.Helper()
	// The pods' directories must be reachable by the users their
	// containers run as: not under t.TempDir, which only root may enter.
	dir, err := os.MkdirTemp("", "kubetest-node-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &Node{Name: o.Name, c: c, cs: kubernetes.NewForConfigOrDie(c.Config), images: o.Images, dir: dir, t: t,
		pods: map[types.UID]*podRun{}}
	if n.Name == "" {
		n.Name = "trellis-node"
	}
	n.Net = netnstest.New(t)
	n.NS, n.IP = n.Net.Add("node")
	ctx, cancel := context.WithCancel(context.Background())
	n.ctx = ctx
	t.Cleanup(func() {
		cancel()
		n.wg.Wait()
	})
	n.certFile, n.keyFile = filepath.Join(dir, "cert.crt"), filepath.Join(dir, "cert.key")
	if err := os.WriteFile(n.certFile, c.pki.podCertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.keyFile, c.pki.podKeyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.startDNS(ctx); err != nil {
		t.Fatalf("kubetest: node %s: cluster DNS: %v", n.Name, err)
	}
	if n.kubeletPort, err = n.serveKubeletAPI(); err != nil {
		t.Fatalf("kubetest: node %s: kubelet API: %v", n.Name, err)
	}
	if o.LoadBalancers {
		n.startLoadBalancers(ctx)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
		corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: goarch}}}
	if _, err := n.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: registering node %s: %v", n.Name, err)
	}
	if err := n.postStatus(ctx); err != nil {
		t.Fatalf("kubetest: node %s status: %v", n.Name, err)
	}
	period := o.HeartbeatPeriod
	if period <= 0 {
		period = 10 * time.Second
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.heartbeat(ctx, period)
	}()
	w, err := n.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("kubetest: watching pods: %v", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				n.stopAll()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					// The watch ended (a timeout): start another, which
					// begins with every pod again (handle is idempotent).
					time.Sleep(100 * time.Millisecond)
					if nw, err := n.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{}); err == nil {
						w = nw
					}
					continue
				}
				if pod, ok := ev.Object.(*corev1.Pod); ok {
					n.handle(ev.Type, pod)
				}
			}
		}
	}()
	return n
}

func (n *Node) logf(format string, args ...any) {
	if os.Getenv("TRELLIS_TEST_LOGS") != "" {
		fmt.Fprintf(os.Stderr, "kubetest node: "+format+"\n", args...)
	}
}

// handle binds new pods and starts and stops the node's.
func (n *Node) handle(typ watch.EventType, pod *corev1.Pod) {
	switch {
	case typ == watch.Deleted:
		n.stop(pod.UID, false)
	case pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil:
		err := n.cs.CoreV1().Pods(pod.Namespace).Bind(n.ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: n.Name},
		}, metav1.CreateOptions{})
		if err != nil && n.ctx.Err() == nil {
			n.logf("binding %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	case pod.Spec.NodeName != n.Name:
	case pod.DeletionTimestamp != nil:
		go n.stop(pod.UID, true)
	default:
		n.mu.Lock()
		_, running := n.pods[pod.UID]
		if !running && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
			r := &podRun{n: n, pod: pod.DeepCopy(), stopped: make(chan struct{})}
			n.pods[pod.UID] = r
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				r.run()
			}()
		}
		n.mu.Unlock()
	}
}

// stop stops a pod's processes; remove then deletes the pod object, as
// kubelet ends a graceful deletion.
func (n *Node) stop(uid types.UID, remove bool) {
	n.mu.Lock()
	r := n.pods[uid]
	delete(n.pods, uid)
	n.mu.Unlock()
	if r == nil {
		return
	}
	r.stop()
	if remove {
		zero := int64(0)
		err := n.cs.CoreV1().Pods(r.pod.Namespace).Delete(context.Background(), r.pod.Name,
			metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && n.ctx.Err() == nil {
			n.logf("deleting %s/%s: %v", r.pod.Namespace, r.pod.Name, err)
		}
	}
}

func (n *Node) stopAll() {
	n.mu.Lock()
	runs := slices.Collect(maps.Values(n.pods))
	n.pods = map[types.UID]*podRun{}
	n.mu.Unlock()
	for _, r := range runs {
		r.stop()
	}
}

// podRun is one pod on the node.
type podRun struct {
	n   *Node
	pod *corev1.Pod
	ns  string // network namespace
	ip  string
	dir string

	hostname string
	listened map[string]bool // containers without a readiness probe that have listened (readiness.go)

	mu       sync.Mutex
	procs    map[string]*proc
	ready    map[string]bool
	started  map[string]bool
	stopping bool
	stopped  chan struct{}
	once     sync.Once
}

func (r *podRun) logf(format string, args ...any) {
	r.n.logf("%s/%s: "+format, append([]any{r.pod.Namespace, r.pod.Name}, args...)...)
}

// run starts the pod and probes it until it is stopped.
func (r *podRun) run() {
	defer r.once.Do(func() { close(r.stopped) })
	p := r.pod
	r.procs, r.ready, r.started = map[string]*proc{}, map[string]bool{}, map[string]bool{}
	// Unique by the pod's UID, readable by its names.
	name := fmt.Sprintf("%.8s-%s-%s", p.UID, p.Namespace, p.Name)
	if len(name) > 40 {
		name = name[:40]
	}
	ns, ip := r.n.Net.Add(name)
	// As a CNI plugin does, a default route through the node: traffic to
	// a Service's ClusterIP leaves the pod (there is no kube-proxy to
	// answer it, but a sidecar's capture rules take it first).
	r.n.Net.IP("-n", ns, "route", "add", "default", "via", r.n.IP)
	r.mu.Lock()
	r.ns, r.ip = ns, ip
	r.mu.Unlock()
	if err := applySysctls(ns, p); err != nil {
		r.fail(err.Error())
		return
	}
	r.dir = filepath.Join(r.n.dir, string(p.UID))
	now := metav1.Now()
	p.Status.Phase = corev1.PodPending
	p.Status.HostIP, p.Status.PodIP = r.n.IP, r.ip
	p.Status.HostIPs, p.Status.PodIPs = []corev1.HostIP{{IP: r.n.IP}}, []corev1.PodIP{{IP: r.ip}}
	p.Status.StartTime = &now
	r.setCondition(corev1.PodScheduled, true, "")
	r.writeStatus()
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		r.fail(err.Error())
		return
	}
	// Like kubelet, wait for what volumes need (the ConfigMap
	// kube-root-ca.crt, made by a controller, may come after the pod).
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := r.volumes()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || r.n.ctx.Err() != nil {
			r.fail("volumes: " + err.Error())
			return
		}
		select {
		case <-r.stopped:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := r.writeEtc(); err != nil {
		r.fail(err.Error())
		return
	}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			if err := r.start(c); err != nil {
				r.fail(fmt.Sprintf("init container %s: %v", c.Name, err))
				return
			}
			if !r.waitStarted(c) {
				return
			}
			continue
		}
		if err := r.runToCompletion(c); err != nil {
			r.fail(fmt.Sprintf("init container %s: %v", c.Name, err))
			return
		}
	}
	r.setCondition(corev1.PodInitialized, true, "")
	for i := range p.Spec.Containers {
		if err := r.start(&p.Spec.Containers[i]); err != nil {
			r.fail(fmt.Sprintf("container %s: %v", p.Spec.Containers[i].Name, err))
			return
		}
	}
	p.Status.Phase = corev1.PodRunning
	r.probeLoop()
}

func (r *podRun) fail(msg string) {
	r.logf("failed: %s", msg)
	r.pod.Status.Phase = corev1.PodFailed
	r.pod.Status.Message = msg
	r.writeStatus()
	r.stop()
}

// PodReady reports whether a pod's Ready condition is True, as the node
// sets it once every container's readiness holds.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (r *podRun) setCondition(t corev1.PodConditionType, ok bool, reason string) {
	st := corev1.ConditionFalse
	if ok {
		st = corev1.ConditionTrue
	}
	for i, c := range r.pod.Status.Conditions {
		if c.Type == t {
			if c.Status != st {
				r.pod.Status.Conditions[i].Status, r.pod.Status.Conditions[i].Reason = st, reason
				r.pod.Status.Conditions[i].LastTransitionTime = metav1.Now()
			}
			return
		}
	}
	r.pod.Status.Conditions = append(r.pod.Status.Conditions, corev1.PodCondition{Type: t, Status: st, Reason: reason, LastTransitionTime: metav1.Now()})
}

// writeStatus writes the pod's status, with its container statuses.
func (r *podRun) writeStatus() {
	r.mu.Lock()
	var statuses []corev1.ContainerStatus
	for _, c := range r.pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: r.ready[c.Name]}
		if r.procs[c.Name] != nil {
			started := r.started[c.Name]
			cs.Started = &started
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
		} else {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
		}
		statuses = append(statuses, cs)
	}
	r.mu.Unlock()
	r.pod.Status.ContainerStatuses = statuses
	for i := 0; i < 5 && r.n.ctx.Err() == nil; i++ {
		cur, err := r.n.cs.CoreV1().Pods(r.pod.Namespace).Get(r.n.ctx, r.pod.Name, metav1.GetOptions{})
		if err != nil {
			return
		}
		cur.Status = r.pod.Status
		if _, err = r.n.cs.CoreV1().Pods(r.pod.Namespace).UpdateStatus(r.n.ctx, cur, metav1.UpdateOptions{}); err == nil {
			return
		}
	}
}

// volumes fills a directory per volume.
func (r *podRun) volumes() error {
	ctx := r.n.ctx
	p := r.pod
	for _, v := range p.Spec.Volumes {
		dir := filepath.Join(r.dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		os.Chmod(dir, 0o777)
		files := map[string][]byte{}
		switch {
		case v.EmptyDir != nil:
		case v.ConfigMap != nil:
			cm, err := r.n.cs.CoreV1().ConfigMaps(p.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			data := map[string][]byte{}
			for k, val := range cm.Data {
				data[k] = []byte(val)
			}
			maps.Copy(data, cm.BinaryData)
			if err := keyFiles(files, data, v.ConfigMap.Items); err != nil {
				return fmt.Errorf("volume %s: ConfigMap %s: %w", v.Name, cm.Name, err)
			}
		case v.Secret != nil:
			s, err := r.n.cs.CoreV1().Secrets(p.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := keyFiles(files, s.Data, v.Secret.Items); err != nil {
				return fmt.Errorf("volume %s: Secret %s: %w", v.Name, s.Name, err)
			}
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					sat := src.ServiceAccountToken
					req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
						ExpirationSeconds: sat.ExpirationSeconds,
						BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID},
					}}
					if sat.Audience != "" {
						req.Spec.Audiences = []string{sat.Audience}
					}
					sa := p.Spec.ServiceAccountName
					if sa == "" {
						sa = "default"
					}
					tr, err := r.n.cs.CoreV1().ServiceAccounts(p.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
					if err != nil {
						return fmt.Errorf("volume %s: token of service account %s: %w", v.Name, sa, err)
					}
					files[sat.Path] = []byte(tr.Status.Token)
				case src.ConfigMap != nil:
					cm, err := r.n.cs.CoreV1().ConfigMaps(p.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
					if err != nil {
						return fmt.Errorf("volume %s: %w", v.Name, err)
					}
					for k, val := range cm.Data {
						files[k] = []byte(val)
					}
				case src.Secret != nil:
					if err := r.projectSecret(src.Secret, files); err != nil {
						return fmt.Errorf("volume %s: %w", v.Name, err)
					}
				case src.DownwardAPI != nil:
					for _, item := range src.DownwardAPI.Items {
						if item.FieldRef == nil {
							continue
						}
						val, err := r.field(item.FieldRef.FieldPath)
						if err != nil {
							return fmt.Errorf("volume %s: %w", v.Name, err)
						}
						files[item.Path] = []byte(val)
					}
				}
			}
		default:
			return fmt.Errorf("volume %s: only emptyDir, configMap, secret and projected volumes run here", v.Name)
		}
		for name, data := range files {
			path := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve returns the container's command line and environment, as
// kubelet would give them.
func (r *podRun) resolve(c *corev1.Container) (argv, env []string, err error) {
	vars := map[string]string{}
	expand := func(s string) string {
		var b strings.Builder
		for {
			i := strings.Index(s, "$(")
			if i < 0 {
				b.WriteString(s)
				return b.String()
			}
			j := strings.Index(s[i:], ")")
			if j < 0 {
				b.WriteString(s)
				return b.String()
			}
			b.WriteString(s[:i])
			name := s[i+2 : i+j]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+j+1])
			}
			s = s[i+j+1:]
		}
	}
	for _, e := range c.Env {
		val := expand(e.Value)
		if f := e.ValueFrom; f != nil {
			switch {
			case f.FieldRef != nil:
				if val, err = r.field(f.FieldRef.FieldPath); err != nil {
					return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
				}
			default:
				return nil, nil, fmt.Errorf("env %s: only fieldRef is served here", e.Name)
			}
		}
		vars[e.Name] = val
		env = append(env, e.Name+"="+val)
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		argv = append(argv, expand(a))
	}
	resolved := c.DeepCopy()
	resolved.Command, resolved.Args = nil, argv
	img := r.n.images[c.Image]
	if img == nil {
		// An image known by its repository runs for every tag.
		img = r.n.images[imageRepository(c.Image)]
	}
	if img == nil {
		return nil, nil, fmt.Errorf("image %s is not known here (ErrImagePull)", c.Image)
	}
	run, extra, ok := img(resolved)
	if !ok {
		return nil, nil, fmt.Errorf("image %s cannot run %v", c.Image, argv)
	}
	return run, append(env, extra...), nil
}

// field is a pod field of the downward API.
func (r *podRun) field(path string) (string, error) {
	p := r.pod
	switch path {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "spec.nodeName":
		return r.n.Name, nil
	case "status.podIP":
		return r.ip, nil
	case "status.hostIP":
		return r.n.IP, nil
	}
	return "", fmt.Errorf("field %s is not served here", path)
}

// command is the process of a container, to be started in its sandbox
// (sandbox.go), as the container's user.
func (r *podRun) command(c *corev1.Container) (*exec.Cmd, *sandbox, *containerLog, error) {
	argv, env, err := r.resolve(c)
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if cmd.Err != nil {
		return nil, nil, nil, cmd.Err
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = c.WorkingDir
	log, err := openContainerLog(r.logPath(c.Name))
	if err != nil {
		return nil, nil, nil, err
	}
	// One writer for both streams, so one copying goroutine (logs.go).
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 2 * time.Second // children keeping the output open
	sb, err := r.sandbox(c)
	if err != nil {
		log.Close()
		return nil, nil, nil, err
	}
	sb.UID, sb.GID = r.user(c)
	return cmd, sb, log, nil
}

func (r *podRun) user(c *corev1.Container) (uid, gid int64) {
	if sc := r.pod.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if gid == 0 {
		gid = uid
	}
	return uid, gid
}

// PodNS returns the network namespace a pod runs in, "" when it does not
// run here.
func (n *Node) PodNS(namespace, name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.pods {
		if r.pod.Namespace == namespace && r.pod.Name == name {
			r.mu.Lock()
			ns := r.ns
			r.mu.Unlock()
			return ns
		}
	}
	return ""
}

// Log returns the last lines a container of a pod wrote.
func (n *Node) Log(pod *corev1.Pod, container string) string {
	return tail(filepath.Join(n.dir, string(pod.UID), container+".log"))
}

func (r *podRun) logPath(container string) string { return filepath.Join(r.dir, container+".log") }

func (r *podRun) runToCompletion(c *corev1.Container) error {
	cmd, sb, log, err := r.command(c)
	if err != nil {
		return err
	}
	if err := sb.start(cmd); err != nil {
		log.Close()
		return err
	}
	err = cmd.Wait()
	log.Close()
	if err != nil {
		return fmt.Errorf("%w: %s", err, tail(r.logPath(c.Name)))
	}
	return nil
}

// start starts a long-running container; restartPolicy Always restarts it
// when it exits, after a second.
func (r *podRun) start(c *corev1.Container) error {
	cmd, sb, log, err := r.command(c)
	if err != nil {
		return err
	}
	pr := &proc{cmd: cmd, done: make(chan struct{})}
	if err := sb.start(cmd); err != nil {
		log.Close()
		return err
	}
	r.mu.Lock()
	r.procs[c.Name] = pr
	if c.StartupProbe == nil {
		r.started[c.Name] = true
	}
	if c.ReadinessProbe == nil {
		r.ready[c.Name] = true
	}
	// A pod stopped while this container was starting has already
	// signalled the processes it knew of: this one goes at once.
	if r.stopping {
		_ = cmd.Process.Kill()
	}
	r.mu.Unlock()
	r.n.wg.Add(1)
	go func() {
		defer r.n.wg.Done()
		err := cmd.Wait()
		log.Close()
		close(pr.done)
		r.mu.Lock()
		stopping := r.stopping
		r.mu.Unlock()
		if stopping {
			return
		}
		r.logf("container %s exited: %v: %s", c.Name, err, tail(r.logPath(c.Name)))
		select {
		case <-r.stopped:
		case <-time.After(time.Second):
			if err := r.start(c); err != nil {
				r.logf("restarting %s: %v", c.Name, err)
			}
		}
	}()
	return nil
}

// waitStarted waits for a native sidecar's startup probe; false when the
// pod stopped first.
func (r *podRun) waitStarted(c *corev1.Container) bool {
	if c.StartupProbe == nil {
		return true
	}
	for {
		if r.probe(c.StartupProbe) == nil {
			r.mu.Lock()
			r.started[c.Name] = true
			r.mu.Unlock()
			return true
		}
		select {
		case <-r.stopped:
			return false
		case <-time.After(probePeriod(c.StartupProbe)):
		}
	}
}

func probePeriod(p *corev1.Probe) time.Duration {
	if p.PeriodSeconds > 0 && p.PeriodSeconds < 2 {
		return time.Duration(p.PeriodSeconds) * time.Second
	}
	return 500 * time.Millisecond // shorter than kubelet's 10 s: tests wait less
}

// probeLoop runs the containers' readiness and startup probes, and writes
// the pod's status when readiness changes.
func (r *podRun) probeLoop() {
	r.writeStatus()
	last := ""
	for {
		allReady := true
		for _, c := range r.pod.Spec.Containers {
			ready := true
			if c.StartupProbe != nil && !r.isStarted(c.Name) {
				if r.probe(c.StartupProbe) == nil {
					r.mu.Lock()
					r.started[c.Name] = true
					r.mu.Unlock()
				} else {
					ready = false
				}
			}
			if ready && c.ReadinessProbe != nil {
				err := r.probe(c.ReadinessProbe)
				ready = err == nil
				if err != nil {
					r.logf("readiness of %s: %v", c.Name, err)
				}
			}
			if ready && c.ReadinessProbe == nil {
				ready = r.listening(&c)
			}
			r.mu.Lock()
			ready = ready && r.procs[c.Name] != nil
			r.ready[c.Name] = ready
			r.mu.Unlock()
			allReady = allReady && ready
		}
		state := fmt.Sprint(allReady, r.readyList())
		if state != last {
			last = state
			r.setCondition(corev1.ContainersReady, allReady, "")
			r.setCondition(corev1.PodReady, allReady, "")
			r.writeStatus()
		}
		select {
		case <-r.stopped:
			return
		case <-r.n.ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (r *podRun) isStarted(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[name]
}

func (r *podRun) readyList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n, ok := range r.ready {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// probe runs one probe from the node's namespace, as kubelet probes pods
// from the node.
func (r *podRun) probe(p *corev1.Probe) error {
	timeout := time.Second * time.Duration(max(p.TimeoutSeconds, 1))
	ctx, cancel := context.WithTimeout(r.n.ctx, timeout)
	defer cancel()
	dial := netnstest.Dialer(r.n.NS)
	port := func(ip intstr.IntOrString) string {
		if ip.Type == intstr.Int {
			return strconv.Itoa(int(ip.IntVal))
		}
		for _, c := range append(slices.Clone(r.pod.Spec.Containers), r.pod.Spec.InitContainers...) {
			for _, cp := range c.Ports {
				if cp.Name == ip.StrVal {
					return strconv.Itoa(int(cp.ContainerPort))
				}
			}
		}
		return ip.StrVal
	}
	switch {
	case p.HTTPGet != nil:
		h := p.HTTPGet
		scheme := "http"
		if h.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		host := h.Host
		if host == "" {
			host = r.ip
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port(h.Port))+h.Path, nil)
		if err != nil {
			return err
		}
		for _, hd := range h.HTTPHeaders {
			req.Header.Set(hd.Name, hd.Value)
		}
		req.Header.Set("User-Agent", "kube-probe/kubetest")
		client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe: %s", resp.Status)
		}
		return nil
	case p.TCPSocket != nil:
		host := p.TCPSocket.Host
		if host == "" {
			host = r.ip
		}
		c, err := dial(ctx, "tcp", net.JoinHostPort(host, port(p.TCPSocket.Port)))
		if err != nil {
			return err
		}
		return c.Close()
	case p.Exec != nil:
		return errors.New("exec probes do not run here")
	}
	return errors.New("a probe of a kind that does not run here")
}

// proc is a container's process; done is closed once it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop stops the pod's processes: SIGTERM, then SIGKILL after 10 s.
func (r *podRun) stop() {
	r.mu.Lock()
	r.stopping = true
	procs := slices.Collect(maps.Values(r.procs))
	r.mu.Unlock()
	r.once.Do(func() { close(r.stopped) })
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}
