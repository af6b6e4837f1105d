package proxy

import (
	"errors"
	"fmt"
	"net/http"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"trellis.dev/trellis/internal/proxy/route"
)

// compileHTTPFilters checks a connection manager's HTTP filters: an
// optional CORS filter (envoy.filters.http.cors), then the router, last.
// It returns the CORS filter's name, "" when there is none: routes carry
// their CorsPolicy in typed_per_filter_config under that name.
func compileHTTPFilters(fs []*hcmv3.HttpFilter) (cors string, err error) {
	router := false
	for i, f := range fs {
		field := fmt.Sprintf("http_filters[%d]", i)
		if err := unsupported(f, "name", "typed_config"); err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		switch m := msg.(type) {
		case *routerv3.Router:
			if err := unsupported(m); err != nil {
				return "", fmt.Errorf("%s: %w", field, err)
			}
			if i != len(fs)-1 {
				return "", fmt.Errorf("%s: the router must be the last filter", field)
			}
			router = true
		case *corsv3.Cors:
			if err := unsupported(m); err != nil {
				return "", fmt.Errorf("%s: %w", field, err)
			}
			if cors != "" {
				return "", fmt.Errorf("%s: only one CORS filter is supported", field)
			}
			if f.GetName() == "" {
				return "", fmt.Errorf("%s: name is required (routes name the filter in typed_per_filter_config)", field)
			}
			cors = f.GetName()
		default:
			return "", fmt.Errorf("%s: %T is not supported (Cors and Router are)", field, msg)
		}
	}
	if !router {
		return "", errors.New("http_filters: the last filter must be the router")
	}
	return cors, nil
}

// CORS headers, as Envoy's CORS filter reads and writes them.
const (
	headerOrigin                    = "Origin"
	headerRequestMethod             = "Access-Control-Request-Method"
	headerRequestHeaders            = "Access-Control-Request-Headers"
	headerRequestPrivateNetwork     = "Access-Control-Request-Private-Network"
	headerAllowOrigin               = "Access-Control-Allow-Origin"
	headerAllowCredentials          = "Access-Control-Allow-Credentials"
	headerAllowMethods              = "Access-Control-Allow-Methods"
	headerAllowHeaders              = "Access-Control-Allow-Headers"
	headerMaxAge                    = "Access-Control-Max-Age"
	headerExposeHeaders             = "Access-Control-Expose-Headers"
	headerAllowPrivateNetworkAccess = "Access-Control-Allow-Private-Network"
)

// corsPreflight answers a CORS preflight request as Envoy's CORS filter
// does, and reports whether it did. A preflight is an OPTIONS request
// with a non-empty Origin and Access-Control-Request-Method. One from an
// origin the policy does not allow is let through to the upstream when
// the policy forwards such preflights (the default), else answered 200
// without Access-Control-Allow-Origin. "*" in allow_methods or
// allow_headers echoes what the preflight asks for.
func corsPreflight(w http.ResponseWriter, r *http.Request, p *route.CORSPolicy) bool {
	origin := r.Header.Get(headerOrigin)
	method := r.Header.Get(headerRequestMethod)
	if p == nil || origin == "" || r.Method != http.MethodOptions || method == "" {
		return false
	}
	allowed := p.AllowsOrigin(origin)
	if !allowed && p.ForwardNotMatchingPreflights {
		return false
	}
	h := w.Header()
	if allowed {
		h.Set(headerAllowOrigin, origin)
	}
	if p.AllowCredentials {
		h.Set(headerAllowCredentials, "true")
	}
	switch p.AllowMethods {
	case "":
	case "*":
		h.Set(headerAllowMethods, method)
	default:
		h.Set(headerAllowMethods, p.AllowMethods)
	}
	switch p.AllowHeaders {
	case "":
	case "*":
		h.Set(headerAllowHeaders, r.Header.Get(headerRequestHeaders))
	default:
		h.Set(headerAllowHeaders, p.AllowHeaders)
	}
	if p.MaxAge != "" {
		h.Set(headerMaxAge, p.MaxAge)
	}
	if p.AllowPrivateNetworkAccess && r.Header.Get(headerRequestPrivateNetwork) == "true" {
		h.Set(headerAllowPrivateNetworkAccess, "true")
	}
	w.WriteHeader(http.StatusOK)
	return true
}

// corsResponse adds the CORS headers to the response (upstream or local)
// to a cross-origin request from an allowed origin.
func corsResponse(h http.Header, r *http.Request, p *route.CORSPolicy) {
	if p == nil {
		return
	}
	origin := r.Header.Get(headerOrigin)
	if origin == "" || !p.AllowsOrigin(origin) {
		return
	}
	h.Set(headerAllowOrigin, origin)
	if p.AllowCredentials {
		h.Set(headerAllowCredentials, "true")
	}
	if p.ExposeHeaders != "" {
		h.Set(headerExposeHeaders, p.ExposeHeaders)
	}
}
