package translate

import (
	"testing"
	"time"

	"trellis.dev/trellis/internal/model"
)

// Small meshes, one per feature of route rules (filters, timeouts,
// retries), each through checkGolden: testdata/filters/<case>.golden.

const fns = "shop"

func fkey(name string) model.Key { return model.Key{Namespace: fns, Name: name} }

// shopMesh is a gateway "edge" listening on 8080, services web, api, v1,
// v2 and shadow (HTTP, port 80), a gRPC service ratings (9090) and a
// plaintext workload behind each.
func shopMesh() *model.Config {
	c := &model.Config{
		Gateways: []*model.Gateway{{
			Key:       fkey("edge"),
			Listeners: []model.Listener{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}},
		}},
	}
	for i, name := range []string{"web", "api", "v1", "v2", "shadow"} {
		c.Services = append(c.Services, &model.Service{Key: fkey(name), Selector: map[string]string{"app": name},
			Ports: []model.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: model.ProtocolHTTP}}})
		c.Workloads = append(c.Workloads, &model.Workload{Key: fkey(name + "-1"), Address: "10.1.0." + string(rune('1'+i)),
			Labels: map[string]string{"app": name}, Ports: []model.WorkloadPort{{Name: "http", Port: 8080, Protocol: model.ProtocolHTTP}}})
	}
	c.Services = append(c.Services, &model.Service{Key: fkey("ratings"), Selector: map[string]string{"app": "ratings"},
		Ports: []model.ServicePort{{Name: "grpc", Port: 9090, TargetPort: 9090, Protocol: model.ProtocolGRPC, ProtocolDeclared: true}}})
	c.Workloads = append(c.Workloads, &model.Workload{Key: fkey("ratings-1"), Address: "10.1.0.9",
		Labels: map[string]string{"app": "ratings"}, Ports: []model.WorkloadPort{{Name: "grpc", Port: 9090, Protocol: model.ProtocolGRPC}}})
	return c
}

func to(name string, weight uint32, filters ...model.HTTPFilter) model.Backend {
	return model.Backend{Kind: "Service", Service: fkey(name), Port: 80, Weight: weight, Filters: filters}
}

func onGateway(name string, rules ...model.HTTPRouteRule) *model.HTTPRoute {
	return &model.HTTPRoute{
		Route: model.Route{Key: fkey(name), Parents: []model.ParentRef{{Kind: model.ParentGateway, Key: fkey("edge")}}},
		Rules: rules,
	}
}

func onService(name, svc string, rules ...model.HTTPRouteRule) *model.HTTPRoute {
	return &model.HTTPRoute{
		Route: model.Route{Key: fkey(name), Parents: []model.ParentRef{{Kind: model.ParentService, Key: fkey(svc)}}},
		Rules: rules,
	}
}

func prefix(p string) []model.HTTPMatch {
	return []model.HTTPMatch{{PathType: model.PathPrefix, PathValue: p}}
}

func reqHeaders(m model.HeaderModifier) model.HTTPFilter {
	return model.HTTPFilter{Type: model.FilterRequestHeaderModifier, RequestHeaders: &m}
}

func respHeaders(m model.HeaderModifier) model.HTTPFilter {
	return model.HTTPFilter{Type: model.FilterResponseHeaderModifier, ResponseHeaders: &m}
}

func redirect(r model.Redirect) model.HTTPFilter {
	return model.HTTPFilter{Type: model.FilterRequestRedirect, Redirect: &r}
}

func rewrite(r model.URLRewrite) model.HTTPFilter {
	return model.HTTPFilter{Type: model.FilterURLRewrite, Rewrite: &r}
}

func mirror(svc string, percent int) model.HTTPFilter {
	return model.HTTPFilter{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: to(svc, 1), Percent: percent}}
}

func dur(d time.Duration) *time.Duration { return &d }

func gatewayProxy() *model.Proxy {
	return &model.Proxy{ID: "edge.shop", Kind: model.KindGateway, Gateway: fkey("edge"),
		Workload: model.Workload{Key: fkey("edge"), Address: "127.0.0.1", ServiceAccount: "edge"}}
}

