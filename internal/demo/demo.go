// Package demo runs `trellis demo`: a whole mesh on one machine, as
// separate processes on loopback addresses.
//
//	curl ──► ingress gateway ══mTLS══► web sidecar ──► web app
//	  (IP:ingress-port)                     │ (outbound :9001)
//	                                        ╚══mTLS══► catalog sidecar ──► catalog app
//	                                                        │ (outbound :9002)
//	                                                        ╚══mTLS══► reviews v1 | v2 sidecar ──► app
//
// The control plane listens on IP (127.0.0.1 by default); every workload
// gets its own loopback address next to it (IP+10, +11, ...), so that each
// sidecar uses the standard ports (15008 mesh, 15000 admin) as it would on
// a host of its own. Everything stops and the data directory is removed
// when the context ends.
package demo

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/demo/app"
)

//go:embed mesh.yaml
var meshYAML string

// Ports of the demo.
const (
	DefaultIngressPort = 18080
	xdsPort            = 15012
	apiPort            = 15014
	meshPort           = 15008
	adminPort          = 15000
	appPort            = 8080
	namespace          = "demo"
)

// Options configure the demo.
type Options struct {
	// Trellis and Proxy are the paths of the two binaries.
	Trellis, Proxy string
	// IP is the loopback address of the control plane and the ingress.
	IP          netip.Addr
	IngressPort int
	// DataDir holds the control plane's data and the logs; empty means a
	// temporary directory removed at the end.
	DataDir string
	Stdout  io.Writer
	Log     *slog.Logger
}

// workload is one demo app instance behind its sidecar.
type workload struct {
	name, service, version, account string
	// next is the service the app calls, with the local outbound port.
	next     string
	nextPort int
}

var workloads = []workload{
	{name: "web-1", service: "web", version: "v1", account: "web", next: "catalog", nextPort: 9001},
	{name: "catalog-1", service: "catalog", version: "v1", account: "catalog", next: "reviews", nextPort: 9002},
	{name: "reviews-v1", service: "reviews", version: "v1", account: "reviews"},
	{name: "reviews-v2", service: "reviews", version: "v2", account: "reviews"},
}

// Addresses are where a running demo can be reached.
type Addresses struct {
	Ingress      string // URL
	ControlPlane string // API host:port
	XDS          string
}

// addrs derives the demo's addresses from opts.
func (o Options) addrs() Addresses {
	return Addresses{
		Ingress:      "http://" + net.JoinHostPort(o.IP.String(), strconv.Itoa(o.IngressPort)) + "/",
		ControlPlane: net.JoinHostPort(o.IP.String(), strconv.Itoa(apiPort)),
		XDS:          net.JoinHostPort(o.IP.String(), strconv.Itoa(xdsPort)),
	}
}

// workloadIP is the address of the i-th workload: IP+10+i.
func (o Options) workloadIP(i int) (netip.Addr, error) {
	a := o.IP.As4()
	n := int(a[3]) + 10 + i
	if n > 254 {
		return netip.Addr{}, fmt.Errorf("demo: no room for workload addresses after %s", o.IP)
	}
	a[3] = byte(n)
	return netip.AddrFrom4(a), nil
}

// CheckPorts fails at once, with a clear message, if the demo's fixed
// ports are taken (typically by another demo).
func CheckPorts(o Options) error {
	for _, port := range []int{xdsPort, apiPort, o.IngressPort} {
		addr := net.JoinHostPort(o.IP.String(), strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("demo: port %s is in use (%v): is another `trellis demo` or control plane running? Stop it, or pass --ip / --ingress-port", addr, errors.Unwrap(err))
		}
		ln.Close()
	}
	return nil
}

