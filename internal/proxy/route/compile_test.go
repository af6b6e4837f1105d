package route

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestCompileErrorFormat(t *testing.T) {
	rc := parse(t, `{"name":"http.80","virtual_hosts":[{"name":"web","domains":["web"],"routes":[
	  {"match":{"prefix":"/a"},"route":{"cluster":"c"}},
	  {"match":{"prefix":"/b"},"route":{"cluster":"c"}},
	  {"match":{"prefix":"/","grpc":{}},"route":{"cluster":"c"}}]}]}`)
	_, err := Compile(rc)
	const want = `route config "http.80": virtual host "web": routes[2]: match.grpc: not supported`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrNotSupported) {
		t.Error("errors.Is(err, ErrNotSupported) = false")
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatal("not a *FieldError")
	}
	if fe.RouteConfig != "http.80" || fe.VirtualHost != "web" || fe.VirtualHostIndex != 0 || fe.RouteIndex != 2 || fe.Field != "match.grpc" {
		t.Errorf("FieldError = %+v", fe)
	}
}

func TestCompileErrors(t *testing.T) {
	const (
		r  = `route config "rc": virtual host "v": routes[0]: `
		vh = `route config "rc": virtual host "v": `
		rc = `route config "rc": `
	)
	okRoute := `"match":{"prefix":"/"},"route":{"cluster":"c"}`
	vhost := func(members string) string {
		return fmt.Sprintf(`{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],%s"routes":[{%s}]}]}`, members, okRoute)
	}
	config := func(members string) string {
		return fmt.Sprintf(`{"name":"rc",%s"virtual_hosts":[{"name":"v","domains":["*"],"routes":[{%s}]}]}`, members, okRoute)
	}
	for _, tc := range []struct {
		name, config, want string
	}{
		// Unsupported fields, found by the allow-list.
		{"runtime_fraction", withMatch(`{"prefix":"/","runtime_fraction":{"default_value":{"numerator":50}}}`), r + "match.runtime_fraction: not supported"},
		{"grpc", withMatch(`{"prefix":"/","grpc":{}}`), r + "match.grpc: not supported"},
		{"tls_context", withMatch(`{"prefix":"/","tls_context":{"presented":true}}`), r + "match.tls_context: not supported"},
		{"cookies", withMatch(`{"prefix":"/","cookies":[{"name":"a","string_match":{"exact":"b"}}]}`), r + "match.cookies: not supported"},
		{"connect_matcher", withMatch(`{"connect_matcher":{}}`), r + "match.connect_matcher: not supported"},
		{"dynamic_metadata", withMatch(`{"prefix":"/","dynamic_metadata":[{"filter":"f","path":[{"key":"k"}],"value":{"present_match":true}}]}`), r + "match.dynamic_metadata: not supported"},
		{"header string_match custom", withMatch(`{"prefix":"/","headers":[{"name":"x","string_match":{"custom":{"name":"n","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"v"}}}}]}`), r + "match.headers[0].string_match.custom: not supported"},
		{"max_program_size", withMatch(`{"safe_regex":{"google_re2":{"max_program_size":100},"regex":"/"}}`), r + "match.safe_regex.google_re2.max_program_size: not supported"},
		{"require_tls", vhost(`"require_tls":"ALL",`), vh + "require_tls: not supported"},
		{"cors", vhost(`"cors":{"allow_methods":"GET"},`), vh + "cors: not supported"},
		{"rate_limits", vhost(`"rate_limits":[{"actions":[{"remote_address":{}}]}],`), vh + "rate_limits: not supported"},
		{"vhost typed_per_filter_config", vhost(`"typed_per_filter_config":{"envoy.filters.http.x":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"v"}},`), vh + `typed_per_filter_config["envoy.filters.http.x"]: type.googleapis.com/google.protobuf.StringValue: not supported`},
		{"route typed_per_filter_config", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"typed_per_filter_config":{"f":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"v"}}`), r + `typed_per_filter_config["f"]: type.googleapis.com/google.protobuf.StringValue: not supported`},
		{"cors filter_enabled", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"typed_per_filter_config":{"cors":{"@type":"type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy","filter_enabled":{"default_value":{"numerator":50}}}}`), r + `typed_per_filter_config["cors"].filter_enabled: not supported`},
		{"cors bad origin regex", vhost(`"typed_per_filter_config":{"cors":{"@type":"type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy","allow_origin_string_match":[{"safe_regex":{"regex":"(a"}}]}},`), vh + "typed_per_filter_config[\"cors\"].allow_origin_string_match[0].safe_regex.regex: \"(a\": error parsing regexp: missing closing ): `(a`"},
		{"hedge_policy", vhost(`"hedge_policy":{"hedge_on_per_try_timeout":true},`), vh + "hedge_policy: not supported"},
		{"virtual_clusters", vhost(`"virtual_clusters":[{"name":"x","headers":[{"name":":path","string_match":{"exact":"/"}}]}],`), vh + "virtual_clusters: not supported"},
		{"matcher", `{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],"matcher":{"on_no_match":{"action":{"name":"a","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"x"}}}}}]}`, vh + "matcher: not supported"},
		{"internal_only_headers", config(`"internal_only_headers":["x-internal"],`), rc + "internal_only_headers: not supported"},
		{"vhds", config(`"vhds":{"config_source":{"ads":{}}},`), rc + "vhds: not supported"},
		{"config typed_per_filter_config", config(`"typed_per_filter_config":{"f":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"v"}},`), rc + "typed_per_filter_config: not supported"},
		{"validate_clusters", config(`"validate_clusters":true,`), rc + "validate_clusters: true: not supported (the proxy does not check clusters when it loads routes)"},
		{"vhost_header pseudo", config(`"vhost_header":":path",`), rc + `vhost_header: ":path": not supported`},
		{"cluster_header", oneRoute(`"match":{"prefix":"/"},"route":{"cluster_header":"x-cluster"}`), r + "route.cluster_header: not supported"},
		{"idle_timeout", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","idle_timeout":"1s"}`), r + "route.idle_timeout: not supported"},
		{"upgrade_configs", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","upgrade_configs":[{"upgrade_type":"websocket"}]}`), r + "route.upgrade_configs: not supported"},
		{"auto_host_rewrite", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","auto_host_rewrite":true}`), r + "route.auto_host_rewrite: not supported"},
		{"max_stream_duration", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","max_stream_duration":{"grpc_timeout_header_max":"0s"}}`), r + "route.max_stream_duration: not supported"},
		{"route rate_limits", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","rate_limits":[{"actions":[{"remote_address":{}}]}]}`), r + "route.rate_limits: not supported"},
		{"cluster metadata_match", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":1,"metadata_match":{}}]}}`), r + "route.weighted_clusters.clusters[0].metadata_match: not supported"},
		{"runtime_key_prefix", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":1}],"runtime_key_prefix":"k"}}`), r + "route.weighted_clusters.runtime_key_prefix: not supported"},
		{"retry_host_predicate", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","retry_policy":{"retry_on":"5xx","retry_host_predicate":[{"name":"envoy.retry_host_predicates.previous_hosts"}]}}`), r + "route.retry_policy.retry_host_predicate: not supported"},
		{"vhost retry_policy field", vhost(`"retry_policy":{"host_selection_retry_max_attempts":3},`), vh + "retry_policy.host_selection_retry_max_attempts: not supported"},
		{"mirror cluster_header", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[{"cluster_header":"x"}]}`), r + "route.request_mirror_policies[0].cluster_header: not supported"},
		{"mirror runtime_key", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[{"cluster":"m","runtime_fraction":{"default_value":{"numerator":100},"runtime_key":"k"}}]}`), r + "route.request_mirror_policies[0].runtime_fraction.runtime_key: not supported"},
		{"redirect path_rewrite", oneRoute(`"match":{"prefix":"/"},"redirect":{"path_rewrite":"/x"}`), r + "redirect.path_rewrite: not supported"},
		{"direct_response filename", oneRoute(`"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"filename":"/etc/passwd"}}`), r + "direct_response.body.filename: not supported"},
		{"direct_response body_format", oneRoute(`"match":{"prefix":"/"},"direct_response":{"status":200,"body_format":{"text_format":"x"}}`), r + "direct_response.body_format: not supported"},
		{"decorator", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"decorator":{"operation":"op"}`), r + "decorator: not supported"},
		{"non_forwarding_action", oneRoute(`"match":{"prefix":"/"},"non_forwarding_action":{}`), r + "non_forwarding_action: not supported"},
		{"header pseudo", withMatch(`{"prefix":"/","headers":[{"name":":protocol","present_match":true}]}`), r + `match.headers[0].name: pseudo-header ":protocol": not supported`},
		{"query present_match false", withMatch(`{"prefix":"/","query_parameters":[{"name":"q","present_match":false}]}`), r + "match.query_parameters[0].present_match: false: not supported (Envoy matches presence either way; omit it, or use present_match: true)"},
		{"header value format", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"request_headers_to_add":[{"header":{"key":"x-ip","value":"%DOWNSTREAM_REMOTE_ADDRESS%"}}]`), r + `request_headers_to_add[0].header.value: "%DOWNSTREAM_REMOTE_ADDRESS%": substitution command %DOWNSTREAM_REMOTE_ADDRESS%: not supported (only literal values are; write %% for a literal %)`},
		{"header value stray percent", vhost(`"response_headers_to_add":[{"header":{"key":"x-p","value":"50%"}}],`), vh + `response_headers_to_add[0].header.value: "50%": substitution command %: not supported (only literal values are; write %% for a literal %)`},
		{"path_rewrite format", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","path_rewrite":"/x%REQ(h)%"}`), r + `route.path_rewrite: "/x%REQ(h)%": substitution command %REQ(h)%: not supported (only literal values are; write %% for a literal %)`},
		{"retriable-headers", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","retry_policy":{"retry_on":"5xx,retriable-headers"}}`), r + `route.retry_policy.retry_on: "retriable-headers": not supported`},

		// Invalid values.
		{"unknown retry_on", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","retry_policy":{"retry_on":"5xx,gateway-eror"}}`), r + `route.retry_policy.retry_on: unknown condition "gateway-eror"`},
		{"retriable status code", vhost(`"retry_policy":{"retry_on":"retriable-status-codes","retriable_status_codes":[503,99]},`), vh + "retry_policy.retriable_status_codes[1]: 99 is not an HTTP status code"},
		{"backoff max < base", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","retry_policy":{"retry_back_off":{"base_interval":"1s","max_interval":"0.5s"}}}`), r + "route.retry_policy.retry_back_off.max_interval: 500ms is less than base_interval 1s"},
		{"duplicate domain", `{"name":"rc","virtual_hosts":[{"name":"a","domains":["x.com"]},{"name":"b","domains":["y.com","X.com"]}]}`, `route config "rc": virtual host "b": domains[1]: domain "X.com" is also in virtual host "a" (domains must be unique across virtual hosts)`},
		{"duplicate domain same vhost", `{"name":"rc","virtual_hosts":[{"name":"a","domains":["*.x.com","*.x.com"]}]}`, `route config "rc": virtual host "a": domains[1]: domain "*.x.com" is also in virtual host "a" (domains must be unique across virtual hosts)`},
		{"two stars", `{"name":"rc","virtual_hosts":[{"name":"a","domains":["*"]},{"name":"b","domains":["*"]}]}`, `route config "rc": virtual host "b": domains[0]: only one virtual host may have the domain "*"; virtual host "a" has it too`},
		{"empty domain", `{"name":"rc","virtual_hosts":[{"name":"a","domains":[""]}]}`, `route config "rc": virtual host "a": domains[0]: empty domain`},
		{"duplicate vhost name", `{"name":"rc","virtual_hosts":[{"name":"a","domains":["a"]},{"name":"a","domains":["b"]}]}`, `route config "rc": virtual host "a": name: virtual_hosts[0] has the same name (virtual host names must be unique)`},
		{"bad regex", withMatch(`{"safe_regex":{"regex":"/(a"}}`), r + "match.safe_regex.regex: \"/(a\": error parsing regexp: missing closing ): `/(a`"},
		{"regex escaping the anchors", withMatch(`{"safe_regex":{"regex":"a)|(b"}}`), r + "match.safe_regex.regex: \"a)|(b\": error parsing regexp: unexpected ): `a)|(b`"},
		{"bad header regex", withMatch(`{"prefix":"/","headers":[{"name":"x","string_match":{"safe_regex":{"regex":"["}}}]}`), r + "match.headers[0].string_match.safe_regex.regex: \"[\": error parsing regexp: missing closing ]: `[`"},
		{"no path specifier", withMatch(`{"headers":[{"name":"x"}]}`), r + "match: one of prefix, path, safe_regex or path_separated_prefix is required"},
		{"no match", oneRoute(`"route":{"cluster":"c"}`), r + "match: required"},
		{"no action", oneRoute(`"match":{"prefix":"/"}`), r + "action: one of route, redirect or direct_response is required"},
		{"no cluster", oneRoute(`"match":{"prefix":"/"},"route":{"timeout":"1s"}`), r + "route: one of cluster or weighted_clusters is required"},
		{"psp trailing slash", withMatch(`{"path_separated_prefix":"/api/"}`), r + `match.path_separated_prefix: "/api/": must not end in '/' (the '/' after the prefix is implied)`},
		{"psp root", withMatch(`{"path_separated_prefix":"/"}`), r + `match.path_separated_prefix: "/": must not end in '/' (the '/' after the prefix is implied)`},
		{"psp query", withMatch(`{"path_separated_prefix":"/a?b"}`), r + `match.path_separated_prefix: "/a?b": must not contain '?' or '#'`},
		{"psp fragment", withMatch(`{"path_separated_prefix":"/a#b"}`), r + `match.path_separated_prefix: "/a#b": must not contain '?' or '#'`},
		{"psp short", withMatch(`{"path_separated_prefix":"a"}`), r + `match.path_separated_prefix: "a": must be at least 2 characters`},
		{"add pseudo header", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"request_headers_to_add":[{"header":{"key":":path","value":"/x"}}]`), r + `request_headers_to_add[0].header.key: ":path": pseudo-headers and host may not be modified`},
		{"add host", config(`"request_headers_to_add":[{"header":{"key":"Host","value":"x"}}],`), rc + `request_headers_to_add[0].header.key: "Host": pseudo-headers and host may not be modified`},
		{"remove host", vhost(`"request_headers_to_remove":["host"],`), vh + `request_headers_to_remove[0]: "host": pseudo-headers and host may not be removed`},
		{"remove pseudo", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"response_headers_to_remove":[":status"]`), r + `response_headers_to_remove[0]: ":status": pseudo-headers and host may not be removed`},
		{"append and append_action", config(`"response_headers_to_add":[{"header":{"key":"x","value":"y"},"append":true,"append_action":"ADD_IF_ABSENT"}],`), rc + "response_headers_to_add[0]: both append and append_action are set; use append_action"},
		{"value and raw_value", config(`"response_headers_to_add":[{"header":{"key":"x","value":"y","raw_value":"eg=="}}],`), rc + "response_headers_to_add[0].header: only one of value and raw_value may be set"},
		{"weights add up to 0", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":0},{"name":"b"}]}}`), r + "route.weighted_clusters.clusters: the weights add up to 0; at least one must be positive"},
		{"weights overflow", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":4294967295},{"name":"b","weight":1}]}}`), r + "route.weighted_clusters.clusters: the weights add up to 4294967296, more than 4294967295"},
		{"no weighted clusters", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{}}`), r + "route.weighted_clusters.clusters: at least one cluster is required"},
		{"weighted cluster without name", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":1},{"weight":1}]}}`), r + "route.weighted_clusters.clusters[1].name: required"},
		{"total_weight mismatch", oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":30},{"name":"b","weight":60}],"total_weight":100}}`), r + "route.weighted_clusters.total_weight: 100, but the weights add up to 90 (total_weight is deprecated: leave it unset)"},
		{"empty cluster", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":""}`), r + "route.cluster: empty"},
		{"two rewrites", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","prefix_rewrite":"/x","regex_rewrite":{"pattern":{"regex":"a"},"substitution":"b"}}`), r + "route: only one of prefix_rewrite, regex_rewrite and path_rewrite may be set"},
		{"missing group", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"/(a)"},"substitution":"\\2"}}`), r + `route.regex_rewrite.substitution: "\\2": \2 refers to a capture group the pattern does not have (it has 1)`},
		{"bad escape", oneRoute(`"match":{"prefix":"/"},"redirect":{"regex_rewrite":{"pattern":{"regex":"a"},"substitution":"\\n"}}`), r + `redirect.regex_rewrite.substitution: "\\n": invalid escape: use \0-\9 for a capture group or \\ for a backslash`},
		{"bad rewrite regex", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","regex_rewrite":{"pattern":{"regex":"*"},"substitution":""}}`), r + "route.regex_rewrite.pattern.regex: \"*\": error parsing regexp: missing argument to repetition operator: `*`"},
		{"host rewrite twice", oneRoute(`"match":{"prefix":"/"},"route":{"host_rewrite_literal":"a","weighted_clusters":{"clusters":[{"name":"a","weight":1,"host_rewrite_literal":"b"}]}}`), r + "route.weighted_clusters.clusters[0].host_rewrite_literal: set both here and on the route (route.host_rewrite_literal): ambiguous, set one of them"},
		{"negative timeout", oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","timeout":"-1s"}`), r + "route.timeout: -1s: must not be negative"},
		{"bad scheme", oneRoute(`"match":{"prefix":"/"},"redirect":{"scheme_redirect":"ht tp"}`), r + `redirect.scheme_redirect: "ht tp" is not a URL scheme`},
		{"bad port", oneRoute(`"match":{"prefix":"/"},"redirect":{"port_redirect":70000}`), r + "redirect.port_redirect: 70000 is not a port"},
		{"bad redirect code", oneRoute(`"match":{"prefix":"/"},"redirect":{"response_code":42}`), r + "redirect.response_code: 42: not supported"},
		{"direct response status", oneRoute(`"match":{"prefix":"/"},"direct_response":{"status":700}`), r + "direct_response.status: 700: must be in [200, 600)"},
		{"direct response too big", `{"name":"rc","max_direct_response_body_size_bytes":3,"virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"inline_string":"four"}}}]}]}`, r + "direct_response.body: 4 bytes, more than max_direct_response_body_size_bytes (3)"},
		{"bad append_action", config(`"response_headers_to_add":[{"header":{"key":"x","value":"y"},"append_action":9}],`), rc + "response_headers_to_add[0].append_action: 9: not supported"},

		// Envoy's own rules, checked by ValidateAll once everything else passes.
		{"no domains", `{"name":"rc","virtual_hosts":[{"name":"v","routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`, `route config "rc": invalid RouteConfiguration.VirtualHosts[0]: embedded message failed validation | caused by: invalid VirtualHost.Domains: value must contain at least 1 item(s)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := Compile(parse(t, tc.config))
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want error %s", tbl, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestCompileDefaultBodyLimit(t *testing.T) {
	big := strings.Repeat("x", 4097)
	_, err := Compile(parse(t, oneRoute(`"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"inline_string":"`+big+`"}}`)))
	if err == nil || !strings.Contains(err.Error(), "4097 bytes, more than max_direct_response_body_size_bytes (4096)") {
		t.Errorf("err = %v", err)
	}
	mustCompile(t, oneRoute(`"match":{"prefix":"/"},"direct_response":{"status":200,"body":{"inline_string":"`+big[1:]+`"}}`))
}

func TestCompileReportsAllErrors(t *testing.T) {
	_, err := Compile(parse(t, `{"name":"rc","internal_only_headers":["x"],"virtual_hosts":[
	  {"domains":["a"],"require_tls":"ALL","routes":[{"match":{"prefix":"/","grpc":{}},"route":{"cluster":"c","idle_timeout":"1s"}}]},
	  {"name":"b","domains":["a"]}]}`))
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`route config "rc": internal_only_headers: not supported`,
		`route config "rc": virtual_hosts[0]: require_tls: not supported`,
		`route config "rc": virtual_hosts[0]: routes[0]: match.grpc: not supported`,
		`route config "rc": virtual_hosts[0]: routes[0]: route.idle_timeout: not supported`,
		`route config "rc": virtual host "b": domains[0]: domain "a" is also in virtual_hosts[0] (domains must be unique across virtual hosts)`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("error\n got: %s\nwant: %s", got, strings.Join(want, "\n"))
	}
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) {
			n++
		}
	}
	if n != len(want) {
		t.Errorf("%d FieldErrors, want %d", n, len(want))
	}
}

func TestCompileCapsErrors(t *testing.T) {
	var routes []string
	for range maxErrors + 5 {
		routes = append(routes, `{"match":{"prefix":"/","grpc":{}},"route":{"cluster":"c"}}`)
	}
	_, err := Compile(parse(t, `{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],"routes":[`+strings.Join(routes, ",")+`]}]}`))
	if err == nil || !strings.HasSuffix(err.Error(), `route config "rc": 5 more errors`) {
		t.Errorf("err = %v", err)
	}
}

// A field unknown to the compiled-in protos (a newer control plane) is
// refused, at any depth.
func TestCompileUnknownField(t *testing.T) {
	rc := parse(t, withMatch(`{"prefix":"/"}`))
	var b []byte
	b = protowire.AppendTag(b, 999, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	match := rc.VirtualHosts[0].Routes[0].Match
	match.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	_, err := Compile(rc)
	want := `route config "rc": virtual host "v": routes[0]: match: field number(s) 999 unknown to this proxy (newer API than the proxy's?): not supported`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	rc = parse(t, withMatch(`{"prefix":"/"}`))
	rc.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	if _, err := Compile(rc); err == nil || !errors.Is(err, ErrNotSupported) {
		t.Errorf("top level: err = %v", err)
	}
}

func TestCompileNil(t *testing.T) {
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil) succeeded")
	}
}

// Every message type that the allow-list descends into has an entry, so a
// forgotten entry cannot silently refuse every field (or worse).
func TestAllowListComplete(t *testing.T) {
	for name, fields := range allowList {
		md, err := findMessage(name)
		if err != nil {
			t.Fatal(err)
		}
		for fname, r := range fields {
			fd := md.Fields().ByName(fname)
			if r != check || fd.Message() == nil {
				continue
			}
			target := fd.Message()
			if fd.IsMap() {
				target = fd.MapValue().Message()
			}
			if _, ok := allowList[target.FullName()]; !ok {
				t.Errorf("%s.%s descends into %s, which has no allow-list entry", name, fname, target.FullName())
			}
		}
	}
}

func findMessage(name protoreflect.FullName) (protoreflect.MessageDescriptor, error) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor) protoreflect.MessageDescriptor
	walk = func(md protoreflect.MessageDescriptor) protoreflect.MessageDescriptor {
		if md.FullName() == name {
			return md
		}
		if seen[md.FullName()] {
			return nil
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			if m := md.Fields().Get(i).Message(); m != nil {
				if found := walk(m); found != nil {
					return found
				}
			}
		}
		return nil
	}
	// typed_per_filter_config holds CorsPolicy messages in Any fields.
	for _, root := range []proto.Message{&routev3.RouteConfiguration{}, &corsv3.CorsPolicy{}} {
		if found := walk(root.ProtoReflect().Descriptor()); found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("%s not reachable from RouteConfiguration", name)
}

// Things Envoy accepts that look odd but must compile.
func TestCompileAccepts(t *testing.T) {
	for _, js := range []string{
		oneRoute(`"match":{"prefix":"/"},"route":{"weighted_clusters":{"clusters":[{"name":"a","weight":30},{"name":"b","weight":70}],"total_weight":100}}`),
		oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[{"cluster":"m","runtime_fraction":{"default_value":{"numerator":100}}}]}`),
		oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[{"cluster":"m","runtime_fraction":{"default_value":{"numerator":1000000,"denominator":"MILLION"}}}]}`),
		oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","request_mirror_policies":[{"cluster":"m","runtime_fraction":{"default_value":{"numerator":50}}}]}`),
		`{"name":"rc","virtual_hosts":[{"name":"v","domains":["*"],"request_mirror_policies":[{"cluster":"m","runtime_fraction":{"default_value":{"numerator":9999,"denominator":"TEN_THOUSAND"}}}]}]}`,
		oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c","hash_policy":[{"header":{"header_name":"x-user"}}]}`),
		oneRoute(`"match":{"prefix":"/"},"route":{"cluster":"c"},"metadata":{"filter_metadata":{"trellis":{"route":"x"}}}`),
		`{"name":"rc","validate_clusters":false,"metadata":{},"virtual_hosts":[{"name":"v","domains":["foo.*.com"],"metadata":{}}]}`,
		oneRoute(`"match":{"prefix":"/"},"redirect":{"https_redirect":false}`),
		withMatch(`{"prefix":"/","headers":[{"name":"x","string_match":{"exact":""}}]}`),
	} {
		if _, err := Compile(parse(t, js)); err != nil {
			t.Errorf("Compile(%s): %v", js, err)
		}
	}
}

// Nil messages inside the config (typed-nil oneofs, nil list entries) are
// errors, not panics.
func TestCompileNilMessages(t *testing.T) {
	for name, rc := range map[string]*routev3.RouteConfiguration{
		"nil virtual host": {VirtualHosts: []*routev3.VirtualHost{nil}},
		"nil route":        {VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{nil}}}},
		"nil route action": {VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_Route{}}}}}},
		"nil direct response": {VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: &routev3.Route_DirectResponse{}}}}}},
		"nil safe_regex": {VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}}}}}}},
		"nil weighted clusters": {VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{nil}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{}}}}}}}},
		"nil header option": {RequestHeadersToAdd: []*corev3.HeaderValueOption{nil}},
	} {
		if _, err := Compile(rc); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}
