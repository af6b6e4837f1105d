package proxy

import (
	"net/http"
	"strings"
	"testing"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Header changes, rewrites, redirects and direct responses over real
// sockets.
func TestRouteActions(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "app")
		w.Header().Set("X-Path", r.URL.RequestURI())
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Set", strings.Join(r.Header.Values("X-Set"), ","))
		w.Header().Set("X-Add", strings.Join(r.Header.Values("X-Add"), ","))
		w.Header().Set("X-Removed", r.Header.Get("X-Remove"))
	})
	h := newHarness(t, routes(
		`{"match":{"path_separated_prefix":"/api"},"route":{"cluster":"c","prefix_rewrite":"/v2","host_rewrite_literal":"api.internal"},
		  "request_headers_to_add":[{"header":{"key":"x-set","value":"s"},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD"},{"header":{"key":"x-add","value":"a"}}],
		  "request_headers_to_remove":["x-remove"],
		  "response_headers_to_add":[{"header":{"key":"x-resp","value":"r"}}],"response_headers_to_remove":["server"]}`,
		`{"match":{"path":"/old"},"redirect":{"scheme_redirect":"https","port_redirect":443,"path_redirect":"/new","response_code":"PERMANENT_REDIRECT"},
		  "response_headers_to_add":[{"header":{"key":"x-redirected","value":"1"}}]}`,
		`{"match":{"path":"/broken"},"direct_response":{"status":500,"body":{"inline_string":"no backend\n"}},
		  "response_headers_to_add":[{"header":{"key":"x-direct","value":"1"}}]}`),
		map[string][]string{"c": {b.addr()}}, false)

	resp, _ := h.do(t, "GET", "/api/items?q=1", "", "X-Set: old", "X-Add: first", "X-Remove: gone")
	for k, want := range map[string]string{
		"X-Path": "/v2/items?q=1", "X-Host": "api.internal", "X-Set": "s", "X-Add": "first,a", "X-Removed": "", "X-Resp": "r", "Server": "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	resp, _ = h.do(t, "GET", "/old?x=1", "", "Host: shop.example:8080")
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://shop.example/new?x=1" || resp.Header.Get("X-Redirected") != "1" {
		t.Errorf("redirect: %d %q %v", resp.StatusCode, resp.Header.Get("Location"), resp.Header)
	}
	resp, body := h.do(t, "GET", "/broken", "")
	if resp.StatusCode != 500 || body != "no backend\n" || resp.Header.Get("X-Direct") != "1" {
		t.Errorf("direct response: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestHTTPFiltersRejected(t *testing.T) {
	router := &hcmv3.HttpFilter{Name: "router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}
	cors := &hcmv3.HttpFilter{Name: "cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &corsv3.Cors{})}}
	for name, tc := range map[string]struct {
		filters []*hcmv3.HttpFilter
		want    string
	}{
		"none":            {nil, "the router filter is required, last"},
		"router not last": {[]*hcmv3.HttpFilter{router, cors}, "http_filters[0]: the router must be the last filter"},
		"only cors":       {[]*hcmv3.HttpFilter{cors}, "the router filter is required, last"},
		"unnamed cors": {[]*hcmv3.HttpFilter{{ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &corsv3.Cors{})}}, router},
			`http_filters[0] "": name is required`},
		"router option": {[]*hcmv3.HttpFilter{{Name: "router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{SuppressEnvoyHeaders: true})}}},
			"not supported by this proxy: suppress_envoy_headers"},
		"other filter": {[]*hcmv3.HttpFilter{{Name: "x", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, wrapperspb.String("x"))}}, router},
			"http_filters[0]: *wrapperspb.StringValue is not supported"},
		"disabled": {[]*hcmv3.HttpFilter{proto.CloneOf(cors), router}, "http_filters[0]: is_optional, disabled and config_discovery are not supported"},
	} {
		if name == "disabled" {
			tc.filters[0].Disabled = true
		}
		_, err := compileHTTPFilters(tc.filters)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
