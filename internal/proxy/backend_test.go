package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// Behaviour of what a BackendPolicy becomes on a cluster: load balancing,
// circuit breakers, outlier detection, locality priorities, retry budget,
// idle timeout and the local rate limit filter. Backends are real HTTP
// servers; requests go through a real listener of the proxy.

// backend is an HTTP server that answers with its name, counts its
// requests, and answers with status (200 unless set).
type lbBackend struct {
	name   string
	srv    *httptest.Server
	hits   atomic.Int64
	status atomic.Int32
	// hold, when set, blocks each request until it is closed.
	hold  atomic.Pointer[chan struct{}]
	conns atomic.Int64 // connections open
}

func newLBBackend(t testing.TB, name string) *lbBackend {
	t.Helper()
	b := &lbBackend{name: name}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if h := b.hold.Load(); h != nil && r.URL.Path == "/" {
			select {
			case <-*h:
			case <-r.Context().Done():
			}
		}
		code := int(b.status.Load())
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		io.WriteString(w, b.name)
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.conns.Add(-1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

// holdRequests makes requests for "/" block until the returned function is
// called.
func (b *lbBackend) holdRequests() (release func()) {
	ch := make(chan struct{})
	b.hold.Store(&ch)
	return sync.OnceFunc(func() { b.hold.Store(nil); close(ch) })
}

func (b *lbBackend) addr() (string, uint32) {
	host, port, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return host, uint32(p)
}

func lbEP(host string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}
}

// assignmentOf puts backends into priorities: prios[i] are priority i's.
func assignmentOf(name string, prios ...[]*lbBackend) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for p, bs := range prios {
		lle := &endpointv3.LocalityLbEndpoints{Priority: uint32(p)}
		for _, b := range bs {
			lle.LbEndpoints = append(lle.LbEndpoints, lbEP(b.addr()))
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// testBed is a proxy with one cluster "c" and a plaintext HTTP listener
// whose routes send everything to it.
type testBed struct {
	p    *Proxy
	url  string
	http *http.Client
	// listener is the listener "l" as applied.
	listener *listenerv3.Listener
}

type bedOptions struct {
	cluster *clusterv3.Cluster // default: edsCluster("c")
	cla     *endpointv3.ClusterLoadAssignment
	route   *routev3.Route // default: prefix "/" to "c"
	filters []*hcmv3.HttpFilter
	// opts edit the proxy's options.
	opts []func(*Options)
}

func newTestBed(t testing.TB, o bedOptions) *testBed {
	t.Helper()
	p := testProxy(t, o.opts...)
	t.Cleanup(func() { p.shutdown(nil) })
	if o.cluster == nil {
		o.cluster = edsCluster("c")
	}
	if o.route == nil {
		o.route = &routev3.Route{}
	}
	if o.route.Match == nil {
		o.route.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	}
	if o.route.Action == nil {
		o.route.Action = &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}
	}
	apply := func(typ, name string, m proto.Message) {
		t.Helper()
		if err := p.Apply(typ, map[string]proto.Message{name: m}); err != nil {
			t.Fatal(err)
		}
	}
	apply(xdsclient.ClusterType, "c", o.cluster)
	apply(xdsclient.EndpointType, "c", o.cla)
	apply(xdsclient.RouteType, "r", &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
		Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{o.route}}}})
	filters := append(o.filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
	port := freePort(t)
	ln := &listenerv3.Listener{
		Name: "l",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &hcmv3.HttpConnectionManager{
				StatPrefix:     "test",
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r", ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
				HttpFilters:    filters,
			})},
		}}}},
	}
	apply(xdsclient.ListenerType, "l", ln)
	tb := &testBed{p: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), listener: ln,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	t.Cleanup(tb.http.CloseIdleConnections)
	return tb
}

func (tb *testBed) cluster() *cluster { return (*tb.p.clusters.Load())["c"] }