// Run starts the demo, prints where it is, and serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	if !o.IP.Is4() || !o.IP.IsLoopback() {
		return fmt.Errorf("demo: --ip %s must be an IPv4 loopback address", o.IP)
	}
	if o.IngressPort == 0 {
		o.IngressPort = DefaultIngressPort
	}
	if err := CheckPorts(o); err != nil {
		return err
	}
	for i := range workloads {
		if _, err := o.workloadIP(i); err != nil {
			return err
		}
	}
	dataDir := o.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "trellis-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		dataDir = d
		defer os.RemoveAll(d)
	}
	logDir := filepath.Join(dataDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	addrs := o.addrs()
	sup := &supervisor{logDir: logDir, log: o.Log, exited: make(chan exit, 32)}
	defer sup.stopAll()

	fmt.Fprintf(o.Stdout, "starting the control plane (data and logs in %s)\n", dataDir)
	err := sup.start("control-plane", o.Trellis, "control",
		"--data-dir", filepath.Join(dataDir, "control"),
		"--xds-address", addrs.XDS,
		"--debug-address", addrs.ControlPlane)
	if err != nil {
		return err
	}
	client, err := controlapi.NewClient(addrs.ControlPlane)
	if err != nil {
		return err
	}
	if err := sup.waitFor(ctx, 60*time.Second, "the control plane", func() error { return client.Ready(ctx) }); err != nil {
		return err
	}
	manifest := strings.ReplaceAll(meshYAML, "{{INGRESS_PORT}}", strconv.Itoa(o.IngressPort))
	if _, err := client.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "demo.yaml", Content: manifest}}}); err != nil {
		return fmt.Errorf("demo: applying the demo resources: %w", err)
	}

	bundle := filepath.Join(dataDir, "control", "ca", "root-cert.pem")
	common := []string{"--control-plane", addrs.XDS, "--ca-bundle", bundle}
	// Each sidecar serves the SPIFFE Workload API on a socket of its own,
	// never on the shared default path.
	socketDir := filepath.Join(dataDir, "workload-api")
	if err := os.MkdirAll(socketDir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	identity, err := joinTokens(ctx, client, dataDir)
	if err != nil {
		return err
	}
	fmt.Fprintln(o.Stdout, "starting the ingress gateway and 4 workloads with their sidecars")
	err = sup.start("ingress", o.Proxy, append(append([]string{
		"--gateway", namespace + "/ingress",
		"--name", "ingress", "--namespace", namespace, "--service-account", "ingress",
		"--address", o.IP.String(),
		"--admin-address", net.JoinHostPort(o.IP.String(), strconv.Itoa(adminPort)),
	}, identity("ingress")...), common...)...)
	if err != nil {
		return err
	}
	for i, w := range workloads {
		ip, _ := o.workloadIP(i)
		appArgs := []string{"demo", "app", "--service", w.service, "--version", w.version, "--namespace", namespace,
			"--workload", w.name, "--listen", net.JoinHostPort(ip.String(), strconv.Itoa(appPort))}
		sidecarArgs := []string{
			"--name", w.name, "--namespace", namespace, "--service-account", w.account,
			"--address", ip.String(), "--app-address", ip.String(), "--outbound-address", ip.String(),
			"--label", "app=" + w.service, "--label", "version=" + w.version,
			"--port", "http:" + strconv.Itoa(appPort) + "/HTTP",
			"--admin-address", net.JoinHostPort(ip.String(), strconv.Itoa(adminPort)),
			"--workload-api-socket=" + workloadAPISocket(socketDir, w.name),
		}
		if w.next != "" {
			appArgs = append(appArgs, "--next", "http://"+net.JoinHostPort(ip.String(), strconv.Itoa(w.nextPort)))
			sidecarArgs = append(sidecarArgs, "--upstream", fmt.Sprintf("%s:80=%d", w.next, w.nextPort))
		}
		if err := sup.start(w.name, o.Trellis, appArgs...); err != nil {
			return err
		}
		sidecarArgs = append(sidecarArgs, identity(w.name)...)
		if err := sup.start(w.name+"-sidecar", o.Proxy, append(sidecarArgs, common...)...); err != nil {
			return err
		}
	}
	// Ready when every version of the last hop has answered, and the last
	// ten calls in a row went through: a workload whose sidecar registered
	// last may not be every caller's endpoint yet.
	versions := map[string]bool{}
	inARow := 0
	if err := sup.waitFor(ctx, 60*time.Second, "the mesh to answer at "+addrs.Ingress, func() error {
		for inARow < 10 || len(versions) < 2 {
			version, err := checkChain(ctx, addrs.Ingress)
			if err != nil {
				inARow = 0
				return err
			}
			versions[version] = true
			inARow++
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, `
Trellis demo is running: a gateway and three services (reviews in two versions), each behind its own sidecar.
ingress: %s
control plane: %s (API), %s (xDS and CA)
logs: %s
SPIFFE Workload API of each sidecar: unix://%s/NAME.sock

Try:
  curl %s
  trellis proxy-status
  TRELLIS_CONTROL_PLANE=%s trellis get httproutes -n demo
Press Ctrl-C to stop.
`, addrs.Ingress, addrs.ControlPlane, addrs.XDS, logDir, socketDir, addrs.Ingress, addrs.ControlPlane)

	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Stdout, "\nstopping the demo")
		return nil
	case e := <-sup.exited:
		return fmt.Errorf("demo: %s exited unexpectedly (%v); last lines of %s:\n%s", e.name, e.err, e.log, tail(e.log, 15))
	}
}

