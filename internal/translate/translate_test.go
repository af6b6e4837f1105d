package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/proxy"
)

var update = flag.Bool("update", false, "rewrite golden files")

// demoMesh is the topology of `trellis demo`: an ingress gateway in front of
// web, which calls catalog, which calls reviews, split between v1 and v2.
func demoMesh() *model.Config {
	ns := "demo"
	http := func(name string, port, target uint32) model.ServicePort {
		return model.ServicePort{Name: name, Port: port, TargetPort: target, Protocol: model.ProtocolHTTP}
	}
	grpc := func(name string, port, target uint32) model.ServicePort {
		return model.ServicePort{Name: name, Port: port, TargetPort: target, Protocol: model.ProtocolGRPC, ProtocolDeclared: true}
	}
	// A proxyless gRPC workload: no mesh port, reached in plaintext.
	grpcWL := func(name, addr, version, locality string) *model.Workload {
		return &model.Workload{
			Key: model.Key{Namespace: ns, Name: name}, Address: addr, ServiceAccount: "ratings",
			Labels: map[string]string{"app": "ratings", "version": version}, Locality: locality,
			Ports: []model.WorkloadPort{{Name: "grpc", Port: 9090, Protocol: model.ProtocolGRPC}},
		}
	}
	svc := func(name string, sel map[string]string, ports ...model.ServicePort) *model.Service {
		return &model.Service{Key: model.Key{Namespace: ns, Name: name}, Selector: sel, Ports: ports}
	}
	wl := func(name, addr, sa string, labels map[string]string) *model.Workload {
		return &model.Workload{
			Key: model.Key{Namespace: ns, Name: name}, Address: addr, ServiceAccount: sa, Labels: labels,
			Ports: []model.WorkloadPort{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}}, MeshPort: 15008,
		}
	}
	c := &model.Config{
		Services: []*model.Service{
			svc("web", map[string]string{"app": "web"}, http("http", 80, 8080)),
			svc("catalog", map[string]string{"app": "catalog"}, http("http", 80, 8080)),
			svc("reviews", map[string]string{"app": "reviews"}, http("http", 80, 8080)),
			svc("reviews-v1", map[string]string{"app": "reviews", "version": "v1"}, http("http", 80, 8080)),
			svc("reviews-v2", map[string]string{"app": "reviews", "version": "v2"}, http("http", 80, 8080)),
			svc("db", nil, model.ServicePort{Name: "tcp", Port: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true}),
			svc("ratings", map[string]string{"app": "ratings"}, grpc("grpc", 9090, 9090)),
			svc("ratings-v1", map[string]string{"app": "ratings", "version": "v1"}, grpc("grpc", 9090, 9090)),
			svc("ratings-v2", map[string]string{"app": "ratings", "version": "v2"}, grpc("grpc", 9090, 9090)),
		},
		Workloads: []*model.Workload{
			wl("web-1", "10.0.0.11", "web", map[string]string{"app": "web"}),
			wl("catalog-1", "10.0.0.12", "catalog", map[string]string{"app": "catalog"}),
			wl("reviews-v1", "10.0.0.13", "reviews", map[string]string{"app": "reviews", "version": "v1"}),
			wl("reviews-v2", "10.0.0.14", "reviews", map[string]string{"app": "reviews", "version": "v2"}),
			{Key: model.Key{Namespace: ns, Name: "db-1"}, Address: "10.0.0.20", ServiceAccount: "db", Services: []string{"db"},
				Ports: []model.WorkloadPort{{Name: "tcp", Port: 5432, Protocol: model.ProtocolTCP}}, Locality: "eu/eu-1"},
			grpcWL("ratings-v1", "10.0.0.15", "v1", ""),
			grpcWL("ratings-v2", "10.0.0.16", "v2", "eu/eu-1"),
			// A ratings instance behind a sidecar, which gRPC clients
			// cannot reach yet.
			{Key: model.Key{Namespace: ns, Name: "ratings-v2-meshed"}, Address: "10.0.0.17", ServiceAccount: "ratings",
				Labels: map[string]string{"app": "ratings", "version": "v2"}, MeshPort: 15008,
				Ports: []model.WorkloadPort{{Name: "grpc", Port: 9090, Protocol: model.ProtocolGRPC}}},
		},
		Gateways: []*model.Gateway{{
			Key:       model.Key{Namespace: ns, Name: "ingress"},
			Listeners: []model.Listener{{Name: "http", Port: 18080, Protocol: model.ProtocolHTTP}},
		}},
		HTTPRoutes: []*model.HTTPRoute{
			{
				Route: model.Route{
					Key:     model.Key{Namespace: ns, Name: "web"},
					Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: model.Key{Namespace: ns, Name: "ingress"}}},
				},
				Rules: []model.HTTPRouteRule{
					{Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "web"}, Port: 80, Weight: 1}}},
					{
						Matches:  []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/catalog/", Method: "GET"}},
						Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "catalog"}, Port: 80, Weight: 1}},
					},
					{
						Matches:  []model.HTTPMatch{{PathType: model.PathExact, PathValue: "/gone"}},
						Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "missing"}, Port: 80, Weight: 1}},
					},
				},
			},
			{
				Route: model.Route{
					Key:     model.Key{Namespace: ns, Name: "reviews-split"},
					Parents: []model.ParentRef{{Kind: model.ParentService, Key: model.Key{Namespace: ns, Name: "reviews"}, Port: 80}},
				},
				Rules: []model.HTTPRouteRule{
					{
						Matches: []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/",
							Headers: []model.ValueMatch{{Type: model.MatchExact, Name: "x-canary", Value: "1"}}}},
						Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "reviews-v2"}, Port: 80, Weight: 1}},
					},
					{Backends: []model.Backend{
						{Kind: "Service", Service: model.Key{Namespace: ns, Name: "reviews-v1"}, Port: 80, Weight: 50},
						{Kind: "Service", Service: model.Key{Namespace: ns, Name: "reviews-v2"}, Port: 80, Weight: 50},
					}},
				},
			},
			{
				// An HTTPRoute on a gRPC service: its path prefix must reach
				// gRPC clients in a form they accept.
				Route: model.Route{
					Key:     model.Key{Namespace: ns, Name: "ratings-admin"},
					Parents: []model.ParentRef{{Kind: model.ParentService, Key: model.Key{Namespace: ns, Name: "ratings"}, Port: 9090}},
				},
				Rules: []model.HTTPRouteRule{{
					Matches:  []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/trellis.RatingsAdmin"}},
					Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "ratings-v1"}, Port: 9090, Weight: 1}},
				}},
			},
		},
		GRPCRoutes: []*model.GRPCRoute{{
			Route: model.Route{
				Key:     model.Key{Namespace: ns, Name: "ratings-split"},
				Parents: []model.ParentRef{{Kind: model.ParentService, Key: model.Key{Namespace: ns, Name: "ratings"}}},
			},
			Rules: []model.GRPCRouteRule{
				{
					Matches: []model.GRPCMatch{
						{Type: model.MatchExact, Service: "trellis.Ratings", Method: "Rate"},
						{Type: model.MatchExact, Method: "Debug", Headers: []model.ValueMatch{{Type: model.MatchExact, Name: "x-debug", Value: "1"}}},
					},
					Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "ratings-v2"}, Port: 9090, Weight: 1}},
				},
				{
					Matches: []model.GRPCMatch{{Type: model.MatchExact, Service: "trellis.Ratings"}},
					Backends: []model.Backend{
						{Kind: "Service", Service: model.Key{Namespace: ns, Name: "ratings-v1"}, Port: 9090, Weight: 80},
						{Kind: "Service", Service: model.Key{Namespace: ns, Name: "ratings-v2"}, Port: 9090, Weight: 20},
					},
				},
				{
					Matches:  []model.GRPCMatch{{Type: model.MatchRegularExpression, Service: "grpc\\.health\\..*"}},
					Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: ns, Name: "ratings-v1"}, Port: 9090, Weight: 0}},
				},
			},
		}},
	}
	c.Sort()
	return c
}

