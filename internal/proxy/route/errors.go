package route

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotSupported is the cause of a FieldError for a field that the proxy
// does not implement. Such a field would change behaviour if it were ignored,
// so the whole route configuration is rejected (NACKed) instead.
var ErrNotSupported = errors.New("not supported")

// FieldError is one problem found by Compile: where it is and what is wrong.
// Its message reads like
//
//	route config "http.80": virtual host "web": routes[2]: match.grpc: not supported
type FieldError struct {
	RouteConfig string
	// VirtualHostIndex is the index in virtual_hosts, or -1 for a problem
	// at the route configuration level. VirtualHost is that host's name.
	VirtualHostIndex int
	VirtualHost      string
	// RouteIndex is the index in the virtual host's routes, or -1 for a
	// problem at the virtual host or route configuration level.
	RouteIndex int
	// Field is the path of the field inside the route, virtual host or route
	// configuration, with Envoy's (proto) field names, e.g.
	// "route.weighted_clusters.clusters[1].name". Empty for the whole object.
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "route config %q", e.RouteConfig)
	if e.VirtualHostIndex >= 0 {
		if e.VirtualHost != "" {
			fmt.Fprintf(&b, ": virtual host %q", e.VirtualHost)
		} else {
			fmt.Fprintf(&b, ": virtual_hosts[%d]", e.VirtualHostIndex)
		}
	}
	if e.RouteIndex >= 0 {
		fmt.Fprintf(&b, ": routes[%d]", e.RouteIndex)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// maxErrors bounds how many problems one Compile reports.
const maxErrors = 50