// get sends a request with the given headers ("Name: value") and returns
// the status, the body and the response headers.
func (tb *testBed) get(t *testing.T, path string, headers ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tb.url+path, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Cookie" {
			req.Header.Add(k, v)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := tb.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// getAsync sends a request in the background; the status arrives on the
// channel.
func (tb *testBed) getAsync(t *testing.T) <-chan int {
	ch := make(chan int, 1)
	go func() {
		resp, err := tb.http.Get(tb.url + "/")
		if err != nil {
			ch <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- resp.StatusCode
	}()
	return ch
}

// eventually polls f until it returns nil, failing after a generous
// guard time.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func withLB(c *clusterv3.Cluster, lb clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	c.LbPolicy = lb
	return c
}

func TestRoundRobin(t *testing.T) {
	bs := []*lbBackend{newLBBackend(t, "a"), newLBBackend(t, "b"), newLBBackend(t, "c")}
	tb := newTestBed(t, bedOptions{cla: assignmentOf("c", bs)})
	for range 30 {
		if code, _, _ := tb.get(t, "/"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	for _, b := range bs {
		if b.hits.Load() != 10 {
			t.Errorf("backend %s got %d of 30 requests, want 10", b.name, b.hits.Load())
		}
	}
}

// TestLeastRequest holds requests on one backend: the power of two
// choices sends new ones mostly to the idle one (both choices land on
// the busy one a quarter of the time).
func TestLeastRequest(t *testing.T) {
	busy, idle := newLBBackend(t, "busy"), newLBBackend(t, "idle")
	c := withLB(edsCluster("c"), clusterv3.Cluster_LEAST_REQUEST)
	c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(2)}}
	tb := newTestBed(t, bedOptions{cluster: c, cla: assignmentOf("c", []*lbBackend{busy, idle})})
	release := busy.holdRequests()
	defer release()
	var held []<-chan int
	for range 20 {
		held = append(held, tb.getAsync(t))
	}
	// All 20 are in flight: those that reached idle return at once.
	eventually(t, "20 requests in flight", func() error {
		if n := busy.hits.Load() + idle.hits.Load(); n != 20 {
			return fmt.Errorf("%d requests arrived", n)
		}
		return nil
	})
	before := busy.hits.Load()
	busyNow := tb.cluster().hosts.Load().all[0].st.active.Load() + tb.cluster().hosts.Load().all[1].st.active.Load()
	if busyNow == 0 {
		t.Fatal("no request is active on the held backend")
	}
	const n = 400
	for range n {
		tb.get(t, "/x")
	}
	toBusy := busy.hits.Load() - before
	// Expected n/4 = 100; 160 is beyond any plausible chance.
	if toBusy > 160 {
		t.Errorf("%d of %d requests went to the backend with requests in flight, want about %d", toBusy, n, n/4)
	}
	release()
	for _, ch := range held {
		<-ch
	}
}

// TestRingHash sends requests with a hash header: one user always reaches
// the same backend, across EDS pushes of the same endpoints and a new
// cluster; without the header the pick is random.
func TestRingHash(t *testing.T) {
	bs := []*lbBackend{newLBBackend(t, "a"), newLBBackend(t, "b"), newLBBackend(t, "c")}
	rt := &routev3.Route{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
		HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}},
	}}}
	cla := assignmentOf("c", bs)
	tb := newTestBed(t, bedOptions{cluster: withLB(edsCluster("c"), clusterv3.Cluster_RING_HASH), cla: cla, route: rt})
	owner := map[string]string{}
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
	for _, u := range users {
		_, who, _ := tb.get(t, "/", "X-User: "+u)
		owner[u] = who
		for range 5 {
			if _, again, _ := tb.get(t, "/", "X-User: "+u); again != who {
				t.Fatalf("user %s went to %s, then %s", u, who, again)
			}
		}
	}
	spread := map[string]bool{}
	for _, who := range owner {
		spread[who] = true
	}
	if len(spread) < 2 {
		t.Errorf("10 users all hash to one backend: %v", owner)
	}
	check := func(when string) {
		t.Helper()
		for _, u := range users {
			if _, who, _ := tb.get(t, "/", "X-User: "+u); who != owner[u] {
				t.Errorf("%s: user %s moved from %s to %s", when, u, owner[u], who)
			}
		}
	}
	// The same endpoints pushed again, in another order.
	reordered := assignmentOf("c", []*lbBackend{bs[2], bs[0], bs[1]})
	if err := tb.p.Apply(xdsclient.EndpointType, map[string]proto.Message{"c": reordered}); err != nil {
		t.Fatal(err)
	}
	check("after an EDS push of the same endpoints")
	// A changed cluster (a new one is compiled, endpoints carried over).
	c2 := withLB(edsCluster("c"), clusterv3.Cluster_RING_HASH)
	c2.ConnectTimeout = durationpb.New(3 * time.Second)
	if err := tb.p.Apply(xdsclient.ClusterType, map[string]proto.Message{"c": c2}); err != nil {
		t.Fatal(err)
	}
	check("after a cluster push")
	// No hash: random, so more than one backend.
	seen := map[string]bool{}
	for range 60 {
		_, who, _ := tb.get(t, "/")
		seen[who] = true
	}
	if len(seen) < 2 {
		t.Errorf("requests without a hash all went to %v", seen)
	}
}

