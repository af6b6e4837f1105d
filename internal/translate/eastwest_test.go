package translate

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"trellis.dev/trellis/internal/model"
)

// networkMesh: service echo has a member in network a (with the client)
// and two in network b; db has a member in network c, which has no
// east-west gateway; legacy's member in network b has no sidecar. The
// east-west gateway of b is reached at its registered proxy's address.
func networkMesh() *model.Config {
	key := func(n string) model.Key { return model.Key{Namespace: "shop", Name: n} }
	c := &model.Config{
		Services: []*model.Service{
			{Key: key("echo"), Selector: map[string]string{"app": "echo"}, Ports: []model.ServicePort{
				{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
				{Name: "tcp-raw", Port: 9000, Protocol: model.ProtocolTCP, ProtocolDeclared: true},
			}},
			{Key: key("db"), Selector: map[string]string{"app": "db"}, Ports: []model.ServicePort{
				{Name: "tcp-sql", Port: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true},
			}},
			{Key: key("legacy"), Selector: map[string]string{"app": "legacy"}, Ports: []model.ServicePort{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
			}},
		},
		Workloads: []*model.Workload{
			{Key: key("client-0"), Address: "10.1.0.5", Labels: map[string]string{"app": "client"}, ServiceAccount: "client", MeshPort: 15008, Network: "a"},
			{Key: key("echo-a0"), Address: "10.1.0.10", Labels: map[string]string{"app": "echo"}, ServiceAccount: "echo", MeshPort: 15008, Network: "a"},
			{Key: key("echo-b0"), Address: "10.2.0.10", Labels: map[string]string{"app": "echo"}, ServiceAccount: "echo-b", MeshPort: 15008, Network: "b"},
			{Key: key("echo-b1"), Address: "10.2.0.11", Labels: map[string]string{"app": "echo"}, ServiceAccount: "echo-b", MeshPort: 15008, Network: "b"},
			{Key: key("db-c0"), Address: "10.3.0.10", Labels: map[string]string{"app": "db"}, ServiceAccount: "db", MeshPort: 15008, Network: "c"},
			{Key: key("legacy-b0"), Address: "10.2.0.30", Labels: map[string]string{"app": "legacy"}, Network: "b"},
		},
		Gateways: []*model.Gateway{{
			Key: model.Key{Namespace: "trellis-system", Name: "eastwest-b"}, ClassName: "trellis", Network: "b",
			Listeners: []model.Listener{{Name: "cross-network", Port: 15443, Protocol: model.ProtocolTLS,
				TLS: &model.ListenerTLS{Mode: model.TLSPassthrough, Options: map[string]string{model.EastWestOption: model.AutoPassthrough}}}},
		}},
		GatewayProxies: map[model.Key][]string{{Namespace: "trellis-system", Name: "eastwest-b"}: {"192.0.2.10"}},
	}
	c.Sort()
	return c
}

func networkClient(c *model.Config) *model.Proxy {
	for _, w := range c.Workloads {
		if w.Name == "client-0" {
			return &model.Proxy{ID: "client-0.shop", Kind: model.KindSidecar, Workload: *w, Upstreams: []model.Upstream{
				{Service: model.Key{Namespace: "shop", Name: "echo"}, Port: 8080, LocalPort: 9001},
				{Service: model.Key{Namespace: "shop", Name: "db"}, Port: 5432, LocalPort: 9002},
				{Service: model.Key{Namespace: "shop", Name: "legacy"}, Port: 80, LocalPort: 9003},
			}}
		}
	}
	panic("no client")
}

func networkGatewayProxy() *model.Proxy {
	gw := model.Key{Namespace: "trellis-system", Name: "eastwest-b"}
	return &model.Proxy{ID: "eastwest-b.trellis-system", Kind: model.KindGateway, Gateway: gw,
		Workload: model.Workload{Key: gw, Address: "192.0.2.10", ServiceAccount: "eastwest"}}
}

func TestEastWestGolden(t *testing.T) {
	c := networkMesh()
	t.Run("client", func(t *testing.T) { checkGolden(t, "eastwest-client", c, networkClient(c)) })
	t.Run("gateway", func(t *testing.T) { checkGolden(t, "eastwest-gateway", c, networkGatewayProxy()) })
}

// The client's EDS for echo: its own network's member directly, network
// b's two members as b's gateway, weight 2; db's member in network c,
// which has no gateway, left out and reported; legacy's member without a
// sidecar left out and reported. mTLS verifies the members' identities.
func TestEastWestClient(t *testing.T) {
	c := networkMesh()
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: networkClient(c)}, Options{})
	echo := OutboundCluster(8080, "echo.shop.svc.cluster.local")
	var eps []string
	for _, cla := range res.Endpoints {
		if cla.ClusterName != echo {
			continue
		}
		for _, l := range cla.Endpoints {
			for _, ep := range l.LbEndpoints {
				sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
				eps = append(eps, model.HostPort(sa.GetAddress(), sa.GetPortValue())+"/"+string(rune('0'+ep.GetLoadBalancingWeight().GetValue())))
			}
		}
	}
	if want := []string{"10.1.0.10:15008/0", "192.0.2.10:15443/2"}; !slices.Equal(eps, want) {
		t.Errorf("echo endpoints %v, want %v", eps, want)
	}
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`network "c", which has no east-west gateway`, `legacy-b0 of network "b" have no sidecar`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	for _, k := range []string{NetworkKey("b"), NetworkKey("c"), GatewayKey(model.Key{Namespace: "trellis-system", Name: "eastwest-b"})} {
		if !slices.Contains(res.Deps, k) {
			t.Errorf("deps %v lack %s", res.Deps, k)
		}
	}

	// Two addresses for b's gateway: each carries half of b's weight,
	// and the local member's weight is scaled to match.
	c.GatewayProxies[model.Key{Namespace: "trellis-system", Name: "eastwest-b"}] = []string{"192.0.2.10", "192.0.2.11"}
	res, _ = Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: networkClient(c)}, Options{})
	weights := map[string]uint32{}
	for _, cla := range res.Endpoints {
		if cla.ClusterName == echo {
			for _, ep := range cla.Endpoints[0].LbEndpoints {
				weights[ep.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = ep.GetLoadBalancingWeight().GetValue()
			}
		}
	}
	if want := map[string]uint32{"10.1.0.10": 2, "192.0.2.10": 2, "192.0.2.11": 2}; !mapsEqual(weights, want) {
		t.Errorf("weights %v, want %v", weights, want)
	}
}

