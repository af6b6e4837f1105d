package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/resolver"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy/certfiles"
	"trellis.dev/trellis/internal/proxy/route"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// Options configure a proxy.
type Options struct {
	// ControlPlane is the host:port of the control plane's xDS and CA port,
	// or several separated by commas: control planes sharing one store and
	// one CA. The proxy uses the first that answers, in order, and moves to
	// the next when the one it uses goes away.
	ControlPlane string
	// TrustBundle holds the roots the control plane's certificate is
	// verified against before the first SDS update.
	TrustBundle []*x509.Certificate
	TrustDomain string
	// NodeID identifies this proxy instance to the control plane.
	NodeID string
	// Registration describes the workload (or gateway).
	Registration nodemeta.Metadata
	// AdminAddress serves the admin endpoint (config dump, readiness);
	// empty disables it.
	AdminAddress string
	Logger       *slog.Logger
	// DrainTimeout bounds how long listeners wait for requests in flight
	// on shutdown (default 5 s).
	DrainTimeout time.Duration
	// AccessLog receives one JSON line per request and TCP connection
	// (accesslog.go); nil disables access logs.
	AccessLog io.Writer
	// StatsAddress serves Prometheus metrics (/stats/prometheus, merged
	// with the app's, see AppMetricsURL) and forwards kubelet probes to the
	// app (/app-health/PORT/PATH); empty disables it. Istio's port is 15020.
	StatsAddress string
	// ReadinessAddress serves /healthz/ready, 200 once the proxy is ready;
	// empty disables it. Istio's port is 15021.
	ReadinessAddress string
	// AppMetricsURL is where the app serves its own Prometheus metrics
	// (http://HOST:PORT/PATH), appended to the proxy's; empty: none.
	AppMetricsURL string
	// SocketMark, when not zero, marks the proxy's upstream connections
	// (SO_MARK), so that capture rules installed with the same mark
	// (trellis-proxy init --proxy-mark) let them through.
	SocketMark uint32
	// StateOfTheWorld selects state-of-the-world xDS instead of the default,
	// incremental (delta) xDS, in which the control plane sends only what
	// changed.
	StateOfTheWorld bool
	// WorkloadAPISocket is the path of the UNIX socket on which the proxy
	// serves the SPIFFE Workload API (workloadapi.go); empty disables it.
	WorkloadAPISocket string
	// Token is a join token for the proxy's identity (`trellis token
	// create`). It is sent only while the proxy has no valid certificate:
	// on first contact, or when the certificate expired. Renewals
	// authenticate with the current certificate.
	Token string
	// TokenFile names a file holding the join token, read (surrounding
	// space trimmed) each time a token is needed, so that a token written
	// there later is picked up without a restart. When set, Token is
	// ignored.
	TokenFile string
	// IdentityDir keeps the proxy's key and certificate chain on disk
	// (secrets.Manager.UseDir): after a restart the proxy goes on with a
	// certificate still valid there, and needs no new token. Empty keeps
	// them in memory only.
	IdentityDir string
	// GatewayCertsDir holds the certificates of a gateway's TLS listeners,
	// DIR/NAMESPACE/NAME/tls.crt and tls.key for Secret NAMESPACE/NAME (the
	// layout of a mounted Kubernetes TLS Secret), reloaded when they
	// change (package certfiles). Empty: listeners that need one fail
	// their handshakes, saying so in the log.
	GatewayCertsDir string
	// GatewayCertsInterval is how often the files are checked for
	// changes; zero means certfiles.DefaultInterval.
	GatewayCertsInterval time.Duration
}

// Proxy is a running data plane.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	secrets *secrets.Manager
	// gatewayCerts resolves Gateway listeners' certificates (gatewaytls.go);
	// listenerCerts are those each listener names.
	gatewayCerts  *certfiles.Store
	listenerCerts map[string][]certfiles.Key
	// controlPlanes are the addresses of Options.ControlPlane.
	controlPlanes []string

	// mu serializes config application.
	mu        sync.Mutex
	listeners map[string]*listener
	// raw holds the resources in force, by type and name, as stored
	// (rawstore.go): what tells a resource unchanged, and what the config
	// dump decodes. The decoded resources are not kept once compiled.
	raw map[string]map[string]stored

	clusters atomic.Pointer[map[string]*cluster]
	// desired are the clusters of the last cluster set; clusters holds
	// more while routes still send to dropped ones (make before break).
	desired map[string]bool
	routes  atomic.Pointer[map[string]*route.Table]

	// settle returns memory after large updates (settleMemory); p.mu.
	settle *time.Timer
	// upstreamTLS shares compiled transport sockets among clusters.
	upstreamTLS upstreamTLSCache
	// lookup resolves the hosts of DNS clusters; nil: Go's resolver.
	lookup lookupNetIP

	// mirrors runs mirrored requests (mirror.go).
	mirrors mirrorSet
	// access counts the decisions of RBAC filters (access.go).
	access accessCounters
	// tel holds the request and connection metrics and the access log.
	tel *telemetry

	applied   sync.Map // typeURL -> true once a first update was accepted
	connected atomic.Bool
	wg        sync.WaitGroup
	ctx       context.Context
}

