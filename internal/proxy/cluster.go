package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/secrets"
)

// transportSocketMatchFilter is the endpoint metadata namespace that
// transport_socket_matches match against.
const transportSocketMatchFilter = "envoy.transport_socket_match"

// failedEndpointBackoff is how long an endpoint that refused a connection
// is passed over while others are available, in clusters without outlier
// detection.
const failedEndpointBackoff = 5 * time.Second

// keepAlive is the TCP keep-alive period of upstream connections.
const keepAlive = 30 * time.Second

// cluster is a compiled Cluster: its endpoints, how to reach them and how
// to balance and limit requests over them.
type cluster struct {
	// origDst: an ORIGINAL_DST cluster, whose connections go where they
	// were headed before the capture rules redirected them.
	origDst bool
	// mark is the SO_MARK of upstream sockets (Options.SocketMark).
	mark           uint32
	name           string
	edsName        string // "" for a static cluster
	connectTimeout time.Duration
	idleTimeout    time.Duration
	// proto is the HTTP version of requests upstream: HTTP/2 is h2c in
	// plaintext.
	proto upstreamProtocol
	// defaultTLS is the cluster's transport socket; nil means plaintext.
	defaultTLS *upstreamTLS
	matches    []socketMatch

	lb lbConfig
	// overprovisioning is the assignment's factor, in percent.
	overprovisioning uint32
	cb               *breaker
	od               *outlierConfig // nil: no outlier detection

	// hosts is the load balancer's view of the endpoints; lbMu serializes
	// its replacement (EDS updates, ejections) and the outlier detector.
	hosts   atomic.Pointer[hostSet]
	lbMu    sync.Mutex
	odTimer *time.Timer
	closed  bool
	next    atomic.Uint64 // round robin
	// warm is closed once the cluster has its endpoints: at once for a
	// static cluster, at the first ClusterLoadAssignment for an EDS one.
	warm     chan struct{}
	warmOnce sync.Once

	mu         sync.Mutex
	transports map[transportKey]upstreamTransport

	// dns is set for a STRICT_DNS or LOGICAL_DNS cluster (dnscluster.go);
	// resolver resolves it once installed, until closed (lbMu).
	dns      *dnsConfig
	resolver *dnsResolver
}

type socketMatch struct {
	match map[string]string
	tls   *upstreamTLS // nil: plaintext
}

// upstreamTLS is the client side of mesh mTLS toward some endpoints.
type upstreamTLS struct {
	sni    string
	config *tls.Config
}

// assignment is a compiled ClusterLoadAssignment.
type assignment struct {
	endpoints []*endpoint
	// overprovisioning is the policy's overprovisioning factor, in percent.
	overprovisioning uint32
}

