package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"trellis.dev/trellis/internal/proxy/route"
)

// The filter chains of a listener's filter chain, as in Envoy:
//
//	connection ──► network filters (RBAC, ...) ──► terminal: tcp_proxy or HCM
//	HCM request ──► path normalization ──► HTTP filters, in order ──► router
//
// Each filter type registers a compile function for its typed config
// (registerHTTPFilter, registerConnFilter) in its own file; a type nobody
// registered is refused, naming it.

// httpFilter is one HTTP filter of a connection manager, run in the
// configured order on every request before the router.
type httpFilter interface {
	// decodeHeaders sees the request before it is routed. It returns false
	// when it answered the request itself: the filters after it and the
	// router do not run. It may replace s.w (to see the response) or s.r.
	decodeHeaders(s *httpStream) bool
}

// httpStream is one request passing through a connection manager's
// filters.
type httpStream struct {
	p     *Proxy
	l     *listener
	chain *filterChain
	w     http.ResponseWriter
	r     *http.Request
	// route is the route the request matched, once matchRoute ran.
	route   *route.Route
	matched bool
	// flags say what happened to the request, for telemetry.
	flags respFlags
	// peerIn is the calling sidecar's workload (X-Trellis-Peer), inbound.
	peerIn string
}

// setFlag records what happened to the request.
func (s *httpStream) setFlag(f respFlags) { s.flags |= f }

// routeTable is the route configuration of the stream's connection
// manager, nil until it arrived.
func (s *httpStream) routeTable() *route.Table {
	h := s.chain.hcm
	if h.inline != nil {
		return h.inline
	}
	return (*s.p.routes.Load())[h.rds]
}

// matchRoute returns the route the request matches, nil for none: filters
// that need the route (CORS) and the router share one match. Filters must
// not change what routing reads after it ran.
func (s *httpStream) matchRoute() *route.Route {
	if !s.matched {
		s.matched = true
		if t := s.routeTable(); t != nil {
			s.route = t.Match(s.r)
		}
	}
	return s.route
}

// connFilter is a network filter before a chain's terminal filter, run
// once per connection after the TLS handshake.
type connFilter interface {
	// onNewConnection returns false to close the connection before any
	// byte is read from or forwarded to anywhere.
	onNewConnection(c *connStream) bool
}

// connStream is a downstream connection passing through a chain's network
// filters.
type connStream struct {
	p     *Proxy
	l     *listener
	chain *filterChain
	conn  connInfo
}

// connInfo describes a downstream connection.
type connInfo struct {
	// tls is the completed handshake, nil for plaintext.
	tls           *tls.ConnectionState
	local, remote net.Addr
}

var (
	httpFilterTypes = map[protoreflect.FullName]func(name string, m proto.Message) (httpFilter, error){}
	connFilterTypes = map[protoreflect.FullName]func(name string, m proto.Message) (connFilter, error){}
)

// registerHTTPFilter makes the HTTP filter whose typed config has m's type
// available to connection managers.
func registerHTTPFilter[M proto.Message](m M, compile func(name string, m M) (httpFilter, error)) {
	httpFilterTypes[m.ProtoReflect().Descriptor().FullName()] = func(name string, msg proto.Message) (httpFilter, error) {
		return compile(name, msg.(M))
	}
}

// registerConnFilter makes the network filter whose typed config has m's
// type available before a chain's terminal filter.
func registerConnFilter[M proto.Message](m M, compile func(name string, m M) (connFilter, error)) {
	connFilterTypes[m.ProtoReflect().Descriptor().FullName()] = func(name string, msg proto.Message) (connFilter, error) {
		return compile(name, msg.(M))
	}
}

// compileHTTPFilters compiles a connection manager's http_filters: any
// registered filters, in order, then the router, which must come last.
func compileHTTPFilters(fs []*hcmv3.HttpFilter) ([]httpFilter, error) {
	if len(fs) == 0 {
		return nil, errors.New("http_filters: the router filter is required, last")
	}
	var out []httpFilter
	names := map[string]bool{}
	for i, f := range fs {
		if f.GetIsOptional() || f.GetDisabled() || f.GetConfigDiscovery() != nil {
			return nil, fmt.Errorf("http_filters[%d]: is_optional, disabled and config_discovery are not supported", i)
		}
		if names[f.GetName()] {
			// Routes key their typed_per_filter_config by filter name.
			return nil, fmt.Errorf("http_filters[%d]: name %q is used twice", i, f.GetName())
		}
		names[f.GetName()] = true
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("http_filters[%d]: %w", i, err)
		}
		if _, ok := msg.(*routerv3.Router); ok {
			if i != len(fs)-1 {
				return nil, fmt.Errorf("http_filters[%d]: the router must be the last filter", i)
			}
			if err := unsupported(msg); err != nil {
				return nil, fmt.Errorf("http_filters[%d]: %w", i, err)
			}
			return out, nil
		}
		compile, ok := httpFilterTypes[msg.ProtoReflect().Descriptor().FullName()]
		if !ok {
			return nil, fmt.Errorf("http_filters[%d]: %T is not supported", i, msg)
		}
		hf, err := compile(f.GetName(), msg)
		if err != nil {
			return nil, fmt.Errorf("http_filters[%d] %q: %w", i, f.GetName(), err)
		}
		out = append(out, hf)
	}
	return nil, errors.New("http_filters: the router filter is required, last")
}

// compileConnFilters compiles the network filters before a chain's
// terminal filter.
func compileConnFilters(fs []*listenerv3.Filter) ([]connFilter, error) {
	var out []connFilter
	for i, f := range fs {
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", i, err)
		}
		compile, ok := connFilterTypes[msg.ProtoReflect().Descriptor().FullName()]
		if !ok {
			return nil, fmt.Errorf("filters[%d]: %T is not supported before the last filter", i, msg)
		}
		cf, err := compile(f.GetName(), msg)
		if err != nil {
			return nil, fmt.Errorf("filters[%d] %q: %w", i, f.GetName(), err)
		}
		out = append(out, cf)
	}
	return out, nil
}

// decodeHeaders is the connection manager's work between receiving a
// request and routing it: it refuses a lower-case method, normalizes the
// path, then runs the HTTP filters in order. It returns false when the
// request has been answered.
func (l *listener) decodeHeaders(s *httpStream) bool {
	h, w, r := s.chain.hcm, s.w, s.r
	if !validMethod(r.Method) {
		s.setFlag(flagInvalidRequest)
		localReply(w, http.StatusBadRequest, "invalid method")
		return false
	}
	if !h.paths.apply(r) {
		s.setFlag(flagInvalidRequest)
		localReply(w, http.StatusBadRequest, "invalid path")
		return false
	}
	for _, f := range h.filters {
		if !f.decodeHeaders(s) {
			return false
		}
	}
	return true
}

// connAllowed runs a chain's network filters on a new connection.
func (l *listener) connAllowed(chain *filterChain, c connInfo) bool {
	if len(chain.connFilters) == 0 {
		return true
	}
	s := &connStream{p: l.p, l: l, chain: chain, conn: c}
	for _, f := range chain.connFilters {
		if !f.onNewConnection(s) {
			return false
		}
	}
	return true
}

func connInfoOf(c net.Conn) connInfo {
	ci := connInfo{local: c.LocalAddr(), remote: c.RemoteAddr()}
	if t, ok := c.(*tls.Conn); ok {
		cs := t.ConnectionState()
		ci.tls = &cs
	}
	return ci
}
