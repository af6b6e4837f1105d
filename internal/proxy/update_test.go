package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/route"
	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// fleet is a proxy configured as a sidecar seeing many services: n EDS
// clusters c-000…, a route configuration sending /c-NNN/ to each, and one
// listener on a loopback port; every cluster's endpoint is be.
type fleet struct {
	p     *Proxy
	url   string
	names []string
	http  *http.Client
}

func newFleet(t testing.TB, n int, be *lbBackend) *fleet {
	t.Helper()
	f := &fleet{p: testProxy(t)}
	t.Cleanup(func() { f.p.shutdown(nil) })
	clusters, clas := map[string]proto.Message{}, map[string]proto.Message{}
	vh := &routev3.VirtualHost{Name: "v", Domains: []string{"*"}}
	for i := range n {
		name := fmt.Sprintf("c-%03d", i)
		f.names = append(f.names, name)
		clusters[name] = edsCluster(name)
		clas[name] = assignmentOf(name, []*lbBackend{be})
		vh.Routes = append(vh.Routes, &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/" + name + "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}},
		})
	}
	port := freePort(t)
	listener := &listenerv3.Listener{
		Name: "l",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &hcmv3.HttpConnectionManager{
				StatPrefix:     "test",
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r", ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
				HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
					ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}},
			})},
		}}}},
	}
	for _, u := range []struct {
		typ string
		res map[string]proto.Message
	}{
		{xdsclient.ClusterType, clusters},
		{xdsclient.EndpointType, clas},
		{xdsclient.RouteType, map[string]proto.Message{"r": &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{vh}}}},
		{xdsclient.ListenerType, map[string]proto.Message{"l": listener}},
	} {
		if err := f.p.Apply(u.typ, u.res); err != nil {
			t.Fatalf("apply %s: %v", u.typ, err)
		}
	}
	f.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	f.http = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(f.http.CloseIdleConnections)
	return f
}

// snapshot is the compiled config in force, by pointer.
type snapshot struct {
	clusters map[string]*cluster
	hosts    map[string]*hostSet
	routes   map[string]*route.Table
	listener *listenerConfig
}

func (f *fleet) snapshot() snapshot {
	s := snapshot{clusters: *f.p.clusters.Load(), hosts: map[string]*hostSet{}, routes: *f.p.routes.Load()}
	for name, c := range s.clusters {
		s.hosts[name] = c.hosts.Load()
	}
	f.p.mu.Lock()
	s.listener = f.p.listeners["l"].cfg.Load()
	f.p.mu.Unlock()
	return s
}