// TestRingHashCookie hashes on a cookie.
func TestRingHashCookie(t *testing.T) {
	bs := []*lbBackend{newLBBackend(t, "a"), newLBBackend(t, "b"), newLBBackend(t, "c")}
	rt := &routev3.Route{Action: &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
		HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
			Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "session"}}}},
	}}}
	tb := newTestBed(t, bedOptions{cluster: withLB(edsCluster("c"), clusterv3.Cluster_RING_HASH), cla: assignmentOf("c", bs), route: rt})
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		_, who, _ := tb.get(t, "/", "Cookie: session="+s)
		for range 5 {
			if _, again, _ := tb.get(t, "/", "Cookie: other=1; session="+s); again != who {
				t.Fatalf("session %s went to %s, then %s", s, who, again)
			}
		}
	}
}

func thresholds(t *clusterv3.CircuitBreakers_Thresholds) *clusterv3.CircuitBreakers {
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
}

// TestMaxRequests refuses the request beyond max_requests with 503 and
// x-envoy-overloaded, at once.
func TestMaxRequests(t *testing.T) {
	b := newLBBackend(t, "a")
	c := edsCluster("c")
	c.CircuitBreakers = thresholds(&clusterv3.CircuitBreakers_Thresholds{MaxRequests: wrapperspb.UInt32(2)})
	tb := newTestBed(t, bedOptions{cluster: c, cla: assignmentOf("c", []*lbBackend{b})})
	release := b.holdRequests()
	defer release()
	first, second := tb.getAsync(t), tb.getAsync(t)
	eventually(t, "two requests in flight", func() error {
		if n := b.hits.Load(); n != 2 {
			return fmt.Errorf("%d arrived", n)
		}
		return nil
	})
	code, _, hdr := tb.get(t, "/")
	if code != http.StatusServiceUnavailable || hdr.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("third request: %d, x-envoy-overloaded %q; want 503 and true", code, hdr.Get("X-Envoy-Overloaded"))
	}
	release()
	if a, b := <-first, <-second; a != 200 || b != 200 {
		t.Errorf("requests in flight ended with %d and %d", a, b)
	}
	if code, _, _ := tb.get(t, "/"); code != 200 {
		t.Errorf("after the burst: %d", code)
	}
}

