package translate

import (
	"slices"
	"testing"
	"time"

	"trellis.dev/trellis/internal/model"
)

// Golden cases of BackendPolicy translation, each a small mesh of its own:
// testdata/backendpolicy/NAME.golden.

const bpNS = "shop"

func bpKey(name string) model.Key { return model.Key{Namespace: bpNS, Name: name} }

// bpService is a Service selecting app=name with one HTTP port 80 → 8080.
func bpService(name string, ports ...model.ServicePort) *model.Service {
	if len(ports) == 0 {
		ports = []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true}}
	}
	return &model.Service{Key: bpKey(name), Selector: map[string]string{"app": name}, Ports: ports}
}

// bpWorkload is a member of app with a sidecar (meshPort 15008) unless
// plain.
func bpWorkload(name, app, addr, locality string, plain bool) *model.Workload {
	w := &model.Workload{Key: bpKey(name), Address: addr, ServiceAccount: app, Labels: map[string]string{"app": app}, Locality: locality,
		Ports: []model.WorkloadPort{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}, {Name: "tcp", Port: 5432, Protocol: model.ProtocolTCP}}}
	if !plain {
		w.MeshPort = 15008
	}
	return w
}

func bpPolicy(name string, created int64, targets []model.TargetRef, edit func(*model.BackendPolicy)) *model.BackendPolicy {
	p := &model.BackendPolicy{Key: bpKey(name), Source: model.Source{Kind: "BackendPolicy", Key: bpKey(name), CreationUnix: created},
		Targets: targets, TLS: model.BackendTLSMesh}
	if edit != nil {
		edit(p)
	}
	return p
}

func svcTarget(name, section string) []model.TargetRef {
	return []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: name, SectionName: section}}
}

// bpSidecar is the client: a sidecar of app "client" calling each service
// port given, on local ports from 9001.
func bpSidecar(c *model.Config, locality string, upstreams ...model.Upstream) *model.Proxy {
	for i := range upstreams {
		upstreams[i].LocalPort = 9001 + uint32(i)
	}
	w := *bpWorkload("client-1", "client", "10.1.0.1", locality, false)
	return &model.Proxy{ID: "client-1.shop", Kind: model.KindSidecar, Workload: w, Upstreams: upstreams,
		OutboundAddress: "127.0.0.1", AppAddress: "127.0.0.1"}
}

func up(name string, port uint32) model.Upstream {
	return model.Upstream{Service: bpKey(name), Port: port}
}

func route(name, parent string, rules ...model.HTTPRouteRule) *model.HTTPRoute {
	return &model.HTTPRoute{Route: model.Route{Key: bpKey(name),
		Parents: []model.ParentRef{{Kind: model.ParentService, Key: bpKey(parent), Port: 80}}}, Rules: rules}
}

func backend(name string, weight uint32) model.Backend {
	return model.Backend{Kind: "Service", Service: bpKey(name), Port: 80, Weight: weight}
}

func bpGolden(t *testing.T, name string, c *model.Config, p *model.Proxy) {
	t.Helper()
	c.Sort()
	checkGolden(t, "backendpolicy/"+name, c, p)
}

func TestBackendPolicyLoadBalancing(t *testing.T) {
	c := &model.Config{
		Services:  []*model.Service{bpService("api"), bpService("cart"), bpService("db", model.ServicePort{Name: "tcp-pg", Port: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true})},
		Workloads: []*model.Workload{bpWorkload("api-1", "api", "10.1.1.1", "", false), bpWorkload("cart-1", "cart", "10.1.2.1", "", false), bpWorkload("db-1", "db", "10.1.3.1", "", true)},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("api", 0, svcTarget("api", ""), func(p *model.BackendPolicy) {
				p.LoadBalancer = &model.LoadBalancer{Type: "LeastRequest"}
				p.ConnectionLimits = &model.ConnectionLimits{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 200}
				p.RetryBudget = &model.RetryBudget{Percent: 25, MinRetries: 5}
				p.IdleTimeout = 90 * time.Second
			}),
			bpPolicy("cart", 0, svcTarget("cart", ""), func(p *model.BackendPolicy) {
				p.LoadBalancer = &model.LoadBalancer{Type: "RoundRobin"}
				p.RetryBudget = &model.RetryBudget{Percent: 10}
			}),
			// Idle timeout and rate limit apply to HTTP only.
			bpPolicy("db", 0, svcTarget("db", ""), func(p *model.BackendPolicy) {
				p.ConnectionLimits = &model.ConnectionLimits{MaxConnections: 5}
				p.IdleTimeout = time.Minute
				p.RateLimit = &model.RateLimit{Requests: 10, Per: time.Second}
			}),
		},
	}
	p := bpSidecar(c, "", up("api", 80), up("cart", 80), up("db", 5432))
	bpGolden(t, "load_balancing", c, p)
	// A BackendPolicy change marks the Services it targets (see
	// control's changeKeys): the proxy depends on exactly those.
	res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if want := []string{"access/shop", "ep/shop/api", "ep/shop/cart", "ep/shop/db", "ns/shop", "svc/shop/api", "svc/shop/cart", "svc/shop/db"}; !slices.Equal(res.Deps, want) {
		t.Errorf("deps %v, want %v", res.Deps, want)
	}
}