func demoProxies(c *model.Config) map[string]*model.Proxy {
	ix := model.NewIndex(c)
	side := func(name string, ups ...model.Upstream) *model.Proxy {
		return &model.Proxy{
			ID: name + ".demo", Kind: model.KindSidecar, Workload: *ix.Workload(model.Key{Namespace: "demo", Name: name}),
			Upstreams: ups, OutboundAddress: "127.0.0.1", AppAddress: "127.0.0.1",
		}
	}
	return map[string]*model.Proxy{
		"gateway": {ID: "ingress.demo", Kind: model.KindGateway, Gateway: model.Key{Namespace: "demo", Name: "ingress"},
			Workload: model.Workload{Key: model.Key{Namespace: "demo", Name: "ingress"}, Address: "127.0.0.1", ServiceAccount: "ingress"}},
		"web": side("web-1", model.Upstream{Service: model.Key{Namespace: "demo", Name: "catalog"}, Port: 80, LocalPort: 9001}),
		"catalog": side("catalog-1", model.Upstream{Service: model.Key{Namespace: "demo", Name: "reviews"}, Port: 80, LocalPort: 9002},
			model.Upstream{Service: model.Key{Namespace: "demo", Name: "db"}, Port: 5432, LocalPort: 5432},
			model.Upstream{Service: model.Key{Namespace: "demo", Name: "nope"}, Port: 80, LocalPort: 9003}),
		"reviews": side("reviews-v1"),
		"grpc": {
			ID: "ratings-v1.demo", Kind: model.KindGRPC, Workload: *ix.Workload(model.Key{Namespace: "demo", Name: "ratings-v1"}),
			Upstreams: []model.Upstream{
				{Service: model.Key{Namespace: "demo", Name: "reviews"}, Port: 80},
				{Service: model.Key{Namespace: "demo", Name: "db"}, Port: 5432},
				{Service: model.Key{Namespace: "demo", Name: "nope"}, Port: 80},
			},
		},
	}
}

