package translate

import (
	"slices"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"trellis.dev/trellis/internal/model"
)

// captureMesh: a headless StatefulSet-like service db (a declared TCP
// port and a port with no declared protocol) under STRICT mTLS, an HTTP
// service web under the default PERMISSIVE, and a workload without a
// sidecar.
func captureMesh() *model.Config {
	key := func(n string) model.Key { return model.Key{Namespace: "shop", Name: n} }
	c := &model.Config{
		Services: []*model.Service{
			{Key: key("db"), Headless: true, Selector: map[string]string{"app": "db"}, Ports: []model.ServicePort{
				{Name: "tcp-sql", Port: 5432, Protocol: model.ProtocolTCP, ProtocolDeclared: true},
				{Name: "admin", Port: 7000, Protocol: model.ProtocolTCP},
			}},
			{Key: key("web"), Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.0.20"}, Ports: []model.ServicePort{
				{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
			}},
			{Key: key("legacy"), Selector: map[string]string{"app": "legacy"}, Ports: []model.ServicePort{
				{Name: "http", Port: 80, Protocol: model.ProtocolHTTP, ProtocolDeclared: true},
			}},
		},
		Workloads: []*model.Workload{
			{Key: key("db-0"), Address: "10.1.0.10", Labels: map[string]string{"app": "db"}, ServiceAccount: "db", MeshPort: 15008},
			{Key: key("db-1"), Address: "10.1.0.11", Labels: map[string]string{"app": "db"}, ServiceAccount: "db", MeshPort: 15008},
			{Key: key("web-0"), Address: "10.1.0.20", Labels: map[string]string{"app": "web"}, ServiceAccount: "web", MeshPort: 15008},
			{Key: key("legacy-0"), Address: "10.1.0.30", Labels: map[string]string{"app": "legacy"}},
		},
		MTLSPolicies: []*model.MTLSPolicy{{Key: key("db"), Mode: model.MTLSStrict,
			Targets: []model.TargetRef{{GroupKind: model.GroupKind{Kind: "Service"}, Name: "db"}}}},
	}
	c.Sort()
	return c
}

func captureProxy(c *model.Config, name string) *model.Proxy {
	for _, w := range c.Workloads {
		if w.Name == name {
			return &model.Proxy{ID: name + ".shop", Kind: model.KindSidecar, Workload: *w,
				OutboundCapturePort: 15001, InboundCapturePort: 15006}
		}
	}
	panic(name)
}

func TestCaptureGolden(t *testing.T) {
	c := captureMesh()
	for _, name := range []string{"db-0", "web-0"} {
		t.Run(name, func(t *testing.T) { checkGolden(t, "capture-"+name, c, captureProxy(c, name)) })
	}
}

func listenerNamed(ls []*listenerv3.Listener, name string) *listenerv3.Listener {
	for _, l := range ls {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// TestCaptureChains checks the choices the golden files pin: per-pod
// chains to mesh workloads only, sniffing only where nothing declared
// the protocol, STRICT refusing plaintext and PERMISSIVE accepting it.
func TestCaptureChains(t *testing.T) {
	c := captureMesh()
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: captureProxy(c, "web-0")}, Options{})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	out := listenerNamed(res.Listeners, OutboundCaptureListener)
	if out == nil {
		t.Fatal("no outbound capture listener")
	}
	var names []string
	for _, ch := range out.FilterChains {
		names = append(names, ch.Name)
	}
	got := strings.Join(names, "\n")
	for _, want := range []string{
		"outbound|5432|pod.db-0|db.shop.svc.cluster.local",
		"outbound|7000|pod.db-1|db.shop.svc.cluster.local|http",
		"outbound|80|pod.web-0|web.shop.svc.cluster.local",
		"outbound|80||web.shop.svc.cluster.local",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("outbound chains lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "legacy") || strings.Contains(got, "5432|pod.db-0|db.shop.svc.cluster.local|http") {
		t.Errorf("unexpected chains:\n%s", got)
	}
	if !slices.Contains(res.Deps, AllServicesKey) {
		t.Errorf("deps %q lack %q: a new Service must rebuild a capturing sidecar", res.Deps, AllServicesKey)
	}
	if out.DefaultFilterChain.GetName() != PassthroughCluster {
		t.Errorf("default chain %q", out.DefaultFilterChain.GetName())
	}
	res, _ = Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: captureProxy(c, "db-0")}, Options{RegistryOnly: true})
	in := listenerNamed(res.Listeners, InboundCaptureListener)
	names = nil
	for _, ch := range in.FilterChains {
		names = append(names, ch.Name)
	}
	got = strings.Join(names, "\n")
	for _, want := range []string{"inbound|5432|mtls", "inbound|5432|plaintext-refused", "inbound|7000|mtls"} {
		if !strings.Contains(got, want) {
			t.Errorf("inbound chains lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "inbound|5432|plaintext\n") || in.DefaultFilterChain != nil {
		t.Errorf("STRICT workload accepts plaintext:\n%s", got)
	}
	if out := listenerNamed(res.Listeners, OutboundCaptureListener); out.DefaultFilterChain.GetName() != BlackHoleCluster {
		t.Errorf("registry only: default chain %q", out.DefaultFilterChain.GetName())
	}
}