// TestMaxConnectionsAndPending: with one connection allowed and one
// pending request, a second request waits for the first's connection and
// a third is refused.
func TestMaxConnectionsAndPending(t *testing.T) {
	b := newLBBackend(t, "a")
	c := edsCluster("c")
	c.CircuitBreakers = thresholds(&clusterv3.CircuitBreakers_Thresholds{
		MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(1)})
	tb := newTestBed(t, bedOptions{cluster: c, cla: assignmentOf("c", []*lbBackend{b})})
	release := b.holdRequests()
	defer release()
	first := tb.getAsync(t)
	eventually(t, "first request in flight", func() error {
		if b.hits.Load() != 1 {
			return fmt.Errorf("%d arrived", b.hits.Load())
		}
		return nil
	})
	second := tb.getAsync(t)
	cb := tb.cluster().cb
	eventually(t, "second request pending", func() error {
		if n := cb.pending.Load(); n != 1 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	code, _, hdr := tb.get(t, "/")
	if code != http.StatusServiceUnavailable || hdr.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("third request: %d, x-envoy-overloaded %q; want 503 and true", code, hdr.Get("X-Envoy-Overloaded"))
	}
	if b.hits.Load() != 1 || b.conns.Load() != 1 {
		t.Errorf("backend saw %d requests on %d connections while one was allowed", b.hits.Load(), b.conns.Load())
	}
	release()
	if a, s := <-first, <-second; a != 200 || s != 200 {
		t.Errorf("first %d, second %d; want both 200", a, s)
	}
	if cb.pending.Load() != 0 || cb.active.Load() != 0 {
		t.Errorf("after: %d pending, %d active", cb.pending.Load(), cb.active.Load())
	}
}

// TestTCPMaxConnections: the TCP proxy's connections count against
// max_connections; beyond it they wait, pending, up to
// max_pending_requests, and are refused beyond that.
func TestTCPMaxConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	p := testProxy(t)
	c := edsCluster("c")
	c.CircuitBreakers = thresholds(&clusterv3.CircuitBreakers_Thresholds{
		MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(1)})
	addr := ln.Addr().(*net.TCPAddr)
	if err := p.Apply(xdsclient.ClusterType, map[string]proto.Message{"c": c}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(xdsclient.EndpointType, map[string]proto.Message{"c": &endpointv3.ClusterLoadAssignment{ClusterName: "c",
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{lbEP("127.0.0.1", uint32(addr.Port))}}}}}); err != nil {
		t.Fatal(err)
	}
	cl := (*p.clusters.Load())["c"]
	ctx := context.Background()
	up1, rel1, err := cl.connectTCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		up, rel, err := cl.connectTCP(ctx)
		if err == nil {
			up.Close()
			rel()
		}
		second <- err
	}()
	eventually(t, "second connection pending", func() error {
		if n := cl.cb.pending.Load(); n != 1 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	if _, _, err := cl.connectTCP(ctx); err != errOverflow {
		t.Errorf("third connection: %v, want overflow", err)
	}
	up1.Close()
	rel1()
	if err := <-second; err != nil {
		t.Errorf("second connection after the first closed: %v", err)
	}
}

func outlier(od *clusterv3.OutlierDetection) *clusterv3.Cluster {
	c := edsCluster("c")
	if od.EnforcingSuccessRate == nil {
		od.EnforcingSuccessRate = wrapperspb.UInt32(0)
	}
	c.OutlierDetection = od
	return c
}

func ejected(c *cluster) map[string]bool {
	out := map[string]bool{}
	for _, ep := range c.hosts.Load().all {
		out[ep.addr] = ep.st.ejected.Load()
	}
	return out
}

func addrOf(b *lbBackend) string { return b.srv.Listener.Addr().String() }

// TestOutlierConsecutive5xx ejects the backend that answers 500, stops
// sending to it, and lets it back after the ejection time.
func TestOutlierConsecutive5xx(t *testing.T) {
	good1, good2, bad := newLBBackend(t, "good1"), newLBBackend(t, "good2"), newLBBackend(t, "bad")
	bad.status.Store(500)
	tb := newTestBed(t, bedOptions{
		cluster: outlier(&clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(3),
			Interval:           durationpb.New(20 * time.Millisecond),
			BaseEjectionTime:   durationpb.New(200 * time.Millisecond),
			MaxEjectionPercent: wrapperspb.UInt32(50),
		}),
		cla: assignmentOf("c", []*lbBackend{good1, good2, bad}),
	})
	for range 9 { // round robin: three requests reach bad
		tb.get(t, "/")
	}
	if !ejected(tb.cluster())[addrOf(bad)] {
		t.Fatalf("after 3 consecutive 500s: ejections %v", ejected(tb.cluster()))
	}
	before := bad.hits.Load()
	for range 30 {
		if code, _, _ := tb.get(t, "/"); code != 200 {
			t.Fatalf("a request reached the ejected backend: %d", code)
		}
	}
	if bad.hits.Load() != before {
		t.Errorf("the ejected backend got %d more requests", bad.hits.Load()-before)
	}
	bad.status.Store(200)
	eventually(t, "the backend returns after its ejection time", func() error {
		if ejected(tb.cluster())[addrOf(bad)] {
			return fmt.Errorf("still ejected")
		}
		return nil
	})
	for range 9 {
		tb.get(t, "/")
	}
	if bad.hits.Load() == before {
		t.Error("the returned backend gets no requests")
	}
}

// TestOutlierMaxEjectionPercent: two failing backends of three, at most 34 %
// ejected: only one is.
func TestOutlierMaxEjectionPercent(t *testing.T) {
	good, bad1, bad2 := newLBBackend(t, "good"), newLBBackend(t, "bad1"), newLBBackend(t, "bad2")
	bad1.status.Store(503)
	bad2.status.Store(503)
	tb := newTestBed(t, bedOptions{
		cluster: outlier(&clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(2),
			BaseEjectionTime:   durationpb.New(time.Hour),
			MaxEjectionPercent: wrapperspb.UInt32(34),
		}),
		cla: assignmentOf("c", []*lbBackend{good, bad1, bad2}),
	})
	for range 30 {
		tb.get(t, "/")
	}
	n := 0
	for _, e := range ejected(tb.cluster()) {
		if e {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d backends ejected, want 1 (34 %% of 3): %v", n, ejected(tb.cluster()))
	}
}