// sidecarFor is web's sidecar, calling svc on local port 9001.
func sidecarFor(c *model.Config, svc string, port uint32) *model.Proxy {
	w := *model.NewIndex(c).Workload(fkey("web-1"))
	w.MeshPort = 15008
	return &model.Proxy{ID: "web-1.shop", Kind: model.KindSidecar, Workload: w, OutboundAddress: "127.0.0.1", AppAddress: "127.0.0.1",
		Upstreams: []model.Upstream{{Service: fkey(svc), Port: port, LocalPort: 9001}}}
}

func golden(t *testing.T, name string, c *model.Config, p *model.Proxy) {
	t.Helper()
	c.Sort()
	checkGolden(t, "filters/"+name, c, p)
}

func TestHeaderModifiers(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onGateway("headers", model.HTTPRouteRule{
		Matches: prefix("/"),
		Filters: []model.HTTPFilter{
			reqHeaders(model.HeaderModifier{
				Set:    []model.Header{{Name: "x-tenant", Value: "shop"}, {Name: "x-empty", Value: ""}},
				Add:    []model.Header{{Name: "x-via", Value: "edge 100%"}},
				Remove: []string{"x-debug"},
			}),
			respHeaders(model.HeaderModifier{Set: []model.Header{{Name: "cache-control", Value: "no-store"}}, Remove: []string{"server"}}),
		},
		Backends: []model.Backend{
			to("v1", 90, reqHeaders(model.HeaderModifier{Set: []model.Header{{Name: "x-version", Value: "v1"}}})),
			to("v2", 10, respHeaders(model.HeaderModifier{Add: []model.Header{{Name: "x-canary", Value: "1"}}})),
		},
	})}
	golden(t, "headers", c, gatewayProxy())

	// The same on a mesh route, and a single backend with its own headers
	// still gets a weighted cluster to carry them.
	c = shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onService("api-headers", "api", model.HTTPRouteRule{
		Filters:  []model.HTTPFilter{reqHeaders(model.HeaderModifier{Add: []model.Header{{Name: "x-mesh", Value: "1"}}})},
		Backends: []model.Backend{to("api", 1, reqHeaders(model.HeaderModifier{Remove: []string{"cookie"}}))},
	})}
	golden(t, "headers-mesh", c, sidecarFor(c, "api", 80))
}

