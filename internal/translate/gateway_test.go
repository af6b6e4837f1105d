package translate

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/proxy"
)

func gk(ns, name string) model.Key { return model.Key{Namespace: ns, Name: name} }

func gwService(ns, name string, protocol model.Protocol, port uint32) *model.Service {
	return &model.Service{Key: gk(ns, name), Selector: map[string]string{"app": name},
		Ports: []model.ServicePort{{Name: "p", Port: port, TargetPort: port, Protocol: protocol, ProtocolDeclared: true}}}
}

func gwWorkload(ns, name, addr string, port uint32, protocol model.Protocol) *model.Workload {
	return &model.Workload{Key: gk(ns, name+"-1"), Address: addr, ServiceAccount: name, Labels: map[string]string{"app": name},
		MeshPort: 15008, Ports: []model.WorkloadPort{{Name: "p", Port: port, Protocol: protocol}}}
}

func gwBackend(ns, name string, port, weight uint32) model.Backend {
	return model.Backend{Kind: "Service", Service: gk(ns, name), Port: port, Weight: weight}
}

func gwParent(section string) model.ParentRef {
	return model.ParentRef{Kind: model.ParentGateway, Key: gk("infra", "edge"), SectionName: section}
}

func gwSource(kind string, k model.Key, created int64) model.Source {
	return model.Source{Kind: kind, Key: k, CreationUnix: created}
}

func secretRef(ns, name string) model.Ref {
	return model.Ref{Kind: "Secret", Key: gk(ns, name)}
}