// TestOutlierLocalOrigin ejects an endpoint that refuses connections, as a
// local-origin failure with split_external_local_origin_errors; the
// request itself is retried on the other endpoint.
func TestOutlierLocalOrigin(t *testing.T) {
	good := newLBBackend(t, "good")
	dead := newLBBackend(t, "dead")
	deadAddr := addrOf(dead)
	cla := assignmentOf("c", []*lbBackend{good, dead})
	dead.srv.Close()
	tb := newTestBed(t, bedOptions{
		cluster: outlier(&clusterv3.OutlierDetection{
			Consecutive_5Xx:                 wrapperspb.UInt32(0),
			SplitExternalLocalOriginErrors:  true,
			ConsecutiveLocalOriginFailure:   wrapperspb.UInt32(2),
			EnforcingLocalOriginSuccessRate: wrapperspb.UInt32(0),
			BaseEjectionTime:                durationpb.New(time.Hour),
			MaxEjectionPercent:              wrapperspb.UInt32(50),
		}),
		cla: cla,
	})
	for range 6 {
		if code, body, _ := tb.get(t, "/"); code != 200 || body != "good" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if !ejected(tb.cluster())[deadAddr] {
		t.Errorf("the endpoint refusing connections is not ejected: %v", ejected(tb.cluster()))
	}
}

// TestOutlierEjectionTimeGrows checks Envoy's back-off: the ejection time
// is base_ejection_time times the number of ejections not yet decayed.
// Time is moved by rewinding the ejection instant, and the interval timer
// is run by hand.
func TestOutlierEjectionTimeGrows(t *testing.T) {
	a, b := newLBBackend(t, "a"), newLBBackend(t, "b")
	const base = time.Hour
	tb := newTestBed(t, bedOptions{
		cluster: outlier(&clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(1),
			Interval:           durationpb.New(time.Hour), // the test ticks
			BaseEjectionTime:   durationpb.New(base),
			MaxEjectionTime:    durationpb.New(10 * base),
			MaxEjectionPercent: wrapperspb.UInt32(50),
		}),
		cla: assignmentOf("c", []*lbBackend{a, b}),
	})
	c := tb.cluster()
	var ep *endpoint
	for _, e := range c.hosts.Load().all {
		if e.addr == addrOf(a) {
			ep = e
		}
	}
	eject := func() {
		t.Helper()
		c.httpStatus(ep, 500)
		if !ep.st.ejected.Load() {
			t.Fatal("not ejected")
		}
	}
	ago := func(d time.Duration) {
		c.lbMu.Lock()
		ep.st.lastEjection = time.Now().Add(-d)
		c.lbMu.Unlock()
		c.outlierTick()
	}
	eject()
	ago(base / 2)
	if !ep.st.ejected.Load() {
		t.Fatal("returned before base_ejection_time")
	}
	ago(base + time.Minute)
	if ep.st.ejected.Load() {
		t.Fatal("still ejected after base_ejection_time")
	}
	eject() // the second ejection: twice the base
	ago(base + time.Minute)
	if !ep.st.ejected.Load() {
		t.Fatal("second ejection ended after one base_ejection_time")
	}
	ago(2*base + time.Minute)
	if ep.st.ejected.Load() {
		t.Fatal("second ejection still on after twice base_ejection_time")
	}
	c.lbMu.Lock()
	backoff := ep.st.backoff
	ep.st.lastUnejection = time.Now().Add(-2 * time.Hour) // healthy for two intervals
	c.lbMu.Unlock()
	c.outlierTick()
	if ep.st.backoff != backoff-1 {
		t.Errorf("back-off %d after a healthy interval, want %d", ep.st.backoff, backoff-1)
	}
}

// TestOutlierPanic: with every endpoint ejected (max_ejection_percent
// 100), the panic threshold sends requests to all of them rather than
// none.
func TestOutlierPanic(t *testing.T) {
	a, b := newLBBackend(t, "a"), newLBBackend(t, "b")
	a.status.Store(500)
	b.status.Store(500)
	tb := newTestBed(t, bedOptions{
		cluster: outlier(&clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(1),
			BaseEjectionTime:   durationpb.New(time.Hour),
			MaxEjectionPercent: wrapperspb.UInt32(100),
		}),
		cla: assignmentOf("c", []*lbBackend{a, b}),
	})
	tb.get(t, "/")
	tb.get(t, "/")
	for addr, e := range ejected(tb.cluster()) {
		if !e {
			t.Fatalf("%s not ejected", addr)
		}
	}
	before := a.hits.Load() + b.hits.Load()
	for range 4 {
		if code, _, _ := tb.get(t, "/"); code != 500 {
			t.Errorf("in panic mode: %d, want the backends' 500", code)
		}
	}
	if a.hits.Load()+b.hits.Load() != before+4 {
		t.Error("requests did not reach the ejected backends in panic mode")
	}
}

