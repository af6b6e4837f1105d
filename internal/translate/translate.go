package translate

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/model"
)

// Options are the mesh-wide settings translation depends on.
type Options struct {
	TrustDomain   string
	ClusterDomain string
	// ConnectTimeout bounds upstream connection setup; zero means 5 s.
	ConnectTimeout time.Duration
	// ProtocolDetectionTimeout bounds how long the capture listeners wait
	// for a client's first bytes to tell TLS from plaintext and HTTP from
	// other TCP (listener_filters_timeout); a client that sends nothing
	// (a server-first protocol) then goes on as TCP. Zero means 100 ms.
	ProtocolDetectionTimeout time.Duration
	// RegistryOnly blocks captured outbound connections to destinations
	// the mesh does not know, instead of passing them through.
	RegistryOnly bool
}

func (o Options) withDefaults() Options {
	if o.TrustDomain == "" {
		o.TrustDomain = identity.DefaultTrustDomain
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.ProtocolDetectionTimeout == 0 {
		o.ProtocolDetectionTimeout = 100 * time.Millisecond
	}
	return o
}

// Input is what one proxy's translation reads.
type Input struct {
	Config *model.Config
	// Index must be built from Config.
	Index *model.Index
	Proxy *model.Proxy
	// CertificateChain is the PEM chain last issued to the proxy; empty
	// leaves the certificate secret out.
	CertificateChain []byte
	// TrustBundle is the PEM root certificates of the mesh, the active root
	// first: a proxy renews a certificate that does not chain to it (a
	// root rotation).
	TrustBundle []byte
}

// Resources is one proxy's complete config, each slice sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	Secrets   []*tlsv3.Secret
	// Deps are the dependency keys of the config, sorted (see deps.go).
	Deps []string

	// outbound are the outbound clusters by name, with the problems of
	// each; problems are the others (refresh.go).
	outbound map[string]outboundRef
	problems []Problem
	// fullOnly is set when endpoint changes may change more than the
	// outbound clusters (an east-west listener): RefreshEndpoints declines.
	fullOnly bool
}

// outboundRef is what an outbound cluster was built from.
type outboundRef struct {
	service  model.Key
	port     uint32
	grpc     bool
	problems []Problem
}

// Problem is something in the config that could not be translated for this
// proxy. What it names is left out of the proxy's config.
type Problem struct {
	// Resource names the user's resource ("HTTPRoute demo/web") or, for
	// what the proxy registered, "proxy <id>".
	Resource string
	// Field is the path within it, when known.
	Field   string
	Message string
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Resource + ": " + p.Message
	}
	return p.Resource + ": " + p.Field + ": " + p.Message
}

// Translate builds the config of in.Proxy.
func Translate(in Input, opts Options) (*Resources, []Problem) {
	b := &builder{in: in, opts: opts.withDefaults(), clusters: map[string]clusterRef{}}
	switch in.Proxy.Kind {
	case model.KindSidecar:
		b.sidecar()
	case model.KindGateway:
		b.gateway()
		b.gatewayAccess()
	case model.KindGRPC:
		b.proxyless = true
		b.grpc()
		b.proxylessAccess()
	default:
		b.problem("proxy "+in.Proxy.ID, "kind", fmt.Sprintf("unknown proxy kind %q", in.Proxy.Kind))
	}
	b.routePolicies()
	b.outboundClusters()
	if !b.proxyless {
		// gRPC applications read their certificates from files; they
		// never ask for secrets.
		b.secrets()
	}
	return b.finish()
}

// clusterRef is an outbound cluster some listener or route needs.
type clusterRef struct {
	service *model.Service
	port    model.ServicePort
	// grpc is set when a GRPCRoute sends to the cluster (clusterProtocol).
	grpc bool
}

type builder struct {
	in   Input
	opts Options
	// proxyless is set for a gRPC application's config: only what gRPC's
	// own xDS client accepts may be emitted.
	proxyless bool
	out       Resources
	clusters  map[string]clusterRef
	// appPorts are the app's ports a sidecar's inbound listeners forward
	// to (inbound|PORT|| clusters).
	appPorts map[uint32]model.Protocol
	problems []Problem
	deps     map[string]bool
}

func (b *builder) problem(resource, field, msg string) {
	b.problems = append(b.problems, Problem{Resource: resource, Field: field, Message: msg})
}

func (b *builder) host(k model.Key) string { return model.ServiceHost(k, b.opts.ClusterDomain) }

// useCluster records that the outbound cluster of service port sp is
// needed and returns its name.
func (b *builder) useCluster(s *model.Service, sp model.ServicePort) string {
	name := OutboundCluster(sp.Port, b.host(s.Key))
	ref := b.clusters[name]
	ref.service, ref.port = s, sp
	b.clusters[name] = ref
	return name
}

type validator interface{ ValidateAll() error }

// finish validates every resource, drops what fails (reporting it), and
// sorts the output.
func (b *builder) finish() (*Resources, []Problem) {
	keep := func(kind, name string, r validator) bool {
		if err := r.ValidateAll(); err != nil {
			b.problem("proxy "+b.in.Proxy.ID, "", fmt.Sprintf("generated %s %q is invalid and was not sent: %v", kind, name, err))
			return false
		}
		return true
	}
	out := &b.out
	out.Listeners = slices.DeleteFunc(out.Listeners, func(r *listenerv3.Listener) bool { return !keep("listener", r.Name, r) })
	out.Routes = slices.DeleteFunc(out.Routes, func(r *routev3.RouteConfiguration) bool { return !keep("route", r.Name, r) })
	out.Clusters = slices.DeleteFunc(out.Clusters, func(r *clusterv3.Cluster) bool { return !keep("cluster", r.Name, r) })
	out.Endpoints = slices.DeleteFunc(out.Endpoints, func(r *endpointv3.ClusterLoadAssignment) bool {
		return !keep("endpoints", r.ClusterName, r)
	})
	out.Secrets = slices.DeleteFunc(out.Secrets, func(r *tlsv3.Secret) bool { return !keep("secret", r.Name, r) })
	slices.SortFunc(out.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.ClusterName, b.ClusterName)
	})
	slices.SortFunc(out.Secrets, func(a, b *tlsv3.Secret) int { return cmp.Compare(a.Name, b.Name) })
	out.Deps = sortedKeys(b.deps)
	out.problems = b.problems
	return out, out.allProblems()
}

// allProblems returns the problems of the config, sorted.
func (r *Resources) allProblems() []Problem {
	all := slices.Clone(r.problems)
	for _, o := range r.outbound {
		all = append(all, o.problems...)
	}
	slices.SortFunc(all, func(x, y Problem) int { return cmp.Compare(x.String(), y.String()) })
	return slices.Compact(all)
}
