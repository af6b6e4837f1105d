package route

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// fuzzConfig overlaps exact, suffix, prefix and "*" domains so that picking
// the exact one is not the only way to match, and uses every kind of match
// and action.
const fuzzConfig = `{"name":"fuzz","virtual_hosts":[
  {"name":"exact-a","domains":["a.foo.com","a.foo.com:8443","[::1]"],"routes":[
    {"name":"regex","match":{"safe_regex":{"regex":"/v[0-9]+/(.*)"}},"route":{"cluster":"r","regex_rewrite":{"pattern":{"regex":"^/v([0-9]+)/(.*)$"},"substitution":"/\\2?v=\\1"}}},
    {"name":"psp","match":{"path_separated_prefix":"/api","headers":[{"name":"x-fuzz","string_match":{"contains":"x","ignore_case":true},"invert_match":true}]},"route":{"cluster":"p","prefix_rewrite":"/"}},
    {"name":"query","match":{"prefix":"/","query_parameters":[{"name":"q","string_match":{"prefix":"a"}}]},"route":{"weighted_clusters":{"clusters":[{"name":"w1","weight":1},{"name":"w2","weight":2}]}}},
    {"name":"redirect","match":{"prefix":"/old","case_sensitive":false},"redirect":{"prefix_rewrite":"/new","https_redirect":true,"strip_query":true}}]},
  {"name":"exact-b","domains":["B.Example.Org","b.example.org:80"],"routes":[
    {"name":"range","match":{"prefix":"/","headers":[{"name":"x-fuzz","range_match":{"start":"-5","end":"5"}}]},"direct_response":{"status":200,"body":{"inline_string":"ok"}}},
    {"name":"path","match":{"path":"/exact"},"route":{"cluster":"e"}}]},
  {"name":"suffix","domains":["*.foo.com","*-b.example.org"],"routes":[{"name":"all","match":{"prefix":"/"},"route":{"cluster":"s"}}]},
  {"name":"prefix","domains":["a.*","b.example.*"],"routes":[{"name":"all","match":{"prefix":"/"},"route":{"cluster":"p"}}]},
  {"name":"star","domains":["*"],"routes":[{"name":"all","match":{"prefix":""},"route":{"cluster":"d"}}]}
]}`

func FuzzMatch(f *testing.F) {
	rc := parse(f, fuzzConfig)
	tbl, err := Compile(rc)
	if err != nil {
		f.Fatal(err)
	}
	exact := map[string]string{} // lower-case exact domain → virtual host
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if !strings.Contains(d, "*") {
				exact[strings.ToLower(d)] = vh.GetName()
			}
		}
	}
	for _, seed := range [][3]string{
		{"a.foo.com", "/v1/x?y", ""},
		{"A.FOO.COM:8443", "/api/users?q=1", "abc"},
		{"a.foo.com:1", "/?q=abc", "X"},
		{"b.example.org", "/exact", "3"},
		{"b.example.org:80", "/Old/x?q", "-5"},
		{"[::1]:80", "/api", ""},
		{"x-b.example.org", "/", "9223372036854775808"},
		{"", "", ""},
		{"a.", "%zz/..;/x?&&q", "\x00"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, host, target, header string) {
		path, query, _ := strings.Cut(target, "?")
		r := &http.Request{
			Method: http.MethodGet,
			Host:   host,
			URL:    &url.URL{Path: path, RawPath: path, RawQuery: query},
			Header: http.Header{"X-Fuzz": {header}},
		}
		rt := tbl.Match(r)

		// A Host that is exactly a configured exact domain (in any case)
		// always selects that virtual host, whatever else overlaps.
		if want, ok := exact[strings.ToLower(host)]; ok {
			vh := tbl.selectVirtualHost(host)
			if vh == nil || vh.name != want {
				t.Fatalf("Host %q selected %v, want virtual host %q", host, vh, want)
			}
			if rt != nil && rt.VirtualHost != want {
				t.Fatalf("Host %q matched route %q of %q, want virtual host %q", host, rt.Name, rt.VirtualHost, want)
			}
		}
		if rt == nil {
			return
		}
		// Nothing the route does with the request may panic.
		rt.RewritePath(target)
		rt.RewritePath(header)
		rt.RedirectLocation(r)
		rt.PickCluster(func(n uint32) uint32 { return uint32(len(header)) })
		h := r.Header.Clone()
		rt.ApplyRequestHeaders(h, rt.PickWeighted(func(n uint32) uint32 { return n - 1 }))
		rt.ApplyResponseHeaders(h, nil)
	})
}

// FuzzCompile feeds Compile route configurations decoded from arbitrary
// wire bytes, as a control plane could send them: it must return a table
// or an error, never panic, and a table it returns must match without
// panicking.
func FuzzCompile(f *testing.F) {
	corsConfig := `{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],
	  "typed_per_filter_config":{"cors":{"@type":"type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy","allow_origin_string_match":[{"exact":"*"}],"allow_methods":"GET"}},
	  "routes":[{"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[{"cluster":"m","runtime_fraction":{"default_value":{"numerator":5,"denominator":"TEN_THOUSAND"}}}]},
	    "typed_per_filter_config":{"cors":{"@type":"type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy","allow_headers":"*","allow_credentials":true}}}]}]}`
	for _, js := range []string{fuzzConfig, benchConfig(), vhostsConfig, corsConfig} {
		b, err := proto.Marshal(parse(f, js))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rc := &routev3.RouteConfiguration{}
		if err := proto.Unmarshal(b, rc); err != nil {
			return
		}
		tbl, err := Compile(rc)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		r := &http.Request{Method: "GET", Host: "a.foo.com", URL: &url.URL{Path: "/api/x", RawQuery: "q=a"}, Header: http.Header{}}
		if rt := tbl.Match(r); rt != nil {
			rt.RewritePath("/api/x?q=a")
			rt.RedirectLocation(r)
			rt.PickCluster(func(n uint32) uint32 { return n / 2 })
			rt.ApplyRequestHeaders(r.Header, nil)
			if p := rt.CORS("cors"); p != nil {
				p.AllowsOrigin("https://a.example")
			}
			for i := range rt.MirrorPolicies {
				rt.MirrorPolicies[i].Sampled(func(n uint32) uint32 { return n / 2 })
				rt.MirrorPolicies[i].ShadowHost("a.foo.com:80")
			}
		}
	})
}
