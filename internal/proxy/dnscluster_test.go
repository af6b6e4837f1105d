package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// dnsCluster is a cluster of type typ whose one endpoint is host:port.
func dnsCluster(name string, typ clusterv3.Cluster_DiscoveryType, host string, port uint32, refresh time.Duration, hosts ...string) *clusterv3.Cluster {
	var eps []*endpointv3.LbEndpoint
	for _, h := range append([]string{host}, hosts...) {
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		}}})
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		DnsLookupFamily:      clusterv3.Cluster_V4_ONLY,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: eps,
		}}},
	}
	if refresh > 0 {
		c.DnsRefreshRate = durationpb.New(refresh)
	}
	return c
}

// namedServer answers every request with its name, on addr (host:0).
func namedServer(t *testing.T, addr, name string) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// TestStrictDNSClusterResolvesWithTheSystemResolver: a STRICT_DNS
// cluster naming localhost reaches a server on 127.0.0.1 through Go's
// resolver (/etc/hosts).
func TestStrictDNSClusterResolvesWithTheSystemResolver(t *testing.T) {
	port := namedServer(t, "127.0.0.1:0", "local")
	h := newHarness(t, routes(`{"match":{"prefix":"/"},"route":{"cluster":"dns"}}`), nil, false)
	if err := h.p.Apply(xdsclient.ClusterType, map[string]proto.Message{"dns": dnsCluster("dns", clusterv3.Cluster_STRICT_DNS, "localhost", port, 0)}); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do(t, "GET", "/", "")
	if resp.StatusCode != 200 || body != "local" {
		t.Fatalf("got %d %q, want 200 from the server localhost resolves to", resp.StatusCode, body)
	}
}

// fakeDNS answers lookups from a table the test changes; a missing name
// fails as a DNS outage would.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	lookups int
}

func (f *fakeDNS) set(host string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	if addrs == nil {
		delete(f.answers, host)
		return
	}
	f.answers[host] = as
}

func (f *fakeDNS) lookup(_ context.Context, network, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if network != "ip" {
		return nil, fmt.Errorf("network %q", network)
	}
	a, ok := f.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	return a, nil
}

func (f *fakeDNS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// TestDNSClusterReresolvesAndKeepsTheLastGoodAnswer: the cluster follows
// the name's answers as they change, keeps serving from the last good
// answer while resolution fails, and LOGICAL_DNS uses the answer's first
// address only.
func TestDNSClusterReresolvesAndKeepsTheLastGoodAnswer(t *testing.T) {
	portA := namedServer(t, "127.0.0.1:0", "a")
	// The second server listens on the same port of another loopback
	// address, as a name moving to another host would.
	ln, err := net.Listen("tcp", "127.0.0.2:"+strconv.Itoa(int(portA)))
	if err != nil {
		t.Skipf("127.0.0.2 on the same port: %v", err)
	}
	srvB := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "b") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srvB.Serve(ln) }()
	t.Cleanup(func() { srvB.Close() })

	for _, typ := range []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS} {
		t.Run(typ.String(), func(t *testing.T) {
			dns := &fakeDNS{answers: map[string][]netip.Addr{}}
			dns.set("api.example.test", "127.0.0.1")
			h := newHarness(t, routes(`{"match":{"prefix":"/"},"route":{"cluster":"dns"}}`), nil, false)
			h.p.lookup = dns.lookup
			if err := h.p.Apply(xdsclient.ClusterType, map[string]proto.Message{
				"dns": dnsCluster("dns", typ, "api.example.test", portA, 5*time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
			get := func() string {
				resp, body := h.do(t, "GET", "/", "")
				if resp.StatusCode != 200 {
					return fmt.Sprintf("%d %s", resp.StatusCode, body)
				}
				return body
			}
			if got := get(); got != "a" {
				t.Fatalf("got %q, want server a", got)
			}
			// An outage: the last good answer stays in force.
			dns.set("api.example.test")
			for n := dns.count(); dns.count() < n+3; {
				time.Sleep(5 * time.Millisecond)
			}
			if got := get(); got != "a" {
				t.Fatalf("during a DNS outage: got %q, want server a still", got)
			}
			// The name moves.
			dns.set("api.example.test", "127.0.0.2")
			eventuallyProxy(t, func() error {
				if got := get(); got != "b" {
					return fmt.Errorf("got %q, want server b", got)
				}
				return nil
			})
			if typ == clusterv3.Cluster_STRICT_DNS {
				// Every address is an endpoint.
				dns.set("api.example.test", "127.0.0.2", "127.0.0.1")
				seen := map[string]bool{}
				eventuallyProxy(t, func() error {
					seen[get()] = true
					if !seen["a"] || !seen["b"] {
						return fmt.Errorf("answered by %v, want both servers", seen)
					}
					return nil
				})
			}
			if typ == clusterv3.Cluster_LOGICAL_DNS {
				// Two addresses: only the first of the answer is used.
				dns.set("api.example.test", "127.0.0.1", "127.0.0.2")
				eventuallyProxy(t, func() error {
					if got := get(); got != "a" {
						return fmt.Errorf("got %q, want server a, the first address", got)
					}
					return nil
				})
				for range 5 {
					if got := get(); got != "a" {
						t.Fatalf("LOGICAL_DNS: got %q, want the first address only", got)
					}
				}
			}
		})
	}
}

func eventuallyProxy(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDNSClusterRefused: what Envoy would refuse, or this proxy does not
// implement, is refused.
func TestDNSClusterRefused(t *testing.T) {
	logical2 := dnsCluster("c", clusterv3.Cluster_LOGICAL_DNS, "a.test", 80, 0, "b.test")
	noLA := dnsCluster("c", clusterv3.Cluster_STRICT_DNS, "a.test", 80, 0)
	noLA.LoadAssignment = nil
	fastRefresh := dnsCluster("c", clusterv3.Cluster_STRICT_DNS, "a.test", 80, time.Microsecond)
	static := staticCluster(t, "c", "127.0.0.1:80")
	static.DnsRefreshRate = durationpb.New(time.Second)
	for name, tc := range map[string]struct {
		c    *clusterv3.Cluster
		want string
	}{
		"logical with two hosts": {logical2, "exactly one endpoint"},
		"no load assignment":     {noLA, "needs a load_assignment"},
		"refresh too fast":       {fastRefresh, "must be above 1ms"},
		"dns field on static":    {static, "apply to STRICT_DNS and LOGICAL_DNS"},
	} {
		err := Check(Config{Clusters: []*clusterv3.Cluster{tc.c}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want an error containing %q", name, err, tc.want)
		}
	}
	if err := Check(Config{Clusters: []*clusterv3.Cluster{dnsCluster("c", clusterv3.Cluster_STRICT_DNS, "a.test", 80, time.Second, "b.test")}}); err != nil {
		t.Errorf("a STRICT_DNS cluster of two hosts: %v", err)
	}
}
