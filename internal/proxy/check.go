package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/route"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// Config is one proxy's complete config, as the control plane builds it.
type Config struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
	// Keys, when set, name the content of each resource by type URL and
	// resource name (xDS resource versions, content hashes). Check then
	// remembers what it judged of a resource by its key and does not
	// compile it again: proxies share most of their resources, and a
	// push changes few of them.
	Keys map[string]map[string]string
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
	key := func(typeURL, name string) string {
		if k := c.Keys[typeURL][name]; k != "" {
			return typeURL + "\x00" + k
		}
		return ""
	}
	for _, l := range c.Listeners {
		err := checked.do(key(xdsclient.ListenerType, l.GetName()), func() error {
			_, err := checker.compileListener(l)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", l.GetName(), err))
		}
	}
	for _, rc := range c.Routes {
		err := checked.do(key(xdsclient.RouteType, rc.GetName()), func() error {
			_, err := route.Compile(rc)
			return err
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	byName := map[string]*cluster{}
	clusterKeys := map[string]string{}
	for _, cl := range c.Clusters {
		compiled, err := checker.compileCluster(cl)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", cl.GetName(), err))
			continue
		}
		if compiled.edsName != "" {
			byName[compiled.edsName] = compiled
			clusterKeys[compiled.edsName] = key(xdsclient.ClusterType, cl.GetName())
		}
	}
	for _, cla := range c.Endpoints {
		cl := byName[cla.GetClusterName()]
		if cl == nil {
			continue
		}
		// Endpoints are judged with their cluster.
		k := key(xdsclient.EndpointType, cla.GetClusterName())
		if k != "" && clusterKeys[cla.GetClusterName()] != "" {
			k += "\x00" + clusterKeys[cla.GetClusterName()]
		} else {
			k = ""
		}
		err := checked.do(k, func() error {
			_, err := cl.compileEndpoints(cla)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoints %q: %w", cla.GetClusterName(), err))
		}
	}
	return errors.Join(errs...)
}

// checked remembers the outcome of checking resources by content key.
var checked = &checkCache{done: map[string]error{}}

// checkCache is a bounded memo of check outcomes: when full, it starts
// afresh (what is checked again is only compiled again).
type checkCache struct {
	mu   sync.Mutex
	done map[string]error
}

// maxChecked bounds the memo: tens of thousands of distinct resources.
const maxChecked = 1 << 16

// do returns what check returns, from the memo when key was judged
// before; an empty key is never remembered.
func (c *checkCache) do(key string, check func() error) error {
	if key == "" {
		return check()
	}
	c.mu.Lock()
	err, ok := c.done[key]
	c.mu.Unlock()
	if ok {
		return err
	}
	err = check()
	c.mu.Lock()
	if len(c.done) >= maxChecked {
		c.done = map[string]error{}
	}
	c.done[key] = err
	c.mu.Unlock()
	return err
}
