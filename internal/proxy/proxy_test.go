package proxy

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/testcert"
)

// testProxy is a proxy that is never run: enough to compile config.
func testProxy(t testing.TB, edit ...func(*Options)) *Proxy {
	t.Helper()
	root := testcert.Make(t, testcert.Options{CommonName: "test root", CA: true}).Leaf
	opts := Options{
		ControlPlane: "127.0.0.1:1", TrustBundle: []*x509.Certificate{root}, NodeID: "t",
		Registration: nodemeta.Metadata{Kind: nodemeta.KindSidecar, Name: "t", Namespace: "ns", ServiceAccount: "sa", Address: "10.0.0.1"},
	}
	for _, e := range edit {
		e(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnsupportedConfigIsRejected(t *testing.T) {
	p := testProxy(t)
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:          "x",
		RouteSpecifier:      &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}},
		DelayedCloseTimeout: nil,
		GenerateRequestId:   nil,
		ServerName:          "not-supported",
	})
	for name, tc := range map[string]struct {
		msg  proto.Message
		want string
	}{
		"cluster lb policy": {&clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LbPolicy: clusterv3.Cluster_MAGLEV, LoadAssignment: nil}, "lb_policy MAGLEV is not supported"},
		"cluster unknown field": {&clusterv3.Cluster{Name: "c", RespectDnsTtl: true}, "not supported by this proxy: respect_dns_ttl"},
		"listener without port": {&listenerv3.Listener{Name: "l"}, "a socket address with a port is required"},
		"hcm server name": {&listenerv3.Listener{Name: "l",
			Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}}},
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}}}},
		}, "not supported by this proxy: server_name"},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			switch m := tc.msg.(type) {
			case *clusterv3.Cluster:
				err = p.Apply(xdsclient.ClusterType, map[string]proto.Message{m.Name: m})
			case *listenerv3.Listener:
				err = p.Apply(xdsclient.ListenerType, map[string]proto.Message{m.Name: m})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply error = %v, want it to contain %q", err, tc.want)
			}
			if len(p.listeners) != 0 || len(*p.clusters.Load()) != 0 {
				t.Fatal("rejected config was applied")
			}
		})
	}
}

// FuzzCompile feeds arbitrary xDS resources, as they could arrive from the
// wire, to the proxy's compilers: they must reject or accept, never panic.
// Listeners are compiled but not bound.
func FuzzCompile(f *testing.F) {
	p := testProxy(f)
	seed := func(kind byte, m proto.Message) {
		b, _ := proto.Marshal(m)
		f.Add(append([]byte{kind}, b...))
	}
	seed(0, &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}})
	seed(0, &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		LbPolicy:         clusterv3.Cluster_RING_HASH,
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		CircuitBreakers:  &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(1)}}},
		OutlierDetection: &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0), Consecutive_5Xx: wrapperspb.UInt32(1)}})
	seed(0, dnsCluster("c", clusterv3.Cluster_STRICT_DNS, "api.example.com", 443, time.Second, "10.0.0.1"))
	seed(1, &listenerv3.Listener{Name: "l", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9}}}}})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		switch data[0] % 2 {
		case 0:
			var c clusterv3.Cluster
			if proto.Unmarshal(data[1:], &c) == nil {
				_, _ = p.compileCluster(&c)
			}
		case 1:
			var l listenerv3.Listener
			if proto.Unmarshal(data[1:], &l) == nil {
				_, _ = p.compileListener(&l)
			}
		}
	})
}

