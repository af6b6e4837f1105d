package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/demo/app"
	"trellis.dev/trellis/internal/logtest"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/proxy/secrets"
)

// subnet is a loopback /24 owned by one test.
type subnet [3]byte

// newSubnet picks a loopback /24 whose control plane ports are free.
func newSubnet(t *testing.T) subnet {
	t.Helper()
	for range 50 {
		s := subnet{127, byte(64 + rand.IntN(180)), byte(rand.IntN(256))}
		ln, err := net.Listen("tcp", net.JoinHostPort(s.ip(1), "15012"))
		if err != nil {
			continue
		}
		ln.Close()
		return s
	}
	t.Fatal("no free loopback subnet")
	return subnet{}
}

func (s subnet) ip(host byte) string {
	return netip.AddrFrom4([4]byte{s[0], s[1], s[2], host}).String()
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if os.Getenv("TRELLIS_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", name)
	}
	return slog.New(slog.NewTextHandler(failureLog(t), &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", name)
}

// failureLogs holds each test's log buffer: what the components of a
// test logged is printed (its last lines) only when the test fails.
var failureLogs sync.Map // *testing.T → *logtest.Buffer

// failureLogLines is how many of the last lines a failed test prints.
const failureLogLines = 300

func failureLog(t *testing.T) *logtest.Buffer {
	if b, ok := failureLogs.Load(t); ok {
		return b.(*logtest.Buffer)
	}
	b := &logtest.Buffer{}
	failureLogs.Store(t, b)
	t.Cleanup(func() {
		failureLogs.Delete(t)
		if !t.Failed() {
			return
		}
		lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		if len(lines) > failureLogLines {
			lines = lines[len(lines)-failureLogLines:]
		}
		t.Logf("the last %d lines the test's components logged (all with TRELLIS_TEST_LOGS=1):\n%s", len(lines), strings.Join(lines, "\n"))
	})
	return b
}

// controlPlane is an in-process `trellis control`.
type controlPlane struct {
	t       *testing.T
	dataDir string
	caDir   string
	xds     string
	api     string
	cancel  context.CancelFunc
	done    chan error
}

// startControlPlane runs a control plane on the subnet's .1 (edit may
// change its addresses and anything else).
func startControlPlane(t *testing.T, s subnet, dataDir string, edit ...func(*control.Options)) *controlPlane {
	t.Helper()
	ready := make(chan struct{})
	opts := control.Options{
		DataDir: dataDir, XDSAddress: net.JoinHostPort(s.ip(1), "15012"), DebugAddress: net.JoinHostPort(s.ip(1), "15014"),
		Logger: testLogger(t, "control"),
		Ready:  func(_, _ net.Addr) { close(ready) },
	}
	for _, e := range edit {
		e(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &controlPlane{
		t: t, dataDir: dataDir, caDir: opts.CADir, cancel: cancel, done: make(chan error, 1),
		xds: opts.XDSAddress, api: opts.DebugAddress,
	}
	if cp.caDir == "" {
		cp.caDir = filepath.Join(dataDir, "ca")
	}
	go func() { cp.done <- control.Run(ctx, opts) }()
	select {
	case <-ready:
	case err := <-cp.done:
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("control plane did not start in 60s")
	}
	t.Cleanup(cp.stop)
	return cp
}

// stop stops the control plane and waits for it.
func (cp *controlPlane) stop() {
	if cp.cancel == nil {
		return
	}
	cp.cancel()
	cp.cancel = nil
	select {
	case err := <-cp.done:
		if err != nil {
			cp.t.Errorf("control plane: %v", err)
		}
	case <-time.After(30 * time.Second):
		cp.t.Error("control plane did not stop in 30s")
	}
}

func (cp *controlPlane) client(t *testing.T) *controlapi.Client {
	c, err := controlapi.NewClient(cp.api)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (cp *controlPlane) apply(t *testing.T, yaml string) {
	t.Helper()
	if _, err := cp.client(t).Apply(context.Background(), controlapi.ApplyRequest{Files: []controlapi.File{{Name: "test.yaml", Content: yaml}}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// token makes a single-use join token for namespace/serviceAccount through
// the control plane's API, as `trellis token create` does.
func (cp *controlPlane) token(t *testing.T, namespace, serviceAccount string) string {
	t.Helper()
	made, err := cp.client(t).CreateTokens(context.Background(), []controlapi.TokenSpec{{Namespace: namespace, ServiceAccount: serviceAccount, TTLSeconds: 600}})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", namespace, serviceAccount, err)
	}
	return made[0].Token
}

func (cp *controlPlane) bundle(t *testing.T) string {
	return filepath.Join(cp.caDir, "root-cert.pem")
}

// sidecar describes a workload: its app and its proxy.
type sidecar struct {
	name, service, account, version string
	host                            byte
	next                            string // upstream service, called on port 9000
	// also are control planes the proxy moves to, in order, when the one
	// it was started with goes away.
	also []*controlPlane
}

// startWorkload runs the demo app and its sidecar in-process until the
// test ends (or stop is called).
func startWorkload(t *testing.T, s subnet, cp *controlPlane, w sidecar) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ip := s.ip(w.host)
	opts := app.Options{
		Service: w.service, Version: w.version, Namespace: "demo", Workload: w.name,
		Listen: net.JoinHostPort(ip, "8080"), Logger: testLogger(t, w.name+"-app"),
	}
	meta := nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: w.name, Namespace: "demo", ServiceAccount: w.account,
		Address: ip, AppAddress: ip, OutboundAddress: ip, MeshPort: 15008,
		Labels: map[string]string{"app": w.service, "version": w.version},
		Ports:  []nodemeta.Port{{Name: "http", Port: 8080, Protocol: "HTTP"}},
	}
	if w.next != "" {
		opts.Next = "http://" + net.JoinHostPort(ip, "9000")
		meta.Upstreams = []nodemeta.Upstream{{Service: w.next, Port: 80, LocalPort: 9000}}
	}
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(ctx, opts) }()
	stopProxy := startProxy(t, cp, meta, w.also...)
	stopApp := stopper(t, "app "+w.name, cancel, appDone)
	return func() {
		stopProxy()
		stopApp()
	}
}

// startProxy runs a trellis-proxy in-process for the workload meta
// describes, with its admin endpoint on the workload's address and a join
// token made through cp's API, following cp and, if it goes away, the
// control planes also.
func startProxy(t *testing.T, cp *controlPlane, meta nodemeta.Metadata, also ...*controlPlane) (stop func()) {
	t.Helper()
	return startProxyWith(t, cp, meta, proxy.Options{Token: cp.token(t, meta.Namespace, meta.ServiceAccount)}, also...)
}

// startProxyWith is startProxy with the token, identity, logger and
// gateway certificate options of extra instead of a new token.
func startProxyWith(t *testing.T, cp *controlPlane, meta nodemeta.Metadata, extra proxy.Options, also ...*controlPlane) (stop func()) {
	t.Helper()
	pemBytes, err := os.ReadFile(cp.bundle(t))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := secrets.ParseBundle(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{cp.xds}
	for _, c := range also {
		addrs = append(addrs, c.xds)
	}
	log := extra.Logger
	if log == nil {
		log = testLogger(t, meta.Name)
	}
	p, err := proxy.New(proxy.Options{
		ControlPlane: strings.Join(addrs, ","), TrustBundle: bundle, NodeID: meta.Name + "." + meta.Namespace, Registration: meta,
		AdminAddress: net.JoinHostPort(meta.Address, "15000"), Logger: log,
		DrainTimeout: time.Second,
		Token:        extra.Token, TokenFile: extra.TokenFile, IdentityDir: extra.IdentityDir,
		GatewayCertsDir: extra.GatewayCertsDir, GatewayCertsInterval: extra.GatewayCertsInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return stopper(t, "proxy "+meta.Name, cancel, done)
}

// stopper returns a function, also registered as a test cleanup, that
// cancels a component and waits for its result on done, once.
func stopper(t *testing.T, name string, cancel context.CancelFunc, done <-chan error) func() {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("%s: %v", name, err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("%s did not stop in 20s", name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually retries f until it succeeds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
}

// getChain fetches url with Accept: application/json and returns the chain.
func getChain(url string) (app.Chain, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return app.Chain{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return app.Chain{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var c app.Chain
	if err := json.Unmarshal(body, &c); err != nil {
		return c, err
	}
	return c, nil
}
