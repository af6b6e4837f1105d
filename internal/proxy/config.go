package proxy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"trellis.dev/trellis/internal/proxy/route"
	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// Secret names the proxy resolves locally: its own certificate (whose key
// only it holds) and the trust bundle.
const (
	secretCertificate = "default"
	secretTrustBundle = "ROOTCA"
)

var _ xdsclient.Handler = (*Proxy)(nil)

// Apply installs the complete set of one xDS type. It validates everything
// first; on any error nothing changes and the error is NACKed.
func (p *Proxy) Apply(typeURL string, resources map[string]proto.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	switch typeURL {
	case xdsclient.ClusterType:
		err = p.applyClusters(resources)
	case xdsclient.EndpointType:
		err = p.applyEndpoints(resources)
	case xdsclient.ListenerType:
		err = p.applyListeners(resources)
	case xdsclient.RouteType:
		err = p.applyRoutes(resources)
	case xdsclient.SecretType:
		err = p.applySecrets(resources)
	default:
		err = fmt.Errorf("unsupported type %s", typeURL)
	}
	if err != nil {
		return err
	}
	p.raw[typeURL] = resources
	p.applied.Store(typeURL, true)
	if typeURL == xdsclient.RouteType || typeURL == xdsclient.ListenerType {
		p.dropUnusedClusters()
	}
	if typeURL == xdsclient.ListenerType {
		p.retainGatewayCerts(resources)
	}
	return nil
}

// Names returns the names of a non-wildcard type the config references.
func (p *Proxy) Names(typeURL string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	switch typeURL {
	case xdsclient.EndpointType:
		for _, c := range *p.clusters.Load() {
			if c.edsName != "" {
				names = append(names, c.edsName)
			}
		}
	case xdsclient.RouteType:
		for _, l := range p.listeners {
			for _, ch := range l.cfg.Load().chains {
				if ch.hcm != nil && ch.hcm.rds != "" {
					names = append(names, ch.hcm.rds)
				}
			}
		}
	case xdsclient.SecretType:
		names = []string{secretCertificate, secretTrustBundle}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func (p *Proxy) applyClusters(resources map[string]proto.Message) error {
	next := make(map[string]*cluster, len(resources))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		c, err := p.compileCluster(resources[name].(*clusterv3.Cluster))
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", name, err))
			continue
		}
		next[name] = c
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	old := *p.clusters.Load()
	cla := p.raw[xdsclient.EndpointType]
	for name, c := range next {
		if prev, ok := old[name]; ok && prev.sameAs(c) {
			// Unchanged: keep the running cluster with its connections.
			next[name] = prev
			continue
		}
		if c.edsName != "" {
			if m, ok := cla[c.edsName]; ok {
				if err := c.setEndpoints(m.(*endpointv3.ClusterLoadAssignment)); err != nil {
					return fmt.Errorf("cluster %q: %w", name, err)
				}
			} else if prev, ok := old[name]; ok && prev.isWarm() {
				c.setAssignment(prev.currentAssignment())
			}
		}
	}
	// Make before break: a cluster the new set drops is kept while a route
	// or listener still sends to it, until the routes that replace it
	// arrive (in a separate xDS response).
	p.desired = map[string]bool{}
	for name := range next {
		p.desired[name] = true
	}
	refs := p.referencedClusters()
	for name, c := range old {
		if _, kept := next[name]; !kept && refs[name] {
			next[name] = c
			p.log.Debug("cluster kept until no route uses it", "cluster", name)
		}
	}
	p.clusters.Store(&next)
	for name, c := range old {
		if next[name] != c {
			c.close()
		}
	}
	return nil
}

// referencedClusters returns the clusters the routes and listeners in
// force send to.
func (p *Proxy) referencedClusters() map[string]bool {
	refs := map[string]bool{}
	for _, t := range *p.routes.Load() {
		for _, c := range t.Clusters() {
			refs[c] = true
		}
	}
	for _, l := range p.listeners {
		for _, ch := range l.cfg.Load().chains {
			switch {
			case ch.tcp != nil:
				for _, c := range ch.tcp.clusters() {
					refs[c] = true
				}
			case ch.hcm != nil && ch.hcm.inline != nil:
				for _, c := range ch.hcm.inline.Clusters() {
					refs[c] = true
				}
			}
		}
	}
	return refs
}

// dropUnusedClusters removes the clusters kept after the cluster set
// dropped them, once no route or listener sends to them anymore.
func (p *Proxy) dropUnusedClusters() {
	if p.desired == nil {
		return
	}
	refs := p.referencedClusters()
	cur := *p.clusters.Load()
	var drop []string
	for name := range cur {
		if !p.desired[name] && !refs[name] {
			drop = append(drop, name)
		}
	}
	if len(drop) == 0 {
		return
	}
	next := maps.Clone(cur)
	for _, name := range drop {
		delete(next, name)
	}
	p.clusters.Store(&next)
	for _, name := range drop {
		cur[name].close()
	}
}

func (p *Proxy) applyEndpoints(resources map[string]proto.Message) error {
	clusters := *p.clusters.Load()
	byEDS := map[string]*cluster{}
	for _, c := range clusters {
		if c.edsName != "" {
			byEDS[c.edsName] = c
		}
	}
	// Validate all first, then install.
	compiled := map[*cluster]*assignment{}
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		c := byEDS[name]
		if c == nil {
			continue // for a cluster not (yet) known; kept in raw for later
		}
		a, err := c.compileEndpoints(resources[name].(*endpointv3.ClusterLoadAssignment))
		if err != nil {
			return fmt.Errorf("endpoints %q: %w", name, err)
		}
		compiled[c] = a
	}
	for c, a := range compiled {
		c.setAssignment(a)
	}
	return nil
}