// TestCheck runs the proxy's compilers without a proxy: what a proxy would
// NACK is reported, what it accepts is not.
func TestCheck(t *testing.T) {
	good := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
	if err := Check(Config{Clusters: []*clusterv3.Cluster{good}}); err != nil {
		t.Fatalf("a good cluster: %v", err)
	}
	bad := proto.Clone(good).(*clusterv3.Cluster)
	bad.Name = "bad"
	bad.LbPolicy = clusterv3.Cluster_MAGLEV
	badRoute := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, RequireTls: routev3.VirtualHost_ALL}}}
	err := Check(Config{Clusters: []*clusterv3.Cluster{good, bad}, Routes: []*routev3.RouteConfiguration{badRoute}})
	if err == nil || !strings.Contains(err.Error(), `cluster "bad": lb_policy MAGLEV`) || !strings.Contains(err.Error(), "require_tls") {
		t.Fatalf("Check = %v, want the cluster's and the route's problems", err)
	}
}

// TestCheckRemembersByKey: with content keys, a resource judged once is
// not compiled again; without, it always is.
func TestCheckRemembersByKey(t *testing.T) {
	badRoute := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, RequireTls: routev3.VirtualHost_ALL}}}
	keys := func(k string) map[string]map[string]string {
		return map[string]map[string]string{xdsclient.RouteType: {"r": k}}
	}
	if err := Check(Config{Routes: []*routev3.RouteConfiguration{badRoute}, Keys: keys("remembers-v1")}); err == nil {
		t.Fatal("a bad route passed")
	}
	// The key says the content is the same: the verdict is remembered.
	if err := Check(Config{Routes: []*routev3.RouteConfiguration{routeTo("c")}, Keys: keys("remembers-v1")}); err == nil {
		t.Error("a key judged before was compiled again")
	}
	if err := Check(Config{Routes: []*routev3.RouteConfiguration{routeTo("c")}, Keys: keys("remembers-v2")}); err != nil {
		t.Errorf("a new key: %v", err)
	}
	if err := Check(Config{Routes: []*routev3.RouteConfiguration{routeTo("c")}}); err != nil {
		t.Errorf("no keys: %v", err)
	}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}}
}

func routeTo(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}}}}}
}

// TestMakeBeforeBreak replaces a route's cluster the way the control plane
// sends it, clusters first and routes after: the old cluster stays until
// the new route is in force, so no request finds its cluster missing.
func TestMakeBeforeBreak(t *testing.T) {
	p := testProxy(t)
	apply := func(typ string, ms ...proto.Message) {
		t.Helper()
		res := map[string]proto.Message{}
		for _, m := range ms {
			switch m := m.(type) {
			case *clusterv3.Cluster:
				res[m.Name] = m
			case *routev3.RouteConfiguration:
				res[m.Name] = m
			}
		}
		if err := p.Apply(typ, res); err != nil {
			t.Fatal(err)
		}
	}
	has := func(name string) bool { _, ok := (*p.clusters.Load())[name]; return ok }
	apply(xdsclient.ClusterType, edsCluster("old"))
	apply(xdsclient.RouteType, routeTo("old"))
	apply(xdsclient.ClusterType, edsCluster("new"))
	if !has("old") || !has("new") {
		t.Fatalf("after the cluster set changed: old %v, new %v; want both while the route still uses old", has("old"), has("new"))
	}
	apply(xdsclient.RouteType, routeTo("new"))
	if has("old") || !has("new") {
		t.Fatalf("after the route moved: old %v, new %v; want only new", has("old"), has("new"))
	}
}

// TestNewClusterWaitsForEndpoints sends a request to a cluster whose
// endpoints have not arrived yet: it waits for them instead of failing.
func TestNewClusterWaitsForEndpoints(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	host, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	portNum, _ := strconv.Atoi(port)
	p := testProxy(t)
	if err := p.Apply(xdsclient.ClusterType, map[string]proto.Message{"c": edsCluster("c")}); err != nil {
		t.Fatal(err)
	}
	c := (*p.clusters.Load())["c"]
	go func() {
		time.Sleep(200 * time.Millisecond)
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(portNum)}}}}}}}},
		}}}
		p.Apply(xdsclient.EndpointType, map[string]proto.Message{"c": cla})
	}()
	req := httptest.NewRequest(http.MethodGet, "http://c/", nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatalf("request to a warming cluster: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
}
