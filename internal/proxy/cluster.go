package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/secrets"
)

// transportSocketMatchFilter is the endpoint metadata namespace that
// transport_socket_matches match against.
const transportSocketMatchFilter = "envoy.transport_socket_match"

// failedEndpointBackoff is how long an endpoint that refused a connection
// is passed over while others are available.
const failedEndpointBackoff = 5 * time.Second

// cluster is a compiled Cluster: its endpoints and how to reach them.
type cluster struct {
	name string
	// src is the Cluster it was compiled from; an identical update keeps
	// the running cluster.
	src            *clusterv3.Cluster
	edsName        string // "" for a static cluster
	connectTimeout time.Duration
	// defaultTLS is the cluster's transport socket; nil means plaintext.
	defaultTLS *upstreamTLS
	matches    []socketMatch

	eps  atomic.Pointer[[]*endpoint]
	next atomic.Uint64
	// warm is closed once the cluster has its endpoints: at once for a
	// static cluster, at the first ClusterLoadAssignment for an EDS one.
	warm     chan struct{}
	warmOnce sync.Once

	mu         sync.Mutex
	transports map[*upstreamTLS]*http.Transport
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

type endpoint struct {
	addr string
	tls  *upstreamTLS
	// failedAt is when a connection to it last failed (Unix nanoseconds).
	failedAt atomic.Int64
}

func (p *Proxy) compileCluster(c *clusterv3.Cluster) (*cluster, error) {
	if err := unsupported(c, "name", "type", "eds_cluster_config", "connect_timeout", "lb_policy",
		"load_assignment", "transport_socket", "transport_socket_matches"); err != nil {
		return nil, err
	}
	out := &cluster{name: c.GetName(), src: c, connectTimeout: 5 * time.Second, transports: map[*upstreamTLS]*http.Transport{}, warm: make(chan struct{})}
	if d := c.GetConnectTimeout(); d != nil {
		out.connectTimeout = d.AsDuration()
	}
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		return nil, fmt.Errorf("lb_policy %s is not supported (ROUND_ROBIN is)", c.GetLbPolicy())
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
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		if c.GetLoadAssignment() == nil {
			return nil, errors.New("a STATIC cluster needs a load_assignment")
		}
		eps, err := out.compileEndpoints(c.GetLoadAssignment())
		if err != nil {
			return nil, fmt.Errorf("load_assignment: %w", err)
		}
		out.setEndpointList(eps)
	case clusterv3.Cluster_EDS:
		if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			return nil, errors.New("eds_cluster_config must take endpoints from ADS")
		}
		out.edsName = c.GetEdsClusterConfig().GetServiceName()
		if out.edsName == "" {
			out.edsName = c.GetName()
		}
		out.eps.Store(&[]*endpoint{})
	default:
		return nil, fmt.Errorf("type %s is not supported (STATIC and EDS are)", c.GetType())
	}
	return out, nil
}

func (c *cluster) sameAs(o *cluster) bool { return proto.Equal(c.src, o.src) }

// stringFields flattens a Struct of string values.
func stringFields(s *structpb.Struct) map[string]string {
	out := map[string]string{}
	for k, v := range s.GetFields() {
		out[k] = v.GetStringValue()
	}
	return out
}

func (p *Proxy) compileUpstreamTLS(ts *corev3.TransportSocket) (*upstreamTLS, error) {
	if ts.GetTypedConfig() == nil {
		return nil, errors.New("transport socket has no typed_config")
	}
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
func (c *cluster) compileEndpoints(cla *endpointv3.ClusterLoadAssignment) ([]*endpoint, error) {
	var out []*endpoint
	for i, loc := range cla.GetEndpoints() {
		for j, lb := range loc.GetLbEndpoints() {
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
				addr: net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)),
				tls:  c.defaultTLS,
			}
			md := stringFields(lb.GetMetadata().GetFilterMetadata()[transportSocketMatchFilter])
			for _, m := range c.matches {
				if matchesAll(md, m.match) {
					ep.tls = m.tls
					break
				}
			}
			out = append(out, ep)
		}
	}
	return out, nil
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
	eps, err := c.compileEndpoints(cla)
	if err != nil {
		return err
	}
	c.setEndpointList(eps)
	return nil
}

// setEndpointList installs endpoints; the cluster is warm from then on.
func (c *cluster) setEndpointList(eps []*endpoint) {
	c.eps.Store(&eps)
	c.warmOnce.Do(func() { close(c.warm) })
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

// errNoHealthyUpstream is returned when a cluster has no endpoint.
var errNoHealthyUpstream = errors.New("no healthy upstream")

// pick chooses endpoints round robin, trying first those that have not
// failed recently. It returns up to n distinct endpoints in the order to
// try.
func (c *cluster) pick(n int) []*endpoint {
	eps := *c.eps.Load()
	if len(eps) == 0 {
		return nil
	}
	start := int(c.next.Add(1) % uint64(len(eps)))
	now := time.Now().UnixNano()
	var fresh, failed []*endpoint
	for i := range eps {
		ep := eps[(start+i)%len(eps)]
		if now-ep.failedAt.Load() < int64(failedEndpointBackoff) {
			failed = append(failed, ep)
		} else {
			fresh = append(fresh, ep)
		}
	}
	order := append(fresh, failed...)
	return order[:min(n, len(order))]
}

// dial connects to an endpoint, over mTLS if its transport socket says
// so.
func (c *cluster) dial(ctx context.Context, ep *endpoint) (net.Conn, error) {
	d := &net.Dialer{Timeout: c.connectTimeout}
	if ep.tls == nil {
		return d.DialContext(ctx, "tcp", ep.addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: ep.tls.config}
	return td.DialContext(ctx, "tcp", ep.addr)
}

// transport returns the HTTP transport for endpoints using t.
func (c *cluster) transport(t *upstreamTLS) *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tr, ok := c.transports[t]; ok {
		return tr
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: c.connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 0,
		// A proxy passes bodies through as they are.
		DisableCompression: true,
	}
	if t != nil {
		tr.TLSClientConfig = t.config
		tr.TLSHandshakeTimeout = c.connectTimeout
	}
	c.transports[t] = tr
	return tr
}

// RoundTrip sends a request to an endpoint of the cluster. A connection
// refused is retried on other endpoints when the request can be replayed.
func (c *cluster) RoundTrip(req *http.Request) (*http.Response, error) {
	c.waitWarm(req.Context())
	// An attempt of a request with a retry policy gets one endpoint, not
	// yet tried when possible (forward.go).
	eps := narrowToAttempt(req.Context(), c.pick(endpointsToPick(req.Context(), 3)))
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
				out = req.Clone(req.Context())
				out.Body = body
			} else {
				out = req.Clone(req.Context())
			}
		}
		u := *out.URL
		u.Host = ep.addr
		u.Scheme = "http"
		if ep.tls != nil {
			u.Scheme = "https"
		}
		out.URL = &u
		resp, err := c.transport(ep.tls).RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !isConnectError(err) {
			return nil, err
		}
		ep.failedAt.Store(time.Now().UnixNano())
	}
	return nil, lastErr
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// close releases the cluster's idle connections.
func (c *cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
}
