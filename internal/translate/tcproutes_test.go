package translate

import (
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

// TestCrossNamespaceBackendNeedsGrant: a route's backend in another
// namespace is used only when a ReferenceGrant there allows it; otherwise
// the rule answers 500, as the Gateway API requires.
func TestCrossNamespaceBackendNeedsGrant(t *testing.T) {
	c := &model.Config{
		Services: []*model.Service{bpService("web"),
			{Key: model.Key{Namespace: "other", Name: "api"}, Selector: map[string]string{"app": "api"},
				Ports: []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true}}}},
		HTTPRoutes: []*model.HTTPRoute{{
			Route: model.Route{Key: bpKey("web"), Parents: []model.ParentRef{{Kind: model.ParentService, Key: bpKey("web")}}},
			Rules: []model.HTTPRouteRule{{Backends: []model.Backend{{Kind: "Service", Service: model.Key{Namespace: "other", Name: "api"}, Port: 80, Weight: 1}}}},
		}},
	}
	c.Sort()
	p := bpSidecar(c, "", model.Upstream{Service: bpKey("web"), Port: 80})
	_, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if !hasProblem(problems, "no ReferenceGrant in namespace other allows HTTPRoute of namespace shop to reference Service other/api") {
		t.Errorf("without a grant: problems %v", problems)
	}
	c.ReferenceGrants = []*model.ReferenceGrant{{
		Key:  model.Key{Namespace: "other", Name: "from-shop"},
		From: []model.GrantFrom{{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "HTTPRoute"}, Namespace: "shop"}},
		To:   []model.GrantTo{{GroupKind: model.GroupKind{Kind: "Service"}}},
	}}
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if hasProblem(problems, "ReferenceGrant") {
		t.Errorf("with a grant: problems %v", problems)
	}
	found := false
	for _, cl := range res.Clusters {
		found = found || cl.Name == "outbound|80||api.other.svc.cluster.local"
	}
	if !found {
		t.Error("with a grant, the cluster of other/api is missing")
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
