package proxy

import (
	"errors"
	"net/http"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"

	"trellis.dev/trellis/internal/proxy/route"
)

func init() { registerHTTPFilter(&corsv3.Cors{}, compileCORS) }

// corsFilter is Envoy's CORS filter: the policy comes from the matched
// route's typed_per_filter_config under the filter's name. It answers
// preflights and adds its headers to every response of a cross-origin
// request from an allowed origin: the upstream's, the route's own (direct
// responses, redirects) and the proxy's local replies.
type corsFilter struct{ name string }

func compileCORS(name string, m *corsv3.Cors) (httpFilter, error) {
	if err := unsupported(m); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("name is required (routes name the filter in typed_per_filter_config)")
	}
	return &corsFilter{name: name}, nil
}

func (f *corsFilter) decodeHeaders(s *httpStream) bool {
	rt := s.matchRoute()
	if rt == nil {
		return true
	}
	policy := rt.CORS(f.name)
	if policy == nil {
		return true
	}
	if corsPreflight(s.w, s.r, policy) {
		return false
	}
	s.w = &corsWriter{ResponseWriter: s.w, r: s.r, policy: policy}
	return true
}

// corsWriter adds the CORS response headers when the response starts.
type corsWriter struct {
	http.ResponseWriter
	r       *http.Request
	policy  *route.CORSPolicy
	started bool
}

func (w *corsWriter) WriteHeader(code int) {
	if !w.started && code >= 200 {
		w.started = true
		corsResponse(w.Header(), w.r, w.policy)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *corsWriter) Write(b []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flushes of streamed responses).
func (w *corsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
// allow_headers echoes what the preflight asks for. Envoy's local reply
// passes through the filter's own response path, so an allowed origin's
// preflight also gets what corsResponse adds: Access-Control-Expose-Headers.
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
		if p.ExposeHeaders != "" {
			h.Set(headerExposeHeaders, p.ExposeHeaders)
		}
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