func TestBackendPolicyConsistentHash(t *testing.T) {
	c := &model.Config{
		Services: []*model.Service{bpService("users"), bpService("users-v2"), bpService("carts"), bpService("front")},
		Workloads: []*model.Workload{bpWorkload("users-1", "users", "10.1.1.1", "", false), bpWorkload("users-v2-1", "users-v2", "10.1.1.2", "", false),
			bpWorkload("carts-1", "carts", "10.1.2.1", "", false), bpWorkload("front-1", "front", "10.1.3.1", "", false)},
		HTTPRoutes: []*model.HTTPRoute{route("front", "front",
			// users and users-v2 hash on the same header: the split keeps it.
			model.HTTPRouteRule{Matches: []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/users"}},
				Backends: []model.Backend{backend("users", 90), backend("users-v2", 10)}},
			// users (header) and carts (cookie) disagree: no hash policy.
			model.HTTPRouteRule{Matches: []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/mixed"}},
				Backends: []model.Backend{backend("users", 50), backend("carts", 50)}},
			model.HTTPRouteRule{Backends: []model.Backend{backend("carts", 1)}},
		)},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("users", 0, append(svcTarget("users", ""), svcTarget("users-v2", "")...), func(p *model.BackendPolicy) {
				p.LoadBalancer = &model.LoadBalancer{Type: "ConsistentHash", HashHeader: "x-user"}
			}),
			bpPolicy("carts", 0, svcTarget("carts", ""), func(p *model.BackendPolicy) {
				p.LoadBalancer = &model.LoadBalancer{Type: "ConsistentHash", HashCookie: "cart"}
			}),
		},
	}
	bpGolden(t, "consistent_hash", c, bpSidecar(c, "", up("front", 80)))
}

// TestBackendPolicyLocality: with outlier detection, endpoints are ordered
// into priorities by locality seen from the proxy (priorities without
// endpoints are skipped); without it, one priority.
func TestBackendPolicyLocality(t *testing.T) {
	c := &model.Config{
		Services: []*model.Service{bpService("api"), bpService("cart")},
		Workloads: []*model.Workload{
			bpWorkload("api-same", "api", "10.1.1.1", "eu/eu-1/a", false),
			bpWorkload("api-zone", "api", "10.1.1.2", "eu/eu-1/b", false),
			bpWorkload("api-far", "api", "10.1.1.3", "us/us-1", false),
			bpWorkload("api-none", "api", "10.1.1.4", "", false),
			bpWorkload("cart-same", "cart", "10.1.2.1", "eu/eu-1/a", false),
			bpWorkload("cart-far", "cart", "10.1.2.2", "us/us-1", false),
		},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("api", 0, svcTarget("api", ""), func(p *model.BackendPolicy) {
				p.OutlierDetection = &model.OutlierDetection{Consecutive5xx: 3, ConsecutiveConnectErrors: 2, Interval: 5 * time.Second,
					BaseEjectionTime: 15 * time.Second, MaxEjectionPercent: 50}
			}),
		},
	}
	bpGolden(t, "locality", c, bpSidecar(c, "eu/eu-1/a", up("api", 80), up("cart", 80)))
	// A proxy that does not know its locality gets one priority.
	bpGolden(t, "locality_unknown", c, bpSidecar(c, "", up("api", 80)))
}

// TestBackendPolicyPrecedence: several policies on one Service port; the
// one naming the port wins, then the oldest; another namespace's policy
// never applies.
func TestBackendPolicyPrecedence(t *testing.T) {
	other := bpPolicy("elsewhere", 1, svcTarget("api", ""), func(p *model.BackendPolicy) {
		p.LoadBalancer = &model.LoadBalancer{Type: "ConsistentHash", HashHeader: "x-other"}
	})
	other.Key.Namespace, other.Source.Namespace = "other", "other"
	c := &model.Config{
		Services: []*model.Service{bpService("api",
			model.ServicePort{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
			model.ServicePort{Name: "admin", Port: 81, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true})},
		Workloads: []*model.Workload{bpWorkload("api-1", "api", "10.1.1.1", "", false)},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("old", 100, svcTarget("api", ""), func(p *model.BackendPolicy) { p.LoadBalancer = &model.LoadBalancer{Type: "LeastRequest"} }),
			bpPolicy("new", 200, svcTarget("api", ""), func(p *model.BackendPolicy) { p.LoadBalancer = &model.LoadBalancer{Type: "RoundRobin"} }),
			bpPolicy("admin", 300, svcTarget("api", "admin"), func(p *model.BackendPolicy) {
				p.ConnectionLimits = &model.ConnectionLimits{MaxRequests: 1}
			}),
			other,
		},
	}
	bpGolden(t, "precedence", c, bpSidecar(c, "", up("api", 80), up("api", 81)))
}

