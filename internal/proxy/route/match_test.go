package route

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

const vhostsConfig = `{
  "name": "http.80",
  "virtual_hosts": [
    {"name": "exact",       "domains": ["www.foo.com", "foo.com:8080", "[::1]"], "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "suffix-long", "domains": ["*-bar.foo.com"],  "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "suffix",      "domains": ["*.foo.com"],      "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "prefix",      "domains": ["foo.*"],          "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "prefix-long", "domains": ["foo.bar.*"],      "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "upper",       "domains": ["Api.Example.COM"], "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "port-only",   "domains": ["svc:9090"],       "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]},
    {"name": "star",        "domains": ["*"],              "routes": [{"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]}
  ]
}`

func TestVirtualHostSelection(t *testing.T) {
	tbl := mustCompile(t, vhostsConfig)
	if tbl.Name() != "http.80" {
		t.Errorf("Name() = %q", tbl.Name())
	}
	for _, tc := range []struct{ host, want string }{
		{"www.foo.com", "exact"},
		{"WWW.Foo.COM", "exact"},           // case-insensitive
		{"www.foo.com:80", "star"},         // the port is part of the Host matched, as in Envoy
		{"foo.com:8080", "exact"},          // host:port tried first
		{"api.example.com", "upper"},       // configured domains are lower-cased
		{"baz-bar.foo.com", "suffix-long"}, // longest suffix wins
		{"a.foo.com", "suffix"},            //
		{"-bar.foo.com", "suffix"},         // "*-bar.foo.com" needs a non-empty '*'
		{".foo.com", "star"},               // so does "*.foo.com"
		{"foo.foo.com", "suffix"},          // suffix before prefix
		{"a.foo.com:9000", "star"},         // no port stripping without ignore_port_in_host_matching
		{"foo.example", "prefix"},          //
		{"foo.bar.baz", "prefix-long"},     // longest prefix wins
		{"foo.", "star"},                   // prefix '*' needs a non-empty match
		{"foo.com", "prefix"},              // "foo.com:8080" is not "foo.com"
		{"svc:9090", "port-only"},          //
		{"svc", "star"},                    // a domain with a port needs the port
		{"svc:9091", "star"},               //
		{"[::1]:8080", "star"},             // IPv6 literal with a port
		{"[::1]", "exact"},                 //
		{"other.org", "star"},              //
		{"", "star"},                       //
		{"www.foo.com.evil.org", "star"},   //
		{"evil.org/www.foo.com", "suffix"}, // plain suffix match, as Envoy
		{"xwww.foo.com", "suffix"},         // not exact
		{"www.foo.com:", "star"},           //
		{"www.foo.com:80:80", "star"},      // only the last port is stripped
		{"foo.bar.baz:1", "prefix-long"},   //
		{"FOO.BAR.QUX", "prefix-long"},     //
		{"x-bar.foo.com:443", "star"},      //
	} {
		r := get(t, tc.host, "/")
		got := tbl.Match(r)
		if routeName(got) != tc.want+"/r" {
			t.Errorf("Host %q: got %q, want virtual host %q", tc.host, routeName(got), tc.want)
		}
	}
}

func TestVirtualHostNoDefault(t *testing.T) {
	tbl := mustCompile(t, `{"virtual_hosts":[{"name":"a","domains":["a.com"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`)
	if got := tbl.Match(get(t, "b.com", "/")); got != nil {
		t.Errorf("b.com matched %q, want nil", routeName(got))
	}
	if got := tbl.Match(get(t, "a.com", "/")); got == nil {
		t.Error("a.com did not match")
	}
	empty := mustCompile(t, `{"name":"empty"}`)
	if got := empty.Match(get(t, "a.com", "/")); got != nil {
		t.Error("empty table matched")
	}
}

func TestIgnorePortInHostMatching(t *testing.T) {
	tbl := mustCompile(t, `{"ignore_port_in_host_matching": true, "virtual_hosts":[
	  {"name":"a","domains":["a.com"],"routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
	  {"name":"p","domains":["p.com:8080"],"routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`)
	for host, want := range map[string]string{
		"a.com":      "a/r",
		"a.com:1234": "a/r",
		"p.com:8080": "", // the port is not stripped from configured domains
	} {
		if got := routeName(tbl.Match(get(t, host, "/"))); got != want {
			t.Errorf("Host %q: got %q, want %q", host, got, want)
		}
	}
}