// TestPriorityFailover: priority 0 takes everything while healthy; once
// its endpoint is ejected, priority 1 does.
func TestPriorityFailover(t *testing.T) {
	near, far := newLBBackend(t, "near"), newLBBackend(t, "far")
	tb := newTestBed(t, bedOptions{
		cluster: outlier(&clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(2),
			BaseEjectionTime:   durationpb.New(time.Hour),
			MaxEjectionPercent: wrapperspb.UInt32(100),
		}),
		cla: assignmentOf("c", []*lbBackend{near}, []*lbBackend{far}),
	})
	for range 10 {
		if _, who, _ := tb.get(t, "/"); who != "near" {
			t.Fatalf("a request went to %s while priority 0 is healthy", who)
		}
	}
	near.status.Store(500)
	tb.get(t, "/")
	tb.get(t, "/")
	for range 10 {
		if code, who, _ := tb.get(t, "/"); code != 200 || who != "far" {
			t.Fatalf("after priority 0 failed: %d from %s", code, who)
		}
	}
}

// TestPriorityLoad checks Envoy's priority load arithmetic with the 1.4
// overprovisioning factor and the panic threshold.
func TestPriorityLoad(t *testing.T) {
	mk := func(prio uint32, ejected bool) *endpoint {
		ep := &endpoint{addr: fmt.Sprint(prio, ejected), priority: prio, st: &hostState{}}
		ep.st.ejected.Store(ejected)
		return ep
	}
	cfg := &lbConfig{panicThreshold: defaultPanicThreshold}
	for _, tc := range []struct {
		name  string
		eps   []*endpoint
		load  []uint32
		panic []bool
	}{
		{"all healthy", []*endpoint{mk(0, false), mk(0, false), mk(1, false)}, []uint32{100, 0}, []bool{false, false}},
		// P0 half healthy: 1.4 × 50 % = 70 %; P1 takes the rest.
		{"half of P0", []*endpoint{mk(0, false), mk(0, true), mk(1, false)}, []uint32{70, 30}, []bool{false, false}},
		{"P0 down", []*endpoint{mk(0, true), mk(1, false)}, []uint32{0, 100}, []bool{false, false}},
		// P0 1/4 (35), P1 1/4 (35): total 70, normalized 50/50, both in panic
		// (25 % < 50 %), so load follows host counts.
		{"both low", []*endpoint{mk(0, false), mk(0, true), mk(0, true), mk(0, true), mk(1, false), mk(1, true), mk(1, true), mk(1, true)},
			[]uint32{50, 50}, []bool{true, true}},
		// One priority, 1 of 3 healthy: panic, load 100.
		{"panic", []*endpoint{mk(0, false), mk(0, true), mk(0, true)}, []uint32{100}, []bool{true}},
		// 3 of 4 healthy: 1.4 × 75 % caps at 100: no panic.
		{"overprovisioned", []*endpoint{mk(0, false), mk(0, false), mk(0, false), mk(0, true)}, []uint32{100}, []bool{false}},
	} {
		hs := newHostSet(tc.eps, cfg, defaultOverprovisioning)
		var panics []bool
		for _, l := range hs.levels {
			panics = append(panics, l.panic)
		}
		if fmt.Sprint(hs.load) != fmt.Sprint(tc.load) || fmt.Sprint(panics) != fmt.Sprint(tc.panic) {
			t.Errorf("%s: load %v panic %v, want %v %v", tc.name, hs.load, panics, tc.load, tc.panic)
		}
	}
}