// TestBackendPolicyTLS: RequireMesh leaves out members without a sidecar;
// Disable leaves out those with one.
func TestBackendPolicyTLS(t *testing.T) {
	c := &model.Config{
		Services: []*model.Service{bpService("strict"), bpService("plain")},
		Workloads: []*model.Workload{
			bpWorkload("strict-mesh", "strict", "10.1.1.1", "", false), bpWorkload("strict-vm", "strict", "10.1.1.2", "", true),
			bpWorkload("plain-mesh", "plain", "10.1.2.1", "", false), bpWorkload("plain-vm", "plain", "10.1.2.2", "", true),
		},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("strict", 0, svcTarget("strict", ""), func(p *model.BackendPolicy) { p.TLS = model.BackendTLSRequireMesh }),
			bpPolicy("plain", 0, svcTarget("plain", ""), func(p *model.BackendPolicy) { p.TLS = model.BackendTLSDisable }),
		},
	}
	bpGolden(t, "tls", c, bpSidecar(c, "", up("strict", 80), up("plain", 80)))
}

// TestBackendPolicyRateLimit: a sidecar's routes toward a rate-limited
// service carry the bucket, and its connection manager the filter; so do a
// gateway's.
func TestBackendPolicyRateLimit(t *testing.T) {
	c := &model.Config{
		Services:  []*model.Service{bpService("api"), bpService("web")},
		Workloads: []*model.Workload{bpWorkload("api-1", "api", "10.1.1.1", "", false), bpWorkload("web-1", "web", "10.1.2.1", "", false)},
		Gateways: []*model.Gateway{{Key: bpKey("edge"),
			Listeners: []model.Listener{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}}}},
		HTTPRoutes: []*model.HTTPRoute{{
			Route: model.Route{Key: bpKey("edge"), Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: bpKey("edge")}}},
			Rules: []model.HTTPRouteRule{
				{Matches: []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: "/api"}}, Backends: []model.Backend{backend("api", 1)}},
				{Backends: []model.Backend{backend("web", 1)}},
			},
		}},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("api", 0, svcTarget("api", ""), func(p *model.BackendPolicy) {
				p.RateLimit = &model.RateLimit{Requests: 100, Per: time.Second, Burst: 150}
			}),
		},
	}
	bpGolden(t, "rate_limit_sidecar", c, bpSidecar(c, "", up("api", 80), up("web", 80)))
	gw := &model.Proxy{ID: "edge.shop", Kind: model.KindGateway, Gateway: bpKey("edge"),
		Workload: model.Workload{Key: bpKey("edge"), Address: "127.0.0.1", ServiceAccount: "edge"}}
	bpGolden(t, "rate_limit_gateway", c, gw)
}