// New returns a proxy; Run starts it.
func New(opts Options) (*Proxy, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = identity.DefaultTrustDomain
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	if err := opts.Registration.Validate(); err != nil {
		return nil, err
	}
	if len(opts.TrustBundle) == 0 {
		return nil, errors.New("proxy: no trust bundle to verify the control plane with (--ca-bundle)")
	}
	controlPlanes, err := ParseControlPlanes(opts.ControlPlane)
	if err != nil {
		return nil, err
	}
	id := identity.ID{TrustDomain: opts.TrustDomain, Namespace: opts.Registration.Namespace, ServiceAccount: opts.Registration.ServiceAccount}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: identity: %w", err)
	}
	p := &Proxy{
		opts:          opts,
		log:           opts.Logger,
		secrets:       secrets.New(id, opts.TrustBundle, opts.Logger),
		gatewayCerts:  certfiles.New(opts.GatewayCertsDir, opts.GatewayCertsInterval, opts.Logger),
		controlPlanes: controlPlanes,
		listeners:     map[string]*listener{},
		raw:           map[string]map[string]stored{},
	}
	p.tel = newTelemetry(selfPeer(opts.Registration.Name, opts.Registration.Namespace, id.String(), opts.Registration.Labels), newAccessLog(opts.AccessLog))
	p.clusters.Store(&map[string]*cluster{})
	p.routes.Store(&map[string]*route.Table{})
	return p, nil
}

// controlPlaneCreds verifies the control plane by its SPIFFE ID and
// presents the proxy's certificate once it has one.
func (p *Proxy) controlPlaneCreds() credentials.TransportCredentials {
	want := identity.ControlPlane(p.opts.TrustDomain)
	conf := p.secrets.ClientConfig("", secrets.AllowIDs(want.TrustDomain, want))
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := p.secrets.ValidCertificate(); c != nil {
			return c, nil
		}
		// First contact, or the certificate expired (the control plane
		// would refuse the handshake): send none, and a token instead.
		return &tls.Certificate{}, nil
	}
	return credentials.NewTLS(conf)
}

// ParseControlPlanes splits a comma-separated list of control plane
// addresses, each host:port.
func ParseControlPlanes(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("proxy: control plane address %q: want HOST:PORT, several separated by commas", a)
		}
		out = append(out, a)
	}
	return out, nil
}

// controlPlaneScheme names the resolver of a list of control planes.
const controlPlaneScheme = "trellis-control-planes"

