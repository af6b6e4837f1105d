package proxy

import (
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"time"

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

var _ xdsclient.UpdateHandler = (*Proxy)(nil)

// marshalRaw serializes resources given whole to Apply, as the control
// plane would have.
var marshalRaw = proto.MarshalOptions{Deterministic: true}

// Apply installs the complete set of one xDS type: what differs from the
// set in force is applied as Update applies it, and what the set lacks is
// removed. On any error nothing changes and the error is NACKed.
func (p *Proxy) Apply(typeURL string, resources map[string]proto.Message) error {
	changed := make(map[string]xdsclient.Resource, len(resources))
	for name, m := range resources {
		raw, err := marshalRaw.Marshal(m)
		if err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
		changed[name] = xdsclient.Resource{Message: m, Raw: raw}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var removed []string
	for name := range p.raw[typeURL] {
		if _, ok := resources[name]; !ok {
			removed = append(removed, name)
		}
	}
	return p.update(typeURL, changed, removed)
}

// Update applies a change to one xDS type: the resources added or
// changed, and the names of those removed. Only what changed is compiled
// and swapped in: a resource whose bytes are those in force is left as it
// runs, and so are the resources the change does not name. It validates
// everything first; on any error nothing changes and the error is NACKed.
func (p *Proxy) Update(typeURL string, changed map[string]xdsclient.Resource, removed []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.update(typeURL, changed, removed)
}

// Large updates (a sidecar's first config in a big mesh, a full push)
// leave garbage several times the size of the config they install: the
// response, the decoded resources, the forms in between. The Go runtime
// sizes the heap it keeps on what was live at its last collection, which
// falls in the middle of such a burst, and returns memory to the system
// only down to that size: the burst would stay resident until the
// periodic collection, minutes later. So once updates have been quiet
// for settleAfter after one of at least largeUpdate bytes, the proxy
// compresses the resources it keeps (deflateAll), collects once and
// returns what is free. Endpoint churn, a few hundred bytes an update,
// never pays for it.
const (
	largeUpdate = 1 << 20
	settleAfter = time.Second
)

// settleMemory schedules the collection after a large update, or
// postpones it while updates keep coming; p.mu is held.
func (p *Proxy) settleMemory() {
	if p.settle == nil {
		p.settle = time.AfterFunc(settleAfter, func() {
			p.mu.Lock()
			deflateAll(p.raw)
			p.mu.Unlock()
			releaseMemory()
		})
		return
	}
	p.settle.Reset(settleAfter)
}

// releaseMemory collects and returns free memory to the system.
var releaseMemory = debug.FreeOSMemory

// update is Update with p.mu held.
func (p *Proxy) update(typeURL string, changed map[string]xdsclient.Resource, removed []string) error {
	size := 0
	for _, r := range changed {
		size += len(r.Raw)
	}
	if size >= largeUpdate {
		// Also after a rejected update: its garbage is as large.
		defer p.settleMemory()
	}
	raw := p.raw[typeURL]
	fresh := make(map[string]proto.Message, len(changed))
	for name, r := range changed {
		if old, ok := raw[name]; ok && old.same(r.Raw) {
			continue
		}
		fresh[name] = r.Message
	}
	removed = slices.DeleteFunc(slices.Clone(removed), func(name string) bool {
		_, ok := raw[name]
		return !ok
	})
	var err error
	switch typeURL {
	case xdsclient.ClusterType:
		err = p.applyClusters(fresh, removed)
	case xdsclient.EndpointType:
		err = p.applyEndpoints(fresh)
	case xdsclient.ListenerType:
		err = p.applyListeners(fresh, removed)
	case xdsclient.RouteType:
		err = p.applyRoutes(fresh, removed)
	case xdsclient.SecretType:
		err = p.applySecrets(fresh)
	default:
		err = fmt.Errorf("unsupported type %s", typeURL)
	}
	if err != nil {
		return err
	}
	if raw == nil {
		raw = map[string]stored{}
		p.raw[typeURL] = raw
	}
	for name := range fresh {
		raw[name] = storeRaw(changed[name].Raw)
	}
	for _, name := range removed {
		delete(raw, name)
	}
	p.applied.Store(typeURL, true)
	if typeURL == xdsclient.RouteType || typeURL == xdsclient.ListenerType {
		p.dropUnusedClusters()
	}
	if typeURL == xdsclient.ListenerType {
		p.retainGatewayCerts(fresh, removed)
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

// applyClusters compiles the clusters added or changed and removes
// those removed; the others keep running untouched.
func (p *Proxy) applyClusters(fresh map[string]proto.Message, removed []string) error {
	compiled := make(map[string]*cluster, len(fresh))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(fresh)) {
		c, err := p.compileCluster(fresh[name].(*clusterv3.Cluster))
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", name, err))
			continue
		}
		compiled[name] = c
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	old := *p.clusters.Load()
	for _, name := range slices.Sorted(maps.Keys(compiled)) {
		c := compiled[name]
		if c.dns != nil {
			// A DNS cluster replacing one goes on with its last answer
			// until its own first one.
			if prev, ok := old[name]; ok && prev.dns != nil && prev.isWarm() {
				c.setAssignment(prev.currentAssignment())
			}
			continue
		}
		if c.edsName == "" {
			continue
		}
		if s, ok := p.raw[xdsclient.EndpointType][c.edsName]; ok {
			// Its endpoints came first, or it replaces a cluster that had
			// them.
			cla := &endpointv3.ClusterLoadAssignment{}
			b, err := s.bytes()
			if err == nil {
				err = proto.Unmarshal(b, cla)
			}
			if err != nil {
				return fmt.Errorf("cluster %q: its endpoints: %w", name, err)
			}
			if err := c.setEndpoints(cla); err != nil {
				return fmt.Errorf("cluster %q: %w", name, err)
			}
		} else if prev, ok := old[name]; ok && prev.isWarm() {
			c.setAssignment(prev.currentAssignment())
		}
	}
	next := maps.Clone(old)
	if p.desired == nil {
		p.desired = map[string]bool{}
	}
	for name, c := range compiled {
		next[name] = c
		p.desired[name] = true
	}
	for _, name := range removed {
		delete(p.desired, name)
	}
	// Make before break: a cluster the set no longer has is kept while a
	// route or listener still sends to it, until the routes that replace
	// it arrive (in a separate xDS response).
	refs := p.referencedClusters()
	for name := range next {
		if !p.desired[name] {
			if refs[name] {
				p.log.Debug("cluster kept until no route uses it", "cluster", name)
				continue
			}
			delete(next, name)
		}
	}
	p.clusters.Store(&next)
	for name, c := range old {
		if next[name] != c {
			c.close()
		}
	}
	for _, name := range slices.Sorted(maps.Keys(compiled)) {
		p.startDNS(compiled[name])
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

// applyEndpoints installs the endpoints added or changed into the
// clusters that take them, and only those: the load balancer of each
// keeps what it learnt about the endpoints that remain (setAssignment),
// and every other cluster is left as it runs. Endpoints removed leave
// their clusters with the last ones they had.
func (p *Proxy) applyEndpoints(fresh map[string]proto.Message) error {
	if len(fresh) == 0 {
		return nil
	}
	byEDS := map[string][]*cluster{}
	for _, c := range *p.clusters.Load() {
		if _, ok := fresh[c.edsName]; ok && c.edsName != "" {
			byEDS[c.edsName] = append(byEDS[c.edsName], c)
		}
	}
	// Validate all first, then install. A set for a cluster not (yet)
	// known is kept in raw for later.
	compiled := map[*cluster]*assignment{}
	for _, name := range slices.Sorted(maps.Keys(byEDS)) {
		for _, c := range byEDS[name] {
			a, err := c.compileEndpoints(fresh[name].(*endpointv3.ClusterLoadAssignment))
			if err != nil {
				return fmt.Errorf("endpoints %q: %w", name, err)
			}
			compiled[c] = a
		}
	}
	for c, a := range compiled {
		c.setAssignment(a)
	}
	return nil
}

// applyRoutes compiles the route configurations added or changed and
// drops those removed.
func (p *Proxy) applyRoutes(fresh map[string]proto.Message, removed []string) error {
	compiled := make(map[string]*route.Table, len(fresh))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(fresh)) {
		t, err := route.Compile(fresh[name].(*routev3.RouteConfiguration))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		compiled[name] = t
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	next := maps.Clone(*p.routes.Load())
	maps.Copy(next, compiled)
	for _, name := range removed {
		delete(next, name)
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

// applyListeners compiles the listeners added or changed, binds those
// with a new address, and closes those removed or moved; a listener that
// keeps its address takes its new config for the connections it accepts
// from then on.
func (p *Proxy) applyListeners(fresh map[string]proto.Message, removed []string) error {
	next := make(map[string]*listenerConfig, len(fresh))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(fresh)) {
		var prev *listenerConfig
		if l, ok := p.listeners[name]; ok {
			prev = l.cfg.Load()
		}
		lc, err := p.recompileListener(fresh[name].(*listenerv3.Listener), prev)
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
	for _, name := range slices.Sorted(maps.Keys(next)) {
		lc := next[name]
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
	for name, lc := range next {
		l, ok := p.listeners[name]
		if !ok {
			continue
		}
		if l.addr == lc.addr {
			l.cfg.Store(lc)
			continue
		}
		delete(p.listeners, name)
		go l.close(nil)
	}
	for _, name := range removed {
		if l, ok := p.listeners[name]; ok {
			delete(p.listeners, name)
			go l.close(nil)
		}
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
