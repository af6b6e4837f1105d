package translate

import (
	"bytes"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
)

// accessMesh is namespace shop: Service cart (HTTP 80 → 8080, TCP 5432 →
// 5432) and Service admin (HTTP 9000 → 9000), both served by workload
// cart-1; Service other served by other-1; Gateway ingress.
func accessMesh(policies ...*model.AccessPolicy) *model.Config {
	c := &model.Config{
		Services: []*model.Service{
			{Key: model.Key{Namespace: "shop", Name: "cart"}, Selector: map[string]string{"app": "cart"}, Ports: []model.ServicePort{
				{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP},
				{Name: "db", Port: 5432, Protocol: model.ProtocolTCP},
			}},
			{Key: model.Key{Namespace: "shop", Name: "admin"}, Selector: map[string]string{"role": "admin"}, Ports: []model.ServicePort{
				{Name: "http", Port: 9000, Protocol: model.ProtocolHTTP},
			}},
			{Key: model.Key{Namespace: "shop", Name: "other"}, Selector: map[string]string{"app": "other"}, Ports: []model.ServicePort{
				{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP},
			}},
		},
		Workloads: []*model.Workload{
			{Key: model.Key{Namespace: "shop", Name: "cart-1"}, Address: "10.0.0.1", ServiceAccount: "cart",
				Labels: map[string]string{"app": "cart", "role": "admin"}, MeshPort: 15008},
			{Key: model.Key{Namespace: "shop", Name: "other-1"}, Address: "10.0.0.2", ServiceAccount: "other",
				Labels: map[string]string{"app": "other"}, MeshPort: 15008},
		},
		Gateways: []*model.Gateway{{Key: model.Key{Namespace: "shop", Name: "ingress"},
			Listeners: []model.Listener{{Name: "http", Port: 8000, Protocol: model.ProtocolHTTP}}}},
		AccessPolicies: policies,
	}
	c.Sort()
	return c
}

func sidecarOf(c *model.Config, name string) *model.Proxy {
	w := model.NewIndex(c).Workload(model.Key{Namespace: "shop", Name: name})
	return &model.Proxy{ID: name + ".shop", Kind: model.KindSidecar, Workload: *w, AppAddress: "127.0.0.1"}
}

var serviceCart = []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "cart"}}

func TestAccessGolden(t *testing.T) {
	for name, tc := range map[string]struct {
		policies []*model.AccessPolicy
		proxy    string
	}{
		// Every kind of condition, on the HTTP chains and the TCP chain of
		// a workload that two Services select.
		"http-and-tcp": {proxy: "cart-1", policies: []*model.AccessPolicy{
			{Key: model.Key{Namespace: "shop", Name: "callers"}, Action: model.AccessAllow, Targets: serviceCart, Rules: []model.AccessRule{
				{
					From: []model.AccessSource{
						{Namespaces: []string{"web", "mobile"}},
						{Identities: []string{"spiffe://cluster.local/ns/ops/sa/*", "spiffe://cluster.local/ns/batch/sa/report"}, Namespaces: []string{"ops", "batch"}},
					},
					To: []model.AccessTarget{
						{Methods: []string{"GET", "HEAD"}, Paths: []string{"/items/*", "/cart", "*.png", "*"}},
						{Ports: []uint32{8080}, Methods: []string{"POST"}, Headers: []model.ValueMatch{
							{Type: model.MatchExact, Name: "X-Team", Value: "checkout"},
							{Type: model.MatchRegularExpression, Name: "Host", Value: "cart(\\.shop)?"},
						}},
					},
				},
				{From: []model.AccessSource{{Identities: []string{"*"}}}, To: []model.AccessTarget{{Ports: []uint32{5432}}}},
				// Port 9999 is served by no chain: the rule is left out.
				{To: []model.AccessTarget{{Ports: []uint32{9999}}}},
			}},
			{Key: model.Key{Namespace: "shop", Name: "no-admin"}, Action: model.AccessDeny, Rules: []model.AccessRule{
				{From: []model.AccessSource{{Namespaces: []string{"web"}}}, To: []model.AccessTarget{{Paths: []string{"/admin"}}}},
			}},
			{Key: model.Key{Namespace: "shop", Name: "audit"}, Action: model.AccessAudit, Rules: []model.AccessRule{
				{To: []model.AccessTarget{{Methods: []string{"DELETE"}}}},
			}},
		}},
		// An ALLOW policy without rules denies everything; another
		// workload of the namespace is not concerned by a Service target.
		"default-deny": {proxy: "cart-1", policies: []*model.AccessPolicy{
			{Key: model.Key{Namespace: "shop", Name: "deny-all"}, Action: model.AccessAllow, Targets: serviceCart},
		}},
		"not-selected": {proxy: "other-1", policies: []*model.AccessPolicy{
			{Key: model.Key{Namespace: "shop", Name: "deny-all"}, Action: model.AccessAllow, Targets: serviceCart},
			{Key: model.Key{Namespace: "web", Name: "elsewhere"}, Action: model.AccessAllow},
		}},
		// A DENY without rules denies nothing; an AUDIT only logs.
		"deny-without-rules": {proxy: "cart-1", policies: []*model.AccessPolicy{
			{Key: model.Key{Namespace: "shop", Name: "nothing"}, Action: model.AccessDeny},
			{Key: model.Key{Namespace: "shop", Name: "everything"}, Action: model.AccessAudit, Rules: []model.AccessRule{{}}},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			c := accessMesh(tc.policies...)
			checkGolden(t, "access/"+name, c, sidecarOf(c, tc.proxy))
		})
	}
}