// get returns the body of GET path through the fleet's listener.
func (f *fleet) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := f.http.Get(f.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// TestEndpointUpdateTouchesOnlyItsCluster changes the endpoints of one
// cluster of a hundred, as delta xDS sends it (only that one) and as
// state of the world does (all of them, one changed): only that cluster's
// endpoint set is replaced; every other cluster, its endpoint set, the
// routes and the listener stay the very objects they were, and traffic
// follows the change.
func TestEndpointUpdateTouchesOnlyItsCluster(t *testing.T) {
	a, b := newLBBackend(t, "a"), newLBBackend(t, "b")
	f := newFleet(t, 100, a)
	for _, path := range []string{"/c-007/", "/c-042/"} {
		if got := f.get(t, path); got != "a" {
			t.Fatalf("GET %s before the update: %q, want a", path, got)
		}
	}
	for _, tc := range []struct {
		name   string
		target string
		to     *lbBackend
		apply  func(name string, cla *endpointv3.ClusterLoadAssignment) error
	}{
		{"delta", "c-007", b, func(name string, cla *endpointv3.ClusterLoadAssignment) error {
			raw, err := proto.Marshal(cla)
			if err != nil {
				return err
			}
			return f.p.Update(xdsclient.EndpointType, map[string]xdsclient.Resource{name: {Message: cla, Raw: raw}}, nil)
		}},
		{"state of the world", "c-042", b, func(name string, cla *endpointv3.ClusterLoadAssignment) error {
			all := map[string]proto.Message{}
			for _, n := range f.names {
				all[n] = assignmentOf(n, []*lbBackend{a})
			}
			for n, c := range map[string]*endpointv3.ClusterLoadAssignment{"c-007": assignmentOf("c-007", []*lbBackend{b}), name: cla} {
				all[n] = c
			}
			return f.p.Apply(xdsclient.EndpointType, all)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.snapshot()
			if err := tc.apply(tc.target, assignmentOf(tc.target, []*lbBackend{tc.to})); err != nil {
				t.Fatal(err)
			}
			after := f.snapshot()
			if after.listener != before.listener {
				t.Error("the listener's config was compiled again")
			}
			if len(after.routes) != len(before.routes) || after.routes["r"] != before.routes["r"] {
				t.Error("the route configuration was compiled again")
			}
			if len(after.clusters) != len(before.clusters) {
				t.Fatalf("%d clusters, had %d", len(after.clusters), len(before.clusters))
			}
			for name, c := range after.clusters {
				if c != before.clusters[name] {
					t.Errorf("cluster %s was replaced", name)
				}
				changed := after.hosts[name] != before.hosts[name]
				if changed != (name == tc.target) {
					t.Errorf("cluster %s: endpoint set replaced %v, want %v", name, changed, name == tc.target)
				}
			}
			if got := f.get(t, "/"+tc.target+"/"); got != tc.to.name {
				t.Errorf("GET /%s/ after the update: %q, want %s", tc.target, got, tc.to.name)
			}
			if got := f.get(t, "/c-099/"); got != "a" {
				t.Errorf("GET /c-099/ after the update: %q, want a", got)
			}
		})
	}
}

// TestOutlierStateSurvivesEndpointUpdate ejects an endpoint, then sends
// an endpoint update that keeps it and adds another: the ejected endpoint
// stays ejected (the same host state, out of the healthy set), the one
// that remained healthy keeps its state, and the new one starts afresh.
func TestOutlierStateSurvivesEndpointUpdate(t *testing.T) {
	bad, good, added := newLBBackend(t, "bad"), newLBBackend(t, "good"), newLBBackend(t, "added")
	c := edsCluster("c")
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(2), EnforcingSuccessRate: wrapperspb.UInt32(0),
		MaxEjectionPercent: wrapperspb.UInt32(100), BaseEjectionTime: durationpb.New(time.Hour), Interval: durationpb.New(time.Hour),
	}
	tb := newTestBed(t, bedOptions{cluster: c, cla: assignmentOf("c", []*lbBackend{bad, good})})
	bad.status.Store(http.StatusServiceUnavailable)
	// Round robin alternates: four requests give bad its two 5xx.
	for range 4 {
		tb.get(t, "/")
	}
	host := func(b *lbBackend) *endpoint {
		addr := b.srv.Listener.Addr().String()
		for _, ep := range tb.cluster().hosts.Load().all {
			if ep.addr == addr {
				return ep
			}
		}
		return nil
	}
	ejected, kept := host(bad), host(good)
	if ejected == nil || !ejected.st.ejected.Load() {
		t.Fatalf("bad was not ejected after its 5xx (hits %d)", bad.hits.Load())
	}
	if kept.st.ejected.Load() {
		t.Fatal("good was ejected")
	}
	before := tb.cluster()
	cla := assignmentOf("c", []*lbBackend{bad, good, added})
	raw, err := proto.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.p.Update(xdsclient.EndpointType, map[string]xdsclient.Resource{"c": {Message: cla, Raw: raw}}, nil); err != nil {
		t.Fatal(err)
	}
	if tb.cluster() != before {
		t.Fatal("the cluster was replaced by an endpoint update")
	}
	if h := host(bad); h == nil || h.st != ejected.st || !h.st.ejected.Load() || h.st.numEjections != 1 {
		t.Fatalf("bad after the update: %+v, want its host state, still ejected", h)
	}
	if h := host(good); h == nil || h.st != kept.st {
		t.Fatal("good lost its host state")
	}
	if h := host(added); h == nil || h.st.ejected.Load() || h.st == ejected.st || h.st == kept.st {
		t.Fatal("added did not start afresh")
	}
	for _, ep := range tb.cluster().hosts.Load().levels[0].healthy {
		if ep.st == ejected.st {
			t.Fatal("the ejected endpoint is in the healthy set after the update")
		}
	}
	bad.hits.Store(0)
	for range 6 {
		if _, body, _ := tb.get(t, "/"); body == "bad" {
			t.Fatal("a request went to the ejected endpoint")
		}
	}
	if added.hits.Load() == 0 {
		t.Error("no request went to the added endpoint")
	}
}

