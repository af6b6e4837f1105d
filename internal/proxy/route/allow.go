package route

import (
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The allow-list names, per message type, every field the proxy implements.
// Compile walks the set fields of the configuration with protoreflect and
// rejects any field not listed here, so a field that Envoy adds later, or one
// that nobody thought of, is refused rather than silently ignored. Fields
// unknown to the compiled-in protos (sent by a newer control plane) are
// refused too.
//
// Listing a field here is a promise that compile.go implements it, or, for
// data with no effect on traffic (name, metadata), deliberately ignores it.

type rule uint8

const (
	// check: a message-typed field whose own set fields are checked
	// against the allow-list of its type (a type with no entry allows none).
	check rule = iota
	// accept: the value is accepted whole (scalars, and messages that are
	// read in full or kept opaque such as metadata).
	accept
	// handled: walked separately by the compiler with its own context
	// (virtual_hosts, routes).
	handled
)

var allowList = map[protoreflect.FullName]map[protoreflect.Name]rule{}

// allow registers the allowed fields of m's type. It panics on a name that
// is not a field of the type, so a typo fails every test at init.
func allow(m proto.Message, fields map[string]rule) {
	md := m.ProtoReflect().Descriptor()
	set := make(map[protoreflect.Name]rule, len(fields))
	for name, r := range fields {
		if md.Fields().ByName(protoreflect.Name(name)) == nil {
			panic(fmt.Sprintf("route: allow-list: %s has no field %q", md.FullName(), name))
		}
		set[protoreflect.Name(name)] = r
	}
	allowList[md.FullName()] = set
}

func init() {
	allow(&routev3.RouteConfiguration{}, map[string]rule{
		"name":                                    accept,
		"virtual_hosts":                           handled,
		"request_headers_to_add":                  check,
		"request_headers_to_remove":               accept,
		"response_headers_to_add":                 check,
		"response_headers_to_remove":              accept,
		"most_specific_header_mutations_wins":     accept,
		"validate_clusters":                       accept, // only false; see compile
		"max_direct_response_body_size_bytes":     accept,
		"request_mirror_policies":                 check,
		"ignore_port_in_host_matching":            accept,
		"vhost_header":                            accept,
		"ignore_path_parameters_in_path_matching": accept,
		"metadata":                                accept,
	})
	allow(&routev3.VirtualHost{}, map[string]rule{
		"name":                       accept,
		"domains":                    accept,
		"routes":                     handled,
		"request_headers_to_add":     check,
		"request_headers_to_remove":  accept,
		"response_headers_to_add":    check,
		"response_headers_to_remove": accept,
		"retry_policy":               check,
		"request_mirror_policies":    check,
		"typed_per_filter_config":    handled, // CorsPolicy only; see cors.go
		"metadata":                   accept,
	})
	allow(&routev3.Route{}, map[string]rule{
		"name":                       accept,
		"match":                      check,
		"route":                      check,
		"redirect":                   check,
		"direct_response":            check,
		"request_headers_to_add":     check,
		"request_headers_to_remove":  accept,
		"response_headers_to_add":    check,
		"response_headers_to_remove": accept,
		"typed_per_filter_config":    handled, // CorsPolicy only; see cors.go
		"metadata":                   accept,
	})
	allow(&routev3.RouteMatch{}, map[string]rule{
		"prefix":                accept,
		"path":                  accept,
		"safe_regex":            check,
		"path_separated_prefix": accept,
		"case_sensitive":        accept,
		"headers":               check,
		"query_parameters":      check,
	})
	allow(&matcherv3.RegexMatcher{}, map[string]rule{
		"google_re2": check, // an empty GoogleRE2; max_program_size is refused
		"regex":      accept,
	})
	allow(&matcherv3.RegexMatcher_GoogleRE2{}, map[string]rule{})
	allow(&matcherv3.RegexMatchAndSubstitute{}, map[string]rule{
		"pattern":      check,
		"substitution": accept,
	})
	allow(&matcherv3.StringMatcher{}, map[string]rule{
		"exact":       accept,
		"prefix":      accept,
		"suffix":      accept,
		"contains":    accept,
		"safe_regex":  check,
		"ignore_case": accept,
	})
	allow(&routev3.HeaderMatcher{}, map[string]rule{
		"name":                          accept,
		"string_match":                  check,
		"present_match":                 accept,
		"range_match":                   accept,
		"exact_match":                   accept,
		"prefix_match":                  accept,
		"suffix_match":                  accept,
		"contains_match":                accept,
		"safe_regex_match":              check,
		"invert_match":                  accept,
		"treat_missing_header_as_empty": accept,
	})
	allow(&routev3.QueryParameterMatcher{}, map[string]rule{
		"name":          accept,
		"string_match":  check,
		"present_match": accept,
	})
	allow(&routev3.RouteAction{}, map[string]rule{
		"cluster":                 accept,
		"weighted_clusters":       check,
		"prefix_rewrite":          accept,
		"regex_rewrite":           check,
		"path_rewrite":            accept,
		"host_rewrite_literal":    accept,
		"timeout":                 accept,
		"retry_policy":            check,
		"request_mirror_policies": check,
		"hash_policy":             check, // hash.go
	})
	allow(&routev3.WeightedCluster{}, map[string]rule{
		"clusters":     check,
		"total_weight": accept,
	})
	allow(&routev3.WeightedCluster_ClusterWeight{}, map[string]rule{
		"name":                       accept,
		"weight":                     accept,
		"request_headers_to_add":     check,
		"request_headers_to_remove":  accept,
		"response_headers_to_add":    check,
		"response_headers_to_remove": accept,
		"host_rewrite_literal":       accept,
	})
	allow(&routev3.RetryPolicy{}, map[string]rule{
		"retry_on":               accept,
		"num_retries":            accept,
		"per_try_timeout":        accept,
		"retriable_status_codes": accept,
		"retry_back_off":         check,
	})
	allow(&routev3.RetryPolicy_RetryBackOff{}, map[string]rule{
		"base_interval": accept,
		"max_interval":  accept,
	})
	allow(&routev3.RouteAction_RequestMirrorPolicy{}, map[string]rule{
		"cluster":                           accept,
		"runtime_fraction":                  check,
		"disable_shadow_host_suffix_append": accept,
		"host_rewrite_literal":              accept,
	})
	allow(&corev3.RuntimeFractionalPercent{}, map[string]rule{
		"default_value": accept, // runtime_key is refused: there is no runtime
	})
	allow(&corsv3.CorsPolicy{}, map[string]rule{
		"allow_origin_string_match":       check,
		"allow_methods":                   accept,
		"allow_headers":                   accept,
		"expose_headers":                  accept,
		"max_age":                         accept,
		"allow_credentials":               accept,
		"allow_private_network_access":    accept,
		"forward_not_matching_preflights": accept,
		// filter_enabled and shadow_enabled are refused: there is no runtime
		// to sample against.
	})
	allow(&routev3.RedirectAction{}, map[string]rule{
		"https_redirect":  accept,
		"scheme_redirect": accept,
		"host_redirect":   accept,
		"port_redirect":   accept,
		"path_redirect":   accept,
		"prefix_rewrite":  accept,
		"regex_rewrite":   check,
		"response_code":   accept,
		"strip_query":     accept,
	})
	allow(&routev3.DirectResponseAction{}, map[string]rule{
		"status": accept,
		"body":   check,
	})
	allow(&corev3.DataSource{}, map[string]rule{
		"inline_bytes":  accept,
		"inline_string": accept,
	})
	allow(&corev3.HeaderValueOption{}, map[string]rule{
		"header":           check,
		"append":           accept,
		"append_action":    accept,
		"keep_empty_value": accept,
	})
	allow(&corev3.HeaderValue{}, map[string]rule{
		"key":       accept,
		"value":     accept,
		"raw_value": accept,
	})
}

// checkFields reports every set field of m (recursively, per the
// allow-list) that the proxy does not implement, and any field unknown to the
// compiled-in protos. path is the field path of m in the current context.
func (c *compiler) checkFields(m protoreflect.Message, path string) {
	if !m.IsValid() {
		return
	}
	allowed := allowList[m.Descriptor().FullName()]
	var fields []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	// Range has no defined order; sort so that messages are stable.
	slices.SortFunc(fields, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number() - b.Number()) })
	for _, fd := range fields {
		name := joinField(path, string(fd.Name()))
		r, ok := allowed[fd.Name()]
		if !ok {
			c.fail(name, ErrNotSupported)
			continue
		}
		if r != check || fd.Message() == nil {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				c.checkFields(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i))
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				c.checkFields(mv.Message(), fmt.Sprintf("%s[%q]", name, k.String()))
				return true
			})
		default:
			c.checkFields(v.Message(), name)
		}
	}
	if u := m.GetUnknown(); len(u) > 0 {
		c.fail(path, fmt.Errorf("field number(s) %s unknown to this proxy (newer API than the proxy's?): %w", unknownFieldNumbers(u), ErrNotSupported))
	}
}

func unknownFieldNumbers(b []byte) string {
	var nums []string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			break
		}
		nums = append(nums, fmt.Sprint(num))
		b = b[n+m:]
	}
	if len(nums) == 0 {
		return "?"
	}
	return strings.Join(slices.Compact(nums), ", ")
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