// TestAccessGateway: a Gateway's listeners enforce the AccessPolicies that
// target it (gatewaymesh.go); an ALLOW policy with no rule denies all.
func TestAccessGateway(t *testing.T) {
	gw := func(c *model.Config) *model.Proxy {
		return &model.Proxy{ID: "ingress.shop", Kind: model.KindGateway, Gateway: model.Key{Namespace: "shop", Name: "ingress"},
			Workload: model.Workload{Key: model.Key{Namespace: "shop", Name: "ingress"}, Address: "127.0.0.1", ServiceAccount: "ingress"}}
	}
	target := []model.TargetRef{{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, Name: "ingress"}}
	c := accessMesh(&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "edge"}, Action: model.AccessAllow, Targets: target})
	checkGolden(t, "access/gateway-targeted", c, gw(c))
	c = accessMesh(&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "edge"}, Action: model.AccessAudit, Targets: target})
	checkGolden(t, "access/gateway-audited", c, gw(c))
}

// TestAccessProxyless: a proxyless gRPC application cannot enforce an
// AccessPolicy that selects it; the translator says so.
func TestAccessProxyless(t *testing.T) {
	c := accessMesh(&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "callers"}, Action: model.AccessAllow, Targets: serviceCart})
	w := *model.NewIndex(c).Workload(model.Key{Namespace: "shop", Name: "cart-1"})
	w.MeshPort = 0
	_, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: &model.Proxy{ID: "cart-1.shop", Kind: model.KindGRPC, Workload: w}}, Options{})
	if !slices.ContainsFunc(problems, func(p Problem) bool { return p.Resource == "AccessPolicy shop/callers" }) {
		t.Fatalf("problems %v, want AccessPolicy shop/callers reported", problems)
	}
}

func TestAccessDeps(t *testing.T) {
	c := accessMesh()
	res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: sidecarOf(c, "cart-1")}, Options{})
	for _, k := range []string{"access/shop", "access/svc/shop/cart", "access/svc/shop/admin"} {
		if !slices.Contains(res.Deps, k) {
			t.Errorf("cart-1's sidecar does not depend on %s: %v", k, res.Deps)
		}
	}
	for _, tc := range []struct {
		p    *model.AccessPolicy
		want []string
	}{
		{&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "a"}}, []string{"access/shop"}},
		{&model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: "a"}, Targets: []model.TargetRef{
			{GroupKind: model.GroupKind{Kind: "Service"}, Name: "cart"},
			{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, Name: "ingress"},
			{GroupKind: model.GroupKind{Kind: "ConfigMap"}, Name: "x"},
		}}, []string{"access/svc/shop/cart", "access/gw/shop/ingress"}},
	} {
		if got := AccessPolicyKeys(tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("AccessPolicyKeys(%v) = %v, want %v", tc.p.Targets, got, tc.want)
		}
	}
}

// TestAccessBytesAreDeterministic: RBAC policies are a map; packed into
// typed configs they must marshal to the same bytes every time, or every
// translation would look like a change.
func TestAccessBytesAreDeterministic(t *testing.T) {
	rule := model.AccessRule{From: []model.AccessSource{{Namespaces: []string{"web"}}}}
	var policies []*model.AccessPolicy
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		policies = append(policies, &model.AccessPolicy{Key: model.Key{Namespace: "shop", Name: name}, Action: model.AccessAllow,
			Rules: []model.AccessRule{rule, rule, rule}})
	}
	c := accessMesh(policies...)
	var first []byte
	for range 20 {
		res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: sidecarOf(c, "cart-1")}, Options{})
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res.Listeners[0])
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(b, first) {
			t.Fatal("the inbound listener marshals to different bytes from one translation to the next")
		}
	}
}