func TestRedirects(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onGateway("redirects",
		// To https: port 443, left out of the Location.
		model.HTTPRouteRule{Matches: prefix("/secure"), Filters: []model.HTTPFilter{redirect(model.Redirect{Scheme: "https", StatusCode: 301})}},
		// No scheme, no port: the listener's port.
		model.HTTPRouteRule{Matches: prefix("/moved"), Filters: []model.HTTPFilter{redirect(model.Redirect{
			Hostname: "new.example", Path: &model.PathModifier{Type: model.ReplaceFullPath, Value: "/landing"}, StatusCode: 302})}},
		model.HTTPRouteRule{Matches: prefix("/explicit"), Filters: []model.HTTPFilter{redirect(model.Redirect{
			Scheme: "http", Port: 8443, StatusCode: 308,
			Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/v2/"}})}},
		model.HTTPRouteRule{Matches: prefix("/strip"), Filters: []model.HTTPFilter{redirect(model.Redirect{
			StatusCode: 307, Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/"}})}},
		model.HTTPRouteRule{Matches: prefix("/odd"), Filters: []model.HTTPFilter{redirect(model.Redirect{StatusCode: 305})},
			Backends: []model.Backend{to("web", 1)}},
	)}
	golden(t, "redirects", c, gatewayProxy())
}

func TestRewrites(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onGateway("rewrites",
		model.HTTPRouteRule{Matches: prefix("/full"), Backends: []model.Backend{to("api", 1)},
			Filters: []model.HTTPFilter{rewrite(model.URLRewrite{Hostname: "api.internal", Path: &model.PathModifier{Type: model.ReplaceFullPath, Value: "/index%20.html"}})}},
		model.HTTPRouteRule{Matches: prefix("/api/"), Backends: []model.Backend{to("api", 1)},
			Filters: []model.HTTPFilter{rewrite(model.URLRewrite{Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/v2/"}})}},
		model.HTTPRouteRule{Matches: prefix("/strip"), Backends: []model.Backend{to("api", 1)},
			Filters: []model.HTTPFilter{rewrite(model.URLRewrite{Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/"}})}},
		model.HTTPRouteRule{Backends: []model.Backend{to("web", 1)},
			Filters: []model.HTTPFilter{rewrite(model.URLRewrite{Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/app"}})}},
		// The CRD requires a PathPrefix match for ReplacePrefixMatch; were
		// it missing, the rule fails.
		model.HTTPRouteRule{Matches: []model.HTTPMatch{{PathType: model.PathExact, PathValue: "/exact"}}, Backends: []model.Backend{to("api", 1)},
			Filters: []model.HTTPFilter{rewrite(model.URLRewrite{Path: &model.PathModifier{Type: model.ReplacePrefixMatch, Value: "/x"}})}},
	)}
	golden(t, "rewrites", c, gatewayProxy())
}

func TestMirrors(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onService("api-mirror", "api", model.HTTPRouteRule{
		Filters: []model.HTTPFilter{
			mirror("shadow", 100), mirror("v2", 25), mirror("v1", 0),
			mirror("missing", 100), // reported, left out; the rule still serves
		},
		Backends: []model.Backend{to("api", 1)},
	})}
	c.GRPCRoutes = []*model.GRPCRoute{{
		Route: model.Route{Key: fkey("ratings"), Parents: []model.ParentRef{{Kind: model.ParentService, Key: fkey("ratings")}}},
		Rules: []model.GRPCRouteRule{{
			Matches: []model.GRPCMatch{{Type: model.MatchExact, Service: "shop.Ratings"}},
			Filters: []model.HTTPFilter{
				reqHeaders(model.HeaderModifier{Set: []model.Header{{Name: "x-caller", Value: "web"}}}),
				{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: model.Backend{Kind: "Service", Service: fkey("ratings"), Port: 9090}, Percent: 10}},
			},
			Backends: []model.Backend{{Kind: "Service", Service: fkey("ratings"), Port: 9090, Weight: 1,
				Filters: []model.HTTPFilter{respHeaders(model.HeaderModifier{Add: []model.Header{{Name: "x-served-by", Value: "ratings"}}})}}},
		}},
	}}
	golden(t, "mirrors", c, sidecarFor(c, "api", 80))
	golden(t, "grpcroute-filters", c, sidecarFor(c, "ratings", 9090))
}

func TestCORS(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onGateway("cors",
		model.HTTPRouteRule{Matches: prefix("/api"), Backends: []model.Backend{to("api", 1)}, Filters: []model.HTTPFilter{{
			Type: model.FilterCORS, CORS: &model.CORS{
				AllowOrigins:  []string{"https://www.example.com", "https://*.example.com"},
				AllowMethods:  []string{"GET", "PUT"},
				AllowHeaders:  []string{"x-a", "x-b"},
				ExposeHeaders: []string{"x-c"}, AllowCredentials: true, MaxAge: 3600,
			}}}},
		model.HTTPRouteRule{Matches: prefix("/open"), Backends: []model.Backend{to("web", 1)}, Filters: []model.HTTPFilter{{
			Type: model.FilterCORS, CORS: &model.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}, MaxAge: 5},
		}}},
		model.HTTPRouteRule{Backends: []model.Backend{to("web", 1)}},
	)}
	golden(t, "cors", c, gatewayProxy())
}

func TestTimeouts(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onService("api-timeouts", "api",
		model.HTTPRouteRule{Matches: prefix("/slow"), Backends: []model.Backend{to("api", 1)}, Timeout: dur(10 * time.Second), BackendTimeout: dur(2 * time.Second)},
		model.HTTPRouteRule{Matches: prefix("/stream"), Backends: []model.Backend{to("api", 1)}, Timeout: dur(0), BackendTimeout: dur(0)},
		model.HTTPRouteRule{Backends: []model.Backend{to("api", 1)}},
	)}
	golden(t, "timeouts", c, sidecarFor(c, "api", 80))
}

// What the proxy cannot do per rule or per backend: the rule answers 500
// and a Problem names the field.
func TestUnsupportedFilters(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onGateway("unsupported",
		model.HTTPRouteRule{Matches: prefix("/ext"), Backends: []model.Backend{to("web", 1)},
			Filters: []model.HTTPFilter{{Type: model.FilterExtensionRef, ExtensionRef: &model.Ref{Group: "example.com", Kind: "Plugin", Key: fkey("p")}}}},
		model.HTTPRouteRule{Matches: prefix("/backend"), Backends: []model.Backend{
			to("v1", 1, rewrite(model.URLRewrite{Hostname: "v1.internal"})),
			to("v2", 1, mirror("shadow", 100)),
		}},
		model.HTTPRouteRule{Matches: prefix("/host"), Backends: []model.Backend{to("web", 1)},
			Filters: []model.HTTPFilter{reqHeaders(model.HeaderModifier{Set: []model.Header{{Name: "Host", Value: "other"}}})}},
		model.HTTPRouteRule{Backends: []model.Backend{to("web", 1)}},
	)}
	golden(t, "unsupported", c, gatewayProxy())
}

// Proxyless gRPC clients honour timeouts.request (as max_stream_duration)
// and nothing else a rule may ask: those rules fail their calls.
func TestProxylessFilters(t *testing.T) {
	c := shopMesh()
	c.HTTPRoutes = []*model.HTTPRoute{onService("ratings-http", "ratings",
		model.HTTPRouteRule{Matches: prefix("/shop.Ratings/Slow"), Timeout: dur(5 * time.Second),
			Backends: []model.Backend{{Kind: "Service", Service: fkey("ratings"), Port: 9090, Weight: 1}}},
		model.HTTPRouteRule{Matches: prefix("/shop.Ratings/Try"), Timeout: dur(5 * time.Second), BackendTimeout: dur(time.Second),
			Backends: []model.Backend{{Kind: "Service", Service: fkey("ratings"), Port: 9090, Weight: 1}}},
	)}
	c.GRPCRoutes = []*model.GRPCRoute{{
		Route: model.Route{Key: fkey("ratings"), Parents: []model.ParentRef{{Kind: model.ParentService, Key: fkey("ratings")}}},
		Rules: []model.GRPCRouteRule{
			{
				Matches:  []model.GRPCMatch{{Type: model.MatchExact, Service: "shop.Ratings", Method: "Rate"}},
				Filters:  []model.HTTPFilter{reqHeaders(model.HeaderModifier{Set: []model.Header{{Name: "x-caller", Value: "web"}}})},
				Backends: []model.Backend{{Kind: "Service", Service: fkey("ratings"), Port: 9090, Weight: 1}},
			},
			{
				Matches: []model.GRPCMatch{{Type: model.MatchExact, Service: "shop.Ratings", Method: "List"}},
				Backends: []model.Backend{{Kind: "Service", Service: fkey("ratings"), Port: 9090, Weight: 1,
					Filters: []model.HTTPFilter{respHeaders(model.HeaderModifier{Add: []model.Header{{Name: "x-b", Value: "1"}}})}}},
			},
			{
				Matches:  []model.GRPCMatch{{Type: model.MatchExact, Service: "shop.Ratings"}},
				Filters:  []model.HTTPFilter{{Type: model.FilterRequestMirror, Mirror: &model.Mirror{Backend: model.Backend{Kind: "Service", Service: fkey("ratings"), Port: 9090}, Percent: 100}}},
				Backends: []model.Backend{{Kind: "Service", Service: fkey("ratings"), Port: 9090, Weight: 1}},
			},
		},
	}}
	w := *model.NewIndex(c).Workload(fkey("web-1"))
	p := &model.Proxy{ID: "web-1.shop", Kind: model.KindGRPC, Workload: w}
	golden(t, "proxyless", c, p)
}