// gatewayMesh is a Gateway with a listener of every kind: HTTP; HTTPS
// for two hostnames with their certificates on one port (one of them from
// another namespace, granted), and a third whose certificate is not
// granted; TLS passthrough of two databases on that same port by SNI; TCP;
// and UDP, which is not served.
func gatewayMesh() *model.Config {
	all := model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}}
	tls := func(refs ...model.Ref) *model.ListenerTLS {
		return &model.ListenerTLS{Mode: model.TLSTerminate, CertificateRefs: refs}
	}
	c := &model.Config{
		Services: []*model.Service{
			gwService("shop", "web", model.ProtocolHTTP, 80),
			gwService("shop", "ratings", model.ProtocolGRPC, 9090),
			gwService("data", "pg", model.ProtocolTCP, 5432),
			gwService("data", "mysql", model.ProtocolTCP, 3306),
			gwService("data", "redis", model.ProtocolTCP, 6379),
			gwService("data", "redis-new", model.ProtocolTCP, 6379),
		},
		Workloads: []*model.Workload{
			gwWorkload("shop", "web", "10.2.0.1", 80, model.ProtocolHTTP),
			gwWorkload("shop", "ratings", "10.2.0.2", 9090, model.ProtocolGRPC),
			gwWorkload("data", "pg", "10.2.1.1", 5432, model.ProtocolTCP),
			gwWorkload("data", "mysql", "10.2.1.2", 3306, model.ProtocolTCP),
			gwWorkload("data", "redis", "10.2.1.3", 6379, model.ProtocolTCP),
			gwWorkload("data", "redis-new", "10.2.1.4", 6379, model.ProtocolTCP),
		},
		Gateways: []*model.Gateway{{
			Key: gk("infra", "edge"),
			Listeners: []model.Listener{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: all},
				{Name: "shop", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "shop.example.com", AllowedRoutes: all,
					TLS: tls(secretRef("infra", "shop-cert"))},
				{Name: "api", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "api.example.com", AllowedRoutes: all,
					TLS: tls(secretRef("shop", "api-cert"), secretRef("shop", "api-cert-rsa"))},
				{Name: "nogrant", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "secret.example.com", AllowedRoutes: all,
					TLS: tls(secretRef("vault", "cert"))},
				{Name: "db", Port: 443, Protocol: model.ProtocolTLS, Hostname: "*.db.example.com", AllowedRoutes: all,
					TLS: &model.ListenerTLS{Mode: model.TLSPassthrough}},
				{Name: "redis", Port: 6379, Protocol: model.ProtocolTCP, AllowedRoutes: all},
				{Name: "redis-again", Port: 6379, Protocol: model.ProtocolTCP, AllowedRoutes: all},
				{Name: "dns", Port: 53, Protocol: model.ProtocolUDP, AllowedRoutes: all},
			},
		}},
		ReferenceGrants: []*model.ReferenceGrant{{
			Key:  gk("shop", "gateway-certs"),
			From: []model.GrantFrom{{GroupKind: model.GroupKind{Group: model.GatewayGroup, Kind: "Gateway"}, Namespace: "infra"}},
			To:   []model.GrantTo{{GroupKind: model.GroupKind{Kind: "Secret"}}},
		}},
		HTTPRoutes: []*model.HTTPRoute{{
			Route: model.Route{Key: gk("shop", "web"), Source: gwSource("HTTPRoute", gk("shop", "web"), 100),
				Parents: []model.ParentRef{gwParent("http"), gwParent("shop")}, Hostnames: []string{"shop.example.com"}},
			Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend("shop", "web", 80, 1)}}},
		}},
		GRPCRoutes: []*model.GRPCRoute{{
			Route: model.Route{Key: gk("shop", "ratings"), Source: gwSource("GRPCRoute", gk("shop", "ratings"), 100),
				Parents: []model.ParentRef{gwParent("api")}},
			Rules: []model.GRPCRouteRule{{
				Matches:  []model.GRPCMatch{{Type: model.MatchExact, Service: "trellis.Ratings"}},
				Backends: []model.Backend{gwBackend("shop", "ratings", 9090, 1)},
			}},
		}},
		TLSRoutes: []*model.TLSRoute{
			{Route: model.Route{Key: gk("data", "pg"), Source: gwSource("TLSRoute", gk("data", "pg"), 100),
				Parents: []model.ParentRef{gwParent("db")}, Hostnames: []string{"pg.db.example.com"}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "pg", 5432, 1)}}}},
			{Route: model.Route{Key: gk("data", "mysql"), Source: gwSource("TLSRoute", gk("data", "mysql"), 100),
				Parents: []model.ParentRef{gwParent("db")}, Hostnames: []string{"mysql.db.example.com"}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "mysql", 3306, 1)}}}},
			// Younger, for pg's hostname: not in effect.
			{Route: model.Route{Key: gk("data", "pg-takeover"), Source: gwSource("TLSRoute", gk("data", "pg-takeover"), 200),
				Parents: []model.ParentRef{gwParent("db")}, Hostnames: []string{"pg.db.example.com"}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "mysql", 3306, 1)}}}},
		},
		TCPRoutes: []*model.TCPRoute{
			{Route: model.Route{Key: gk("data", "redis"), Source: gwSource("TCPRoute", gk("data", "redis"), 100),
				Parents: []model.ParentRef{gwParent("redis")}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "redis", 6379, 90), gwBackend("data", "redis-new", 6379, 10)}}}},
			{Route: model.Route{Key: gk("data", "redis-younger"), Source: gwSource("TCPRoute", gk("data", "redis-younger"), 200),
				Parents: []model.ParentRef{gwParent("redis")}},
				Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "redis-new", 6379, 1)}}}},
		},
	}
	c.Sort()
	return c
}

func edgeProxy() *model.Proxy {
	return &model.Proxy{ID: "edge.infra", Kind: model.KindGateway, Gateway: gk("infra", "edge"),
		Workload: model.Workload{Key: gk("infra", "edge"), Address: "127.0.0.1", ServiceAccount: "edge"}}
}