func (p *Proxy) compileCluster(c *clusterv3.Cluster) (*cluster, error) {
	if err := unsupported(c, "name", "type", "eds_cluster_config", "connect_timeout", "lb_policy",
		"load_assignment", "transport_socket", "transport_socket_matches", "least_request_lb_config",
		"ring_hash_lb_config", "common_lb_config", "circuit_breakers", "outlier_detection",
		"typed_extension_protocol_options", "dns_refresh_rate", "dns_lookup_family"); err != nil {
		return nil, err
	}
	out := &cluster{name: c.GetName(), connectTimeout: 5 * time.Second, transports: map[transportKey]upstreamTransport{}, warm: make(chan struct{}),
		mark: p.opts.SocketMark}
	if d := c.GetConnectTimeout(); d != nil {
		out.connectTimeout = d.AsDuration()
	}
	if err := out.compileLB(c); err != nil {
		return nil, err
	}
	var err error
	if out.cb, err = compileCircuitBreakers(c.GetCircuitBreakers()); err != nil {
		return nil, fmt.Errorf("circuit_breakers: %w", err)
	}
	if out.od, err = compileOutlierDetection(c.GetOutlierDetection()); err != nil {
		return nil, fmt.Errorf("outlier_detection: %w", err)
	}
	if out.idleTimeout, out.proto, err = compileProtocolOptions(c.GetTypedExtensionProtocolOptions()); err != nil {
		return nil, err
	}
	if c.GetTransportSocket() != nil {
		t, err := p.compileUpstreamTLS(c.GetTransportSocket())
		if err != nil {
			return nil, fmt.Errorf("transport_socket: %w", err)
		}
		out.defaultTLS = t
	}
	for i, m := range c.GetTransportSocketMatches() {
		t, err := p.compileUpstreamTLS(m.GetTransportSocket())
		if err != nil {
			return nil, fmt.Errorf("transport_socket_matches[%d]: %w", i, err)
		}
		out.matches = append(out.matches, socketMatch{match: stringFields(m.GetMatch()), tls: t})
	}
	out.hosts.Store(newHostSet(nil, &out.lb, defaultOverprovisioning))
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		if c.GetLoadAssignment() == nil {
			return nil, errors.New("a STATIC cluster needs a load_assignment")
		}
		a, err := out.compileEndpoints(c.GetLoadAssignment())
		if err != nil {
			return nil, fmt.Errorf("load_assignment: %w", err)
		}
		out.setAssignment(a)
	case clusterv3.Cluster_ORIGINAL_DST:
		// Connections go where they were headed (tcp.go); there are no
		// endpoints to balance over.
		if c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED || c.GetLoadAssignment() != nil || c.GetEdsClusterConfig() != nil {
			return nil, errors.New("an ORIGINAL_DST cluster needs lb_policy CLUSTER_PROVIDED and no endpoints")
		}
		out.origDst = true
		out.warmOnce.Do(func() { close(out.warm) })
	case clusterv3.Cluster_EDS:
		if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			return nil, errors.New("eds_cluster_config must take endpoints from ADS")
		}
		out.edsName = c.GetEdsClusterConfig().GetServiceName()
		if out.edsName == "" {
			out.edsName = c.GetName()
		}
	case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		if out.dns, err = out.compileDNS(c); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("type %s is not supported (STATIC, EDS, ORIGINAL_DST, STRICT_DNS and LOGICAL_DNS are)", c.GetType())
	}
	if out.dns == nil && (c.GetDnsRefreshRate() != nil || c.GetDnsLookupFamily() != clusterv3.Cluster_AUTO) {
		return nil, errors.New("dns_refresh_rate and dns_lookup_family apply to STRICT_DNS and LOGICAL_DNS clusters only")
	}
	return out, nil
}

// compileLB reads the load balancing policy and its settings.
func (c *cluster) compileLB(pc *clusterv3.Cluster) error {
	c.lb = lbConfig{choiceCount: defaultChoiceCount, ringMin: defaultRingMin, ringMax: defaultRingMax, panicThreshold: defaultPanicThreshold}
	switch pc.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		c.lb.policy = lbRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		c.lb.policy = lbLeastRequest
	case clusterv3.Cluster_RING_HASH:
		c.lb.policy = lbRingHash
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if pc.GetType() != clusterv3.Cluster_ORIGINAL_DST {
			return errors.New("lb_policy CLUSTER_PROVIDED needs type ORIGINAL_DST")
		}
	default:
		return fmt.Errorf("lb_policy %s is not supported (ROUND_ROBIN, LEAST_REQUEST and RING_HASH are)", pc.GetLbPolicy())
	}
	if lr := pc.GetLeastRequestLbConfig(); lr != nil {
		if c.lb.policy != lbLeastRequest {
			return errors.New("least_request_lb_config needs lb_policy LEAST_REQUEST")
		}
		if err := unsupported(lr, "choice_count"); err != nil {
			return fmt.Errorf("least_request_lb_config: %w", err)
		}
		if n := lr.GetChoiceCount(); n != nil {
			if n.GetValue() < 2 {
				return fmt.Errorf("least_request_lb_config.choice_count %d: must be at least 2", n.GetValue())
			}
			c.lb.choiceCount = int(min(n.GetValue(), 100))
		}
	}
	if rh := pc.GetRingHashLbConfig(); rh != nil {
		if c.lb.policy != lbRingHash {
			return errors.New("ring_hash_lb_config needs lb_policy RING_HASH")
		}
		if err := unsupported(rh, "minimum_ring_size", "maximum_ring_size", "hash_function"); err != nil {
			return fmt.Errorf("ring_hash_lb_config: %w", err)
		}
		if rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return fmt.Errorf("ring_hash_lb_config.hash_function %s is not supported (XX_HASH is)", rh.GetHashFunction())
		}
		if v := rh.GetMaximumRingSize(); v != nil {
			c.lb.ringMax = v.GetValue()
		}
		if v := rh.GetMinimumRingSize(); v != nil {
			c.lb.ringMin = v.GetValue()
		}
		if c.lb.ringMax > defaultRingMax || c.lb.ringMin == 0 || c.lb.ringMin > c.lb.ringMax {
			return fmt.Errorf("ring_hash_lb_config: ring sizes %d..%d: want 1 <= minimum <= maximum <= %d", c.lb.ringMin, c.lb.ringMax, defaultRingMax)
		}
	}
	if cl := pc.GetCommonLbConfig(); cl != nil {
		if err := unsupported(cl, "healthy_panic_threshold"); err != nil {
			return fmt.Errorf("common_lb_config: %w", err)
		}
		if t := cl.GetHealthyPanicThreshold(); t != nil {
			v := t.GetValue()
			if v < 0 || v > 100 {
				return fmt.Errorf("common_lb_config.healthy_panic_threshold %v: out of range 0-100", v)
			}
			// Envoy compares whole percents.
			c.lb.panicThreshold = uint32(v)
		}
	}
	return nil
}

