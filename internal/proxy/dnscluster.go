package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// DNS clusters (STRICT_DNS and LOGICAL_DNS), with Envoy's semantics: the
// endpoints of the cluster's load_assignment name hosts, which the proxy
// resolves with Go's resolver (the system's /etc/hosts and resolv.conf)
// when the cluster is installed and every dns_refresh_rate after.
//
//	STRICT_DNS   every address of every host is an endpoint, load balanced
//	             as the cluster's lb_policy says
//	LOGICAL_DNS  one host; the first address of the last answer is the
//	             one endpoint new connections go to
//
// An answer that fails or is empty leaves the host's last good addresses
// in force (Envoy keeps them too), so a DNS outage does not empty the
// cluster; a cluster that never had an answer has no endpoint, and
// requests wait up to warmWait for its first one.

// defaultDNSRefresh is Envoy's default dns_refresh_rate.
const defaultDNSRefresh = 5 * time.Second

// dnsConfig is what a DNS cluster resolves and how.
type dnsConfig struct {
	logical          bool
	refresh          time.Duration
	family           clusterv3.Cluster_DnsLookupFamily
	hosts            []dnsHost
	overprovisioning uint32
}

// dnsHost is one endpoint of the load assignment, named by a host.
type dnsHost struct {
	host     string
	port     uint32
	priority uint32
	tls      *upstreamTLS
}

// lookupNetIP resolves a host; tests replace it.
type lookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)

// compileDNS reads the load assignment and settings of a DNS cluster.
func (c *cluster) compileDNS(pc *clusterv3.Cluster) (*dnsConfig, error) {
	cla := pc.GetLoadAssignment()
	if cla == nil {
		return nil, fmt.Errorf("a %s cluster needs a load_assignment naming its hosts", pc.GetType())
	}
	if pc.GetEdsClusterConfig() != nil {
		return nil, fmt.Errorf("a %s cluster takes no eds_cluster_config", pc.GetType())
	}
	d := &dnsConfig{logical: pc.GetType() == clusterv3.Cluster_LOGICAL_DNS, refresh: defaultDNSRefresh, family: pc.GetDnsLookupFamily()}
	if r := pc.GetDnsRefreshRate(); r != nil {
		// Envoy requires more than 1 ms.
		if r.AsDuration() <= time.Millisecond {
			return nil, fmt.Errorf("dns_refresh_rate %s: must be above 1ms", r.AsDuration())
		}
		d.refresh = r.AsDuration()
	}
	// The endpoints are checked as EDS ones are, but for their address,
	// which is a host name (or an IP address) here.
	if err := unsupported(cla, "cluster_name", "endpoints", "policy"); err != nil {
		return nil, fmt.Errorf("load_assignment: %w", err)
	}
	d.overprovisioning = defaultOverprovisioning
	if pol := cla.GetPolicy(); pol != nil {
		if err := unsupported(pol, "overprovisioning_factor"); err != nil {
			return nil, fmt.Errorf("load_assignment.policy: %w", err)
		}
		if f := pol.GetOverprovisioningFactor(); f != nil {
			if f.GetValue() == 0 {
				return nil, errors.New("load_assignment.policy.overprovisioning_factor must be positive")
			}
			d.overprovisioning = f.GetValue()
		}
	}
	maxPrio := uint32(0)
	seen := map[uint32]bool{}
	for i, loc := range cla.GetEndpoints() {
		if err := unsupported(loc, "locality", "lb_endpoints", "priority", "load_balancing_weight"); err != nil {
			return nil, fmt.Errorf("load_assignment.endpoints[%d]: %w", i, err)
		}
		maxPrio = max(maxPrio, loc.GetPriority())
		seen[loc.GetPriority()] = true
		for j, lb := range loc.GetLbEndpoints() {
			where := fmt.Sprintf("load_assignment.endpoints[%d].lb_endpoints[%d]", i, j)
			if err := unsupported(lb, "endpoint", "health_status", "metadata"); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if err := unsupported(lb.GetEndpoint(), "address"); err != nil {
				return nil, fmt.Errorf("%s.endpoint: %w", where, err)
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil || sa.GetAddress() == "" || sa.GetPortValue() == 0 {
				return nil, fmt.Errorf("%s: want a socket address with a host and a port_value", where)
			}
			if err := unsupported(sa, "address", "port_value", "protocol"); err != nil {
				return nil, fmt.Errorf("%s.endpoint.address.socket_address: %w", where, err)
			}
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				return nil, fmt.Errorf("%s: only TCP is supported", where)
			}
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			default:
				continue
			}
			h := dnsHost{host: sa.GetAddress(), port: sa.GetPortValue(), priority: loc.GetPriority(), tls: c.defaultTLS}
			md := stringFields(lb.GetMetadata().GetFilterMetadata()[transportSocketMatchFilter])
			for _, m := range c.matches {
				if matchesAll(md, m.match) {
					h.tls = m.tls
					break
				}
			}
			d.hosts = append(d.hosts, h)
		}
	}
	if len(seen) > 0 && uint32(len(seen)) != maxPrio+1 {
		return nil, fmt.Errorf("load_assignment: priorities must run from 0 without a gap; got %d distinct up to %d", len(seen), maxPrio)
	}
	if d.logical && len(d.hosts) != 1 {
		return nil, fmt.Errorf("a LOGICAL_DNS cluster needs exactly one endpoint; got %d", len(d.hosts))
	}
	switch d.family {
	case clusterv3.Cluster_AUTO, clusterv3.Cluster_V4_ONLY, clusterv3.Cluster_V6_ONLY, clusterv3.Cluster_V4_PREFERRED, clusterv3.Cluster_ALL:
	default:
		return nil, fmt.Errorf("dns_lookup_family %s is not supported", d.family)
	}
	return d, nil
}