// TestGatewayListeners pins the translation of every listener type, and
// that trellis-proxy accepts it (checkGolden).
func TestGatewayListeners(t *testing.T) {
	c := gatewayMesh()
	checkGolden(t, "gateway/listeners", c, edgeProxy())
	_, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
	for _, want := range []string{
		`Gateway infra/edge: spec.listeners[7].protocol: protocol UDP is not served by this version`,
		`Gateway infra/edge: spec.listeners[3].tls.certificateRefs[0]: no ReferenceGrant in namespace vault allows Gateway of namespace infra to reference Secret vault/cert`,
		`Gateway infra/edge: spec.listeners[3].tls.certificateRefs: no usable certificate; listener "nogrant" is not programmed`,
		`Gateway infra/edge: spec.listeners[6].port: TCP port 6379 is already used by listener "redis"`,
		`TCPRoute data/redis-younger: spec.parentRefs: TCPRoute data/redis, older, already routes listener "redis"`,
		`TLSRoute data/pg-takeover: spec.hostnames: port 443 hostname pg.db.example.com is already served by TLSRoute data/pg`,
	} {
		if !hasProblem(problems, want) {
			t.Errorf("no problem %q in\n%v", want, problems)
		}
	}
	if GatewayCertificatePrefix != proxy.GatewayCertificatePrefix {
		t.Errorf("the translator names certificates %q..., the proxy resolves %q...", GatewayCertificatePrefix, proxy.GatewayCertificatePrefix)
	}
}

// TestGatewayMisdirected: on a port of several HTTPS listeners, the
// filter chain a connection's SNI selects answers 421 for Host headers
// another listener serves; a listener with a hostname answers 421 for
// every Host outside it. A listener that is not programmed (no usable
// certificate) takes no Host from the catch-all.
func TestGatewayMisdirected(t *testing.T) {
	c := gatewayMesh()
	c.Gateways[0].Listeners = append(c.Gateways[0].Listeners, model.Listener{Name: "any", Port: 443, Protocol: model.ProtocolHTTPS,
		AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}},
		TLS:           &model.ListenerTLS{Mode: model.TLSTerminate, CertificateRefs: []model.Ref{secretRef("infra", "shop-cert")}}},
		model.Listener{Name: "wild", Port: 443, Protocol: model.ProtocolHTTPS, Hostname: "*.example.com",
			AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}},
			TLS:           &model.ListenerTLS{Mode: model.TLSTerminate, CertificateRefs: []model.Ref{secretRef("infra", "shop-cert")}}})
	res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
	answer := func(rcName, domain string) string {
		for _, rc := range res.Routes {
			if rc.Name != rcName {
				continue
			}
			for _, vh := range rc.VirtualHosts {
				if !slices.Contains(vh.Domains, domain) {
					continue
				}
				if len(vh.Routes) == 0 {
					return "404"
				}
				if d := vh.Routes[0].GetDirectResponse(); d != nil {
					return fmt.Sprint(d.Status)
				}
				return "routed"
			}
			return "none"
		}
		return "no route configuration " + rcName
	}
	for _, tc := range []struct{ rc, domain, want string }{
		{"https.443.*", "shop.example.com", "421"},
		{"https.443.*", "api.example.com", "421"},
		{"https.443.*", "*.example.com", "421"},
		{"https.443.*", "secret.example.com", "none"}, // listener nogrant is not programmed
		{"https.443.*", "*", "none"},
		{"https.443.shop.example.com", "shop.example.com", "routed"},
		{"https.443.shop.example.com", "*", "421"},
		{"https.443.api.example.com", "api.example.com", "routed"},
		{"https.443.api.example.com", "*", "421"},
		{"https.443.*.example.com", "shop.example.com", "421"}, // more specific than the wildcard
		{"https.443.*.example.com", "*.example.com", "404"},
		{"https.443.*.example.com", "*", "421"},
	} {
		if got := answer(tc.rc, tc.domain); got != tc.want {
			t.Errorf("%s, Host %s: %s, want %s", tc.rc, tc.domain, got, tc.want)
		}
	}
}