// stringFields flattens a Struct of string values.
func stringFields(s *structpb.Struct) map[string]string {
	out := map[string]string{}
	for k, v := range s.GetFields() {
		out[k] = v.GetStringValue()
	}
	return out
}

// compileUpstreamTLS compiles a cluster's transport socket, or returns
// the one compiled for another cluster with the same bytes: a capture
// sidecar's clusters of one service and of each of its workloads share
// their SNI and peer identity, and a TLS config costs most of a compiled
// cluster's memory.
func (p *Proxy) compileUpstreamTLS(ts *corev3.TransportSocket) (*upstreamTLS, error) {
	if ts.GetTypedConfig() == nil {
		return nil, errors.New("transport socket has no typed_config")
	}
	tc := ts.GetTypedConfig()
	return p.upstreamTLS.get(tc.GetTypeUrl()+"\x00"+string(tc.GetValue()), func() (*upstreamTLS, error) {
		return p.buildUpstreamTLS(ts)
	})
}

// upstreamTLSCache holds the compiled transport sockets in use, by their
// serialized config, weakly: one no cluster uses any more is collected
// and its entry deleted.
type upstreamTLSCache struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[upstreamTLS]
}

func (c *upstreamTLSCache) get(key string, build func() (*upstreamTLS, error)) (*upstreamTLS, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.m[key].Value(); t != nil {
		return t, nil
	}
	t, err := build()
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string]weak.Pointer[upstreamTLS]{}
	}
	wp := weak.Make(t)
	c.m[key] = wp
	runtime.AddCleanup(t, func(key string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.m[key] == wp {
			delete(c.m, key)
		}
	}, key)
	return t, nil
}

func (p *Proxy) buildUpstreamTLS(ts *corev3.TransportSocket) (*upstreamTLS, error) {
	msg, err := ts.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return nil, err
	}
	ctx, ok := msg.(*tlsv3.UpstreamTlsContext)
	if !ok {
		return nil, fmt.Errorf("transport socket %T is not supported (UpstreamTlsContext is)", msg)
	}
	if err := unsupported(ctx, "sni", "common_tls_context"); err != nil {
		return nil, err
	}
	allow, err := p.compileCommonTLS(ctx.GetCommonTlsContext())
	if err != nil {
		return nil, err
	}
	return &upstreamTLS{sni: ctx.GetSni(), config: p.secrets.ClientConfig(ctx.GetSni(), allow)}, nil
}

