package route

import (
	"fmt"
	"net/http"
	"reflect"
	"testing"
)

// levelsConfig puts the given JSON members (e.g. request_headers_to_add) at
// the configuration, virtual host and route levels; top is more
// configuration-level members.
func levelsConfig(top, config, vhost, route string) string {
	before := func(s string) string {
		if s == "" {
			return ""
		}
		return s + ","
	}
	after := func(s string) string {
		if s == "" {
			return ""
		}
		return "," + s
	}
	return fmt.Sprintf(`{"name":"rc",%s%s"virtual_hosts":[{"name":"v","domains":["*"],%s"routes":[
	  {"name":"r","match":{"prefix":"/"},"route":{"cluster":"c"}%s}]}]}`, before(top), before(config), before(vhost), after(route))
}

func add(name, value, action string) string {
	if action == "" {
		return fmt.Sprintf(`{"header":{"key":%q,"value":%q}}`, name, value)
	}
	return fmt.Sprintf(`{"header":{"key":%q,"value":%q},"append_action":%q}`, name, value, action)
}

func applyRequest(t *testing.T, js string, in http.Header) http.Header {
	t.Helper()
	tbl := mustCompile(t, js)
	rt := tbl.Match(get(t, "h", "/"))
	h := in.Clone()
	if h == nil {
		h = http.Header{}
	}
	rt.ApplyRequestHeaders(h, nil)
	return h
}

func TestHeaderPrecedence(t *testing.T) {
	set := func(v string) string {
		return `"request_headers_to_add":[` + add("x-level", v, "OVERWRITE_IF_EXISTS_OR_ADD") + `]`
	}
	js := levelsConfig("", set("config"), set("vhost"), set("route"))
	// Default: route first, configuration last: the least specific wins.
	if got := applyRequest(t, js, nil).Get("X-Level"); got != "config" {
		t.Errorf("default: X-Level = %q, want config", got)
	}
	js = levelsConfig(`"most_specific_header_mutations_wins":true`, set("config"), set("vhost"), set("route"))
	if got := applyRequest(t, js, nil).Get("X-Level"); got != "route" {
		t.Errorf("most_specific_header_mutations_wins: X-Level = %q, want route", got)
	}

	// Appends accumulate in evaluation order.
	app := func(v string) string { return `"request_headers_to_add":[` + add("x-a", v, "") + `]` }
	js = levelsConfig("", app("config"), app("vhost"), app("route"))
	if got := applyRequest(t, js, http.Header{"X-A": {"client"}})["X-A"]; !reflect.DeepEqual(got, []string{"client", "route", "vhost", "config"}) {
		t.Errorf("appends: %q", got)
	}

	// Each level removes before it adds, and levels apply in turn: a
	// virtual host removal undoes a route addition, unless the route level
	// runs last.
	js = levelsConfig("", "", `"request_headers_to_remove":["x-a"]`, app("route"))
	if got := applyRequest(t, js, http.Header{"X-A": {"client"}})["X-A"]; got != nil {
		t.Errorf("vhost remove after route add: %q", got)
	}
	js = levelsConfig(`"most_specific_header_mutations_wins":true`, "", `"request_headers_to_remove":["x-a"]`, app("route"))
	if got := applyRequest(t, js, http.Header{"X-A": {"client"}})["X-A"]; !reflect.DeepEqual(got, []string{"route"}) {
		t.Errorf("route add after vhost remove: %q", got)
	}
	// Remove before add within a level.
	js = levelsConfig("", "", "", `"request_headers_to_remove":["X-A"],`+app("route"))
	if got := applyRequest(t, js, http.Header{"X-A": {"client"}})["X-A"]; !reflect.DeepEqual(got, []string{"route"}) {
		t.Errorf("remove then add: %q", got)
	}
}

