package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/translate"
)

// echoMesh is the mesh of TestProxylessGRPC: a gRPC service echo with two
// versions, split 80/20 by a GRPCRoute that matches the one method the
// test calls, and echo-h, the same workloads, with an HTTPRoute sending
// everything under the test service's path prefix to v1.
const echoMesh = `
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  selector: {app: echo}
  ports: [{name: grpc, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: demo}
spec:
  selector: {app: echo, version: v1}
  ports: [{name: grpc, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: demo}
spec:
  selector: {app: echo, version: v2}
  ports: [{name: grpc, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-h, namespace: demo}
spec:
  selector: {app: echo}
  ports: [{name: http2, port: 8080, appProtocol: kubernetes.io/h2c}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-h, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-h, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /grpc.testing.TestService}}]
    backendRefs: [{name: echo-v1, port: 8080}]
`

// echoSplit attaches the GRPCRoute splitting echo between v1 and v2.
func echoSplit(v1, v2 int) string {
	return fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-split, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 8080}]
  rules:
  - matches:
    - method: {service: grpc.testing.TestService, method: UnaryCall}
    - method: {type: RegularExpression, method: "Unary.*"}
      headers: [{name: x-canary, value: "1"}]
    backendRefs:
    - {name: echo-v1, port: 8080, weight: %d}
    - {name: echo-v2, port: 8080, weight: %d}
