package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"golang.org/x/sys/unix"
)

// The node serves the part of kubelet's API that the API server calls for
// pods/exec and pods/log, over HTTPS on the cluster's loopback address (the
// API server runs outside the pods' network), at a port of its own:
//
//	Node status  addresses: Hostname = the cluster's loopback address
//	             daemonEndpoints.kubeletEndpoint.port
//	kube-apiserver --kubelet-preferred-address-types=Hostname
//	             --kubelet-client-certificate (system:masters, the cluster's CA)
//	             --kubelet-certificate-authority (the cluster's CA)
//
//	/exec/NS/POD/CONTAINER and /exec/NS/POD/UID/CONTAINER
//	    the command, with nsenter, in the container's namespaces and root
//	    (sandbox.go), as its user and with its environment; stdin, stdout,
//	    stderr and a tty as asked; SPDY and WebSocket streams served by
//	    k8s.io/cri-streaming's remotecommand.ServeExec, which reports the
//	    exit code
//	/containerLogs/NS/POD/CONTAINER
//	    the container's output (stdout and stderr), with tailLines,
//	    limitBytes and follow
//
// Only clients with a certificate of the cluster's CA are served.

// serveKubeletAPI starts the kubelet API server and returns its port.
func (n *Node) serveKubeletAPI() (int, error) {
	p := n.c.pki
	cert, err := tls.X509KeyPair(p.kubeletCertPEM, p.kubeletKeyPEM)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	ln, err := net.Listen("tcp", net.JoinHostPort(n.c.IP, "0"))
	if err != nil {
		return 0, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", n.serveExec)
	mux.HandleFunc("/exec/{ns}/{pod}/{uid}/{container}", n.serveExec)
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", n.serveLogs)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
		// The streams hijack the connection; the API server sends no slow
		// headers.
		ReadHeaderTimeout: 30 * time.Second,
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_ = srv.ServeTLS(ln, "", "")
	}()
	n.t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// addresses are the node's addresses: InternalIP on the pods' network,
// and, as Hostname, the loopback address where the API server reaches the
// kubelet API.
func (n *Node) addresses() []corev1.NodeAddress {
	return []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.c.IP}}
}

// podRunByName returns the running pod namespace/name, with uid if not
// empty.
func (n *Node) podRunByName(namespace, name, uid string) *podRun {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.pods {
		if r.pod.Namespace == namespace && r.pod.Name == name && (uid == "" || string(r.pod.UID) == uid) {
			return r
		}
	}
	return nil
}

func (n *Node) serveExec(w http.ResponseWriter, req *http.Request) {
	opts, err := remotecommand.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := req.URL.Query()[corev1.ExecCommandParam]
	name := req.PathValue("ns") + "/" + req.PathValue("pod")
	remotecommand.ServeExec(w, req, executor{n}, name, req.PathValue("uid"), req.PathValue("container"), cmd, opts,
		4*time.Hour, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// executor runs /exec's commands.
type executor struct{ n *Node }

// exitError is a command's exit status, as remotecommand.ServeExec reads
// it (k8s.io/utils/exec.ExitError).
type exitError struct{ code int }

func (e exitError) Error() string   { return fmt.Sprintf("command terminated with exit code %d", e.code) }
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return e.code }

// ExecInContainer runs cmd in the container's namespaces, as its user, with
// its environment.
func (e executor) ExecInContainer(ctx context.Context, name, uid, container string, cmd []string, in io.Reader, out, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	ns, pod, _ := strings.Cut(name, "/")
	r := e.n.podRunByName(ns, pod, uid)
	if r == nil {
		return fmt.Errorf("pod %s is not running on node %s", name, e.n.Name)
	}
	c := r.container(container)
	if c == nil {
		return fmt.Errorf("pod %s has no container %q", name, container)
	}
	r.mu.Lock()
	pr := r.procs[container]
	r.mu.Unlock()
	if pr == nil || pr.exited() {
		return fmt.Errorf("container %s of pod %s is not running", container, name)
	}
	_, env, err := r.resolve(c)
	if err != nil {
		return err
	}
	argv := cmd
	if uid, gid := r.user(c); uid != 0 || gid != 0 {
		argv = append([]string{"setpriv", "--reuid", strconv.FormatInt(uid, 10), "--regid", strconv.FormatInt(gid, 10), "--clear-groups", "--"}, argv...)
	}
	argv = nsenterArgs(pr.cmd.Process.Pid, c.WorkingDir, argv)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	x := exec.CommandContext(ctx, argv[0], argv[1:]...)
	x.Env = append(os.Environ(), env...)
	x.WaitDelay = time.Second
	if tty {
		ptmx, pts, err := openPTY()
		if err != nil {
			return err
		}
		defer ptmx.Close()
		x.Stdin, x.Stdout, x.Stderr = pts, pts, pts
		x.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		go func() {
			for size := range resize {
				setWinsize(ptmx, size)
			}
		}()
		if err := x.Start(); err != nil {
			pts.Close()
			return err
		}
		pts.Close()
		if in != nil {
			go io.Copy(ptmx, in)
		}
		copied := make(chan struct{})
		go func() {
			// EIO once the command and its children have closed the
			// terminal.
			io.Copy(out, ptmx)
			close(copied)
		}()
		err = x.Wait()
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
		return execResult(err)
	}
	if in != nil {
		x.Stdin = in
	}
	if out != nil {
		x.Stdout = out
	}
	if stderr != nil {
		x.Stderr = stderr
	}
	return execResult(x.Run())
}

func execResult(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return exitError{ee.ExitCode()}
	}
	return err
}

// openPTY opens a pseudo-terminal: its controlling side and its terminal.
func openPTY() (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("unlocking the pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, pts, nil
}

func setWinsize(f *os.File, size remotecommand.TerminalSize) {
	_ = unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
}

// container returns the pod's container or init container named name.
func (r *podRun) container(name string) *corev1.Container {
	for i := range r.pod.Spec.Containers {
		if r.pod.Spec.Containers[i].Name == name {
			return &r.pod.Spec.Containers[i]
		}
	}
	for i := range r.pod.Spec.InitContainers {
		if r.pod.Spec.InitContainers[i].Name == name {
			return &r.pod.Spec.InitContainers[i]
		}
	}
	return nil
}
