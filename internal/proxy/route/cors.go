package route

import (
	"fmt"
	"maps"
	"slices"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// CORSPolicy is the configuration Envoy's CORS filter
// (envoy.filters.http.cors) reads for a route: a CorsPolicy from the
// typed_per_filter_config of the route and of its virtual host under the
// filter's name, merged field by field, the route's first, as the filter
// does (an empty string or list, or an unset bool, takes the virtual
// host's).
type CORSPolicy struct {
	allowOrigins []stringMatcher
	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are the header
	// values as configured; "" leaves the header out.
	AllowMethods  string
	AllowHeaders  string
	ExposeHeaders string
	MaxAge        string
	// AllowCredentials adds "Access-Control-Allow-Credentials: true".
	AllowCredentials bool
	// AllowPrivateNetworkAccess answers a preflight's
	// "Access-Control-Request-Private-Network: true".
	AllowPrivateNetworkAccess bool
	// ForwardNotMatchingPreflights forwards a preflight from an origin not
	// allowed upstream (the default) instead of answering it.
	ForwardNotMatchingPreflights bool
}

// AllowsOrigin reports whether origin is allowed: a matcher matches it,
// or matches "*" (so that an exact "*" allows every origin), as in Envoy.
func (p *CORSPolicy) AllowsOrigin(origin string) bool {
	for i := range p.allowOrigins {
		if p.allowOrigins[i].matches("*") || p.allowOrigins[i].matches(origin) {
			return true
		}
	}
	return false
}

// CORS returns the route's CORS policy for the CORS filter named filter
// in the connection manager, or nil if it has none (the filter then lets
// the request through untouched).
func (r *Route) CORS(filter string) *CORSPolicy {
	for i := range r.cors {
		if r.cors[i].filter == filter {
			return r.cors[i].policy
		}
	}
	return nil
}

type namedCORS struct {
	filter string
	policy *CORSPolicy
}

// corsConfig is one level's CorsPolicy, unset fields kept apart from
// false ones for the merge.
type corsConfig struct {
	origins                                     []stringMatcher
	methods, headers, expose, maxAge            string
	credentials, privateNetwork, forwardNoMatch *bool
}

// perFilterConfig compiles the CorsPolicy entries of a
// typed_per_filter_config map; the others are compiled by the compilers
// HTTP filters registered (perfilter.go).
func (c *compiler) perFilterConfig(field string, m map[string]*anypb.Any) map[string]*corsConfig {
	if len(m) == 0 {
		return nil
	}
	out := map[string]*corsConfig{}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if m[name].GetTypeUrl() != corsPolicyType {
			continue
		}
		f := fmt.Sprintf("%s[%q]", field, name)
		msg, err := m[name].UnmarshalNew()
		if err != nil {
			c.failf(f, "%s: %w", m[name].GetTypeUrl(), ErrNotSupported)
			continue
		}
		p, ok := msg.(*corsv3.CorsPolicy)
		if !ok {
			continue
		}
		c.checkFields(p.ProtoReflect(), f)
		cc := &corsConfig{
			methods: p.GetAllowMethods(),
			headers: p.GetAllowHeaders(),
			expose:  p.GetExposeHeaders(),
			maxAge:  p.GetMaxAge(),
		}
		for i, sm := range p.GetAllowOriginStringMatch() {
			if m, ok := c.stringMatcher(fmt.Sprintf("%s.allow_origin_string_match[%d]", f, i), sm); ok {
				cc.origins = append(cc.origins, m)
			}
		}
		cc.credentials = optionalBool(p.GetAllowCredentials())
		cc.privateNetwork = optionalBool(p.GetAllowPrivateNetworkAccess())
		cc.forwardNoMatch = optionalBool(p.GetForwardNotMatchingPreflights())
		out[name] = cc
	}
	return out
}

func optionalBool(v *wrapperspb.BoolValue) *bool {
	if v == nil {
		return nil
	}
	b := v.GetValue()
	return &b
}

// mergeCORS merges the route's and the virtual host's policies per
// filter name.
func mergeCORS(route, vhost map[string]*corsConfig) []namedCORS {
	names := slices.Sorted(maps.Keys(route))
	for name := range vhost {
		if _, ok := route[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []namedCORS
	for _, name := range names {
		levels := slices.DeleteFunc([]*corsConfig{route[name], vhost[name]}, func(c *corsConfig) bool { return c == nil })
		p := &CORSPolicy{ForwardNotMatchingPreflights: true}
		first := func(get func(*corsConfig) string) string {
			for _, l := range levels {
				if v := get(l); v != "" {
					return v
				}
			}
			return ""
		}
		firstBool := func(get func(*corsConfig) *bool, def bool) bool {
			for _, l := range levels {
				if v := get(l); v != nil {
					return *v
				}
			}
			return def
		}
		for _, l := range levels {
			if len(l.origins) > 0 {
				p.allowOrigins = l.origins
				break
			}
		}
		p.AllowMethods = first(func(c *corsConfig) string { return c.methods })
		p.AllowHeaders = first(func(c *corsConfig) string { return c.headers })
		p.ExposeHeaders = first(func(c *corsConfig) string { return c.expose })
		p.MaxAge = first(func(c *corsConfig) string { return c.maxAge })
		p.AllowCredentials = firstBool(func(c *corsConfig) *bool { return c.credentials }, false)
		p.AllowPrivateNetworkAccess = firstBool(func(c *corsConfig) *bool { return c.privateNetwork }, false)
		p.ForwardNotMatchingPreflights = firstBool(func(c *corsConfig) *bool { return c.forwardNoMatch }, true)
		out = append(out, namedCORS{filter: name, policy: p})
	}
	return out
}
