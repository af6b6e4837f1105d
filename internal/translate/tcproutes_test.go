package translate

import (
	"slices"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/model"
)

// TestMeshTCPRoute: a TCPRoute on a Service's TCP port splits the
// connections of its callers by weight; a second, younger route on the
// same port is reported and not in effect; a TLSRoute there is reported.
func TestMeshTCPRoute(t *testing.T) {
	tcp := model.ServicePort{Name: "tcp", Port: 5432, TargetPort: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true}
	route := func(name string, created int64, backends ...model.Backend) *model.TCPRoute {
		return &model.TCPRoute{
			Route: model.Route{Key: bpKey(name), Source: model.Source{Kind: "TCPRoute", Key: bpKey(name), CreationUnix: created},
				Parents: []model.ParentRef{{Kind: model.ParentService, Key: bpKey("db"), Port: 5432}}},
			Rules: []model.L4Rule{{Backends: backends}},
		}
	}
	be := func(svc string, weight uint32) model.Backend {
		return model.Backend{Kind: "Service", Service: bpKey(svc), Port: 5432, Weight: weight}
	}
	c := &model.Config{
		Services: []*model.Service{bpService("db", tcp), bpService("db-primary", tcp), bpService("db-replica", tcp)},
		Workloads: []*model.Workload{
			bpWorkload("db-primary-1", "db-primary", "10.0.0.1", "", false),
			bpWorkload("db-replica-1", "db-replica", "10.0.0.2", "", false),
		},
		TCPRoutes: []*model.TCPRoute{
			route("split", 100, be("db-primary", 90), be("db-replica", 10)),
			route("younger", 200, be("db-replica", 1)),
		},
		TLSRoutes: []*model.TLSRoute{{Route: model.Route{Key: bpKey("tls"),
			Parents: []model.ParentRef{{Kind: model.ParentService, Key: bpKey("db")}}}}},
	}
	c.Sort()
	checkGolden(t, "tcproute/split", c, bpSidecar(c, "", model.Upstream{Service: bpKey("db"), Port: 5432}))

	// A route whose every backend is unusable leaves the local port
	// unserved.
	c.TCPRoutes = []*model.TCPRoute{route("broken", 100, be("missing", 1))}
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: bpSidecar(c, "", model.Upstream{Service: bpKey("db"), Port: 5432})}, Options{})
	for _, l := range res.Listeners {
		if l.Name == OutboundListener("127.0.0.1", 9001) {
			t.Errorf("listener %s is served with no usable backend", l.Name)
		}
	}
	if !hasProblem(problems, "TCPRoute shop/broken leaves no usable backend") {
		t.Errorf("problems %v", problems)
	}
}

// TestCrossNamespaceBackends: a mesh route (its parents all Services)
// uses a backend of another namespace without a ReferenceGrant
// (GEP-1294); a route that also attaches to a Gateway uses it only when a
// ReferenceGrant there allows it, otherwise the rule answers 500, as the
// Gateway API requires.
func TestCrossNamespaceBackends(t *testing.T) {
	api := model.Key{Namespace: "other", Name: "api"}
	c := &model.Config{
		Services: []*model.Service{bpService("web"),
			{Key: api, Selector: map[string]string{"app": "api"},
				Ports: []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true}}}},
		HTTPRoutes: []*model.HTTPRoute{{
			Route: model.Route{Key: bpKey("web"), Parents: []model.ParentRef{{Kind: model.ParentService, Key: bpKey("web")}}},
			Rules: []model.HTTPRouteRule{{Backends: []model.Backend{{Kind: "Service", Service: api, Port: 80, Weight: 1}}}},
		}},
	}
	c.Sort()
	p := bpSidecar(c, "", model.Upstream{Service: bpKey("web"), Port: 80})
	hasAPI := func(res *Resources) bool {
		for _, cl := range res.Clusters {
			if cl.Name == "outbound|80||api.other.svc.cluster.local" {
				return true
			}
		}
		return false
	}
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if hasProblem(problems, "ReferenceGrant") || !hasAPI(res) {
		t.Errorf("mesh route: problems %v, cluster of other/api built: %v", problems, hasAPI(res))
	}

	c.HTTPRoutes[0].Parents = append(c.HTTPRoutes[0].Parents, model.ParentRef{Kind: model.ParentGateway, Key: bpKey("edge")})
	res, problems = Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if !hasProblem(problems, "no ReferenceGrant in namespace other allows HTTPRoute of namespace shop to reference Service other/api") || hasAPI(res) {
		t.Errorf("route on a Gateway too, without a grant: problems %v, cluster of other/api built: %v", problems, hasAPI(res))
	}
	c.ReferenceGrants = []*model.ReferenceGrant{{
		Key:  model.Key{Namespace: "other", Name: "from-shop"},
		From: []model.GrantFrom{{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "HTTPRoute"}, Namespace: "shop"}},
		To:   []model.GrantTo{{GroupKind: model.GroupKind{Kind: "Service"}}},
	}}
	res, problems = Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if hasProblem(problems, "ReferenceGrant") || !hasAPI(res) {
		t.Errorf("with a grant: problems %v, cluster of other/api built: %v", problems, hasAPI(res))
	}
}