// TestBackendPolicyProxyless: a gRPC client gets the load balancing
// policy, header hashing and max_requests; the rest is reported.
func TestBackendPolicyProxyless(t *testing.T) {
	grpcPort := model.ServicePort{Name: "grpc", Port: 9090, TargetPort: 9090, Protocol: model.ProtocolGRPC, ProtocolDeclared: true}
	plainGRPC := func(name, app, addr, locality string) *model.Workload {
		return &model.Workload{Key: bpKey(name), Address: addr, ServiceAccount: app, Labels: map[string]string{"app": app}, Locality: locality,
			Ports: []model.WorkloadPort{{Name: "grpc", Port: 9090, Protocol: model.ProtocolGRPC}}}
	}
	c := &model.Config{
		Services: []*model.Service{bpService("ratings", grpcPort), bpService("reviews", grpcPort), bpService("stock", grpcPort)},
		Workloads: []*model.Workload{
			plainGRPC("ratings-1", "ratings", "10.1.1.1", "eu/eu-1"), plainGRPC("ratings-2", "ratings", "10.1.1.2", "us/us-1"),
			plainGRPC("reviews-1", "reviews", "10.1.2.1", ""), plainGRPC("stock-1", "stock", "10.1.3.1", ""),
			plainGRPC("client-1", "client", "10.1.0.1", "eu/eu-1"),
		},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("ratings", 0, svcTarget("ratings", ""), func(p *model.BackendPolicy) {
				p.LoadBalancer = &model.LoadBalancer{Type: "ConsistentHash", HashHeader: "x-user", HashCookie: "session"}
				p.ConnectionLimits = &model.ConnectionLimits{MaxConnections: 10, MaxRequests: 100}
				p.OutlierDetection = &model.OutlierDetection{Consecutive5xx: 3}
				p.RetryBudget = &model.RetryBudget{Percent: 20}
				p.IdleTimeout = time.Minute
				p.RateLimit = &model.RateLimit{Requests: 10, Per: time.Second}
			}),
			bpPolicy("reviews", 0, svcTarget("reviews", ""), func(p *model.BackendPolicy) {
				p.LoadBalancer = &model.LoadBalancer{Type: "LeastRequest"}
			}),
			bpPolicy("stock", 0, svcTarget("stock", ""), func(p *model.BackendPolicy) {
				p.TLS = model.BackendTLSRequireMesh
			}),
		},
	}
	ix := model.NewIndex(c)
	c.Sort()
	p := &model.Proxy{ID: "client-1.shop", Kind: model.KindGRPC, Workload: *ix.Workload(bpKey("client-1"))}
	bpGolden(t, "proxyless", c, p)
}

func TestBackendPoliciesFor(t *testing.T) {
	s := bpService("api")
	sp := s.Ports[0]
	pols := []*model.BackendPolicy{
		bpPolicy("b-new", 20, svcTarget("api", ""), nil),
		bpPolicy("a-new", 20, svcTarget("api", ""), nil),
		bpPolicy("old", 10, svcTarget("api", ""), nil),
		bpPolicy("port", 30, svcTarget("api", "http"), nil),
		bpPolicy("other-port", 1, svcTarget("api", "admin"), nil),
		bpPolicy("other-svc", 1, svcTarget("cart", ""), nil),
	}
	var got []string
	for _, r := range model.BackendPoliciesFor(pols, s, sp) {
		got = append(got, r.Policy.Name)
	}
	if want := []string{"port", "old", "a-new", "b-new"}; !slices.Equal(got, want) {
		t.Errorf("precedence %v, want %v", got, want)
	}
}

func TestLocalityPriority(t *testing.T) {
	for _, tc := range []struct {
		proxy, ep string
		want      uint32
	}{
		{"eu/eu-1/a", "eu/eu-1/a", 0},
		{"eu/eu-1/a", "eu/eu-1/b", 1},
		{"eu/eu-1/a", "eu/eu-1", 1},
		{"eu/eu-1/a", "eu/eu-2/a", 2},
		{"eu/eu-1/a", "us/eu-1/a", 3},
		{"eu/eu-1/a", "", 3},
		{"eu", "eu/eu-1", 2},
	} {
		if got := localityPriority(tc.proxy, tc.ep); got != tc.want {
			t.Errorf("localityPriority(%q, %q) = %d, want %d", tc.proxy, tc.ep, got, tc.want)
		}
	}
}

// TestBackendPolicyFaults: a sidecar's routes toward a service with faults
// carry an HTTPFault, and its connection manager the fault filter, first;
// a route splitting between services with different faults injects none
// (reported).
func TestBackendPolicyFaults(t *testing.T) {
	c := &model.Config{
		Services:  []*model.Service{bpService("api"), bpService("web"), bpService("pay")},
		Workloads: []*model.Workload{bpWorkload("api-1", "api", "10.1.1.1", "", false), bpWorkload("web-1", "web", "10.1.2.1", "", false), bpWorkload("pay-1", "pay", "10.1.3.1", "", false)},
		HTTPRoutes: []*model.HTTPRoute{
			route("pay-split", "pay", model.HTTPRouteRule{Backends: []model.Backend{backend("pay", 90), backend("api", 10)}}),
		},
		BackendPolicies: []*model.BackendPolicy{
			bpPolicy("api", 0, svcTarget("api", ""), func(p *model.BackendPolicy) {
				p.Faults = &model.Faults{DelayPercent: 10, Delay: 2 * time.Second, AbortPercent: 5, AbortHTTPStatus: 503}
			}),
			bpPolicy("web", 0, svcTarget("web", ""), func(p *model.BackendPolicy) {
				p.RateLimit = &model.RateLimit{Requests: 100, Per: time.Second}
				p.Faults = &model.Faults{AbortPercent: 100, AbortGRPCStatus: 14}
			}),
		},
	}
	bpGolden(t, "faults", c, bpSidecar(c, "", up("api", 80), up("web", 80), up("pay", 80)))
}
