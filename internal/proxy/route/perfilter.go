package route

import (
	"fmt"
	"maps"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Per-filter configuration (typed_per_filter_config on a route or a
// virtual host) belongs to HTTP filters the proxy implements outside this
// package. Each registers a compiler for its per-route config type; a
// value of a type nobody registered is refused. The compiled value is
// opaque here and handed back by Route.FilterConfig.

// FilterConfigCompiler compiles one typed_per_filter_config value.
type FilterConfigCompiler func(m proto.Message) (any, error)

var filterConfigCompilers = map[string]FilterConfigCompiler{}

// RegisterFilterConfig makes Compile accept typed_per_filter_config values
// of typeURL, compiled with compile. Call it from an init function.
func RegisterFilterConfig(typeURL string, compile FilterConfigCompiler) {
	filterConfigCompilers[typeURL] = compile
}

func init() {
	allowList[(&routev3.Route{}).ProtoReflect().Descriptor().FullName()]["typed_per_filter_config"] = handled
	allowList[(&routev3.VirtualHost{}).ProtoReflect().Descriptor().FullName()]["typed_per_filter_config"] = handled
}

// FilterConfig returns the compiled typed_per_filter_config of the HTTP
// filter named name for this route: the route's own, else its virtual
// host's, as in Envoy; nil if neither has one.
func (r *Route) FilterConfig(name string) any {
	if v, ok := r.filterConfigs[name]; ok {
		return v
	}
	return nil
}

// corsPolicyType is compiled apart (cors.go): the CORS filter merges its
// route and virtual host policies field by field.
var corsPolicyType = "type.googleapis.com/" + string((&corsv3.CorsPolicy{}).ProtoReflect().Descriptor().FullName())

// filterConfigs compiles the entries of a typed_per_filter_config map other
// than CorsPolicy.
func (c *compiler) filterConfigs(m map[string]*anypb.Any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]any, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		field := fmt.Sprintf("typed_per_filter_config[%q]", name)
		a := m[name]
		if a.GetTypeUrl() == corsPolicyType {
			continue
		}
		compile := filterConfigCompilers[a.GetTypeUrl()]
		if compile == nil {
			c.failf(field, "%s: %w", a.GetTypeUrl(), ErrNotSupported)
			continue
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			c.failf(field, "%v", err)
			continue
		}
		v, err := compile(msg)
		if err != nil {
			c.failf(field, "%v", err)
			continue
		}
		out[name] = v
	}
	return out
}

// mergeFilterConfigs is the route's per-filter configs over its virtual
// host's.
func mergeFilterConfigs(route, vhost map[string]any) map[string]any {
	if len(vhost) == 0 {
		return route
	}
	out := maps.Clone(vhost)
	maps.Copy(out, route)
	return out
}