func TestVhostHeader(t *testing.T) {
	tbl := mustCompile(t, `{"vhost_header":"x-vhost","virtual_hosts":[
	  {"name":"a","domains":["a.com"],"routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
	  {"name":"d","domains":["*"],"routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`)
	if got := routeName(tbl.Match(get(t, "b.com", "/", "X-Vhost: A.com"))); got != "a/r" {
		t.Errorf("with x-vhost: got %q", got)
	}
	if got := routeName(tbl.Match(get(t, "a.com", "/"))); got != "d/r" {
		t.Errorf("without x-vhost: got %q, want the default", got)
	}
	tbl = mustCompile(t, `{"vhost_header":":authority","virtual_hosts":[
	  {"name":"a","domains":["a.com"],"routes":[{"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`)
	if got := routeName(tbl.Match(get(t, "a.com", "/"))); got != "a/r" {
		t.Errorf(":authority: got %q", got)
	}
}

type matchCase struct {
	target  string
	headers []string
	want    bool
}

func TestPathMatch(t *testing.T) {
	for _, tc := range []struct {
		match string
		cases []matchCase
	}{
		{`{"prefix":"/api"}`, []matchCase{
			{target: "/api", want: true},
			{target: "/api/x", want: true},
			{target: "/apix", want: true},
			{target: "/api?x=1", want: true},
			{target: "/ap", want: false},
			{target: "/ap?i", want: false}, // the query is not part of the path
			{target: "/API", want: false},
		}},
		{`{"prefix":""}`, []matchCase{{target: "/", want: true}, {target: "/anything", want: true}}},
		{`{"prefix":"/API","case_sensitive":false}`, []matchCase{
			{target: "/api/x", want: true},
			{target: "/Api", want: true},
			{target: "/ap", want: false},
		}},
		{`{"prefix":"/a%2Fb"}`, []matchCase{
			{target: "/a%2Fb/c", want: true}, // matched as sent, not decoded
			{target: "/a/b/c", want: false},
		}},
		{`{"prefix":"/a/b"}`, []matchCase{{target: "/a%2Fb", want: false}}},
		{`{"path":"/exact"}`, []matchCase{
			{target: "/exact", want: true},
			{target: "/exact?q=1", want: true},
			{target: "/exact/", want: false},
			{target: "/exac", want: false},
			{target: "/EXACT", want: false},
		}},
		{`{"path":"/exact","case_sensitive":false}`, []matchCase{{target: "/EXACT", want: true}}},
		{`{"safe_regex":{"regex":"/v[0-9]+/.*"}}`, []matchCase{
			{target: "/v1/x", want: true},
			{target: "/v12/a?x=/v1/", want: true},
			{target: "/x/v1/x", want: false}, // the whole path must match
			{target: "/v1", want: false},
			{target: "/v1/x/", want: true},
		}},
		{`{"safe_regex":{"google_re2":{},"regex":"/abc"},"case_sensitive":false}`, []matchCase{
			{target: "/abc", want: true},
			{target: "/ABC", want: false}, // case_sensitive is ignored for regex
			{target: "/abcd", want: false},
		}},
		{`{"safe_regex":{"regex":"/a|/b"}}`, []matchCase{
			{target: "/a", want: true},
			{target: "/b", want: true},
			{target: "/ab", want: false}, // anchoring covers the alternation
			{target: "/bx", want: false},
		}},
		{`{"path_separated_prefix":"/api/dev"}`, []matchCase{
			{target: "/api/dev", want: true},
			{target: "/api/dev/", want: true},
			{target: "/api/dev/v1", want: true},
			{target: "/api/dev?param=true", want: true},
			{target: "/api/developer", want: false},
			{target: "/api/de", want: false},
			{target: "/API/dev", want: false},
		}},
		{`{"path_separated_prefix":"/API/Dev","case_sensitive":false}`, []matchCase{
			{target: "/api/dev/x", want: true},
			{target: "/api/devx", want: false},
		}},
	} {
		tbl := mustCompile(t, withMatch(tc.match))
		for _, c := range tc.cases {
			got := tbl.Match(get(t, "h", c.target, c.headers...)) != nil
			if got != c.want {
				t.Errorf("match %s, request %s: matched = %v, want %v", tc.match, c.target, got, c.want)
			}
		}
	}
}

