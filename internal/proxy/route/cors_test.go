package route

import (
	"reflect"
	"testing"
)

const corsType = `"@type":"type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"`

// The route's CorsPolicy and its virtual host's merge field by field, the
// route's first, per filter name, as Envoy's CORS filter reads them.
func TestCORSMerge(t *testing.T) {
	tbl := mustCompile(t, `{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],
	  "typed_per_filter_config":{
	    "cors":{`+corsType+`,"allow_origin_string_match":[{"exact":"https://a.example"}],"allow_methods":"GET","max_age":"60","allow_credentials":true,"forward_not_matching_preflights":false},
	    "other":{`+corsType+`,"allow_headers":"x-o"}},
	  "routes":[
	    {"name":"own","match":{"prefix":"/own"},"route":{"cluster":"c"},"typed_per_filter_config":{
	      "cors":{`+corsType+`,"allow_origin_string_match":[{"suffix":".b.example"}],"allow_headers":"x-h","allow_credentials":false}}},
	    {"name":"redirect","match":{"prefix":"/redirect"},"redirect":{"path_redirect":"/"},"typed_per_filter_config":{
	      "cors":{`+corsType+`,"allow_methods":"PUT"}}},
	    {"name":"inherit","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`)
	own := tbl.Match(get(t, "h", "/own"))
	p := own.CORS("cors")
	if p == nil {
		t.Fatal("no policy for the route's filter")
	}
	want := CORSPolicy{AllowMethods: "GET", AllowHeaders: "x-h", MaxAge: "60", AllowCredentials: false, ForwardNotMatchingPreflights: false}
	got := *p
	got.allowOrigins = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged policy = %+v, want %+v", got, want)
	}
	if !p.AllowsOrigin("https://x.b.example") || p.AllowsOrigin("https://a.example") {
		t.Error("the route's origins must replace the virtual host's")
	}
	if o := own.CORS("other"); o == nil || o.AllowHeaders != "x-o" || !o.ForwardNotMatchingPreflights {
		t.Errorf("other filter: %+v", o)
	}
	if own.CORS("absent") != nil {
		t.Error("a filter without config has a policy")
	}
	in := tbl.Match(get(t, "h", "/x")).CORS("cors")
	if in == nil || !in.AllowsOrigin("https://a.example") || !in.AllowCredentials || in.AllowMethods != "GET" {
		t.Errorf("inherited policy: %+v", in)
	}
	// Envoy's CORS filter lets redirects and direct responses through.
	if p := tbl.Match(get(t, "h", "/redirect")).CORS("cors"); p != nil {
		t.Errorf("redirect route has a CORS policy: %+v", p)
	}
}

// An exact "*" matcher allows every origin, as Envoy's filter asks each
// matcher about "*" first.
func TestCORSStarOrigin(t *testing.T) {
	tbl := mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"typed_per_filter_config":{
	  "cors":{`+corsType+`,"allow_origin_string_match":[{"exact":"*"}]}}`))
	p := onlyRoute(tbl).CORS("cors")
	if !p.AllowsOrigin("https://anything.example") {
		t.Error(`"*" does not allow every origin`)
	}
	tbl = mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"typed_per_filter_config":{"cors":{`+corsType+`}}`))
	if onlyRoute(tbl).CORS("cors").AllowsOrigin("https://a.example") {
		t.Error("no matcher allows an origin")
	}
}

func TestMirrorSampling(t *testing.T) {
	tbl := mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[
	  {"cluster":"half","runtime_fraction":{"default_value":{"numerator":50}}},
	  {"cluster":"tiny","runtime_fraction":{"default_value":{"numerator":1,"denominator":"MILLION"}}},
	  {"cluster":"over","runtime_fraction":{"default_value":{"numerator":200}}},
	  {"cluster":"none","runtime_fraction":{"default_value":{"numerator":0}}},
	  {"cluster":"all"}]}`))
	ms := onlyRoute(tbl).MirrorPolicies
	want := map[string]uint32{"half": 500_000, "tiny": 1, "over": million, "none": 0, "all": million}
	for _, m := range ms {
		if m.PerMillion != want[m.Cluster] {
			t.Errorf("%s: PerMillion %d, want %d", m.Cluster, m.PerMillion, want[m.Cluster])
		}
	}
	half := ms[0]
	if !half.Sampled(func(uint32) uint32 { return 499_999 }) || half.Sampled(func(uint32) uint32 { return 500_000 }) {
		t.Error("half: sampling boundary")
	}
	if ms[3].Sampled(func(uint32) uint32 { return 0 }) || !ms[4].Sampled(func(uint32) uint32 { return million - 1 }) {
		t.Error("0% mirrored or 100% not")
	}
}

func TestShadowHost(t *testing.T) {
	for _, tc := range []struct {
		m          MirrorPolicy
		host, want string
	}{
		{MirrorPolicy{}, "web", "web-shadow"},
		{MirrorPolicy{}, "web.demo:8080", "web.demo-shadow:8080"},
		{MirrorPolicy{}, "[::1]:80", "[::1]-shadow:80"},
		{MirrorPolicy{DisableShadowHostSuffix: true}, "web:80", "web:80"},
		{MirrorPolicy{HostRewrite: "m.internal"}, "web", "m.internal"},
	} {
		if got := tc.m.ShadowHost(tc.host); got != tc.want {
			t.Errorf("%+v.ShadowHost(%q) = %q, want %q", tc.m, tc.host, got, tc.want)
		}
	}
}
