package translate

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/testcert"
)

// TestGatewayFiltersThroughProxy translates a Gateway and an HTTPRoute
// with filters, applies the config to a real trellis-proxy, and sends
// requests through it to real backends.
func TestGatewayFiltersThroughProxy(t *testing.T) {
	type seen struct{ path, host, tenant string }
	apiSeen := make(chan seen, 10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiSeen <- seen{r.URL.RequestURI(), r.Host, r.Header.Get("X-Tenant")}
		w.Header().Set("Server", "api")
		io.WriteString(w, "api")
	}))
	defer api.Close()
	shadowSeen := make(chan string, 10)
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		shadowSeen <- r.Host
	}))
	defer shadow.Close()

	port := freePort(t)
	c := &model.Config{Gateways: []*model.Gateway{{
		Key:       fkey("edge"),
		Listeners: []model.Listener{{Name: "http", Port: port, Protocol: model.ProtocolHTTP}},
	}}}
	for name, srv := range map[string]*httptest.Server{"api": api, "shadow": shadow} {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
		n, _ := strconv.Atoi(p)
		c.Services = append(c.Services, &model.Service{Key: fkey(name), Selector: map[string]string{"app": name},
			Ports: []model.ServicePort{{Name: "http", Port: 80, TargetPort: uint32(n), Protocol: model.ProtocolHTTP}}})
		c.Workloads = append(c.Workloads, &model.Workload{Key: fkey(name + "-1"), Address: "127.0.0.1",
			Labels: map[string]string{"app": name}, Ports: []model.WorkloadPort{{Name: "http", Port: uint32(n), Protocol: model.ProtocolHTTP}}})
	}
	c.HTTPRoutes = []*model.HTTPRoute{onGateway("shop",
		model.HTTPRouteRule{Matches: prefix("/old"), Filters: []model.HTTPFilter{redirect(model.Redirect{
			Scheme: "https", Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/new"}, StatusCode: 301})}},
		model.HTTPRouteRule{Matches: prefix("/api"), Backends: []model.Backend{to("api", 1)}, Filters: []model.HTTPFilter{
			rewrite(model.URLRewrite{Hostname: "api.internal", Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/"}}),
			reqHeaders(model.HeaderModifier{Set: []model.Header{{Name: "x-tenant", Value: "shop"}}}),
			respHeaders(model.HeaderModifier{Remove: []string{"server"}, Add: []model.Header{{Name: "x-edge", Value: "1"}}}),
			mirror("shadow", 100),
			{Type: model.FilterCORS, CORS: &model.CORS{AllowOrigins: []string{"https://*.example.com"}, AllowMethods: []string{"GET"}, MaxAge: 5}},
		}},
	)}
	c.Sort()
	res, problems := Translate(Input{Config: c, Index: model.NewIndex(c), Proxy: gatewayProxy()}, Options{})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	p := newProxy(t)
	apply := func(typ string, msgs []proto.Message, name func(proto.Message) string) {
		t.Helper()
		m := map[string]proto.Message{}
		for _, msg := range msgs {
			m[name(msg)] = msg
		}
		if err := p.Apply(typ, m); err != nil {
			t.Fatalf("apply %s: %v", typ, err)
		}
	}
	named := func(m proto.Message) string {
		return m.ProtoReflect().Get(m.ProtoReflect().Descriptor().Fields().ByName("name")).String()
	}
	apply(xdsclient.ClusterType, msgs(res.Clusters), named)
	apply(xdsclient.EndpointType, msgs(res.Endpoints), func(m proto.Message) string {
		return m.ProtoReflect().Get(m.ProtoReflect().Descriptor().Fields().ByName("cluster_name")).String()
	})
	apply(xdsclient.RouteType, msgs(res.Routes), named)
	apply(xdsclient.ListenerType, msgs(res.Listeners), named)
	t.Cleanup(func() { _ = p.Apply(xdsclient.ListenerType, map[string]proto.Message{}) })

	base := "http://127.0.0.1:" + strconv.Itoa(int(port))
	client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Host = "shop.example:" + strconv.Itoa(int(port))
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	resp := send("GET", "/old/page?x=1")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://shop.example/new/page?x=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp = send("GET", "/api/items", "Origin: https://app.example.com")
	if resp.StatusCode != 200 || resp.Header.Get("Server") != "" || resp.Header.Get("X-Edge") != "1" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("api response: %d %v", resp.StatusCode, resp.Header)
	}
	select {
	case s := <-apiSeen:
		if want := (seen{"/items", "api.internal", "shop"}); s != want {
			t.Errorf("api saw %+v, want %+v", s, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the api got nothing")
	}
	select {
	case host := <-shadowSeen:
		if host != "api.internal-shadow" {
			t.Errorf("mirror Host %q, want api.internal-shadow", host)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the mirror got nothing")
	}

	resp = send("OPTIONS", "/api/items", "Origin: https://app.example.com", "Access-Control-Request-Method: GET")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Methods") != "GET" || resp.Header.Get("Access-Control-Max-Age") != "5" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if len(apiSeen) != 0 {
		t.Error("the preflight reached the api")
	}
}

func freePort(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port)
}

// newProxy is a trellis-proxy that is configured with Apply, never Run.
func newProxy(t *testing.T) *proxy.Proxy {
	t.Helper()
	root := testcert.Make(t, testcert.Options{CommonName: "test root", CA: true}).Leaf
	p, err := proxy.New(proxy.Options{
		ControlPlane: "127.0.0.1:1", TrustBundle: []*x509.Certificate{root}, NodeID: "edge.shop",
		Registration: nodemeta.Metadata{Kind: nodemeta.KindGateway, Name: "edge", Namespace: fns, ServiceAccount: "edge", Address: "127.0.0.1", Gateway: "shop/edge"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