func TestHeaderMatch(t *testing.T) {
	for _, tc := range []struct {
		headers string // JSON array of HeaderMatcher
		cases   []matchCase
	}{
		{`[{"name":"x-foo","string_match":{"exact":"bar"}}]`, []matchCase{
			{headers: []string{"X-Foo: bar"}, want: true},
			{headers: []string{"x-foo: bar"}, want: true},
			{headers: []string{"X-Foo: Bar"}, want: false},
			{headers: []string{"X-Foo: baz"}, want: false},
			{want: false},
			{headers: []string{"X-Foo: bar", "X-Foo: baz"}, want: false}, // "bar,baz"
		}},
		{`[{"name":"X-FOO","string_match":{"exact":"bar,baz"}}]`, []matchCase{
			{headers: []string{"X-Foo: bar", "X-Foo: baz"}, want: true},
		}},
		{`[{"name":"x-foo","string_match":{"exact":"BAR","ignore_case":true}}]`, []matchCase{
			{headers: []string{"X-Foo: bar"}, want: true},
			{headers: []string{"X-Foo: bars"}, want: false},
		}},
		{`[{"name":"x-foo","string_match":{"prefix":"ab"}}]`, []matchCase{
			{headers: []string{"X-Foo: abc"}, want: true},
			{headers: []string{"X-Foo: xab"}, want: false},
		}},
		{`[{"name":"x-foo","string_match":{"suffix":"BC","ignore_case":true}}]`, []matchCase{
			{headers: []string{"X-Foo: abc"}, want: true},
			{headers: []string{"X-Foo: c"}, want: false},
		}},
		{`[{"name":"x-foo","string_match":{"contains":"Mid","ignore_case":true}}]`, []matchCase{
			{headers: []string{"X-Foo: aMIDb"}, want: true},
			{headers: []string{"X-Foo: mi"}, want: false},
		}},
		{`[{"name":"x-foo","string_match":{"contains":"mid"}}]`, []matchCase{
			{headers: []string{"X-Foo: amidb"}, want: true},
			{headers: []string{"X-Foo: aMidb"}, want: false},
		}},
		{`[{"name":"x-foo","string_match":{"safe_regex":{"regex":"\\d{3}"}}}]`, []matchCase{
			{headers: []string{"X-Foo: 123"}, want: true},
			{headers: []string{"X-Foo: 1234"}, want: false},
		}},
		// Proto doc example: \d{3} does not match 1234, so it matches inverted.
		{`[{"name":"x-foo","string_match":{"safe_regex":{"regex":"\\d{3}"}},"invert_match":true}]`, []matchCase{
			{headers: []string{"X-Foo: 1234"}, want: true},
			{headers: []string{"X-Foo: 123"}, want: false},
			{want: false}, // a missing header does not match, inverted or not
		}},
		{`[{"name":"x-foo"}]`, []matchCase{ // no specifier: presence
			{headers: []string{"X-Foo: "}, want: true},
			{want: false},
		}},
		{`[{"name":"x-foo","present_match":true}]`, []matchCase{
			{headers: []string{"X-Foo: 1"}, want: true},
			{want: false},
		}},
		{`[{"name":"x-foo","present_match":false}]`, []matchCase{
			{headers: []string{"X-Foo: 1"}, want: false},
			{want: true},
		}},
		{`[{"name":"x-foo","present_match":true,"invert_match":true}]`, []matchCase{
			{headers: []string{"X-Foo: 1"}, want: false},
			{want: true},
		}},
		{`[{"name":"x-foo","present_match":false,"invert_match":true}]`, []matchCase{
			{headers: []string{"X-Foo: 1"}, want: true},
			{want: false},
		}},
		// Proto doc examples for treat_missing_header_as_empty.
		{`[{"name":"header3","string_match":{"safe_regex":{"regex":"^$"}},"treat_missing_header_as_empty":true}]`, []matchCase{
			{want: true},
			{headers: []string{"Header3: x"}, want: false},
		}},
		{`[{"name":"header4","string_match":{"safe_regex":{"regex":"^$"}}}]`, []matchCase{{want: false}}},
		{`[{"name":"header1","range_match":{"start":"0","end":"10"},"invert_match":true,"treat_missing_header_as_empty":true}]`, []matchCase{
			{want: true},
			{headers: []string{"Header1: 5"}, want: false},
		}},
		{`[{"name":"header2","range_match":{"start":"0","end":"10"},"invert_match":true}]`, []matchCase{{want: false}}},
		// Proto doc example for range_match: [-10,0).
		{`[{"name":"x-n","range_match":{"start":"-10","end":"0"}}]`, []matchCase{
			{headers: []string{"X-N: -1"}, want: true},
			{headers: []string{"X-N: -10"}, want: true},
			{headers: []string{"X-N: 0"}, want: false},
			{headers: []string{"X-N: somestring"}, want: false},
			{headers: []string{"X-N: 10.9"}, want: false},
			{headers: []string{"X-N: -1somestring"}, want: false},
			{headers: []string{"X-N: "}, want: false},
		}},
		// Deprecated HeaderMatcher specifiers.
		{`[{"name":"x-a","exact_match":"1"},{"name":"x-b","prefix_match":"p"},{"name":"x-c","suffix_match":"s"},{"name":"x-d","contains_match":"c"},{"name":"x-e","safe_regex_match":{"regex":"[0-9]+"}}]`, []matchCase{
			{headers: []string{"X-A: 1", "X-B: pq", "X-C: rs", "X-D: acb", "X-E: 42"}, want: true},
			{headers: []string{"X-A: 1", "X-B: pq", "X-C: rs", "X-D: acb", "X-E: 42a"}, want: false},
			{headers: []string{"X-A: 1", "X-B: qp", "X-C: rs", "X-D: acb", "X-E: 42"}, want: false},
		}},
		// All matchers must match.
		{`[{"name":"x-a","string_match":{"exact":"1"}},{"name":"x-b","string_match":{"exact":"2"}}]`, []matchCase{
			{headers: []string{"X-A: 1", "X-B: 2"}, want: true},
			{headers: []string{"X-A: 1"}, want: false},
		}},
		// Host is :authority, not a header.
		{`[{"name":"host","present_match":true}]`, []matchCase{{want: false}}},
		{`[{"name":":authority","string_match":{"exact":"h"}}]`, []matchCase{{want: true}}},
		{`[{"name":":path","string_match":{"exact":"/p?q=1"}}]`, []matchCase{{target: "/p?q=1", want: true}, {target: "/p", want: false}}},
		{`[{"name":":scheme","string_match":{"exact":"http"}}]`, []matchCase{{want: true}}},
	} {
		tbl := mustCompile(t, withMatch(`{"prefix":"/","headers":`+tc.headers+`}`))
		for _, c := range tc.cases {
			target := c.target
			if target == "" {
				target = "/"
			}
			got := tbl.Match(get(t, "h", target, c.headers...)) != nil
			if got != c.want {
				t.Errorf("headers %s, request %s %q: matched = %v, want %v", tc.headers, target, c.headers, got, c.want)
			}
		}
	}
}

