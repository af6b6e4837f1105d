package route

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func TestPickWeighted(t *testing.T) {
	tbl := mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[
	  {"name":"a","weight":1},{"name":"zero","weight":0},{"name":"b","weight":3},{"name":"c","weight":6}]}}`))
	rt := tbl.Match(get(t, "h", "/"))
	if rt.Cluster != "" || len(rt.WeightedClusters) != 4 {
		t.Fatalf("route: %+v", rt)
	}

	// Every value of a uniform rnd in [0, total) exactly once: each cluster
	// is picked exactly weight times; zero weights never.
	counts := map[string]int{}
	var asked []uint32
	for v := range uint32(10) {
		counts[rt.PickCluster(func(n uint32) uint32 { asked = append(asked, n); return v })]++
	}
	if want := map[string]int{"a": 1, "b": 3, "c": 6}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
	for _, n := range asked {
		if n != 10 {
			t.Errorf("rnd asked for [0, %d), want the total weight 10", n)
		}
	}
	// Ranges follow configuration order, as in Envoy.
	for v, want := range []string{"a", "b", "b", "b", "c", "c", "c", "c", "c", "c"} {
		if got := rt.PickCluster(func(uint32) uint32 { return uint32(v) }); got != want {
			t.Errorf("rnd = %d: picked %q, want %q", v, got, want)
		}
	}
	// A misbehaving rnd does not panic.
	if got := rt.PickCluster(func(uint32) uint32 { return 12 }); got != "b" { // 12 % 10
		t.Errorf("out-of-range rnd: picked %q", got)
	}

	// A seeded random source gives the configured split.
	rng := rand.New(rand.NewPCG(1, 2))
	counts = map[string]int{}
	const n = 100_000
	for range n {
		counts[rt.PickCluster(rng.Uint32N)]++
	}
	for name, w := range map[string]float64{"a": 0.1, "b": 0.3, "c": 0.6} {
		if got := float64(counts[name]) / n; got < w-0.01 || got > w+0.01 {
			t.Errorf("%s: share %.3f, want %.1f", name, got, w)
		}
	}
	if counts["zero"] != 0 {
		t.Errorf("zero-weight cluster picked %d times", counts["zero"])
	}
	if n := testing.AllocsPerRun(100, func() { rt.PickCluster(rng.Uint32N) }); n != 0 {
		t.Errorf("PickCluster allocates %v times", n)
	}
}

func TestPickSingleCluster(t *testing.T) {
	rt := onlyRoute(mustCompile(t, withMatch(`{"prefix":"/"}`)))
	called := false
	if got := rt.PickCluster(func(uint32) uint32 { called = true; return 0 }); got != "c" {
		t.Errorf("PickCluster = %q", got)
	}
	if called || rt.PickWeighted(func(uint32) uint32 { return 0 }) != nil {
		t.Error("single cluster route consulted rnd or has a weighted cluster")
	}
}

func TestTimeout(t *testing.T) {
	for action, want := range map[string]time.Duration{
		`{"cluster":"c"}`:                  DefaultTimeout,
		`{"cluster":"c","timeout":"0s"}`:   0,
		`{"cluster":"c","timeout":"2.5s"}`: 2500 * time.Millisecond,
	} {
		rt := onlyRoute(mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":`+action)))
		if rt.Timeout != want {
			t.Errorf("%s: Timeout = %v, want %v", action, rt.Timeout, want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	tbl := mustCompile(t, `{"virtual_hosts":[{"name":"v","domains":["*"],
	  "retry_policy":{"retry_on":"connect-failure"},
	  "routes":[
	    {"name":"inherits","match":{"prefix":"/inherit"},"route":{"cluster":"c"}},
	    {"name":"own","match":{"prefix":"/own"},"route":{"cluster":"c","retry_policy":{
	      "retry_on":"5xx, retriable-status-codes,unavailable","num_retries":3,"per_try_timeout":"0.25s",
	      "retriable_status_codes":[409],"retry_back_off":{"base_interval":"0.1s"}}}},
	    {"name":"zero","match":{"prefix":"/zero"},"route":{"cluster":"c","retry_policy":{"retry_on":"reset","num_retries":0,"retry_back_off":{"base_interval":"0.1s","max_interval":"0.3s"}}}},
	    {"name":"redirect","match":{"prefix":"/"},"redirect":{"https_redirect":true}}]}]}`)
	for target, want := range map[string]*RetryPolicy{
		"/inherit": {RetryOn: "connect-failure", Conditions: []string{"connect-failure"}, NumRetries: 1, BackOffBase: 25 * time.Millisecond, BackOffMax: 250 * time.Millisecond},
		"/own": {RetryOn: "5xx, retriable-status-codes,unavailable", Conditions: []string{"5xx", "retriable-status-codes", "unavailable"},
			NumRetries: 3, PerTryTimeout: 250 * time.Millisecond, RetriableStatusCodes: []uint32{409},
			BackOffBase: 100 * time.Millisecond, BackOffMax: time.Second},
		"/zero":     {RetryOn: "reset", Conditions: []string{"reset"}, NumRetries: 0, BackOffBase: 100 * time.Millisecond, BackOffMax: 300 * time.Millisecond},
		"/redirect": nil,
	} {
		rt := tbl.Match(get(t, "h", target))
		if !reflect.DeepEqual(rt.RetryPolicy, want) {
			t.Errorf("%s: RetryPolicy = %+v, want %+v", target, rt.RetryPolicy, want)
		}
	}
}

func TestMirrorPolicies(t *testing.T) {
	cfg := `{"request_mirror_policies":[{"cluster":"config"}],"virtual_hosts":[
	  {"name":"with","domains":["with"],"request_mirror_policies":[{"cluster":"vhost","disable_shadow_host_suffix_append":true}],"routes":[
	    {"name":"own","match":{"prefix":"/own"},"route":{"cluster":"c","request_mirror_policies":[{"cluster":"route","host_rewrite_literal":"m.internal","runtime_fraction":{"default_value":{"numerator":100}}},{"cluster":"route2"}]}},
	    {"name":"inherit","match":{"prefix":"/"},"route":{"cluster":"c"}}]},
	  {"name":"without","domains":["without"],"routes":[
	    {"name":"inherit","match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`
	tbl := mustCompile(t, cfg)
	for _, tc := range []struct {
		host, target string
		want         []MirrorPolicy
	}{
		{"with", "/own", []MirrorPolicy{{Cluster: "route", HostRewrite: "m.internal", PerMillion: million}, {Cluster: "route2", PerMillion: million}}},
		{"with", "/x", []MirrorPolicy{{Cluster: "vhost", DisableShadowHostSuffix: true, PerMillion: million}}},
		{"without", "/x", []MirrorPolicy{{Cluster: "config", PerMillion: million}}},
	} {
		rt := tbl.Match(get(t, tc.host, tc.target))
		if !reflect.DeepEqual(rt.MirrorPolicies, tc.want) {
			t.Errorf("%s%s: MirrorPolicies = %+v, want %+v", tc.host, tc.target, rt.MirrorPolicies, tc.want)
		}
	}
}

func TestForwardingFields(t *testing.T) {
	rt := onlyRoute(mustCompile(t, oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","host_rewrite_literal":"backend.internal",
	  "hash_policy":[{"header":{"header_name":"x-user"}}]}`)))
	if rt.HostRewrite != "backend.internal" || rt.RewriteHost(nil) != "backend.internal" {
		t.Errorf("HostRewrite = %q", rt.HostRewrite)
	}
	if len(rt.HashPolicy) != 1 || rt.HashPolicy[0].Header != "X-User" {
		t.Errorf("HashPolicy = %v", rt.HashPolicy)
	}
	if rt.Redirect != nil || rt.DirectResponse != nil || rt.Name != "r" || rt.VirtualHost != "v" {
		t.Errorf("route: %+v", rt)
	}
}