// TestGatewayUpstreamProtocol: at a gateway, a backend port with no
// declared protocol is spoken to in HTTP/1.1, whatever the client
// negotiated, unless a GRPCRoute sends to it (then each request keeps its
// version); an endpoint-only refresh rebuilds the same clusters.
func TestGatewayUpstreamProtocol(t *testing.T) {
	undeclared := func(name string) *model.Service {
		s := gwService("shop", name, model.ProtocolTCP, 8080)
		s.Ports[0].ProtocolDeclared = false
		return s
	}
	c := gatewayMesh()
	c.Services = append(c.Services, undeclared("plain"), undeclared("rpc"))
	c.HTTPRoutes[0].Rules[0].Backends = []model.Backend{gwBackend("shop", "plain", 8080, 1)}
	c.GRPCRoutes[0].Rules[0].Backends = []model.Backend{gwBackend("shop", "rpc", 8080, 1)}
	c.Sort()
	in := Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}
	res, _ := Translate(in, Options{})
	check := func(res *Resources) {
		t.Helper()
		for _, cl := range res.Clusters {
			downstream := strings.Contains(protojson.Format(cl), "useDownstreamProtocolConfig")
			switch cl.Name {
			case "outbound|8080||plain.shop.svc.cluster.local":
				if downstream || cl.TypedExtensionProtocolOptions != nil {
					t.Errorf("%s: protocol options %v, want none (HTTP/1.1)", cl.Name, cl.TypedExtensionProtocolOptions)
				}
			case "outbound|8080||rpc.shop.svc.cluster.local":
				if !downstream {
					t.Errorf("%s: protocol options %v, want the downstream's version", cl.Name, cl.TypedExtensionProtocolOptions)
				}
			}
		}
	}
	check(res)
	refreshed, _, ok := RefreshEndpoints(in, Options{}, res, map[model.Key]bool{gk("shop", "rpc"): true, gk("shop", "plain"): true})
	if !ok {
		t.Fatal("an endpoint-only refresh fell back to a full translation")
	}
	check(refreshed)
}

// TestGatewayInvalidParameters: a Gateway naming parameters Trellis does
// not read is not accepted: its proxy gets no listener, and the problem
// says why.
func TestGatewayInvalidParameters(t *testing.T) {
	c := gatewayMesh()
	c.Gateways[0].ParametersRef = "ProxyConfig.example.com/big"
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
	if len(res.Listeners) != 0 {
		t.Errorf("%d listeners served for a Gateway that is not accepted", len(res.Listeners))
	}
	if !hasProblem(problems, "Gateway infra/edge: spec.infrastructure.parametersRef: ProxyConfig.example.com/big: Trellis has no parameters kind") {
		t.Errorf("problems %v", problems)
	}
}

// teamsMesh: team-a and team-b each own a hostname of one HTTP listener
// pair (allowedRoutes Same for its own namespace by selector), plus a
// catch-all listener that admits every namespace.
func teamsMesh(teamAHosts ...string) *model.Config {
	sel := func(team string) model.AllowedRoutes {
		return model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromSelector,
			Selector: &model.Selector{MatchLabels: map[string]string{"team": team}}}}
	}
	c := &model.Config{
		Namespaces: map[string]map[string]string{"team-a": {"team": "a"}, "team-b": {"team": "b"}, "infra": {}},
		Services: []*model.Service{
			gwService("team-a", "a", model.ProtocolHTTP, 80),
			gwService("team-b", "b", model.ProtocolHTTP, 80),
		},
		Gateways: []*model.Gateway{{
			Key: gk("infra", "edge"),
			Listeners: []model.Listener{
				{Name: "any", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}}},
				{Name: "a", Port: 80, Protocol: model.ProtocolHTTP, Hostname: "a.example.com", AllowedRoutes: sel("a")},
				{Name: "b", Port: 80, Protocol: model.ProtocolHTTP, Hostname: "b.example.com", AllowedRoutes: sel("b")},
			},
		}},
		HTTPRoutes: []*model.HTTPRoute{
			{Route: model.Route{Key: gk("team-a", "a"), Source: gwSource("HTTPRoute", gk("team-a", "a"), 100),
				Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: gk("infra", "edge")}}, Hostnames: teamAHosts},
				Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend("team-a", "a", 80, 1)}}}},
			// Younger than team-a's: on a shared hostname it would lose.
			{Route: model.Route{Key: gk("team-b", "b"), Source: gwSource("HTTPRoute", gk("team-b", "b"), 200),
				Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: gk("infra", "edge")}}, Hostnames: []string{"b.example.com"}},
				Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend("team-b", "b", 80, 1)}}}},
		},
	}
	c.Sort()
	return c
}