// dnsResolver resolves one DNS cluster until stopped.
type dnsResolver struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startDNS resolves the cluster's hosts now and every refresh period,
// installing the endpoints of each answer, until the cluster is closed.
// Only clusters installed in the proxy are started, never those compiled
// by Check.
func (p *Proxy) startDNS(c *cluster) {
	if c.dns == nil {
		return
	}
	parent := p.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	r := &dnsResolver{cancel: cancel, done: make(chan struct{})}
	c.lbMu.Lock()
	if c.closed {
		c.lbMu.Unlock()
		cancel()
		return
	}
	c.resolver = r
	c.lbMu.Unlock()
	lookup := p.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	p.goRun(func() {
		defer close(r.done)
		c.resolveLoop(ctx, lookup, p.log)
	})
}

// stopDNS stops the cluster's resolver, if it has one, and waits for it.
func (c *cluster) stopDNS() {
	c.lbMu.Lock()
	r := c.resolver
	c.resolver = nil
	c.lbMu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// stopResolvers stops the resolvers of every DNS cluster, at shutdown.
func (p *Proxy) stopResolvers() {
	if cs := p.clusters.Load(); cs != nil {
		for _, c := range *cs {
			c.stopDNS()
		}
	}
}

func (c *cluster) resolveLoop(ctx context.Context, lookup lookupNetIP, log interface {
	Warn(string, ...any)
}) {
	last := make([][]netip.Addr, len(c.dns.hosts))
	if prev := c.currentAssignment(); len(prev.endpoints) > 0 {
		// Carried over from the cluster this one replaced: the last good
		// answers until new ones arrive.
		for i, h := range c.dns.hosts {
			for _, ep := range prev.endpoints {
				ap, err := netip.ParseAddrPort(ep.addr)
				if err == nil && uint32(ap.Port()) == h.port && ep.priority == h.priority {
					last[i] = append(last[i], ap.Addr())
				}
			}
		}
	}
	failing := make([]bool, len(c.dns.hosts))
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed := false
		for i, h := range c.dns.hosts {
			rctx, cancel := context.WithTimeout(ctx, c.dns.refresh+5*time.Second)
			addrs, err := resolveFamily(rctx, lookup, h.host, c.dns.family)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil && len(addrs) == 0 {
				err = errors.New("no address")
			}
			if err != nil {
				// Said once per outage; the next success says it ended.
				if !failing[i] {
					log.Warn("DNS resolution failed; keeping the last good answer", "cluster", c.name, "host", h.host, "err", err, "kept", len(last[i]))
				}
				failing[i] = true
				continue
			}
			if failing[i] {
				log.Warn("DNS resolution works again", "cluster", c.name, "host", h.host, "addresses", len(addrs))
				failing[i] = false
			}
			if c.dns.logical {
				// The first address of the answer, as the resolver
				// ordered it.
				addrs = addrs[:1]
			} else {
				// A set: an unchanged answer in another order changes
				// nothing.
				slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
				addrs = slices.Compact(addrs)
			}
			if !slices.Equal(addrs, last[i]) {
				last[i] = addrs
				changed = true
			}
		}
		if changed || !c.isWarm() && anyAddr(last) {
			a := &assignment{overprovisioning: c.dns.overprovisioning}
			for i, h := range c.dns.hosts {
				for _, ip := range last[i] {
					a.endpoints = append(a.endpoints, &endpoint{
						addr:     net.JoinHostPort(ip.Unmap().String(), strconv.FormatUint(uint64(h.port), 10)),
						tls:      h.tls,
						priority: h.priority,
					})
				}
			}
			c.setAssignment(a)
		}
		t.Reset(c.dns.refresh)
	}
}

func anyAddr(s [][]netip.Addr) bool {
	for _, a := range s {
		if len(a) > 0 {
			return true
		}
	}
	return false
}

// resolveFamily looks host up as dns_lookup_family says: V4_ONLY and
// V6_ONLY one family; AUTO IPv6, falling back to IPv4 when there is no
// IPv6 address; V4_PREFERRED the reverse; ALL both. Within a family the
// resolver's order is kept.
func resolveFamily(ctx context.Context, lookup lookupNetIP, host string, family clusterv3.Cluster_DnsLookupFamily) ([]netip.Addr, error) {
	addrs, err := lookup(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var out []netip.Addr
	switch family {
	case clusterv3.Cluster_V4_ONLY:
		out = v4
	case clusterv3.Cluster_V6_ONLY:
		out = v6
	case clusterv3.Cluster_V4_PREFERRED:
		out = v4
		if len(out) == 0 {
			out = v6
		}
	case clusterv3.Cluster_ALL:
		out = append(slices.Clip(v4), v6...)
	default: // AUTO
		out = v6
		if len(out) == 0 {
			out = v4
		}
	}
	return out, nil
}