// TestRetryBudget counts active requests: with 20 in flight a 25 % budget
// allows 5 retries at once, and min_retry_concurrency 3 without traffic;
// without a budget, max_retries' default of 3.
func TestRetryBudget(t *testing.T) {
	b := newLBBackend(t, "a")
	c := edsCluster("c")
	c.CircuitBreakers = thresholds(&clusterv3.CircuitBreakers_Thresholds{RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
		BudgetPercent: &typev3.Percent{Value: 25}, MinRetryConcurrency: wrapperspb.UInt32(3)}})
	tb := newTestBed(t, bedOptions{cluster: c, cla: assignmentOf("c", []*lbBackend{b})})
	cl := tb.cluster()
	admit := func(n int) (dones []func()) {
		for range n {
			done, ok := cl.admitRetry()
			if !ok {
				break
			}
			dones = append(dones, done)
		}
		return dones
	}
	idle := admit(10)
	if len(idle) != 3 {
		t.Errorf("no traffic: %d retries admitted, want min_retry_concurrency 3", len(idle))
	}
	for _, d := range idle {
		d()
		d() // done twice counts once
	}
	release := b.holdRequests()
	var held []<-chan int
	for range 20 {
		held = append(held, tb.getAsync(t))
	}
	eventually(t, "20 requests active", func() error {
		if n := cl.cb.active.Load(); n != 20 {
			return fmt.Errorf("%d active", n)
		}
		return nil
	})
	busy := admit(10)
	if len(busy) != 5 {
		t.Errorf("20 active: %d retries admitted, want 25 %% = 5", len(busy))
	}
	release()
	for _, ch := range held {
		<-ch
	}
	for _, d := range busy {
		d()
	}
	plain := newTestBed(t, bedOptions{cla: assignmentOf("c", []*lbBackend{b})}).cluster()
	n := 0
	for range 10 {
		if _, ok := plain.admitRetry(); ok {
			n++
		}
	}
	if n != defaultMaxRetries {
		t.Errorf("without a budget: %d retries admitted, want max_retries %d", n, defaultMaxRetries)
	}
}

// TestUpstreamIdleTimeout closes pooled upstream connections idle for
// longer than the cluster's idle_timeout.
func TestUpstreamIdleTimeout(t *testing.T) {
	b := newLBBackend(t, "a")
	c := edsCluster("c")
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: mustAny(t, &upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(50 * time.Millisecond)},
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})}
	tb := newTestBed(t, bedOptions{cluster: c, cla: assignmentOf("c", []*lbBackend{b})})
	if code, _, _ := tb.get(t, "/"); code != 200 {
		t.Fatal(code)
	}
	eventually(t, "the idle upstream connection is closed", func() error {
		if n := b.conns.Load(); n != 0 {
			return fmt.Errorf("%d open", n)
		}
		return nil
	})
}

func perRouteRateLimit(t *testing.T, bucket *typev3.TokenBucket) *anypb.Any {
	hundred := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	return mustAny(t, &localratelimitv3.LocalRateLimit{StatPrefix: "rl", TokenBucket: bucket, FilterEnabled: hundred, FilterEnforced: hundred})
}

