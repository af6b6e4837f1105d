package translate

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"trellis.dev/trellis/internal/model"
)

// egressMesh: an external service ext-api whose member is a Workload
// outside the mesh (no sidecar), an ExternalName service ext-dns, and an
// egress gateway (Gateway egress, served by a gateway registered with a
// mesh port, selected by Service egress-gw) that routes HTTP (by hostname
// to ext-dns, else to ext-api) and TCP to them. Mesh routes (GAMMA) on
// ext-api send its traffic to the egress gateway. An AccessPolicy lets
// only shop/sa/billing leave. Namespace shop is registry-only.
func egressMesh() *model.Config {
	all := model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromSame}}
	gwParent := func(section string) model.ParentRef {
		return model.ParentRef{Kind: model.ParentGateway, Key: gk("shop", "egress"), SectionName: section}
	}
	svcParent := func(port uint32) model.ParentRef {
		return model.ParentRef{Kind: model.ParentService, Key: gk("shop", "ext-api"), Port: port}
	}
	c := &model.Config{
		Namespaces: map[string]map[string]string{"shop": {OutboundTrafficPolicyLabel: "registry-only"}},
		Services: []*model.Service{
			{Key: gk("shop", "ext-api"), Ports: []model.ServicePort{
				{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
				{Name: "tls", Port: 8443, Protocol: model.ProtocolTCP, ProtocolDeclared: true},
			}},
			{Key: gk("shop", "ext-dns"), ExternalName: "api.example.com", Ports: []model.ServicePort{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
			}},
			{Key: gk("shop", "egress-gw"), Selector: map[string]string{"app": "egress"}, Ports: []model.ServicePort{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
				{Name: "tls", Port: 443, Protocol: model.ProtocolTCP, ProtocolDeclared: true},
			}},
			gwService("shop", "web", model.ProtocolHTTP, 80),
		},
		Workloads: []*model.Workload{
			{Key: gk("shop", "ext-api-0"), Address: "203.0.113.10", Services: []string{"ext-api"}},
			{Key: gk("shop", "egress-1"), Address: "10.3.0.1", ServiceAccount: "egress", Labels: map[string]string{"app": "egress"}, MeshPort: 15008},
			gwWorkload("shop", "web", "10.2.0.1", 80, model.ProtocolHTTP),
		},
		Gateways: []*model.Gateway{{
			Key: gk("shop", "egress"),
			Listeners: []model.Listener{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: all},
				{Name: "tls", Port: 443, Protocol: model.ProtocolTCP, AllowedRoutes: all},
			},
		}},
		HTTPRoutes: []*model.HTTPRoute{
			{Route: model.Route{Key: gk("shop", "leave-http"), Parents: []model.ParentRef{gwParent("http")}},
				Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend("shop", "ext-api", 8080, 1)}}}},
			{Route: model.Route{Key: gk("shop", "leave-dns"), Parents: []model.ParentRef{gwParent("http")}, Hostnames: []string{"api.example.com"}},
				Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend("shop", "ext-dns", 80, 1)}}}},
			{Route: model.Route{Key: gk("shop", "ext-api-via-egress"), Parents: []model.ParentRef{svcParent(8080)}},
				Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend("shop", "egress-gw", 80, 1)}}}},
		},
		TCPRoutes: []*model.TCPRoute{
			{Route: model.Route{Key: gk("shop", "leave-tls"), Parents: []model.ParentRef{gwParent("tls")}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("shop", "ext-api", 8443, 1)}}}},
			{Route: model.Route{Key: gk("shop", "ext-api-tls-via-egress"), Parents: []model.ParentRef{svcParent(8443)}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("shop", "egress-gw", 443, 1)}}}},
		},
		AccessPolicies: []*model.AccessPolicy{{
			Key: gk("shop", "who-leaves"), Action: model.AccessAllow,
			Targets: []model.TargetRef{{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, Name: "egress"}},
			Rules:   []model.AccessRule{{From: []model.AccessSource{{Identities: []string{"spiffe://cluster.local/ns/shop/sa/billing"}}}}},
		}},
	}
	c.Sort()
	return c
}