// BenchmarkEndpointUpdate measures an endpoint update of one cluster in a
// config of 1,000 (go test -bench EndpointUpdate ./internal/proxy): as
// applied now, only that cluster's endpoints are compiled and swapped;
// "every_cluster" is what applying it cost before, every endpoint set
// compiled and installed again. The ratio of the two is reported as
// every/one.
func BenchmarkEndpointUpdate(b *testing.B) {
	be := newLBBackend(b, "be")
	alt := newLBBackend(b, "alt")
	f := newFleet(b, 1000, be)
	clas := []*endpointv3.ClusterLoadAssignment{assignmentOf("c-500", []*lbBackend{alt}), assignmentOf("c-500", []*lbBackend{be})}
	raws := make([][]byte, 2)
	for i, cla := range clas {
		raws[i], _ = proto.Marshal(cla)
	}
	var one float64
	b.Run("one_cluster", func(b *testing.B) {
		i := 0
		for b.Loop() {
			cla := clas[i%2]
			if err := f.p.Update(xdsclient.EndpointType, map[string]xdsclient.Resource{"c-500": {Message: cla, Raw: raws[i%2]}}, nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
		one = float64(b.Elapsed()) / float64(b.N)
	})
	all := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, n := range f.names {
		all[n] = assignmentOf(n, []*lbBackend{be})
	}
	b.Run("every_cluster", func(b *testing.B) {
		i := 0
		for b.Loop() {
			all["c-500"] = clas[i%2]
			// What applyEndpoints did before: every endpoint set of the
			// type compiled and installed.
			f.p.mu.Lock()
			for _, c := range *f.p.clusters.Load() {
				a, err := c.compileEndpoints(all[c.edsName])
				if err != nil {
					b.Fatal(err)
				}
				c.setAssignment(a)
			}
			f.p.mu.Unlock()
			i++
		}
		if one > 0 {
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/one, "every/one")
		}
	})
}

// TestLargeUpdateReleasesMemory: an update of a megabyte or more is
// followed, once updates are quiet, by one release of free memory; small
// updates (endpoint churn) never cause one.
func TestLargeUpdateReleasesMemory(t *testing.T) {
	released := make(chan struct{}, 10)
	defer func(f func()) { releaseMemory = f }(releaseMemory)
	releaseMemory = func() { released <- struct{}{} }
	p := testProxy(t)
	t.Cleanup(func() { p.shutdown(nil) })
	update := func(name string, size int) {
		t.Helper()
		c := edsCluster(name)
		raw, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		// The size counted is the serialized size: pad what the update
		// claims to have received.
		raw = append(raw, make([]byte, max(0, size-len(raw)))...)
		if err := p.Update(xdsclient.ClusterType, map[string]xdsclient.Resource{name: {Message: c, Raw: raw}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	update("small", 100)
	p.mu.Lock()
	scheduled := p.settle != nil
	p.mu.Unlock()
	if scheduled {
		t.Fatal("a small update scheduled a release of memory")
	}
	update("large", largeUpdate)
	select {
	case <-released:
	case <-time.After(30 * time.Second):
		t.Fatal("no release of memory after a large update")
	}
}

// TestConfigDumpDecodesStored: the config dump shows the resources in
// force, decoded from what the proxy stores, including those an update
// left unchanged, and not those removed.
func TestConfigDumpDecodesStored(t *testing.T) {
	be := newLBBackend(t, "be")
	f := newFleet(t, 3, be)
	if err := f.p.Update(xdsclient.ClusterType, nil, []string{"c-002"}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	f.p.handleConfigDump(rec, httptest.NewRequest(http.MethodGet, "/config_dump", nil))
	var dump struct {
		Resources map[string][]json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &dump); err != nil {
		t.Fatalf("%v\n%s", err, rec.Body.String())
	}
	var names []string
	for _, r := range dump.Resources[xdsclient.ClusterType] {
		var c struct{ Name string }
		json.Unmarshal(r, &c)
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"c-000", "c-001"}) {
		t.Errorf("clusters in the dump: %v, want c-000 and c-001", names)
	}
	eps := dump.Resources[xdsclient.EndpointType]
	var cla struct{ ClusterName string }
	if len(eps) != 3 || json.Unmarshal(eps[0], &cla) != nil || cla.ClusterName != "c-000" ||
		!strings.Contains(string(eps[0]), strconv.Itoa(be.srv.Listener.Addr().(*net.TCPAddr).Port)) {
		t.Errorf("endpoints in the dump: %s", eps)
	}
}

// TestDeflateAll: the resources kept are compressed when a large update
// settles, except those too small to gain; each still reads back and is
// still told apart from another.
func TestDeflateAll(t *testing.T) {
	big := []byte(strings.Repeat("outbound|80||svc.ns.svc.cluster.local ", 50))
	small := []byte("outbound|80||svc.ns.svc.cluster.local")
	raw := map[string]map[string]stored{xdsclient.ClusterType: {"big": storeRaw(big), "small": storeRaw(small)}}
	deflateAll(raw)
	for name, want := range map[string][]byte{"big": big, "small": small} {
		s := raw[xdsclient.ClusterType][name]
		if s.deflated != (name == "big") {
			t.Errorf("%s: deflated %v", name, s.deflated)
		}
		if b, err := s.bytes(); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: read back %q, %v", name, b, err)
		}
		if !s.same(want) || s.same(want[1:]) {
			t.Errorf("%s: not told apart by its digest", name)
		}
	}
	if s := raw[xdsclient.ClusterType]["big"]; len(s.b) >= len(big)/4 {
		t.Errorf("big: %d bytes compressed of %d", len(s.b), len(big))
	}
}