// TestLocalRateLimit: the route's token bucket lets max_tokens requests
// through, then answers 429 with x-envoy-ratelimited; another route
// without a configuration is not limited.
func TestLocalRateLimit(t *testing.T) {
	b := newLBBackend(t, "a")
	rt := &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/limited"}},
		TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.local_ratelimit": perRouteRateLimit(t,
			&typev3.TokenBucket{MaxTokens: 2, TokensPerFill: wrapperspb.UInt32(2), FillInterval: durationpb.New(time.Hour)})},
	}
	filter := &hcmv3.HttpFilter{Name: "envoy.filters.http.local_ratelimit", ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: mustAny(t, &localratelimitv3.LocalRateLimit{StatPrefix: "rl"})}}
	tb := newTestBed(t, bedOptions{cla: assignmentOf("c", []*lbBackend{b}), route: rt, filters: []*hcmv3.HttpFilter{filter}})
	for i := range 2 {
		if code, _, _ := tb.get(t, "/limited"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	code, _, hdr := tb.get(t, "/limited")
	if code != http.StatusTooManyRequests || hdr.Get("X-Envoy-Ratelimited") != "true" {
		t.Errorf("third request: %d, x-envoy-ratelimited %q; want 429 and true", code, hdr.Get("X-Envoy-Ratelimited"))
	}
	if b.hits.Load() != 2 {
		t.Errorf("backend got %d requests, want 2", b.hits.Load())
	}
}

// TestTokenBucket refills at whole fill intervals, up to max_tokens.
func TestTokenBucket(t *testing.T) {
	b, err := newTokenBucket(&typev3.TokenBucket{MaxTokens: 3, TokensPerFill: wrapperspb.UInt32(2), FillInterval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t0 := b.filled
	took := func(at time.Duration) int {
		n := 0
		for b.take(t0.Add(at)) {
			n++
		}
		return n
	}
	for _, tc := range []struct {
		at   time.Duration
		want int
	}{
		{0, 3},                       // starts full
		{999 * time.Millisecond, 0},  // no fill yet
		{time.Second, 2},             // one fill
		{1500 * time.Millisecond, 0}, // between fills
		{10 * time.Second, 3},        // many fills, capped
		{10*time.Second + 1, 0},      // the tick was at 10 s
		{11 * time.Second, 2},        // and the next one at 11 s
	} {
		if got := took(tc.at); got != tc.want {
			t.Errorf("at %v: %d tokens, want %d", tc.at, got, tc.want)
		}
	}
	if _, err := newTokenBucket(&typev3.TokenBucket{MaxTokens: 1, FillInterval: durationpb.New(10 * time.Millisecond)}); err == nil {
		t.Error("a fill interval under 50 ms was accepted")
	}
}

// TestBackendPolicyConfigRefused: what the proxy does not implement is
// refused, naming the field.
func TestBackendPolicyConfigRefused(t *testing.T) {
	p := testProxy(t)
	for name, tc := range map[string]struct {
		edit func(*clusterv3.Cluster)
		want string
	}{
		"maglev":                  {func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_MAGLEV }, "lb_policy MAGLEV"},
		"success rate by default": {func(c *clusterv3.Cluster) { c.OutlierDetection = &clusterv3.OutlierDetection{} }, "enforcing_success_rate"},
		"failure percentage": {func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0), EnforcingFailurePercentage: wrapperspb.UInt32(100)}
		}, "enforcing_failure_percentage"},
		"local success rate": {func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0), SplitExternalLocalOriginErrors: true}
		}, "enforcing_local_origin_success_rate"},
		"high priority thresholds": {func(c *clusterv3.Cluster) {
			c.CircuitBreakers = thresholds(&clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_HIGH})
		}, "only DEFAULT"},
		"track remaining": {func(c *clusterv3.Cluster) {
			c.CircuitBreakers = thresholds(&clusterv3.CircuitBreakers_Thresholds{TrackRemaining: true})
		}, "track_remaining"},
		"ring hash murmur": {func(c *clusterv3.Cluster) {
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}}
		}, "MURMUR_HASH_2"},
		"slow start": {func(c *clusterv3.Cluster) {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{UpdateMergeWindow: durationpb.New(time.Second)}
		}, "update_merge_window"},
	} {
		t.Run(name, func(t *testing.T) {
			c := edsCluster("c")
			tc.edit(c)
			err := p.Apply(xdsclient.ClusterType, map[string]proto.Message{"c": c})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	// A gap in priorities.
	if err := p.Apply(xdsclient.ClusterType, map[string]proto.Message{"c": edsCluster("c")}); err != nil {
		t.Fatal(err)
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{LbEndpoints: []*endpointv3.LbEndpoint{lbEP("10.0.0.1", 80)}},
		{Priority: 2, LbEndpoints: []*endpointv3.LbEndpoint{lbEP("10.0.0.2", 80)}},
	}}
	if err := p.Apply(xdsclient.EndpointType, map[string]proto.Message{"c": cla}); err == nil || !strings.Contains(err.Error(), "without a gap") {
		t.Errorf("priorities 0 and 2: %v", err)
	}
}

// TestListenerChangeDrains: a request in flight when its listener's
// config changes, or when its listener is removed, ends normally; after
// the removal, new connections are refused.
func TestListenerChangeDrains(t *testing.T) {
	b := newLBBackend(t, "a")
	tb := newTestBed(t, bedOptions{cla: assignmentOf("c", []*lbBackend{b})})
	release := b.holdRequests()
	defer release()

	inFlight := tb.getAsync(t)
	eventually(t, "a request in flight", func() error {
		if n := b.hits.Load(); n != 1 {
			return fmt.Errorf("%d arrived", n)
		}
		return nil
	})
	changed := proto.Clone(tb.listener).(*listenerv3.Listener)
	changed.FilterChains[0].Name = "renamed"
	if err := tb.p.Apply(xdsclient.ListenerType, map[string]proto.Message{"l": changed}); err != nil {
		t.Fatal(err)
	}
	second := tb.getAsync(t)
	eventually(t, "a second request in flight", func() error {
		if n := b.hits.Load(); n != 2 {
			return fmt.Errorf("%d arrived", n)
		}
		return nil
	})
	removed := make(chan error, 1)
	go func() { removed <- tb.p.Apply(xdsclient.ListenerType, map[string]proto.Message{}) }()
	release()
	if a, b := <-inFlight, <-second; a != 200 || b != 200 {
		t.Errorf("requests in flight across a listener change and its removal ended with %d and %d, want 200", a, b)
	}
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed listener refuses connections", func() error {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(tb.url + "/")
		if err == nil {
			resp.Body.Close()
			return fmt.Errorf("a new request got %d", resp.StatusCode)
		}
		return nil
	})
}