// render prints resources as stable, indented JSON: protojson's output
// varies in whitespace on purpose, so it is compacted and re-indented.
func render(t *testing.T, r *Resources, problems []Problem) []byte {
	t.Helper()
	var buf bytes.Buffer
	section := func(name string, msgs []proto.Message) {
		buf.WriteString("# " + name + "\n")
		for _, m := range msgs {
			raw, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var compact, indented bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				t.Fatal(err)
			}
			if err := json.Indent(&indented, compact.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			buf.Write(indented.Bytes())
			buf.WriteString("\n")
		}
	}
	section("listeners", msgs(r.Listeners))
	section("routes", msgs(r.Routes))
	section("clusters", msgs(r.Clusters))
	section("endpoints", msgs(r.Endpoints))
	section("secrets", msgs(r.Secrets))
	buf.WriteString("# problems\n")
	for _, p := range problems {
		buf.WriteString(p.String() + "\n")
	}
	return buf.Bytes()
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func TestGolden(t *testing.T) {
	c := demoMesh()
	for name, p := range demoProxies(c) {
		t.Run(name, func(t *testing.T) { checkGolden(t, name, c, p) })
	}
}

// checkGolden translates p's config in c and compares it with
// testdata/NAME.golden (rewritten with -update). The output must be
// deterministic, hold no resource that fails ValidateAll, and be config a
// trellis-proxy accepts: proxy.Check compiles it with the code a proxy
// applies it with. Every feature's golden test goes through here.
func checkGolden(t *testing.T, name string, c *model.Config, p *model.Proxy) {
	t.Helper()
	in := Input{Config: c, Index: model.NewIndex(c), Proxy: p,
		CertificateChain: []byte("-----BEGIN CERTIFICATE-----\nchain\n-----END CERTIFICATE-----\n"),
		TrustBundle:      []byte("-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n")}
	res, problems := Translate(in, Options{})
	got := render(t, res, problems)
	again, problems2 := Translate(in, Options{})
	if !bytes.Equal(got, render(t, again, problems2)) {
		t.Fatal("translation is not deterministic")
	}
	golden := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test -update and review the diff):\n%s", golden, got)
	}
	for _, p := range problems {
		if strings.Contains(p.Message, "invalid and was not sent") {
			t.Errorf("generated an invalid resource: %s", p)
		}
	}
	if p.Kind != model.KindGRPC {
		err := proxy.Check(proxy.Config{Listeners: res.Listeners, Routes: res.Routes, Clusters: res.Clusters, Endpoints: res.Endpoints})
		if err != nil {
			t.Errorf("trellis-proxy would reject the config: %v", err)
		}
	}
}