// TestConsumerRoutes: routes on a Service apply by the caller's namespace
// (GEP-1294): a caller in a namespace with a route of its own on the
// Service (a consumer route) gets only those; every other caller gets
// the routes of the Service's namespace (producer routes); a route in a
// third namespace changes nothing for anyone else. TCPRoutes alike.
func TestConsumerRoutes(t *testing.T) {
	tcp := model.ServicePort{Name: "db", Port: 5432, TargetPort: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true}
	web := bpService("web", model.ServicePort{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true}, tcp)
	routeIn := func(ns string) *model.HTTPRoute {
		return &model.HTTPRoute{Route: model.Route{Key: model.Key{Namespace: ns, Name: "r"},
			Parents: []model.ParentRef{{Kind: model.ParentService, Key: web.Key}}},
			Rules: []model.HTTPRouteRule{{Backends: []model.Backend{{Kind: "Service", Service: web.Key, Port: 80, Weight: 1}}}}}
	}
	c := &model.Config{
		Services:   []*model.Service{web, bpService("replica", tcp)},
		HTTPRoutes: []*model.HTTPRoute{routeIn("shop"), routeIn("cafe")},
		TCPRoutes: []*model.TCPRoute{{Route: model.Route{Key: model.Key{Namespace: "cafe", Name: "t"},
			Parents: []model.ParentRef{{Kind: model.ParentService, Key: web.Key, Port: 5432}}},
			Rules: []model.L4Rule{{Backends: []model.Backend{{Kind: "Service", Service: bpKey("replica"), Port: 5432, Weight: 1}}}}}},
	}
	c.Sort()
	for _, tc := range []struct {
		ns        string
		wantHTTP  string // the namespace whose HTTPRoute is in effect
		wantTCPRt bool   // cafe's TCPRoute is in effect
	}{
		{ns: "shop", wantHTTP: "shop"},
		{ns: "cafe", wantHTTP: "cafe", wantTCPRt: true},
		{ns: "bar", wantHTTP: "shop"},
	} {
		p := bpSidecar(c, "", model.Upstream{Service: web.Key, Port: 80}, model.Upstream{Service: web.Key, Port: 5432})
		p.Workload.Namespace = tc.ns
		res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
		var names []string
		for _, rc := range res.Routes {
			for _, vh := range rc.VirtualHosts {
				for _, r := range vh.Routes {
					names = append(names, r.Name)
				}
			}
		}
		if want := []string{tc.wantHTTP + "/r.rules[0]"}; !slices.Equal(names, want) {
			t.Errorf("caller in %s: routes %v, want %v (problems %v)", tc.ns, names, want, problems)
		}
		tcpRouted := false
		for _, cl := range res.Clusters {
			tcpRouted = tcpRouted || cl.Name == "outbound|5432||replica.shop.svc.cluster.local"
		}
		if tcpRouted != tc.wantTCPRt {
			t.Errorf("caller in %s: cafe's TCPRoute in effect: %v, want %v", tc.ns, tcpRouted, tc.wantTCPRt)
		}
	}
}

func hasProblem(ps []Problem, substr string) bool {
	for _, p := range ps {
		if strings.Contains(p.String(), substr) {
			return true
		}
	}
	return false
}
