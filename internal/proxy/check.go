package proxy

import (
	"errors"
	"fmt"
	"log/slog"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/route"
	"trellis.dev/trellis/internal/proxy/secrets"
)

// Config is one proxy's complete config, as the control plane builds it.
type Config struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
}

// checker compiles config without serving it: a proxy that never runs,
// with no certificate and no listener bound.
var checker = &Proxy{
	log:     slog.New(slog.DiscardHandler),
	secrets: secrets.New(identity.ID{TrustDomain: "check", Namespace: "check", ServiceAccount: "check"}, nil, nil),
}

// Check compiles c with the code a proxy applies it with, and returns
// every error a proxy would NACK it for, so that the control plane can
// refuse to push config a proxy would reject. Only what can be judged
// without the proxy's own state is checked: secrets are not (they must
// match the proxy's key).
func Check(c Config) error {
	var errs []error
	for _, l := range c.Listeners {
		if _, err := checker.compileListener(l); err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", l.GetName(), err))
		}
	}
	for _, rc := range c.Routes {
		if _, err := route.Compile(rc); err != nil {
			errs = append(errs, err)
		}
	}
	byName := map[string]*cluster{}
	for _, cl := range c.Clusters {
		compiled, err := checker.compileCluster(cl)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", cl.GetName(), err))
			continue
		}
		if compiled.edsName != "" {
			byName[compiled.edsName] = compiled
		}
	}
	for _, cla := range c.Endpoints {
		if cl := byName[cla.GetClusterName()]; cl != nil {
			if _, err := cl.compileEndpoints(cla); err != nil {
				errs = append(errs, fmt.Errorf("endpoints %q: %w", cla.GetClusterName(), err))
			}
		}
	}
	return errors.Join(errs...)
}
