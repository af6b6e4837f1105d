package proxy

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// harness is a proxy serving one plaintext HTTP listener on a loopback
// port, whose routes come from one route configuration, in front of
// static clusters: real sockets end to end.
type harness struct {
	p    *Proxy
	addr string // the listener's host:port
}

// newHarness applies routeJSON (a RouteConfiguration named "r", in
// protojson) and static clusters, each a name and the addresses of its
// endpoints; with cors the connection manager runs a CORS filter named
// "envoy.filters.http.cors" before the router.
func newHarness(t *testing.T, routeJSON string, clusters map[string][]string, cors bool) *harness {
	t.Helper()
	p := testProxy(t)
	t.Cleanup(func() { p.shutdown(nil) })
	apply := func(typ string, res map[string]proto.Message) {
		t.Helper()
		if err := p.Apply(typ, res); err != nil {
			t.Fatalf("apply %s: %v", typ, err)
		}
	}
	cs := map[string]proto.Message{}
	for name, addrs := range clusters {
		cs[name] = staticCluster(t, name, addrs...)
	}
	apply(xdsclient.ClusterType, cs)
	rc := &routev3.RouteConfiguration{}
	if err := protojson.Unmarshal([]byte(routeJSON), rc); err != nil {
		t.Fatalf("bad route config: %v\n%s", err, routeJSON)
	}
	apply(xdsclient.RouteType, map[string]proto.Message{rc.Name: rc})

	var filters []*hcmv3.HttpFilter
	if cors {
		filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &corsv3.Cors{})}})
	}
	filters = append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "test",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rc.Name, ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
		HttpFilters:    filters,
	}
	port := freePort(t)
	apply(xdsclient.ListenerType, map[string]proto.Message{"l": &listenerv3.Listener{
		Name:         "l",
		Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}},
	}})
	return &harness{p: p, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))}
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// deadAddr returns a loopback address nothing listens on: connections to
// it are refused.
func deadAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(freePort(t))))
}

func staticCluster(t *testing.T, name string, addrs ...string) *clusterv3.Cluster {
	t.Helper()
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(port)
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)}}}},
		}}})
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: eps,
		}}},
	}
}

// client is an HTTP client for tests: a failure guard, never a timing
// assertion.
var testClient = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// do sends a request through the harness and returns the response with
// its body read.
func (h *harness) do(t *testing.T, method, target, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+h.addr+target, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Add(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	return resp, string(b)
}

// routes returns a route configuration "r" with one virtual host for
// every domain and the given routes (protojson members of Route).
func routes(rs ...string) string {
	return `{"name":"r","virtual_hosts":[{"name":"v","domains":["*"],"routes":[` + strings.Join(rs, ",") + `]}]}`
}

// serveTCP accepts connections on a loopback port until the test ends,
// handling each on its own goroutine; handle owns the connection.
func serveTCP(t *testing.T, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln
}