// compileCommonTLS checks that a TLS context uses the proxy's own
// certificate and trust bundle over TLS 1.3, and returns the peer
// authorization its SAN matchers express.
func (p *Proxy) compileCommonTLS(c *tlsv3.CommonTlsContext) (secrets.Authorizer, error) {
	if err := unsupported(c, "tls_params", "tls_certificate_sds_secret_configs", "combined_validation_context", "alpn_protocols"); err != nil {
		return nil, err
	}
	if tp := c.GetTlsParams(); tp != nil {
		if err := unsupported(tp, "tls_minimum_protocol_version", "tls_maximum_protocol_version"); err != nil {
			return nil, err
		}
		if tp.GetTlsMinimumProtocolVersion() != tlsv3.TlsParameters_TLSv1_3 || tp.GetTlsMaximumProtocolVersion() != tlsv3.TlsParameters_TLSv1_3 {
			return nil, errors.New("tls_params: only TLS 1.3 is spoken between proxies")
		}
	}
	certs := c.GetTlsCertificateSdsSecretConfigs()
	if len(certs) != 1 || certs[0].GetName() != secretCertificate {
		return nil, fmt.Errorf("tls_certificate_sds_secret_configs must name exactly the secret %q", secretCertificate)
	}
	cvc := c.GetCombinedValidationContext()
	if cvc == nil || cvc.GetValidationContextSdsSecretConfig().GetName() != secretTrustBundle {
		return nil, fmt.Errorf("combined_validation_context must take the trust bundle from the secret %q", secretTrustBundle)
	}
	dvc := cvc.GetDefaultValidationContext()
	if err := unsupported(dvc, "match_typed_subject_alt_names"); err != nil {
		return nil, err
	}
	var exact []string
	var prefixes []string
	for i, m := range dvc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
			return nil, fmt.Errorf("match_typed_subject_alt_names[%d]: only URI SANs (SPIFFE IDs) are matched", i)
		}
		switch pat := m.GetMatcher().GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			exact = append(exact, pat.Exact)
		case *matcherv3.StringMatcher_Prefix:
			prefixes = append(prefixes, pat.Prefix)
		default:
			return nil, fmt.Errorf("match_typed_subject_alt_names[%d]: only exact and prefix matchers are supported", i)
		}
	}
	return func(id identity.ID) error {
		if len(exact) == 0 && len(prefixes) == 0 {
			return nil
		}
		s := id.String()
		if slices.Contains(exact, s) {
			return nil
		}
		for _, pre := range prefixes {
			if len(s) >= len(pre) && s[:len(pre)] == pre {
				return nil
			}
		}
		return fmt.Errorf("peer identity %s is not one this connection accepts", s)
	}, nil
}

// compileEndpoints reads a ClusterLoadAssignment, resolving each endpoint's
// transport socket. Endpoints not HEALTHY or UNKNOWN are left out.
// Priorities must run from 0 without a gap, as Envoy requires.
func (c *cluster) compileEndpoints(cla *endpointv3.ClusterLoadAssignment) (*assignment, error) {
	if err := unsupported(cla, "cluster_name", "endpoints", "policy"); err != nil {
		return nil, err
	}
	a := &assignment{overprovisioning: defaultOverprovisioning}
	if pol := cla.GetPolicy(); pol != nil {
		if err := unsupported(pol, "overprovisioning_factor"); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if f := pol.GetOverprovisioningFactor(); f != nil {
			if f.GetValue() == 0 {
				return nil, errors.New("policy.overprovisioning_factor must be positive")
			}
			a.overprovisioning = f.GetValue()
		}
	}
	maxPrio := uint32(0)
	seen := map[uint32]bool{}
	for i, loc := range cla.GetEndpoints() {
		// load_balancing_weight of a locality matters only to locality
		// weighted load balancing, which this proxy (like Envoy without
		// locality_weighted_lb_config) does not do.
		if err := unsupported(loc, "locality", "lb_endpoints", "priority", "load_balancing_weight"); err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		maxPrio = max(maxPrio, loc.GetPriority())
		seen[loc.GetPriority()] = true
		for j, lb := range loc.GetLbEndpoints() {
			if err := unsupported(lb, "endpoint", "health_status", "metadata", "load_balancing_weight"); err != nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: %w", i, j, err)
			}
			if err := unsupported(lb.GetEndpoint(), "address"); err != nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].endpoint: %w", i, j, err)
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: only socket addresses are supported", i, j)
			}
			if ip := net.ParseIP(sa.GetAddress()); ip == nil {
				return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d]: %q is not an IP address", i, j, sa.GetAddress())
			}
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			default:
				continue
			}
			ep := &endpoint{
				addr:     net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)),
				tls:      c.defaultTLS,
				priority: loc.GetPriority(),
				weight:   1,
			}
			if w := lb.GetLoadBalancingWeight(); w != nil {
				if w.GetValue() == 0 {
					return nil, fmt.Errorf("endpoints[%d].lb_endpoints[%d].load_balancing_weight must be at least 1", i, j)
				}
				ep.weight = w.GetValue()
			}
			md := stringFields(lb.GetMetadata().GetFilterMetadata()[transportSocketMatchFilter])
			for _, m := range c.matches {
				if matchesAll(md, m.match) {
					ep.tls = m.tls
					break
				}
			}
			a.endpoints = append(a.endpoints, ep)
		}
	}
	if len(seen) > 0 && uint32(len(seen)) != maxPrio+1 {
		return nil, fmt.Errorf("priorities must run from 0 without a gap; got %d distinct up to %d", len(seen), maxPrio)
	}
	return a, nil
}

