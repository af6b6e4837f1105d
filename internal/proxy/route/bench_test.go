package route

import (
	"fmt"
	"strings"
	"testing"
)

// benchConfig is a realistic mesh-sized table: 50 virtual hosts, one per
// service, each with Istio-style domains (short name, FQDN, with and without
// port) and 10 routes mixing prefix, path, path_separated_prefix and header
// matches, ending in a catch-all; plus a wildcard and a default host.
func benchConfig() string {
	var vhosts []string
	for i := range 50 {
		svc := fmt.Sprintf("svc-%02d", i)
		fqdn := svc + ".shop.svc.cluster.local"
		routes := []string{
			`{"name":"users-post","match":{"prefix":"/api/v1/users","headers":[{"name":":method","string_match":{"exact":"POST"}}]},"route":{"cluster":"users-write"}}`,
			`{"name":"users","match":{"path_separated_prefix":"/api/v1/users"},"route":{"cluster":"users","prefix_rewrite":"/users"}}`,
			`{"name":"orders-canary","match":{"prefix":"/api/v1/orders","headers":[{"name":"x-canary","present_match":true}]},"route":{"cluster":"orders-canary"}}`,
			`{"name":"orders","match":{"prefix":"/api/v1/orders"},"route":{"weighted_clusters":{"clusters":[{"name":"orders-v1","weight":90},{"name":"orders-v2","weight":10}]}}}`,
			`{"name":"cart","match":{"prefix":"/api/v1/cart","case_sensitive":false},"route":{"cluster":"cart"}}`,
			`{"name":"search","match":{"prefix":"/api/v1/search","query_parameters":[{"name":"q","present_match":true}]},"route":{"cluster":"search"}}`,
			`{"name":"static","match":{"prefix":"/static/"},"route":{"cluster":"static"}}`,
			`{"name":"health","match":{"path":"/healthz"},"direct_response":{"status":200}}`,
			`{"name":"old","match":{"prefix":"/old/"},"redirect":{"prefix_rewrite":"/new/"}}`,
			`{"name":"default","match":{"prefix":"/"},"route":{"cluster":"` + svc + `"}}`,
		}
		vhosts = append(vhosts, fmt.Sprintf(`{"name":%q,"domains":[%q,%q,%q,%q],"routes":[%s]}`,
			svc, svc, svc+":80", fqdn, fqdn+":80", strings.Join(routes, ",")))
	}
	vhosts = append(vhosts,
		`{"name":"wild","domains":["*.example.com"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"wild"}}]}`,
		`{"name":"default","domains":["*"],"routes":[{"match":{"prefix":"/"},"direct_response":{"status":404}}]}`)
	return `{"name":"outbound.80","virtual_hosts":[` + strings.Join(vhosts, ",") + `]}`
}

func BenchmarkMatch(b *testing.B) {
	tbl := mustCompile(b, benchConfig())
	for _, bc := range []struct {
		name, host, target string
		headers            []string
		want               string
	}{
		{"exact-host/route-6", "svc-25.shop.svc.cluster.local", "/api/v1/search?q=shoes", nil, "svc-25/search"},
		{"host-port/route-2", "svc-49:80", "/api/v1/users/42", nil, "svc-49/users"},
		{"strip-port/route-4", "svc-07.shop.svc.cluster.local:8080", "/api/v1/orders/1", nil, "svc-07/orders"},
		{"header/route-3", "svc-10", "/api/v1/orders", []string{"X-Canary: 1"}, "svc-10/orders-canary"},
		{"catch-all/route-10", "svc-33", "/index.html", nil, "svc-33/default"},
		{"wildcard", "shop.example.com", "/", nil, "wild/"},
		{"default-vhost", "unknown.org", "/x", nil, "default/"},
	} {
		r := get(b, bc.host, bc.target, bc.headers...)
		if got := routeName(tbl.Match(r)); got != bc.want {
			b.Fatalf("%s: matched %q, want %q", bc.name, got, bc.want)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match(r)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	rc := parse(b, benchConfig())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(rc); err != nil {
			b.Fatal(err)
		}
	}
}