func virtualHost(res *Resources, domain string) *routev3.VirtualHost {
	for _, rc := range res.Routes {
		for _, vh := range rc.VirtualHosts {
			if slices.Contains(vh.Domains, domain) {
				return vh
			}
		}
	}
	return nil
}

// TestGatewayTeamsIndependent: whatever hostnames team-a's route asks
// for, through whichever listener, b.example.com serves exactly what
// team-b's route says.
func TestGatewayTeamsIndependent(t *testing.T) {
	translate := func(c *model.Config) *Resources {
		res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
		return res
	}
	before := translate(teamsMesh("a.example.com"))
	want := virtualHost(before, "b.example.com")
	if want == nil || len(want.Routes) != 1 || want.Routes[0].GetRoute().GetCluster() != OutboundCluster(80, "b.team-b.svc.cluster.local") {
		t.Fatalf("b.example.com before: %v", want)
	}
	if vh := virtualHost(before, "a.example.com"); vh == nil {
		t.Fatal("a.example.com is not served")
	}
	for _, hosts := range [][]string{
		{"a.example.com", "b.example.com"},
		{"b.example.com"},
		{"*.example.com"},
		nil,
	} {
		after := translate(teamsMesh(hosts...))
		if got := virtualHost(after, "b.example.com"); !proto.Equal(got, want) {
			t.Errorf("team-a's route with hostnames %v changed b.example.com:\n%v\nwant\n%v", hosts, got, want)
		}
	}
	// The analyzer's attachment agrees: a route of team-a on team-b's
	// listener is not admitted.
	c := teamsMesh("b.example.com")
	l := &c.Gateways[0].Listeners[2]
	if _, why := model.AttachToListener(model.KindHTTPRoute, &c.HTTPRoutes[0].Route, c.HTTPRoutes[0].Parents[0], l, "infra", c.Namespaces); why != model.RejectNamespace {
		t.Errorf("team-a's route on team-b's listener: %v, want RejectNamespace", why)
	}
}

// TestGatewayAllowedRoutes: a route attaches only where allowedRoutes
// admits it: Same (the default), All, Selector.
func TestGatewayAllowedRoutes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		from    model.NamespaceFilter
		routeNS string
		served  bool
	}{
		{"Same, other namespace", model.NamespaceFilter{}, "shop", false},
		{"Same, own namespace", model.NamespaceFilter{}, "infra", true},
		{"All", model.NamespaceFilter{From: model.FromAll}, "shop", true},
		{"Selector matches", model.NamespaceFilter{From: model.FromSelector, Selector: &model.Selector{MatchLabels: map[string]string{"gateway": "edge"}}}, "shop", true},
		{"Selector does not match", model.NamespaceFilter{From: model.FromSelector, Selector: &model.Selector{MatchLabels: map[string]string{"gateway": "edge"}}}, "other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &model.Config{
				Namespaces: map[string]map[string]string{"shop": {"gateway": "edge"}, "other": {}, "infra": {}},
				Services:   []*model.Service{gwService(tc.routeNS, "web", model.ProtocolHTTP, 80)},
				Gateways: []*model.Gateway{{Key: gk("infra", "edge"), Listeners: []model.Listener{
					{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, AllowedRoutes: model.AllowedRoutes{Namespaces: tc.from}}}}},
				HTTPRoutes: []*model.HTTPRoute{{
					Route: model.Route{Key: gk(tc.routeNS, "web"), Parents: []model.ParentRef{gwParent("")}, Hostnames: []string{"web.example.com"}},
					Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend(tc.routeNS, "web", 80, 1)}}},
				}},
			}
			c.Sort()
			res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
			if got := virtualHost(res, "web.example.com") != nil; got != tc.served {
				t.Errorf("served %v, want %v", got, tc.served)
			}
		})
	}
}