// dial returns a channel to the control planes. One address goes through
// gRPC's default resolver (DNS: a name with several addresses is a list
// too). Several are handed to the channel together with the pick_first
// policy: the channel connects to the first that answers, in order, and
// when that connection breaks it tries them all again, so streams retried
// on it (ADS, certificate requests) resume on another control plane.
func (p *Proxy) dial() (*grpc.ClientConn, error) {
	target := p.controlPlanes[0]
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(p.controlPlaneCreds()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"pick_first": {}}]}`),
		// Config arrives in a few large messages, far apart: buffers kept
		// in gRPC's pools for the next one would only hold the memory of
		// the largest (megabytes with a thousand services) for nothing.
		experimental.WithBufferPool(mem.NopBufferPool{}),
	}
	if p.opts.SocketMark != 0 {
		// The control plane connection is the proxy's own traffic too:
		// the capture rules must let it through.
		d := &net.Dialer{Control: markControl(p.opts.SocketMark)}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	if len(p.controlPlanes) > 1 {
		target = controlPlaneScheme + ":///control-planes"
		opts = append(opts, grpc.WithResolvers(staticResolver(p.controlPlanes)))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("proxy: control plane %s: %w", p.opts.ControlPlane, err)
	}
	return conn, nil
}

// staticResolver resolves to a fixed list of addresses, in order.
type staticResolver []string

var _ resolver.Builder = staticResolver(nil)

func (r staticResolver) Scheme() string { return controlPlaneScheme }

func (r staticResolver) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	var state resolver.State
	for _, a := range r {
		// The TLS server name of each is its own host, not the list.
		host, _, _ := net.SplitHostPort(a)
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a, ServerName: host}}})
	}
	if err := cc.UpdateState(state); err != nil {
		return nil, err
	}
	return nopResolver{}, nil
}

// nopResolver has nothing to look up again.
type nopResolver struct{}

func (nopResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (nopResolver) Close()                                {}

// Run bootstraps the proxy's identity, follows the control plane and serves
// until ctx is done; then it drains its listeners.
func (p *Proxy) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.ctx = ctx

	restored := false
	if p.opts.IdentityDir != "" {
		var err error
		if restored, err = p.secrets.UseDir(p.opts.IdentityDir); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	}
	issuer := p.issuer()

	if err := p.startWorkloadAPI(ctx); err != nil {
		return err
	}
	var admin *http.Server
	if p.opts.AdminAddress != "" {
		ln, err := net.Listen("tcp", p.opts.AdminAddress)
		if err != nil {
			return fmt.Errorf("proxy: admin port: %w", err)
		}
		admin = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		p.goRun(func() { _ = admin.Serve(ln) })
	}
	servers := []*http.Server{admin}
	for _, s := range []struct {
		what, addr string
		h          func() http.Handler
	}{{"stats", p.opts.StatsAddress, p.statsHandler}, {"readiness", p.opts.ReadinessAddress, p.readinessHandler}} {
		if s.addr == "" {
			continue
		}
		srv, err := p.serveLocal(s.what, s.addr, s.h())
		if err != nil {
			p.shutdown(servers...)
			return err
		}
		servers = append(servers, srv)
	}

	// The first certificate: retry until the control plane answers and
	// accepts the token. A token file is read again on each attempt.
	backoff := 250 * time.Millisecond
	for !restored {
		err := p.secrets.Renew(ctx, issuer)
		if err == nil {
			break
		}
		p.log.Warn("no certificate yet; retrying", "controlPlane", p.opts.ControlPlane, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			p.shutdown(servers...)
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	if restored {
		p.log.Info("going on with the certificate in the identity directory", "dir", p.opts.IdentityDir)
	}
	// ADS needs the certificate: its connection is made now that there is
	// one.
	conn, err := p.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	p.goRun(func() { p.secrets.Run(ctx, issuer) })
	if p.opts.GatewayCertsDir != "" {
		p.goRun(func() { p.gatewayCerts.Run(ctx) })
	}

	meta, err := p.opts.Registration.Encode()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	client := xdsclient.New(xdsclient.Options{
		Conn:      conn,
		Node:      &corev3.Node{Id: p.opts.NodeID, Cluster: p.opts.Registration.Namespace, Metadata: meta, UserAgentName: "trellis-proxy"},
		Log:       p.log,
		Connected: func() { p.connected.Store(true) },
		Delta:     !p.opts.StateOfTheWorld,
	}, p)
	p.log.Info("proxy starting", "node", p.opts.NodeID, "identity", p.secrets.ID().String(), "controlPlane", p.opts.ControlPlane)
	_ = client.Run(ctx)
	p.shutdown(servers...)
	return nil
}

// issuer asks the control plane's CA for certificates, each time over a
// connection of its own: its TLS handshake presents the proxy's current
// certificate, which is what authenticates a renewal (a connection kept
// open would still present the certificate it was made with). Without a
// valid certificate, the request carries the join token.
func (p *Proxy) issuer() secrets.Issuer {
	return secrets.IssuerFunc(func(ctx context.Context, csr []byte) ([][]byte, []*x509.Certificate, error) {
		req := &capb.CreateCertificateRequest{Csr: string(csr), NodeId: p.opts.NodeID}
		if p.secrets.ValidCertificate() == nil {
			token, err := p.token()
			if err != nil {
				return nil, nil, err
			}
			req.Token = token
		}
		conn, err := p.dial()
		if err != nil {
			return nil, nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := capb.NewCertificateServiceClient(conn).CreateCertificate(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		return secrets.ParseIssued(resp.GetCertChain(), resp.GetTrustBundle())
	})
}

// token returns the join token: the token file's content, or
// Options.Token; empty if there is none.
func (p *Proxy) token() (string, error) {
	if p.opts.TokenFile == "" {
		return p.opts.Token, nil
	}
	b, err := os.ReadFile(p.opts.TokenFile)
	if err != nil {
		return "", fmt.Errorf("proxy: join token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// goRun runs f in a goroutine the proxy waits for on shutdown.
func (p *Proxy) goRun(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// shutdown closes the listeners, lets requests in flight finish within
// the drain timeout, and stops the admin server.
func (p *Proxy) shutdown(servers ...*http.Server) {
	p.mu.Lock()
	ls := p.listeners
	p.listeners = map[string]*listener{}
	if p.settle != nil {
		p.settle.Stop()
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.close(ctx)
		}()
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			_ = s.Shutdown(ctx)
		}
	}
	p.mirrors.stop()
	p.stopResolvers()
	p.wg.Wait()
}
