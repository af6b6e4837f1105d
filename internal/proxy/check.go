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
	// A cluster is compiled when it, or its endpoints, were not judged
	// before: endpoints are judged with their cluster.
	type edsCluster struct {
		source   *clusterv3.Cluster
		key      string
		compiled *cluster
	}
	byName := map[string]*edsCluster{}
	for _, cl := range c.Clusters {
		k := key(xdsclient.ClusterType, cl.GetName())
		if k != "" && checked.known(k) {
			if name := edsServiceName(cl); name != "" {
				byName[name] = &edsCluster{source: cl, key: k}
			}
			continue
		}
		compiled, err := checker.compileCluster(cl)
		checked.remember(k, err)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", cl.GetName(), err))
			continue
		}
		if compiled.edsName != "" {
			byName[compiled.edsName] = &edsCluster{source: cl, key: k, compiled: compiled}
		}
	}
	for _, cla := range c.Endpoints {
		cl := byName[cla.GetClusterName()]
		if cl == nil {
			continue
		}
		k := key(xdsclient.EndpointType, cla.GetClusterName())
		if k != "" && cl.key != "" {
			k += "\x00" + cl.key
		} else {
			k = ""
		}
		err := checked.do(k, func() error {
			if cl.compiled == nil {
				compiled, err := checker.compileCluster(cl.source)
				if err != nil {
					return fmt.Errorf("its cluster: %w", err)
				}
				cl.compiled = compiled
			}
			_, err := cl.compiled.compileEndpoints(cla)
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

// known reports whether key was judged and found sound.
func (c *checkCache) known(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	err, ok := c.done[key]
	return ok && err == nil
}

// remember records the outcome of judging key; an empty key is not
// remembered.
func (c *checkCache) remember(key string, err error) {
	if key == "" {
		return
	}
	c.mu.Lock()
	if len(c.done) >= maxChecked {
		c.done = map[string]error{}
	}
	c.done[key] = err
	c.mu.Unlock()
}

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
	c.remember(key, err)
	return err
}

// edsServiceName is the name of an EDS cluster's endpoints, as
// compileCluster finds it; "" for a static cluster.
func edsServiceName(c *clusterv3.Cluster) string {
	if c.GetType() != clusterv3.Cluster_EDS {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}