// TestGatewayChainsBySNI: the HTTPS port has one chain per certificate
// hostname and one per passthrough hostname, none twice.
func TestGatewayChainsBySNI(t *testing.T) {
	c := gatewayMesh()
	res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
	var ln *listenerv3.Listener
	for _, l := range res.Listeners {
		if l.Name == GatewayListener(443) {
			ln = l
		}
	}
	if ln == nil {
		t.Fatal("no listener on 443")
	}
	var names []string
	for _, fc := range ln.FilterChains {
		names = append(names, fc.FilterChainMatch.ServerNames...)
	}
	want := []string{"shop.example.com", "api.example.com", "mysql.db.example.com", "pg.db.example.com"}
	if !slices.Equal(names, want) {
		t.Errorf("server names %v, want %v", names, want)
	}
}

// TestGatewayConflicts: each conflict between listeners, or between a
// listener and a route, leaves out the later one and says so; what does
// not conflict is still served.
func TestGatewayConflicts(t *testing.T) {
	all := model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}}
	terminate := &model.ListenerTLS{Mode: model.TLSTerminate, CertificateRefs: []model.Ref{secretRef("infra", "cert")}}
	passthrough := &model.ListenerTLS{Mode: model.TLSPassthrough}
	tlsRoute := func(name, host string, created int64) *model.TLSRoute {
		return &model.TLSRoute{Route: model.Route{Key: gk("data", name), Source: gwSource("TLSRoute", gk("data", name), created),
			Parents: []model.ParentRef{gwParent("")}, Hostnames: []string{host}},
			Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "pg", 5432, 1)}}}}
	}
	for _, tc := range []struct {
		name      string
		listeners []model.Listener
		tlsRoutes []*model.TLSRoute
		problems  []string
		// listeners is the number of Envoy listeners served; chains that
		// of the first.
		served, chains int
	}{{
		name: "HTTP and HTTPS on one port",
		listeners: []model.Listener{
			{Name: "http", Port: 8443, Protocol: model.ProtocolHTTP, AllowedRoutes: all},
			{Name: "https", Port: 8443, Protocol: model.ProtocolHTTPS, Hostname: "a.example.com", TLS: terminate, AllowedRoutes: all},
		},
		problems: []string{`spec.listeners[1].protocol: port 8443 is already HTTP for listener "http"; listener "https" (HTTPS) is not programmed`},
		served:   1, chains: 1,
	}, {
		name: "two HTTPS listeners with one hostname",
		listeners: []model.Listener{
			{Name: "a", Port: 8443, Protocol: model.ProtocolHTTPS, Hostname: "a.example.com", TLS: terminate, AllowedRoutes: all},
			{Name: "a2", Port: 8443, Protocol: model.ProtocolHTTPS, Hostname: "a.example.com", TLS: terminate, AllowedRoutes: all},
		},
		problems: []string{`spec.listeners[1].hostname: port 8443 hostname a.example.com is already served by listener "a"; listener "a2" is not programmed`},
		served:   1, chains: 1,
	}, {
		name: "a TLSRoute for an HTTPS listener's hostname",
		listeners: []model.Listener{
			{Name: "a", Port: 8443, Protocol: model.ProtocolHTTPS, Hostname: "pg.example.com", TLS: terminate, AllowedRoutes: all},
			{Name: "db", Port: 8443, Protocol: model.ProtocolTLS, TLS: passthrough, AllowedRoutes: all},
		},
		// The HTTPS listener is the more specific for pg.example.com: the
		// TLSRoute does not serve it there (the analyzer says TRL2009).
		tlsRoutes: []*model.TLSRoute{tlsRoute("pg", "pg.example.com", 100), tlsRoute("mysql", "mysql.example.com", 100)},
		served:    1, chains: 2,
	}, {
		name: "a TLSRoute for any hostname where an HTTPS listener takes any",
		listeners: []model.Listener{
			{Name: "a", Port: 8443, Protocol: model.ProtocolHTTPS, TLS: terminate, AllowedRoutes: all},
			{Name: "db", Port: 8443, Protocol: model.ProtocolTLS, TLS: passthrough, AllowedRoutes: all},
		},
		tlsRoutes: []*model.TLSRoute{{Route: model.Route{Key: gk("data", "any"), Parents: []model.ParentRef{gwParent("db")}},
			Rules: []model.L4Rule{{Backends: []model.Backend{gwBackend("data", "pg", 5432, 1)}}}}},
		problems: []string{`TLSRoute data/any: spec.hostnames: port 8443 hostname (any) is already served by listener "a"`},
		served:   1, chains: 1,
	}, {
		name:      "HTTPS without mode Terminate",
		listeners: []model.Listener{{Name: "a", Port: 8443, Protocol: model.ProtocolHTTPS, TLS: passthrough, AllowedRoutes: all}},
		problems:  []string{`spec.listeners[0].tls: an HTTPS listener terminates TLS`},
	}, {
		name:      "TLS with mode Terminate",
		listeners: []model.Listener{{Name: "a", Port: 8443, Protocol: model.ProtocolTLS, TLS: terminate, AllowedRoutes: all}},
		problems:  []string{`spec.listeners[0].tls.mode: TLS listeners are served in mode Passthrough only`},
	}, {
		name:      "a TLS listener without routes",
		listeners: []model.Listener{{Name: "db", Port: 8443, Protocol: model.ProtocolTLS, TLS: passthrough, AllowedRoutes: all}},
		problems:  []string{`nothing to serve on port 8443`},
	}, {
		name:      "a TCP listener without routes",
		listeners: []model.Listener{{Name: "db", Port: 5432, Protocol: model.ProtocolTCP, AllowedRoutes: all}},
		problems:  []string{`no TCPRoute is attached to listener "db"; port 5432 is not served`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := &model.Config{
				Services:  []*model.Service{gwService("data", "pg", model.ProtocolTCP, 5432)},
				Gateways:  []*model.Gateway{{Key: gk("infra", "edge"), Listeners: tc.listeners}},
				TLSRoutes: tc.tlsRoutes,
			}
			c.Sort()
			res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
			for _, want := range tc.problems {
				if !hasProblem(problems, want) {
					t.Errorf("no problem %q in %v", want, problems)
				}
			}
			if len(res.Listeners) != tc.served {
				t.Fatalf("%d listeners served, want %d", len(res.Listeners), tc.served)
			}
			if tc.served > 0 && len(res.Listeners[0].FilterChains) != tc.chains {
				t.Errorf("%d filter chains, want %d", len(res.Listeners[0].FilterChains), tc.chains)
			}
			if err := proxy.Check(proxy.Config{Listeners: res.Listeners, Routes: res.Routes, Clusters: res.Clusters, Endpoints: res.Endpoints}); err != nil {
				t.Errorf("trellis-proxy would reject the config: %v", err)
			}
		})
	}
}

