package proxy

import (
	"errors"
	"fmt"
	"net/http"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/route"
)

// httpFilter is a compiled HTTP filter of a connection manager. Filters
// run in their configured order before the router, after the route was
// matched (the route's typed_per_filter_config is theirs to read).
type httpFilter interface {
	// decodeHeaders sees a request and the route it matched (nil if none)
	// and reports whether it answered the request itself.
	decodeHeaders(w http.ResponseWriter, r *http.Request, rt *route.Route) bool
}

// httpFilterFactory compiles one HTTP filter's typed_config; name is the
// filter's name, by which routes key their typed_per_filter_config.
type httpFilterFactory func(name string, cfg proto.Message) (httpFilter, error)

// httpFilterFactories are the HTTP filters the proxy implements besides the
// router, by type URL.
var httpFilterFactories = map[string]httpFilterFactory{}

// compileHTTPFilters compiles a connection manager's http_filters: filters
// of httpFilterFactories, then the router, last.
func compileHTTPFilters(fs []*hcmv3.HttpFilter) ([]httpFilter, error) {
	if len(fs) == 0 {
		return nil, errors.New("http_filters: the router filter is required, last")
	}
	var out []httpFilter
	names := map[string]bool{}
	for i, f := range fs {
		if err := unsupported(f, "name", "typed_config"); err != nil {
			return nil, fmt.Errorf("http_filters[%d]: %w", i, err)
		}
		if names[f.GetName()] {
			return nil, fmt.Errorf("http_filters[%d]: name %q is used twice", i, f.GetName())
		}
		names[f.GetName()] = true
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("http_filters[%d]: %w", i, err)
		}
		if r, ok := msg.(*routerv3.Router); ok {
			if i != len(fs)-1 {
				return nil, fmt.Errorf("http_filters[%d]: the router must be the last filter", i)
			}
			if err := unsupported(r); err != nil {
				return nil, fmt.Errorf("http_filters[%d]: %w", i, err)
			}
			return out, nil
		}
		factory := httpFilterFactories[f.GetTypedConfig().GetTypeUrl()]
		if factory == nil {
			return nil, fmt.Errorf("http_filters[%d]: %T is not supported", i, msg)
		}
		hf, err := factory(f.GetName(), msg)
		if err != nil {
			return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
		}
		out = append(out, hf)
	}
	return nil, errors.New("http_filters: the last filter must be the router")
}

// runFilters runs the connection manager's filters on a request and
// reports whether one of them answered it.
func (h *httpConnManager) runFilters(w http.ResponseWriter, r *http.Request, rt *route.Route) bool {
	for _, f := range h.filters {
		if f.decodeHeaders(w, r, rt) {
			return true
		}
	}
	return false
}