func matchesAll(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (c *cluster) setEndpoints(cla *endpointv3.ClusterLoadAssignment) error {
	a, err := c.compileEndpoints(cla)
	if err != nil {
		return err
	}
	c.setAssignment(a)
	return nil
}

// setAssignment installs endpoints; the cluster is warm from then on. An
// endpoint whose address the cluster already had keeps what the proxy
// learnt about it (ejection, connections, requests in flight).
func (c *cluster) setAssignment(a *assignment) {
	c.lbMu.Lock()
	old := map[string]*hostState{}
	for _, ep := range c.hosts.Load().all {
		old[ep.addr] = ep.st
	}
	for _, ep := range a.endpoints {
		if st := old[ep.addr]; st != nil {
			ep.st = st
		} else {
			ep.st = &hostState{addr: ep.addr}
			old[ep.addr] = ep.st
		}
	}
	c.overprovisioning = a.overprovisioning
	c.hosts.Store(newHostSet(a.endpoints, &c.lb, a.overprovisioning))
	c.lbMu.Unlock()
	c.warmOnce.Do(func() { close(c.warm) })
}

// rebuildLocked recomputes the host set after health changes; lbMu is held.
func (c *cluster) rebuildLocked() {
	c.hosts.Store(newHostSet(c.hosts.Load().all, &c.lb, c.overprovisioning))
}

// currentAssignment returns the endpoints in force, to carry them over to a
// cluster that replaces this one.
func (c *cluster) currentAssignment() *assignment {
	c.lbMu.Lock()
	defer c.lbMu.Unlock()
	var eps []*endpoint
	for _, ep := range c.hosts.Load().all {
		eps = append(eps, &endpoint{addr: ep.addr, tls: ep.tls, priority: ep.priority, weight: ep.weight})
	}
	return &assignment{endpoints: eps, overprovisioning: c.overprovisioning}
}

// isWarm reports whether the cluster has received its endpoints.
func (c *cluster) isWarm() bool {
	select {
	case <-c.warm:
		return true
	default:
		return false
	}
}

// warmWait bounds how long a request waits for a new cluster's first
// endpoints: the endpoints of a cluster follow it in a separate xDS
// response, and a route to a cluster just added may arrive first.
const warmWait = 2 * time.Second

// waitWarm waits, within warmWait and ctx, for a cluster still waiting
// for its first endpoints.
func (c *cluster) waitWarm(ctx context.Context) {
	if c.isWarm() {
		return
	}
	t := time.NewTimer(warmWait)
	defer t.Stop()
	select {
	case <-c.warm:
	case <-t.C:
	case <-ctx.Done():
	}
}

// errNoHealthyUpstream is returned when a cluster has no endpoint to use.
var errNoHealthyUpstream = errors.New("no healthy upstream")

// dial connects to an endpoint, over mTLS if its transport socket says
// so.
func (c *cluster) dial(ctx context.Context, ep *endpoint) (net.Conn, error) {
	d := &net.Dialer{Timeout: c.connectTimeout, Control: markControl(c.mark)}
	if ep.tls == nil {
		return d.DialContext(ctx, "tcp", ep.addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: ep.tls.config}
	return td.DialContext(ctx, "tcp", ep.addr)
}

// transport returns the HTTP transport for endpoints using t.
func (c *cluster) transport(t *upstreamTLS, http2 bool) upstreamTransport {
	key := transportKey{t, http2}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tr, ok := c.transports[key]; ok {
		return tr
	}
	tr := &http.Transport{
		DialContext:           c.dialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       c.idleTimeout,
		ResponseHeaderTimeout: 0,
		// A proxy passes bodies through as they are.
		DisableCompression: true,
	}
	if t != nil {
		tr.TLSClientConfig = t.config
		tr.TLSHandshakeTimeout = c.connectTimeout
	}
	var out upstreamTransport
	if http2 {
		var protos http.Protocols
		if t != nil {
			protos.SetHTTP2(true)
			tr.TLSClientConfig = t.config.Clone()
			tr.TLSClientConfig.NextProtos = []string{"h2"}
		} else {
			protos.SetUnencryptedHTTP2(true)
		}
		tr.Protocols = &protos
		out = netTransport{tr}
	} else {
		// HTTP/1.1 on the calling goroutine; net/http's Transport only
		// for requests that upgrade the connection.
		var cfg *tls.Config
		if t != nil {
			cfg = t.config
		}
		out = newH1Transport(c.dialContext, cfg, c.connectTimeout, c.idleTimeout, tr)
	}
	c.transports[key] = out
	return out
}

// transportKey names a transport of a cluster: the TLS of its endpoints,
// and the HTTP version.
type transportKey struct {
	tls   *upstreamTLS
	http2 bool
}

// upstreamTransport sends a cluster's HTTP requests over one kind of
// connection.
type upstreamTransport interface {
	http.RoundTripper
	// close closes the idle connections.
	close()
}

// netTransport is net/http's Transport, for HTTP/2.
type netTransport struct{ *http.Transport }

func (t netTransport) close() { t.CloseIdleConnections() }

// RoundTrip sends a request to an endpoint of the cluster, chosen by its
// load balancer (with the hash lbHash put in the request's context, for
// RING_HASH), within its circuit breakers. A connection refused is retried
// on other endpoints when the request can be replayed. The request counts
// as active until its response body is closed.
func (c *cluster) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c.waitWarm(ctx)
	if !c.cb.startRequest() {
		return nil, errOverflow
	}
	inFlight := true
	defer func() {
		if inFlight {
			c.cb.endRequest()
		}
	}()
	hash, hasHash := lbHashFrom(ctx)
	// An attempt of a request with a retry policy gets one endpoint, not
	// yet tried when possible (forward.go).
	eps := narrowToAttempt(ctx, c.pick(endpointsToPick(ctx, 3), hash, hasHash))
	if len(eps) == 0 {
		return nil, errNoHealthyUpstream
	}
	var lastErr error
	for i, ep := range eps {
		out := req
		if i > 0 {
			if req.Body != nil && req.Body != http.NoBody {
				if req.GetBody == nil {
					break
				}
				body, err := req.GetBody()
				if err != nil {
					break
				}
				out = req.Clone(ctx)
				out.Body = body
			} else {
				out = req.Clone(ctx)
			}
		}
		u := *out.URL
		u.Host = ep.addr
		u.Scheme = "http"
		if ep.tls != nil {
			u.Scheme = "https"
		}
		a := c.newAttempt(ep)
		out = out.WithContext(a.context(ctx))
		out.URL = &u
		ep.st.active.Add(1)
		http2 := c.proto == upstreamHTTP2 || c.proto == upstreamDownstream && req.ProtoMajor == 2
		resp, err := c.transport(ep.tls, http2).RoundTrip(out)
		a.release()
		if err == nil {
			c.httpStatus(ep, resp.StatusCode)
			inFlight = false
			resp.Body = c.trackBody(resp.Body, ep)
			return resp, nil
		}
		ep.st.active.Add(-1)
		lastErr = err
		switch {
		case errors.Is(err, errOverflow):
			return nil, err
		case errors.Is(err, context.Canceled):
			// The client went away: nothing to hold against the endpoint.
			return nil, err
		case errors.Is(err, context.DeadlineExceeded):
			c.localFailure(ep, true)
			return nil, err
		}
		c.localFailure(ep, false)
		if !isConnectError(err) {
			return nil, err
		}
		c.connectFailed(ep)
	}
	return nil, lastErr
}

// trackBody counts a response's request as active, against the cluster
// and its endpoint, until its body is closed. A 101 response's body is the
// upgraded connection and stays writable.
func (c *cluster) trackBody(body io.ReadCloser, ep *endpoint) io.ReadCloser {
	done := sync.OnceFunc(func() {
		ep.st.active.Add(-1)
		c.cb.endRequest()
	})
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &trackedRWBody{ReadWriteCloser: rwc, done: done}
	}
	return &trackedBody{ReadCloser: body, done: done}
}

type trackedBody struct {
	io.ReadCloser
	done func()
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

type trackedRWBody struct {
	io.ReadWriteCloser
	done func()
}

func (b *trackedRWBody) Close() error {
	err := b.ReadWriteCloser.Close()
	b.done()
	return err
}

// meshTLS reports whether the cluster may reach endpoints over TLS (mesh
// mTLS): the workload names of X-Trellis-Peer are exchanged only with
// them, never told to or taken from a plaintext destination.
func (c *cluster) meshTLS() bool { return c.defaultTLS != nil || len(c.matches) > 0 }

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// close releases the cluster's idle connections and stops its outlier
// detector.
func (c *cluster) close() {
	c.stopDNS()
	c.lbMu.Lock()
	c.closed = true
	if c.odTimer != nil {
		c.odTimer.Stop()
		c.odTimer = nil
	}
	c.lbMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.transports {
		tr.close()
	}
}