func TestAppendActions(t *testing.T) {
	for _, tc := range []struct {
		name string
		adds string // JSON array of HeaderValueOption
		in   http.Header
		want http.Header
	}{
		{"append default", `[` + add("x", "b", "") + `]`, http.Header{"X": {"a"}}, http.Header{"X": {"a", "b"}}},
		{"append adds", `[` + add("x", "b", "APPEND_IF_EXISTS_OR_ADD") + `]`, http.Header{}, http.Header{"X": {"b"}}},
		{"add if absent, present", `[` + add("x", "b", "ADD_IF_ABSENT") + `]`, http.Header{"X": {"a"}}, http.Header{"X": {"a"}}},
		{"add if absent, absent", `[` + add("x", "b", "ADD_IF_ABSENT") + `]`, http.Header{}, http.Header{"X": {"b"}}},
		{"overwrite or add", `[` + add("x", "b", "OVERWRITE_IF_EXISTS_OR_ADD") + `]`, http.Header{"X": {"a", "c"}}, http.Header{"X": {"b"}}},
		{"overwrite if exists, absent", `[` + add("x", "b", "OVERWRITE_IF_EXISTS") + `]`, http.Header{}, http.Header{}},
		{"overwrite if exists, present", `[` + add("x", "b", "OVERWRITE_IF_EXISTS") + `]`, http.Header{"X": {"a"}}, http.Header{"X": {"b"}}},
		// Within one level conditions see the headers before the level's
		// additions; overwrites are set before appends are added.
		{"append then overwrite", `[` + add("x", "b", "") + `,` + add("x", "a", "OVERWRITE_IF_EXISTS_OR_ADD") + `]`, http.Header{"X": {"old"}}, http.Header{"X": {"a", "b"}}},
		{"two add-if-absent", `[` + add("x", "1", "ADD_IF_ABSENT") + `,` + add("x", "2", "ADD_IF_ABSENT") + `]`, http.Header{}, http.Header{"X": {"1", "2"}}},
		{"overwrite-if-exists sees pre-level state", `[` + add("x", "1", "") + `,` + add("x", "2", "OVERWRITE_IF_EXISTS") + `]`, http.Header{}, http.Header{"X": {"1"}}},
		{"last overwrite wins", `[` + add("x", "1", "OVERWRITE_IF_EXISTS_OR_ADD") + `,` + add("x", "2", "OVERWRITE_IF_EXISTS_OR_ADD") + `]`, http.Header{}, http.Header{"X": {"2"}}},
		{"legacy append false", `[{"header":{"key":"x","value":"b"},"append":false}]`, http.Header{"X": {"a"}}, http.Header{"X": {"b"}}},
		{"legacy append true", `[{"header":{"key":"x","value":"b"},"append":true}]`, http.Header{"X": {"a"}}, http.Header{"X": {"a", "b"}}},
		{"empty value dropped", `[` + add("x", "", "OVERWRITE_IF_EXISTS_OR_ADD") + `]`, http.Header{"X": {"a"}}, http.Header{"X": {"a"}}},
		{"keep empty value", `[{"header":{"key":"x","value":""},"append_action":"OVERWRITE_IF_EXISTS_OR_ADD","keep_empty_value":true}]`, http.Header{"X": {"a"}}, http.Header{"X": {""}}},
		{"escaped percent", `[` + add("x-pct", "100%% sure", "") + `]`, http.Header{}, http.Header{"X-Pct": {"100% sure"}}},
		{"raw_value", `[{"header":{"key":"x","raw_value":"/w=="}}]`, http.Header{}, http.Header{"X": {"\xff"}}},
		{"canonical names", `[` + add("x-MIXED-case", "v", "") + `]`, http.Header{}, http.Header{"X-Mixed-Case": {"v"}}},
		{"many", `[` + add("a", "1", "") + `,` + add("b", "1", "") + `,` + add("c", "1", "") + `,` + add("d", "1", "") + `,` + add("e", "1", "") + `,` + add("f", "1", "") + `,` + add("g", "1", "") + `,` + add("h", "1", "") + `,` + add("i", "1", "") + `,` + add("j", "1", "") + `,` + add("k", "1", "") + `,` + add("l", "1", "") + `,` + add("m", "1", "") + `,` + add("n", "1", "") + `,` + add("o", "1", "") + `,` + add("p", "1", "") + `,` + add("q", "1", "ADD_IF_ABSENT") + `]`, http.Header{"Q": {"0"}},
			http.Header{"A": {"1"}, "B": {"1"}, "C": {"1"}, "D": {"1"}, "E": {"1"}, "F": {"1"}, "G": {"1"}, "H": {"1"}, "I": {"1"}, "J": {"1"}, "K": {"1"}, "L": {"1"}, "M": {"1"}, "N": {"1"}, "O": {"1"}, "P": {"1"}, "Q": {"0"}}},
	} {
		js := levelsConfig("", "", "", `"request_headers_to_add":`+tc.adds)
		if got := applyRequest(t, js, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	tbl := mustCompile(t, `{"response_headers_to_add":[{"header":{"key":"x-config","value":"1"}}],"response_headers_to_remove":["server"],
	  "virtual_hosts":[{"name":"v","domains":["*"],"response_headers_to_add":[{"header":{"key":"x-vhost","value":"1"}}],"routes":[
	    {"match":{"prefix":"/"},"direct_response":{"status":200},"response_headers_to_add":[{"header":{"key":"x-route","value":"1"}}],"response_headers_to_remove":["x-secret"]}]}]}`)
	rt := tbl.Match(get(t, "h", "/"))
	h := http.Header{"Server": {"app"}, "X-Secret": {"s"}, "X-Other": {"o"}}
	rt.ApplyResponseHeaders(h, nil)
	want := http.Header{"X-Config": {"1"}, "X-Vhost": {"1"}, "X-Route": {"1"}, "X-Other": {"o"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %v, want %v", h, want)
	}
	// Request mutations are separate.
	req := http.Header{"Server": {"x"}}
	rt.ApplyRequestHeaders(req, nil)
	if !reflect.DeepEqual(req, http.Header{"Server": {"x"}}) {
		t.Errorf("response mutations applied to the request: %v", req)
	}
}

func TestWeightedClusterHeaders(t *testing.T) {
	tbl := mustCompile(t, oneRoute(`"match":{"prefix":"/"},
	  "request_headers_to_add":[{"header":{"key":"x-order","value":"route"}}],
	  "response_headers_to_add":[{"header":{"key":"x-order","value":"route"}}],
	  "route":{"host_rewrite_literal":"","weighted_clusters":{"clusters":[
	    {"name":"a","weight":1,"host_rewrite_literal":"a.internal",
	     "request_headers_to_add":[{"header":{"key":"x-order","value":"cluster"}}],"request_headers_to_remove":["x-drop"],
	     "response_headers_to_add":[{"header":{"key":"x-order","value":"cluster"}}],"response_headers_to_remove":["x-drop"]},
	    {"name":"b","weight":1}]}}`))
	rt := tbl.Match(get(t, "h", "/"))
	a := rt.PickWeighted(func(uint32) uint32 { return 0 })
	b := rt.PickWeighted(func(uint32) uint32 { return 1 })
	if a.Name != "a" || b.Name != "b" {
		t.Fatalf("picked %q and %q", a.Name, b.Name)
	}
	for _, apply := range []func(http.Header, *WeightedCluster){rt.ApplyRequestHeaders, rt.ApplyResponseHeaders} {
		h := http.Header{"X-Drop": {"1"}}
		apply(h, a)
		if want := (http.Header{"X-Order": {"cluster", "route"}}); !reflect.DeepEqual(h, want) {
			t.Errorf("cluster a: got %v, want %v", h, want)
		}
		h = http.Header{"X-Drop": {"1"}}
		apply(h, b)
		if want := (http.Header{"X-Order": {"route"}, "X-Drop": {"1"}}); !reflect.DeepEqual(h, want) {
			t.Errorf("cluster b: got %v, want %v", h, want)
		}
	}
	if got := rt.RewriteHost(a); got != "a.internal" {
		t.Errorf("RewriteHost(a) = %q", got)
	}
	if got := rt.RewriteHost(b); got != "" {
		t.Errorf("RewriteHost(b) = %q", got)
	}
}