func TestMethodMatch(t *testing.T) {
	tbl := mustCompile(t, withMatch(`{"prefix":"/","headers":[{"name":":method","string_match":{"exact":"POST"}}]}`))
	if tbl.Match(request(t, http.MethodPost, "h", "/")) == nil {
		t.Error("POST did not match")
	}
	if tbl.Match(request(t, http.MethodGet, "h", "/")) != nil {
		t.Error("GET matched")
	}
	tbl = mustCompile(t, withMatch(`{"prefix":"/","headers":[{"name":":scheme","string_match":{"exact":"https"}}]}`))
	r := get(t, "h", "/")
	if tbl.Match(r) != nil {
		t.Error("http matched :scheme https")
	}
	r.URL.Scheme = "https"
	if tbl.Match(r) == nil {
		t.Error("https did not match :scheme https")
	}
}

func TestQueryParameterMatch(t *testing.T) {
	for _, tc := range []struct {
		query string // JSON array of QueryParameterMatcher
		cases []matchCase
	}{
		{`[{"name":"debug","string_match":{"exact":"1"}}]`, []matchCase{
			{target: "/?debug=1", want: true},
			{target: "/?x=2&debug=1", want: true},
			{target: "/?debug=2&debug=1", want: false}, // only the first value counts
			{target: "/?debug=1&debug=2", want: true},
			{target: "/?debug", want: false},
			{target: "/?debugx=1", want: false},
			{target: "/", want: false},
			{target: "/debug=1", want: false},
		}},
		{`[{"name":"debug","string_match":{"exact":""}}]`, []matchCase{
			{target: "/?debug", want: true},
			{target: "/?debug=", want: true},
		}},
		{`[{"name":"debug","present_match":true}]`, []matchCase{
			{target: "/?debug", want: true},
			{target: "/?a=1&debug=0", want: true},
			{target: "/?a=1", want: false},
		}},
		{`[{"name":"debug"}]`, []matchCase{{target: "/?debug=x", want: true}, {target: "/", want: false}}},
		{`[{"name":"q","string_match":{"safe_regex":{"regex":"a+"}}}]`, []matchCase{
			{target: "/?q=aaa", want: true},
			{target: "/?q=aab", want: false},
		}},
		{`[{"name":"q","string_match":{"exact":"a%20b"}}]`, []matchCase{{target: "/?q=a%20b", want: true}}}, // raw, not decoded
		{`[{"name":"a","present_match":true},{"name":"b","string_match":{"prefix":"x","ignore_case":true}}]`, []matchCase{
			{target: "/?a&b=Xy", want: true},
			{target: "/?b=xy", want: false},
		}},
	} {
		tbl := mustCompile(t, withMatch(`{"prefix":"/","query_parameters":`+tc.query+`}`))
		for _, c := range tc.cases {
			got := tbl.Match(get(t, "h", c.target)) != nil
			if got != c.want {
				t.Errorf("query %s, request %s: matched = %v, want %v", tc.query, c.target, got, c.want)
			}
		}
	}
}