// TestGatewayDepsCoverRoutes removes each route of the gateway mesh in
// turn: whenever the gateway's config changes, it depends on the
// Gateway's key, which a route's change touches.
func TestGatewayDepsCoverRoutes(t *testing.T) {
	c := gatewayMesh()
	p := edgeProxy()
	full, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	if !slices.Contains(full.Deps, GatewayKey(gk("infra", "edge"))) {
		t.Fatalf("deps %v lack the Gateway's key", full.Deps)
	}
	want := render(t, full, problems)
	changed := 0
	check := func(name string, cfg *model.Config) {
		res, problems := Translate(Input{Config: cfg, Index: model.NewIndex(cfg), Proxy: p}, Options{})
		if !bytes.Equal(render(t, res, problems), want) {
			changed++
		}
	}
	for i := range c.HTTPRoutes {
		cfg := *c
		cfg.HTTPRoutes = slices.Delete(slices.Clone(c.HTTPRoutes), i, i+1)
		check("HTTPRoute", &cfg)
	}
	for i := range c.GRPCRoutes {
		cfg := *c
		cfg.GRPCRoutes = slices.Delete(slices.Clone(c.GRPCRoutes), i, i+1)
		check("GRPCRoute", &cfg)
	}
	for i := range c.TLSRoutes {
		cfg := *c
		cfg.TLSRoutes = slices.Delete(slices.Clone(c.TLSRoutes), i, i+1)
		check("TLSRoute", &cfg)
	}
	for i := range c.TCPRoutes {
		cfg := *c
		cfg.TCPRoutes = slices.Delete(slices.Clone(c.TCPRoutes), i, i+1)
		check("TCPRoute", &cfg)
	}
	// Every route of the mesh matters to the gateway (the younger ones
	// through the problems they are reported by).
	if n := len(c.HTTPRoutes) + len(c.GRPCRoutes) + len(c.TLSRoutes) + len(c.TCPRoutes); changed != n {
		t.Errorf("removing a route changed the gateway's config %d times of %d", changed, n)
	}
}

