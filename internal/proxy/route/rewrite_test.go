package route

import (
	"crypto/tls"
	"testing"
)

func TestRewritePath(t *testing.T) {
	for _, tc := range []struct {
		name, match, action string
		cases               map[string]string // :path → rewritten :path
	}{
		// Envoy's prefix_rewrite docs: "/prefix/" + "/" strips the prefix;
		// "/prefix" + "/" is needed for "/prefix" itself.
		{"doc trailing slash", `{"prefix":"/prefix/"}`, `"prefix_rewrite":"/"`, map[string]string{
			"/prefix/etc":     "/etc",
			"/prefix/":        "/",
			"/prefix/etc?a=b": "/etc?a=b",
		}},
		{"doc no trailing slash", `{"prefix":"/prefix"}`, `"prefix_rewrite":"/"`, map[string]string{
			"/prefix":     "/",
			"/prefix?x=1": "/?x=1",
			"/prefix/etc": "//etc",
			"/prefixetc":  "/etc",
		}},
		{"prefix to longer", `{"prefix":"/api/"}`, `"prefix_rewrite":"/v2/api/"`, map[string]string{
			"/api/users?id=1": "/v2/api/users?id=1",
		}},
		{"case-insensitive prefix", `{"prefix":"/API","case_sensitive":false}`, `"prefix_rewrite":"/v1"`, map[string]string{
			"/api/x": "/v1/x",
			"/Api":   "/v1",
		}},
		{"path_separated_prefix", `{"path_separated_prefix":"/api"}`, `"prefix_rewrite":"/v2"`, map[string]string{
			"/api":       "/v2",
			"/api/":      "/v2/",
			"/api/x?y=z": "/v2/x?y=z",
			"/apix":      "/apix", // does not match: unchanged
		}},
		{"path_separated_prefix to root", `{"path_separated_prefix":"/prefix"}`, `"prefix_rewrite":"/"`, map[string]string{
			"/prefix":     "/",
			"/prefix/etc": "//etc",
		}},
		{"path match", `{"path":"/old"}`, `"prefix_rewrite":"/new"`, map[string]string{
			"/old":     "/new",
			"/old?x=1": "/new?x=1",
		}},
		{"regex match with prefix_rewrite", `{"safe_regex":{"regex":"/v[0-9]+/.*"}}`, `"prefix_rewrite":"/new"`, map[string]string{
			"/v1/abc?x": "/new?x",
		}},
		// Envoy's regex_rewrite docs.
		{"doc regex 1", `{"prefix":"/"}`, `"regex_rewrite":{"pattern":{"regex":"^/service/([^/]+)(/.*)$"},"substitution":"\\2/instance/\\1"}`, map[string]string{
			"/service/foo/v1/api":     "/v1/api/instance/foo",
			"/service/foo/v1/api?x=1": "/v1/api/instance/foo?x=1", // the query is kept
			"/other":                  "/other",
		}},
		{"doc regex 2", `{"prefix":"/"}`, `"regex_rewrite":{"pattern":{"regex":"one"},"substitution":"two"}`, map[string]string{
			"/xxx/one/yyy/one/zzz":      "/xxx/two/yyy/two/zzz",
			"/xxx/one/yyy/one/zzz?q=on": "/xxx/two/yyy/two/zzz?q=on",
		}},
		{"doc regex 3", `{"prefix":"/"}`, `"regex_rewrite":{"pattern":{"regex":"^(.*?)one(.*)$"},"substitution":"\\1two\\2"}`, map[string]string{
			"/xxx/one/yyy/one/zzz": "/xxx/two/yyy/one/zzz",
		}},
		{"doc regex 4", `{"prefix":"/"}`, `"regex_rewrite":{"pattern":{"regex":"(?i)/xxx/"},"substitution":"/yyy/"}`, map[string]string{
			"/aaa/XxX/bbb": "/aaa/yyy/bbb",
		}},
		{"regex literal dollar and backslash", `{"prefix":"/"}`, `"regex_rewrite":{"pattern":{"regex":"/(a)"},"substitution":"/$1\\\\\\0"}`, map[string]string{
			"/a": `/$1\/a`,
		}},
		{"path_rewrite", `{"prefix":"/"}`, `"path_rewrite":"/static/100%%"`, map[string]string{
			"/x?q": "/static/100%?q",
		}},
		{"no rewrite", `{"prefix":"/"}`, ``, map[string]string{"/x?q": "/x?q"}},
	} {
		action := `"cluster":"c"`
		if tc.action != "" {
			action += "," + tc.action
		}
		tbl := mustCompile(t, oneRoute(`"match":`+tc.match+`,"route":{`+action+`}`))
		rt := onlyRoute(tbl)
		for in, want := range tc.cases {
			if got := rt.RewritePath(in); got != want {
				t.Errorf("%s: RewritePath(%q) = %q, want %q", tc.name, in, got, want)
			}
		}
	}
}

// onlyRoute returns the single route of a oneRoute table.
func onlyRoute(tbl *Table) *Route {
	return tbl.star.routes[0]
}