// TestDeps checks what each proxy's config is recorded to depend on: a
// change to anything else need not rebuild it.
func TestDeps(t *testing.T) {
	c := demoMesh()
	proxies := demoProxies(c)
	for name, want := range map[string][]string{
		"web": {"access/demo", "access/svc/demo/web", "ep/demo/catalog", "ns/demo", "svc/demo/catalog"},
		"catalog": {"access/demo", "access/svc/demo/catalog", "ep/demo/db", "ep/demo/reviews-v1", "ep/demo/reviews-v2", "ns/demo",
			"svc/demo/db", "svc/demo/nope", "svc/demo/reviews", "svc/demo/reviews-v1", "svc/demo/reviews-v2"},
		"gateway": {"access/gw/demo/ingress", "ep/demo/catalog", "ep/demo/web", "gw/demo/ingress", "ns/demo",
			"svc/demo/catalog", "svc/demo/missing", "svc/demo/web"},
	} {
		res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: proxies[name]}, Options{})
		if !slices.Equal(res.Deps, want) {
			t.Errorf("%s depends on %v, want %v", name, res.Deps, want)
		}
	}
}

// TestDepsCoverRoutes removes each route of the demo mesh in turn: every
// proxy whose config changes must depend on one of the route's parents,
// the keys a route's change touches, or the control plane would not
// rebuild it (a proxyless client once kept a GRPCRoute's old weights).
func TestDepsCoverRoutes(t *testing.T) {
	c := demoMesh()
	proxies := demoProxies(c)
	type route struct {
		name    string
		parents []model.ParentRef
		without func(model.Config) *model.Config
	}
	var routes []route
	for i, r := range c.HTTPRoutes {
		routes = append(routes, route{"HTTPRoute " + r.Key.String(), r.Parents, func(c model.Config) *model.Config {
			c.HTTPRoutes = slices.Delete(slices.Clone(c.HTTPRoutes), i, i+1)
			return &c
		}})
	}
	for i, r := range c.GRPCRoutes {
		routes = append(routes, route{"GRPCRoute " + r.Key.String(), r.Parents, func(c model.Config) *model.Config {
			c.GRPCRoutes = slices.Delete(slices.Clone(c.GRPCRoutes), i, i+1)
			return &c
		}})
	}
	if len(routes) == 0 {
		t.Fatal("the demo mesh has no routes")
	}
	for name, p := range proxies {
		full, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
		want := render(t, full, problems)
		for _, r := range routes {
			cfg := r.without(*c)
			res, problems := Translate(Input{Config: cfg, Index: model.NewIndex(cfg), Proxy: p}, Options{})
			if bytes.Equal(render(t, res, problems), want) {
				continue
			}
			covered := false
			for _, parent := range r.parents {
				covered = covered || slices.Contains(full.Deps, parentKey(parent.Kind, parent.Key))
			}
			if !covered {
				t.Errorf("%s: removing %s changes its config, but it depends on none of the route's parents (deps %v)", name, r.name, full.Deps)
			}
		}
	}
}