func egressProxy() *model.Proxy {
	return &model.Proxy{ID: "egress-1.shop", Kind: model.KindGateway, Gateway: gk("shop", "egress"),
		Workload: model.Workload{Key: gk("shop", "egress-1"), Address: "10.3.0.1", ServiceAccount: "egress", Labels: map[string]string{"app": "egress"}, MeshPort: 15008}}
}

func egressClient(c *model.Config) *model.Proxy {
	w := *model.NewIndex(c).Workload(gk("shop", "web-1"))
	return &model.Proxy{ID: "web-1.shop", Kind: model.KindSidecar, Workload: w, OutboundCapturePort: 15001, InboundCapturePort: 15006,
		Upstreams: []model.Upstream{{Service: gk("shop", "ext-dns"), Port: 80, LocalPort: 9001}}}
}

// TestEgressGolden pins the egress gateway's config (its mesh listener,
// the AccessPolicy on every chain, the DNS cluster of the ExternalName
// service, the plaintext EDS cluster of the external workload) and the
// registry-only client's (the external member's address routed to the
// egress gateway, unknown destinations to BlackHoleCluster, an explicit
// upstream to the ExternalName service).
func TestEgressGolden(t *testing.T) {
	c := egressMesh()
	checkGolden(t, "egress/gateway", c, egressProxy())
	checkGolden(t, "egress/client", c, egressClient(c))
}

func TestEgressChoices(t *testing.T) {
	c := egressMesh()
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: egressProxy()}, Options{})
	if len(problems) > 0 {
		t.Fatalf("gateway problems: %v", problems)
	}
	mesh := listenerNamed(res.Listeners, InboundListener)
	if mesh == nil || mesh.Address.GetSocketAddress().GetPortValue() != 15008 {
		t.Fatalf("no mesh listener on the gateway's mesh port: %v", mesh)
	}
	var chains []string
	for _, ch := range mesh.FilterChains {
		chains = append(chains, ch.Name)
		first := ch.Filters[0].Name
		if ch.Filters[0].Name == wellknown.HTTPConnectionManager {
			h := &hcmv3.HttpConnectionManager{}
			if err := ch.Filters[0].GetTypedConfig().UnmarshalTo(h); err != nil {
				t.Fatal(err)
			}
			first = h.HttpFilters[0].Name
		}
		if ch.TransportSocket == nil || first != AccessFilterAllow {
			t.Errorf("mesh chain %s: want mTLS and the AccessPolicy first, got %s", ch.Name, first)
		}
	}
	want := []string{"outbound_.443_._.egress-gw.shop.svc.cluster.local", "outbound_.80_._.egress-gw.shop.svc.cluster.local"}
	if !slices.Equal(chains, want) {
		t.Errorf("mesh chains %q, want %q", chains, want)
	}
	var dns *clusterv3.Cluster
	for _, cl := range res.Clusters {
		if cl.Name == OutboundCluster(80, "ext-dns.shop.svc.cluster.local") {
			dns = cl
		}
	}
	if dns.GetType() != clusterv3.Cluster_STRICT_DNS || dns.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != "api.example.com" {
		t.Errorf("ExternalName cluster: %v", dns)
	}

	// The client: registry-only by its namespace's label; the mesh's
	// setting applies without it, and a bad label is reported.
	res, problems = Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: egressClient(c)}, Options{})
	if len(problems) > 0 {
		t.Fatalf("client problems: %v", problems)
	}
	out := listenerNamed(res.Listeners, OutboundCaptureListener)
	if out.DefaultFilterChain.GetName() != BlackHoleCluster {
		t.Errorf("registry-only namespace: default chain %q", out.DefaultFilterChain.GetName())
	}
	chains = nil
	for _, ch := range out.FilterChains {
		chains = append(chains, ch.Name)
	}
	for _, want := range []string{"outbound|8080||ext-api.shop.svc.cluster.local|members|8080", "outbound|8443||ext-api.shop.svc.cluster.local|members|8443"} {
		if !slices.Contains(chains, want) {
			t.Errorf("capture chains %q lack %q", chains, want)
		}
	}
	for label, want := range map[string]string{"allow-any": PassthroughCluster, "REGISTRY_ONLY": BlackHoleCluster, "": PassthroughCluster, "sometimes": PassthroughCluster} {
		c := egressMesh()
		if label == "" {
			c.Namespaces = nil
		} else {
			c.Namespaces["shop"][OutboundTrafficPolicyLabel] = label
		}
		res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: egressClient(c)}, Options{})
		if got := listenerNamed(res.Listeners, OutboundCaptureListener).DefaultFilterChain.GetName(); got != want {
			t.Errorf("label %q: default chain %q, want %q", label, got, want)
		}
		bad := slices.ContainsFunc(problems, func(p Problem) bool { return strings.Contains(p.String(), OutboundTrafficPolicyLabel) })
		if bad != (label == "sometimes") {
			t.Errorf("label %q: problems %v", label, problems)
		}
		if label == "" {
			// The mesh's setting.
			res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: egressClient(c)}, Options{RegistryOnly: true})
			if got := listenerNamed(res.Listeners, OutboundCaptureListener).DefaultFilterChain.GetName(); got != BlackHoleCluster {
				t.Errorf("mesh registry-only: default chain %q", got)
			}
		}
	}
}