func TestRedirectLocation(t *testing.T) {
	for _, tc := range []struct {
		name, match, redirect string
		host, target          string
		tls                   bool
		want                  string
		code                  int
	}{
		{"https", `{"prefix":"/"}`, `{"https_redirect":true}`, "foo.com", "/a?b=c", false, "https://foo.com/a?b=c", 301},
		{"https drops :80", `{"prefix":"/"}`, `{"https_redirect":true}`, "foo.com:80", "/a", false, "https://foo.com/a", 301},
		{"https keeps :8080", `{"prefix":"/"}`, `{"https_redirect":true}`, "foo.com:8080", "/a", false, "https://foo.com:8080/a", 301},
		{"http drops :443", `{"prefix":"/"}`, `{"scheme_redirect":"HTTP"}`, "foo.com:443", "/a", true, "http://foo.com/a", 301},
		{"same scheme keeps :80", `{"prefix":"/"}`, `{"scheme_redirect":"http","response_code":"FOUND"}`, "foo.com:80", "/a", false, "http://foo.com:80/a", 302},
		{"ipv6", `{"prefix":"/"}`, `{"https_redirect":true}`, "[::1]:80", "/a", false, "https://[::1]/a", 301},
		{"ipv6 no port", `{"prefix":"/"}`, `{"https_redirect":true}`, "[::1]", "/a", false, "https://[::1]/a", 301},
		{"host drops port", `{"prefix":"/"}`, `{"host_redirect":"bar.com","response_code":"SEE_OTHER"}`, "foo.com:8080", "/x", false, "http://bar.com/x", 303},
		{"port", `{"prefix":"/"}`, `{"port_redirect":8443,"https_redirect":true,"response_code":"TEMPORARY_REDIRECT"}`, "foo.com:80", "/x", false, "https://foo.com:8443/x", 307},
		{"default port omitted", `{"prefix":"/"}`, `{"port_redirect":443,"https_redirect":true,"response_code":"PERMANENT_REDIRECT"}`, "foo.com:8080", "/x", false, "https://foo.com/x", 308},
		{"host and port", `{"prefix":"/"}`, `{"host_redirect":"bar.com","port_redirect":9000}`, "foo.com", "/x", true, "https://bar.com:9000/x", 301},
		// path_redirect examples from the proto docs.
		{"path 1", `{"path":"/old-path-1"}`, `{"path_redirect":"/new-path-1"}`, "h", "/old-path-1?bar=1", false, "http://h/new-path-1?bar=1", 301},
		{"path 2", `{"path":"/old-path-2"}`, `{"path_redirect":"/new-path-2","strip_query":true}`, "h", "/old-path-2?bar=1", false, "http://h/new-path-2", 301},
		{"path 3", `{"path":"/old-path-3"}`, `{"path_redirect":"/new-path-3?foo=1","strip_query":true}`, "h", "/old-path-3?bar=1", false, "http://h/new-path-3?foo=1", 301},
		{"path without slash", `{"prefix":"/"}`, `{"path_redirect":"new"}`, "h", "/old", false, "http://h/new", 301},
		{"prefix_rewrite", `{"prefix":"/old"}`, `{"prefix_rewrite":"/new"}`, "h", "/old/x?y=1", false, "http://h/new/x?y=1", 301},
		{"prefix_rewrite strip_query", `{"prefix":"/old"}`, `{"prefix_rewrite":"/new","strip_query":true}`, "h", "/old/x?y=1", false, "http://h/new/x", 301},
		{"prefix_rewrite to empty", `{"path_separated_prefix":"/old"}`, `{"prefix_rewrite":""}`, "h", "/old/x", false, "http://h/old/x", 301},
		{"regex_rewrite", `{"prefix":"/"}`, `{"regex_rewrite":{"pattern":{"regex":"^/u/([0-9]+)$"},"substitution":"/users/\\1"}}`, "h", "/u/42?x", false, "http://h/users/42?x", 301},
		{"strip_query only", `{"prefix":"/"}`, `{"strip_query":true}`, "h", "/a?b", false, "http://h/a", 301},
		{"unchanged", `{"prefix":"/"}`, `{}`, "h", "/a?b", false, "http://h/a?b", 301},
	} {
		tbl := mustCompile(t, oneRoute(`"match":`+tc.match+`,"redirect":`+tc.redirect))
		r := get(t, tc.host, tc.target)
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		rt := tbl.Match(r)
		if rt == nil {
			t.Errorf("%s: no match", tc.name)
			continue
		}
		if got := rt.RedirectLocation(r); got != tc.want {
			t.Errorf("%s: RedirectLocation = %q, want %q", tc.name, got, tc.want)
		}
		if rt.Redirect.Code != tc.code {
			t.Errorf("%s: Code = %d, want %d", tc.name, rt.Redirect.Code, tc.code)
		}
		if rt.Cluster != "" || rt.PickCluster(func(uint32) uint32 { return 0 }) != "" || rt.Timeout != 0 {
			t.Errorf("%s: redirect has forwarding fields: %+v", tc.name, rt)
		}
	}
	tbl := mustCompile(t, withMatch(`{"prefix":"/"}`))
	if got := tbl.Match(get(t, "h", "/")).RedirectLocation(get(t, "h", "/")); got != "" {
		t.Errorf("RedirectLocation of a forwarding route = %q", got)
	}
}

func TestDirectResponse(t *testing.T) {
	tbl := mustCompile(t, `{"virtual_hosts":[{"name":"v","domains":["*"],"routes":[
	  {"match":{"path":"/healthz"},"direct_response":{"status":200,"body":{"inline_string":"ok\n"}}},
	  {"match":{"path":"/bytes"},"direct_response":{"status":503,"body":{"inline_bytes":"AAE="}}},
	  {"match":{"prefix":"/"},"direct_response":{"status":404}}]}]}`)
	for target, want := range map[string]struct {
		status int
		body   string
	}{
		"/healthz": {200, "ok\n"},
		"/bytes":   {503, "\x00\x01"},
		"/other":   {404, ""},
	} {
		rt := tbl.Match(get(t, "h", target))
		if rt == nil || rt.DirectResponse == nil {
			t.Fatalf("%s: no direct response: %+v", target, rt)
		}
		if rt.DirectResponse.Status != want.status || string(rt.DirectResponse.Body) != want.body {
			t.Errorf("%s: got %d %q, want %d %q", target, rt.DirectResponse.Status, rt.DirectResponse.Body, want.status, want.body)
		}
	}
}