func mapsEqual(a, b map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// The east-west gateway: a chain per SNI of a mesh service port with
// members in its network, none for legacy (no sidecar) or db (network
// c); its config is always translated whole.
func TestEastWestGateway(t *testing.T) {
	c := networkMesh()
	in := Input{Config: c, Index: model.NewIndex(c), Proxy: networkGatewayProxy()}
	res, problems := Translate(in, Options{})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	ln := listenerNamed(res.Listeners, GatewayListener(15443))
	if ln == nil {
		t.Fatal("no east-west listener")
	}
	var snis []string
	for _, fc := range ln.FilterChains {
		if fc.TransportSocket != nil {
			t.Errorf("chain %s terminates TLS", fc.Name)
		}
		snis = append(snis, fc.FilterChainMatch.ServerNames...)
	}
	want := []string{SNI(8080, "echo.shop.svc.cluster.local"), SNI(9000, "echo.shop.svc.cluster.local")}
	if !slices.Equal(snis, want) {
		t.Errorf("SNIs %v, want %v", snis, want)
	}
	if _, _, ok := RefreshEndpoints(in, Options{}, res, map[model.Key]bool{{Namespace: "shop", Name: "echo"}: true}); ok {
		t.Error("an east-west gateway's endpoints were refreshed in place")
	}

	// A TLSRoute attached to it is reported and not served.
	c.TLSRoutes = []*model.TLSRoute{{Route: model.Route{Key: model.Key{Namespace: "trellis-system", Name: "vault"},
		Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: c.Gateways[0].Key}}, Hostnames: []string{"vault.example.com"}}}}
	res2, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: networkGatewayProxy()}, Options{})
	if len(problems) != 1 || !strings.Contains(problems[0].String(), "TLSRoute trellis-system/vault") {
		t.Errorf("problems %v", problems)
	}
	if got := len(listenerNamed(res2.Listeners, GatewayListener(15443)).FilterChains); got != len(want) {
		t.Errorf("%d chains with a route attached, want %d", got, len(want))
	}
	c.TLSRoutes = nil

	// A listener that is not TLS Passthrough is reported.
	c.Gateways[0].Listeners[0].TLS.Mode = model.TLSTerminate
	if _, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: networkGatewayProxy()}, Options{}); len(problems) == 0 ||
		!strings.Contains(problems[0].Message, "tls.mode Passthrough") {
		t.Errorf("problems %v", problems)
	}
}

// TestEastWestDeps: each change that alters a client's cross-network
// endpoints alters its config, and the client depends on a key the
// control plane marks for that change (TestDepsCoverRoutes' rule): the
// gateway's proxy address (its registration touches gw/), a member of b
// moving (its Service's ep/ key), a Gateway leaving network b (net/b).
func TestEastWestDeps(t *testing.T) {
	gw := model.Key{Namespace: "trellis-system", Name: "eastwest-b"}
	for _, tc := range []struct {
		name   string
		key    string
		change func(c *model.Config)
	}{
		{"gateway address", GatewayKey(gw), func(c *model.Config) { c.GatewayProxies[gw] = []string{"192.0.2.99"} }},
		{"member of b", EndpointsKey(model.Key{Namespace: "shop", Name: "echo"}), func(c *model.Config) {
			c.Workloads = slices.DeleteFunc(c.Workloads, func(w *model.Workload) bool { return w.Name == "echo-b1" })
		}},
		{"gateway's network", NetworkKey("b"), func(c *model.Config) { c.Gateways[0].Network = "z" }},
	} {
		c := networkMesh()
		before, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: networkClient(c)}, Options{})
		want := render(t, before, problems)
		tc.change(c)
		after, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: networkClient(c)}, Options{})
		if string(render(t, after, problems)) == string(want) {
			t.Errorf("%s: the client's config did not change", tc.name)
		}
		if !slices.Contains(before.Deps, tc.key) {
			t.Errorf("%s: the client does not depend on %s (deps %v)", tc.name, tc.key, before.Deps)
		}
	}
}

// A capturing client matches pod addresses of its own network only:
// those of other networks are reached through their services.
func TestEastWestCapture(t *testing.T) {
	c := networkMesh()
	p := networkClient(c)
	p.OutboundCapturePort, p.InboundCapturePort = 15001, 15006
	res, _ := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: p}, Options{})
	for _, cl := range res.Clusters {
		if strings.Contains(cl.Name, "|pod.") && !strings.Contains(cl.Name, "|pod.echo-a0|") {
			t.Errorf("cluster %s reaches a pod of another network by address", cl.Name)
		}
	}
	if !slices.ContainsFunc(res.Clusters, func(cl *clusterv3.Cluster) bool { return strings.Contains(cl.Name, "|pod.echo-a0|") }) {
		t.Error("no pod cluster for the client's own network's member")
	}
}