// TestGatewayListenerSets: a team's ListenerSet brings its hostname to a
// Gateway that admits it; routes of its namespace attach there (Same is
// the ListenerSet's namespace), another team's cannot, and a catch-all
// route of the Gateway does not take its hostname. A Gateway that does
// not admit ListenerSets serves none.
func TestGatewayListenerSets(t *testing.T) {
	route := func(ns, name string, parent model.ParentRef, hosts ...string) *model.HTTPRoute {
		return &model.HTTPRoute{
			Route: model.Route{Key: gk(ns, name), Source: gwSource("HTTPRoute", gk(ns, name), 100), Parents: []model.ParentRef{parent}, Hostnames: hosts},
			Rules: []model.HTTPRouteRule{{Backends: []model.Backend{gwBackend(ns, "web", 80, 1)}}},
		}
	}
	set := model.ParentRef{Kind: model.ParentListenerSet, Key: gk("team-b", "b")}
	c := &model.Config{
		Services: []*model.Service{gwService("team-a", "web", model.ProtocolHTTP, 80), gwService("team-b", "web", model.ProtocolHTTP, 80)},
		Gateways: []*model.Gateway{{
			Key:               gk("infra", "edge"),
			AllowListenerSets: &model.NamespaceFilter{From: model.FromAll},
			Listeners: []model.Listener{{Name: "any", Port: 80, Protocol: model.ProtocolHTTP,
				AllowedRoutes: model.AllowedRoutes{Namespaces: model.NamespaceFilter{From: model.FromAll}}}},
		}},
		ListenerSets: []*model.ListenerSet{{
			Key: gk("team-b", "b"), Gateway: gk("infra", "edge"),
			Listeners: []model.Listener{{Name: "b", Port: 80, Protocol: model.ProtocolHTTP, Hostname: "b.example.com"}},
		}},
		HTTPRoutes: []*model.HTTPRoute{
			route("team-b", "b", set, "b.example.com"),
			route("team-a", "on-b", set, "b.example.com"),
			route("team-a", "any", gwParent(""), "a.example.com", "b.example.com"),
		},
	}
	c.Sort()
	checkGolden(t, "gateway/listenersets", c, edgeProxy())
	res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
	b := virtualHost(res, "b.example.com")
	if b == nil || len(b.Routes) != 1 || b.Routes[0].GetRoute().GetCluster() != OutboundCluster(80, "web.team-b.svc.cluster.local") {
		t.Errorf("b.example.com serves %v, want team-b's route only", b)
	}
	if virtualHost(res, "a.example.com") == nil {
		t.Error("a.example.com is not served")
	}
	if !slices.Contains(res.Deps, ListenerSetKey(gk("team-b", "b"))) {
		t.Errorf("deps %v lack the ListenerSet", res.Deps)
	}

	c.Gateways[0].AllowListenerSets = nil
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: edgeProxy()}, Options{})
	// b.example.com is now only the catch-all's, which team-a's route
	// asks for.
	if vh := virtualHost(res, "b.example.com"); vh == nil || len(vh.Routes) != 1 || vh.Routes[0].GetRoute().GetCluster() != OutboundCluster(80, "web.team-a.svc.cluster.local") {
		t.Errorf("with the ListenerSet not admitted, b.example.com serves %v, want team-a's catch-all route", vh)
	}
	if !hasProblem(problems, "ListenerSet team-b/b: spec.parentRef: Gateway infra/edge does not allow ListenerSets") {
		t.Errorf("problems %v", problems)
	}
}
