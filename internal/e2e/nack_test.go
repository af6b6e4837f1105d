package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/translate"
	"trellis.dev/trellis/internal/xds"
)

type acceptAll struct{}

func (acceptAll) Connected(int64, *corev3.Node, []*x509.Certificate) error { return nil }
func (acceptAll) Disconnected(int64, *corev3.Node)                         {}

// TestNackKeepsLastGoodConfig pushes config the proxy cannot apply: it
// NACKs it with a message that proxy-status shows, and keeps serving the
// config it had. Fixed config is then accepted.
func TestNackKeepsLastGoodConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	srv := xds.New(ctx, acceptAll{}, testLogger(t, "xds"))
	gs := grpc.NewServer()
	srv.Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()

	authority, err := ca.Open(ca.Options{Dir: t.TempDir(), TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{
		ControlPlane: ln.Addr().String(), TrustBundle: authority.Roots(), NodeID: "node-1",
		Registration: nodemeta.Metadata{Kind: nodemeta.KindSidecar, Name: "w", Namespace: "ns", ServiceAccount: "sa", Address: "127.0.0.1"},
		Logger:       testLogger(t, "proxy"),
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go xdsclient.New(xdsclient.Options{Conn: conn, Node: &corev3.Node{Id: "node-1"}, Log: testLogger(t, "xdsclient")}, p).Run(ctx)

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "backend")
	}))
	defer backend.Close()
	bhost, bport, _ := net.SplitHostPort(backend.Listener.Addr().String())
	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	listenPort := uint32(probe.Addr().(*net.TCPAddr).Port)
	probe.Close()

	push := func(l *listenerv3.Listener) {
		t.Helper()
		var port uint32
		fmt.Sscan(bport, &port)
		res := &translate.Resources{
			Listeners: []*listenerv3.Listener{l},
			Clusters: []*clusterv3.Cluster{{
				Name: "backend", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socket(bhost, port)}}}},
				}}},
			}},
		}
		if _, err := srv.Push(ctx, "node-1", res, nil); err != nil {
			t.Fatal(err)
		}
	}
	status := func() xds.TypeStatus {
		for _, s := range srv.Status() {
			if s.ID == "node-1" {
				for _, ty := range s.Types {
					if ty.TypeURL == xdsclient.ListenerType {
						return ty
					}
				}
			}
		}
		return xds.TypeStatus{}
	}
	get := func() (string, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", listenPort))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}

	push(httpListener(listenPort, nil))
	eventually(t, 10*time.Second, "first config SYNCED and serving", func() error {
		if st := status(); st.State != xds.StateSynced {
			return fmt.Errorf("LDS %+v", st)
		}
		if body, err := get(); err != nil || body != "backend" {
			return fmt.Errorf("GET: %q, %v", body, err)
		}
		return nil
	})
	good := status().Acked

	// A listener field the proxy does not implement: rejected, reported,
	// and the previous listener keeps serving.
	push(httpListener(listenPort, func(l *listenerv3.Listener) {
		l.PerConnectionBufferLimitBytes = wrapperspb.UInt32(1024)
	}))
	eventually(t, 10*time.Second, "bad config NACKED", func() error {
		if st := status(); st.State != xds.StateNacked {
			return fmt.Errorf("LDS %+v", st)
		}
		return nil
	})
	st := status()
	if !strings.Contains(st.Nack, "per_connection_buffer_limit_bytes") || !strings.Contains(st.Nack, "not supported") {
		t.Errorf("NACK message %q does not name the unsupported field", st.Nack)
	}
	if st.Acked != good {
		t.Errorf("acked version after the NACK = %s, want the last good %s", st.Acked, good)
	}
	for i := range 10 {
		if body, err := get(); err != nil || body != "backend" {
			t.Fatalf("request %d after the NACK: %q, %v", i, body, err)
		}
	}
	// The rejected config is not sent again and again.
	responses := status().Responses
	time.Sleep(300 * time.Millisecond)
	if st := status(); st.Responses != responses || st.State != xds.StateNacked {
		t.Errorf("after the NACK the server kept sending: %d responses, then %d (%s)", responses, st.Responses, st.State)
	}

	// Fixed config is accepted: a direct response this time.
	push(httpListener(listenPort, func(l *listenerv3.Listener) {
		hcm := &hcmv3.HttpConnectionManager{}
		l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)
		hcm.GetRouteConfig().VirtualHosts[0].Routes[0].Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "fixed"}},
		}}
		a, _ := anypb.New(hcm)
		l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}))
	eventually(t, 10*time.Second, "fixed config SYNCED and serving", func() error {
		if st := status(); st.State != xds.StateSynced {
			return fmt.Errorf("LDS %+v", st)
		}
		if body, err := get(); err != nil || body != "fixed" {
			return fmt.Errorf("GET: %q, %v", body, err)
		}
		return nil
	})
}

func socket(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// httpListener is a plaintext HTTP listener routing everything to the
// backend cluster; edit changes it.
func httpListener(port uint32, edit func(*listenerv3.Listener)) *listenerv3.Listener {
	router, _ := anypb.New(&routerv3.Router{})
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "local",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"}}},
			}}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	l := &listenerv3.Listener{
		Name:    "test",
		Address: socket("127.0.0.1", port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}},
	}
	if edit != nil {
		edit(l)
	}
	return l
}