func TestIgnorePathParameters(t *testing.T) {
	cfg := `{%s"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
	  {"name":"exact","match":{"path":"/foo"},"route":{"cluster":"c","prefix_rewrite":"/bar"}}]}]}`
	off := mustCompile(t, fmt.Sprintf(cfg, ""))
	on := mustCompile(t, fmt.Sprintf(cfg, `"ignore_path_parameters_in_path_matching":true,`))
	r := get(t, "h", "/foo;jsessionid=1?x=1")
	if off.Match(r) != nil {
		t.Error("path parameters matched without ignore_path_parameters_in_path_matching")
	}
	rt := on.Match(r)
	if rt == nil {
		t.Fatal("path parameters not ignored")
	}
	if got, want := rt.RewritePath("/foo;jsessionid=1?x=1"), "/bar;jsessionid=1?x=1"; got != want {
		t.Errorf("RewritePath = %q, want %q", got, want)
	}
}

func TestFirstRouteWins(t *testing.T) {
	tbl := mustCompile(t, `{"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
	  {"name":"post-api","match":{"prefix":"/api","headers":[{"name":":method","string_match":{"exact":"POST"}}]},"route":{"cluster":"a"}},
	  {"name":"api","match":{"prefix":"/api"},"route":{"cluster":"b"}},
	  {"name":"api-v2","match":{"prefix":"/api/v2"},"route":{"cluster":"never"}},
	  {"name":"all","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`)
	for _, tc := range []struct{ method, target, want string }{
		{"POST", "/api/x", "v/post-api"},
		{"GET", "/api/v2/x", "v/api"},
		{"GET", "/x", "v/all"},
	} {
		if got := routeName(tbl.Match(request(t, tc.method, "h", tc.target))); got != tc.want {
			t.Errorf("%s %s: got %q, want %q", tc.method, tc.target, got, tc.want)
		}
	}
}

func TestNoPathMatchesNothing(t *testing.T) {
	tbl := mustCompile(t, withMatch(`{"prefix":""}`))
	r := request(t, http.MethodConnect, "h:443", "h:443")
	if got := tbl.Match(r); got != nil {
		t.Errorf("CONNECT matched %q", routeName(got))
	}
	r = &http.Request{Method: "GET", Host: "h"} // no URL
	if got := tbl.Match(r); got != nil {
		t.Error("request without URL matched")
	}
	// Client-style requests: Host from the URL.
	r = &http.Request{Method: "GET", URL: &url.URL{Host: "h", Path: "/x"}, Header: http.Header{}}
	if got := tbl.Match(r); got == nil {
		t.Error("client-style request did not match")
	}
}

// Match allocates nothing in the common case.
func TestMatchDoesNotAllocate(t *testing.T) {
	tbl := mustCompile(t, `{"virtual_hosts":[
	  {"name":"a","domains":["a.com","*.a.com"],"routes":[
	    {"match":{"prefix":"/x","headers":[{"name":"x-a","string_match":{"prefix":"v"}}]},"route":{"cluster":"x"}},
	    {"match":{"path_separated_prefix":"/api","query_parameters":[{"name":"q","string_match":{"exact":"1"}}]},"route":{"cluster":"y"}},
	    {"match":{"path":"/exact"},"route":{"cluster":"z"}},
	    {"match":{"prefix":"/","case_sensitive":false},"route":{"cluster":"w"}}]}]}`)
	for _, r := range []*http.Request{
		get(t, "a.com", "/x/1", "X-A: v1"),
		get(t, "b.a.com:8080", "/api/v1?q=1"),
		get(t, "a.com", "/exact"),
		get(t, "a.com", "/other"),
		get(t, "none.org", "/other"),
	} {
		if n := testing.AllocsPerRun(100, func() { tbl.Match(r) }); n != 0 {
			t.Errorf("Match(%s %s) allocates %v times", r.Host, r.URL, n)
		}
	}
}
