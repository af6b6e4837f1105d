package translate_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/translate"
	xdsserver "trellis.dev/trellis/internal/xds"
)

// TestProxylessBackendPolicyGRPC serves the config a proxyless gRPC client
// gets for BackendPolicies (RING_HASH with a header hash policy,
// LEAST_REQUEST, max_requests) over the real ADS server to grpc-go's own
// xDS client, which rejects a whole response for one field it does not
// accept: calls must go through, and a user must stick to one server.
func TestProxylessBackendPolicyGRPC(t *testing.T) {
	// Two gRPC servers on one port of two loopback addresses.
	first, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	port := first.Addr().(*net.TCPAddr).Port
	second, err := net.Listen("tcp", net.JoinHostPort("127.0.0.3", strconv.Itoa(port)))
	if err != nil {
		first.Close()
		t.Skipf("port %d not free on 127.0.0.3: %v", port, err)
	}
	for name, ln := range map[string]net.Listener{"a": first, "b": second} {
		srv := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(srv, &idServer{id: name})
		go srv.Serve(ln)
		t.Cleanup(srv.Stop)
	}

	const ns = "shop"
	key := func(n string) model.Key { return model.Key{Namespace: ns, Name: n} }
	grpcPort := model.ServicePort{Name: "grpc", Port: 9090, TargetPort: uint32(port), Protocol: model.ProtocolGRPC, ProtocolDeclared: true}
	wl := func(name, addr, app string) *model.Workload {
		return &model.Workload{Key: key(name), Address: addr, ServiceAccount: app, Labels: map[string]string{"app": app},
			Ports: []model.WorkloadPort{{Name: "grpc", Port: uint32(port), Protocol: model.ProtocolGRPC}}}
	}
	target := func(n string) []model.TargetRef {
		return []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: n}}
	}
	c := &model.Config{
		Services: []*model.Service{
			{Key: key("ratings"), Selector: map[string]string{"app": "ratings"}, Ports: []model.ServicePort{grpcPort}},
			{Key: key("reviews"), Selector: map[string]string{"app": "ratings"}, Ports: []model.ServicePort{grpcPort}},
		},
		Workloads: []*model.Workload{wl("ratings-a", "127.0.0.2", "ratings"), wl("ratings-b", "127.0.0.3", "ratings"), wl("client", "127.0.0.1", "client")},
		BackendPolicies: []*model.BackendPolicy{
			{Key: key("ratings"), Targets: target("ratings"), TLS: model.BackendTLSMesh,
				LoadBalancer:     &model.LoadBalancer{Type: "ConsistentHash", HashHeader: "x-user", HashCookie: "session"},
				ConnectionLimits: &model.ConnectionLimits{MaxRequests: 100, MaxConnections: 5},
				OutlierDetection: &model.OutlierDetection{Consecutive5xx: 2},
				RetryBudget:      &model.RetryBudget{Percent: 20},
				IdleTimeout:      time.Minute,
				RateLimit:        &model.RateLimit{Requests: 1, Per: time.Second},
			},
			{Key: key("reviews"), Targets: target("reviews"), TLS: model.BackendTLSMesh, LoadBalancer: &model.LoadBalancer{Type: "LeastRequest"}},
		},
	}
	c.Sort()
	ix := model.NewIndex(c)
	meta := nodemeta.Metadata{Kind: nodemeta.KindGRPC, Name: "client", Namespace: ns, ServiceAccount: "client", Address: "127.0.0.1",
		Labels: map[string]string{"app": "client"}}
	const nodeID = "client.shop"
	p := &model.Proxy{ID: nodeID, Kind: model.KindGRPC, Workload: *ix.Workload(key("client"))}
	res, problems := translate.Translate(translate.Input{Config: c, Index: ix, Proxy: p}, translate.Options{})
	if len(problems) == 0 {
		t.Fatal("no problem reported for what gRPC does not implement")
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ads := xdsserver.New(ctx, acceptAll{}, nil)
	if _, err := ads.Push(ctx, nodeID, res, nil); err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	ads.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	md, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": lis.Addr().String(), "channel_creds": []any{map[string]any{"type": "insecure"}}}},
		"node":        map[string]any{"id": nodeID, "metadata": md.AsMap()},
	})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(target string) testgrpc.TestServiceClient {
		conn, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return testgrpc.NewTestServiceClient(conn)
	}
	call := func(client testgrpc.TestServiceClient, user string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if user != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-user", user)
		}
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{FillServerId: true}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("call (the client may have rejected the config): %v", err)
		}
		return resp.GetServerId()
	}

	ratings := dial("ratings.shop.svc.cluster.local:9090")
	servers := map[string]bool{}
	for i := range 20 {
		user := fmt.Sprint("user-", i)
		first := call(ratings, user)
		servers[first] = true
		for range 3 {
			if again := call(ratings, user); again != first {
				t.Fatalf("%s went to %s, then %s: the hash policy is not in effect", user, first, again)
			}
		}
	}
	if len(servers) != 2 {
		t.Errorf("20 users all hashed to %v", servers)
	}
	reviews := dial("reviews.shop:9090")
	for range 4 {
		call(reviews, "")
	}
}

type idServer struct {
	testgrpc.UnimplementedTestServiceServer
	id string
}

func (s *idServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: s.id}, nil
}

// acceptAll is the xDS server's hooks for a test: every node is welcome.
type acceptAll struct{}

func (acceptAll) Connected(int64, *corev3.Node, []*x509.Certificate) error { return nil }
func (acceptAll) Disconnected(int64, *corev3.Node)                         {}