`, v1, v2)
}

// TestProxylessGRPC runs grpc-go clients and xDS-enabled servers against
// the control plane, with no proxy: the client resolves xds:/// targets,
// follows weighted routes and endpoint changes, and grpc-go's own xDS
// client accepts everything it is sent.
func TestProxylessGRPC(t *testing.T) {
	s := newSubnet(t)
	// gRPC verifies the control plane by the name or address it dials (it
	// knows no SPIFFE IDs), and the control plane's certificate carries
	// 127.0.0.1, not the test subnet's address: serve xDS there.
	var xdsAddr string
	cp := startControlPlane(t, s, t.TempDir(), func(o *control.Options) {
		o.XDSAddress = "127.0.0.1:0"
		o.RegistrationGrace = time.Second
		ready := o.Ready
		o.Ready = func(x, d net.Addr) {
			xdsAddr = x.String()
			ready(x, d)
		}
	})
	dir := t.TempDir()
	mesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(echoMesh+"---"+echoSplit(80, 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := trellis(t, cp, "apply", "-f", mesh); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}

	startEchoServer(t, cp, xdsAddr, s.ip(21), "echo-v1", "v1")
	stopV2 := startEchoServer(t, cp, xdsAddr, s.ip(22), "echo-v2", "v2")

	clientBootstrap := grpcBootstrap(t, cp, xdsAddr, "client-1.demo", nodemeta.Metadata{
		Kind: nodemeta.KindGRPC, Name: "client-1", Namespace: "demo", ServiceAccount: "client", Address: s.ip(30),
	})
	echo := dialXDS(t, clientBootstrap, "xds:///echo.demo.svc.cluster.local:8080")

	eventually(t, 60*time.Second, "a call to echo through xDS", func() error {
		_, err := echo.call()
		return err
	})
	seen, err := echo.calls(200)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("weights 80/20: %v", seen)
	if seen["echo-v1"] == 0 || seen["echo-v2"] == 0 || seen["echo-v1"] <= seen["echo-v2"] || len(seen) != 2 {
		t.Errorf("200 calls split 80/20 were answered %v; want both versions, v1 most", seen)
	}
	// The GRPCRoute matches one method: others have no route.
	if _, err := echo.client.EmptyCall(context.Background(), &testgrpc.Empty{}); status.Code(err) != codes.Unavailable {
		t.Errorf("EmptyCall, which no route matches: %v, want UNAVAILABLE", err)
	}

	// The short form of a target, and an HTTPRoute path prefix.
	echoH := dialXDS(t, clientBootstrap, "xds:///echo-h.demo:8080")
	eventually(t, 30*time.Second, "echo-h sends everything to v1", func() error {
		return echoH.onlyFrom(20, "echo-v1")
	})

	if err := os.WriteFile(mesh, []byte(echoSplit(0, 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := trellis(t, cp, "apply", "-f", mesh); err != nil {
		t.Fatalf("apply: %v\n%s", err, stderr)
	}
	eventually(t, 30*time.Second, "weights 0/100: only v2 answers", func() error {
		return echo.onlyFrom(50, "echo-v2")
	})

	// An endpoint joins echo-v2.
	startEchoServer(t, cp, xdsAddr, s.ip(23), "echo-v2b", "v2")
	eventually(t, 30*time.Second, "the new v2 endpoint answers", func() error {
		seen, err := echo.calls(20)
		if err != nil {
			return err
		}
		if seen["echo-v2b"] == 0 {
			return fmt.Errorf("20 calls answered by %v", seen)
		}
		return nil
	})

	// One leaves: no call fails while it goes or after, and once its
	// registration is gone it is no longer called.
	stopped := make(chan struct{})
	go func() { stopV2(); close(stopped) }()
	for leaving := true; leaving; {
		select {
		case <-stopped:
			leaving = false
		default:
		}
		if _, err := echo.call(); err != nil {
			t.Fatalf("a call while echo-v2 leaves: %v", err)
		}
	}
	if _, err := echo.calls(50); err != nil {
		t.Fatalf("a call after echo-v2 left: %v", err)
	}
	eventually(t, 30*time.Second, "only the remaining v2 endpoint answers", func() error {
		return echo.onlyFrom(20, "echo-v2b")
	})

	// grpc-go accepted everything it was sent, and nothing was left out.
	proxies, err := cp.client(t).Proxies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		if !p.Connected {
			continue
		}
		if p.Kind != nodemeta.KindGRPC {
			t.Errorf("proxy %s has kind %q, want %q", p.ID, p.Kind, nodemeta.KindGRPC)
		}
		for _, ts := range p.Types {
			if ts.Nack != "" {
				t.Errorf("%s rejected %s: %s", p.ID, ts.Type, ts.Nack)
			}
		}
		if len(p.Problems) > 0 {
			t.Errorf("%s: problems: %q", p.ID, p.Problems)
		}
	}
}

// echoServer answers UnaryCall with its name.
type echoServer struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (e *echoServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: e.name, Hostname: e.name}, nil
}

// startEchoServer runs an xDS-enabled gRPC server for the workload name on
// addr:8080 until the test ends or stop is called, and waits until it
// serves (it does once the control plane sent its Listener).
func startEchoServer(t *testing.T, cp *controlPlane, xdsAddr, addr, name, version string) (stop func()) {
	t.Helper()
	bootstrap := grpcBootstrap(t, cp, xdsAddr, name+".demo", nodemeta.Metadata{
		Kind: nodemeta.KindGRPC, Name: name, Namespace: "demo", ServiceAccount: "echo", Address: addr,
		Labels: map[string]string{"app": "echo", "version": version},
		Ports:  []nodemeta.Port{{Name: "grpc", Port: 8080}},
	})
	var (
		mu      sync.Mutex
		serving = make(chan struct{})
		lastErr error
	)
	srv, err := xds.NewGRPCServer(
		grpc.Creds(insecure.NewCredentials()),
		xds.BootstrapContentsForTesting(bootstrap),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			mu.Lock()
			defer mu.Unlock()
			lastErr = args.Err
			if args.Mode == connectivity.ServingModeServing && serving != nil {
				close(serving)
				serving = nil
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, &echoServer{name: name})
	lis, err := net.Listen("tcp", net.JoinHostPort(addr, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	stop = stopper(t, "gRPC server "+name, func() { srv.GracefulStop() }, done)

	mu.Lock()
	wait := serving
	mu.Unlock()
	select {
	case <-wait:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("gRPC server %s not serving after 30s (last error: %v)", name, lastErr)
	}
	return stop
}

// xdsClient is a connection to an xds:/// target.
type xdsClient struct {
	client testgrpc.TestServiceClient
}

// dialXDS connects to target through an xDS resolver of its own, built
// from bootstrap.
func dialXDS(t *testing.T, bootstrap []byte, target string) *xdsClient {
	t.Helper()
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &xdsClient{client: testgrpc.NewTestServiceClient(conn)}
}

// call makes one call and returns the name of the server that answered.
func (c *xdsClient) call() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.client.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true}, grpc.WaitForReady(true))
	if err != nil {
		return "", err
	}
	return resp.GetServerId(), nil
}

// calls makes n calls and counts the answers by server.
func (c *xdsClient) calls(n int) (map[string]int, error) {
	seen := map[string]int{}
	for range n {
		from, err := c.call()
		if err != nil {
			return seen, err
		}
		seen[from]++
	}
	return seen, nil
}

// onlyFrom makes n calls and fails unless server answered them all.
func (c *xdsClient) onlyFrom(n int, server string) error {
	seen, err := c.calls(n)
	if err != nil {
		return err
	}
	if len(seen) != 1 || seen[server] != n {
		return fmt.Errorf("%d calls answered by %v, want all by %s", n, seen, server)
	}
	return nil
}

// grpcBootstrap gets the workload meta describes a certificate from the
// control plane's certificate service, as a gRPC application would
// before it starts, and returns the xDS bootstrap of that application: the
// control plane with mTLS channel credentials (gRFC A65), the node with
// its registration, and the server listener name template.
func grpcBootstrap(t *testing.T, cp *controlPlane, xdsAddr, nodeID string, meta nodemeta.Metadata) []byte {
	t.Helper()
	dir := t.TempDir()
	roots, err := os.ReadFile(cp.bundle(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) {
		t.Fatal("no certificates in the trust bundle")
	}
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: meta.Namespace, ServiceAccount: meta.ServiceAccount}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := capb.NewCertificateServiceClient(conn).CreateCertificate(ctx, &capb.CreateCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), NodeId: nodeID,
		Token: cp.token(t, meta.Namespace, meta.ServiceAccount),
	})
	if err != nil {
		t.Fatalf("certificate for %s: %v", id, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"cert.pem": strings.Join(resp.GetCertChain(), ""),
		"key.pem":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"ca.pem":   strings.Join(resp.GetTrustBundle(), ""),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	md, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": xdsAddr,
			"channel_creds": []any{map[string]any{"type": "tls", "config": map[string]any{
				"ca_certificate_file": filepath.Join(dir, "ca.pem"),
				"certificate_file":    filepath.Join(dir, "cert.pem"),
				"private_key_file":    filepath.Join(dir, "key.pem"),
			}}},
		}},
		"node":                                   map[string]any{"id": nodeID, "metadata": md.AsMap()},
		"server_listener_resource_name_template": translate.GRPCServerListenerTemplate,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