// TestEgressWithoutRoutes: in allow-any, the members of a service without
// a sidecar and without routes pass through as any address does; in
// registry-only they are reachable, to the service's plaintext cluster.
func TestEgressWithoutRoutes(t *testing.T) {
	c := egressMesh()
	c.HTTPRoutes = slices.DeleteFunc(c.HTTPRoutes, func(r *model.HTTPRoute) bool { return r.Name == "ext-api-via-egress" })
	c.TCPRoutes = slices.DeleteFunc(c.TCPRoutes, func(r *model.TCPRoute) bool { return r.Name == "ext-api-tls-via-egress" })
	for policy, wantChains := range map[string]bool{"allow-any": false, "registry-only": true} {
		c.Namespaces["shop"][OutboundTrafficPolicyLabel] = policy
		res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: egressClient(c)}, Options{})
		out := listenerNamed(res.Listeners, OutboundCaptureListener)
		has := slices.ContainsFunc(out.FilterChains, func(ch *listenerv3.FilterChain) bool { return strings.Contains(ch.Name, "|members|") })
		if has != wantChains {
			t.Errorf("%s: member chains %v, want %v", policy, has, wantChains)
		}
	}
}

// TestExternalNameRequireMesh: a BackendPolicy requiring mesh mTLS leaves
// an ExternalName Service, outside the mesh, without endpoints.
func TestExternalNameRequireMesh(t *testing.T) {
	c := egressMesh()
	c.BackendPolicies = []*model.BackendPolicy{{Key: gk("shop", "mesh-only"), TLS: model.BackendTLSRequireMesh,
		Targets: []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "ext-dns"}}}}
	c.Sort()
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: egressProxy()}, Options{})
	if !slices.ContainsFunc(problems, func(p Problem) bool { return p.Resource == "BackendPolicy shop/mesh-only" }) {
		t.Errorf("problems %v, want the BackendPolicy reported", problems)
	}
	for _, cl := range res.Clusters {
		if cl.Name == OutboundCluster(80, "ext-dns.shop.svc.cluster.local") && (cl.GetType() != clusterv3.Cluster_STATIC || len(cl.GetLoadAssignment().GetEndpoints()) != 0) {
			t.Errorf("cluster %v, want no endpoint", cl)
		}
	}
}

// FuzzParseOutboundTrafficPolicy: a Namespace label's value is user input;
// it is accepted only as one of the two policies, whatever its case.
func FuzzParseOutboundTrafficPolicy(f *testing.F) {
	for _, s := range []string{"allow-any", "registry-only", "REGISTRY_ONLY", "", "registry only", "allow_any\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		on, err := ParseOutboundTrafficPolicy(s)
		norm := strings.ReplaceAll(strings.ToLower(s), "_", "-")
		switch {
		case err != nil && (norm == AllowAny || norm == RegistryOnly):
			t.Fatalf("%q refused: %v", s, err)
		case err == nil && on != (norm == RegistryOnly):
			t.Fatalf("%q: registry-only %v", s, on)
		case err == nil && norm != AllowAny && norm != RegistryOnly:
			t.Fatalf("%q accepted", s)
		}
	})
}