func (p *Proxy) applyRoutes(resources map[string]proto.Message) error {
	next := make(map[string]*route.Table, len(resources))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		t, err := route.Compile(resources[name].(*routev3.RouteConfiguration))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next[name] = t
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.routes.Store(&next)
	return nil
}

func (p *Proxy) applySecrets(resources map[string]proto.Message) error {
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		s := resources[name].(*tlsv3.Secret)
		switch name {
		case secretCertificate:
			tc := s.GetTlsCertificate()
			if tc == nil || tc.GetCertificateChain().GetInlineBytes() == nil {
				return fmt.Errorf("secret %q: want a tls_certificate with an inline certificate_chain", name)
			}
			if tc.GetPrivateKey() != nil {
				return fmt.Errorf("secret %q: carries a private key; the proxy uses only its own", name)
			}
			if err := p.secrets.SetChain(tc.GetCertificateChain().GetInlineBytes()); err != nil {
				return fmt.Errorf("secret %q: %w", name, err)
			}
		case secretTrustBundle:
			vc := s.GetValidationContext()
			if vc == nil || vc.GetTrustedCa().GetInlineBytes() == nil {
				return fmt.Errorf("secret %q: want a validation_context with inline trusted_ca", name)
			}
			if err := p.secrets.SetTrustBundle(vc.GetTrustedCa().GetInlineBytes()); err != nil {
				return fmt.Errorf("secret %q: %w", name, err)
			}
		default:
			return fmt.Errorf("secret %q: unknown secret; this proxy resolves only %q and %q", name, secretCertificate, secretTrustBundle)
		}
	}
	return nil
}

func (p *Proxy) applyListeners(resources map[string]proto.Message) error {
	next := make(map[string]*listenerConfig, len(resources))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(resources)) {
		lc, err := p.compileListener(resources[name].(*listenerv3.Listener))
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", name, err))
			continue
		}
		next[name] = lc
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Bind the new listeners first; if any fails, undo and keep the old
	// set.
	var started []*listener
	for name, lc := range next {
		if l, ok := p.listeners[name]; ok && l.addr == lc.addr {
			continue
		}
		l, err := p.startListener(lc)
		if err != nil {
			for _, s := range started {
				s.close(nil)
			}
			return fmt.Errorf("listener %q: %w", name, err)
		}
		started = append(started, l)
	}
	for name, l := range p.listeners {
		lc, keep := next[name]
		if keep && l.addr == lc.addr {
			l.cfg.Store(lc)
			continue
		}
		delete(p.listeners, name)
		go l.close(nil)
	}
	for _, l := range started {
		p.listeners[l.name] = l
	}
	return nil
}

// unsupported reports the set fields of m that are not in allowed, so that
// config the proxy does not implement is refused instead of ignored.
func unsupported(m proto.Message, allowed ...string) error {
	var bad []string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	if len(bad) > 0 {
		return fmt.Errorf("%s: not supported by this proxy: %s", m.ProtoReflect().Descriptor().Name(), strings.Join(bad, ", "))
	}
	return nil
}