// workloadAPISocket is the Workload API socket of a demo sidecar in dir,
// or empty (none) when the path is too long for a UNIX socket, as a deep
// --data-dir can make it.
func workloadAPISocket(dir, name string) string {
	const maxSocketPath = 100 // sun_path holds 108 bytes on Linux, 104 on BSDs
	path := filepath.Join(dir, name+".sock")
	if len(path) > maxSocketPath {
		return ""
	}
	return path
}

// joinTokens makes a single-use join token through the control plane's API
// for the ingress gateway and each workload's sidecar, as an operator would
// with `trellis token create`, and writes each to DATA/tokens/NAME.token
// (mode 0600). It returns the flags that give the proxy NAME its token file
// and an identity directory, DATA/identity/NAME.
func joinTokens(ctx context.Context, client *controlapi.Client, dataDir string) (func(name string) []string, error) {
	names := []string{"ingress"}
	specs := []controlapi.TokenSpec{{Namespace: namespace, ServiceAccount: "ingress", TTLSeconds: 3600}}
	for _, w := range workloads {
		names = append(names, w.name)
		specs = append(specs, controlapi.TokenSpec{Namespace: namespace, ServiceAccount: w.account, TTLSeconds: 3600})
	}
	made, err := client.CreateTokens(ctx, specs)
	if err != nil {
		return nil, fmt.Errorf("demo: making join tokens: %w", err)
	}
	tokenDir := filepath.Join(dataDir, "tokens")
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	for i, name := range names {
		if err := os.WriteFile(filepath.Join(tokenDir, name+".token"), []byte(made[i].Token+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	return func(name string) []string {
		return []string{
			"--token-file", filepath.Join(tokenDir, name+".token"),
			"--identity-dir", filepath.Join(dataDir, "identity", name),
		}
	}, nil
}

// checkChain asks the ingress for the chain and checks that it crossed
// every service with a verified identity at each hop, and returns the
// version of the last hop.
func checkChain(ctx context.Context, url string) (version string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var chain app.Chain
	if err := json.Unmarshal(body, &chain); err != nil {
		return "", err
	}
	if len(chain.Hops) != 3 {
		return "", fmt.Errorf("the chain has %d hops, want 3", len(chain.Hops))
	}
	for _, h := range chain.Hops {
		if h.Caller == "" {
			return "", fmt.Errorf("hop %s has no verified caller", h.Service)
		}
	}
	return chain.Hops[2].Version, nil
}

type exit struct {
	name, log string
	err       error
}

// supervisor runs the demo's processes.
type supervisor struct {
	logDir string
	log    *slog.Logger
	exited chan exit

	mu       sync.Mutex
	procs    []*proc
	stopping bool
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *supervisor) start(name, bin string, args ...string) error {
	logPath := filepath.Join(s.logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("demo: starting %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		close(p.done)
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if !stopping {
			s.exited <- exit{name: name, log: logPath, err: err}
		}
	}()
	return nil
}

// waitFor polls ready until it succeeds, a process dies, or the timeout.
func (s *supervisor) waitFor(ctx context.Context, timeout time.Duration, what string, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = ready(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-s.exited:
			return fmt.Errorf("demo: %s exited while waiting for %s (%v); last lines of %s:\n%s", e.name, what, e.err, e.log, tail(e.log, 15))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("demo: timed out waiting for %s: %v (logs in %s)", what, last, s.logDir)
}

// stopAll stops the processes in reverse start order: SIGTERM, then SIGKILL
// after 10 s.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	s.stopping = true
	procs := s.procs
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		_ = procs[i].cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(10 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
