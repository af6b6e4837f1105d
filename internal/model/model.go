// Package model is the normalized mesh configuration that every source
// (the etcd store, Kubernetes informers, a directory of YAML) produces and
// that the analyzer and the translator consume.
//
//	sources ──► model.Config ──► analyze ──► translate ──► xds
//
// It has no dependencies outside the standard library: nothing at or below
// this layer imports Kubernetes or the Gateway API types. Every object keeps
// a Source that names the resource it came from, so that findings and status
// can point back at what the user wrote.
package model

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
)

// Key names a namespaced object.
type Key struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String returns namespace/name.
func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Compare orders keys by namespace, then name.
func (k Key) Compare(o Key) int {
	if c := cmp.Compare(k.Namespace, o.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(k.Name, o.Name)
}

// Source names the resource an object was built from.
type Source struct {
	Kind string `json:"kind"`
	Key
	// File and Line locate the resource when it was read from a file; empty
	// for stored resources.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Generation is the resource's metadata.generation; CreationUnix its
	// creation time in Unix seconds, used for Gateway API precedence.
	Generation   int64 `json:"generation,omitempty"`
	CreationUnix int64 `json:"creationUnix,omitempty"`
}

// Protocol is an application protocol of a port or listener.
type Protocol string

// Protocols Trellis knows. A port whose protocol is unknown is treated as
// TCP.
const (
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolHTTPS Protocol = "HTTPS"
	ProtocolTLS   Protocol = "TLS"
	ProtocolTCP   Protocol = "TCP"
	ProtocolUDP   Protocol = "UDP"
)

// IsHTTP reports whether traffic of protocol p is proxied at layer 7.
func (p Protocol) IsHTTP() bool {
	return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC
}

// Config is the whole normalized mesh configuration at one moment.
// Slices are sorted by key; use Index for lookups.
type Config struct {
	// Namespaces holds the labels of the namespaces that are known (on
	// Kubernetes, all of them; off it, none). Selectors over namespace
	// labels cannot be evaluated for a namespace missing here.
	Namespaces map[string]map[string]string

	GatewayClasses []*GatewayClass
	Gateways       []*Gateway
	ListenerSets   []*ListenerSet
	Services       []*Service
	Workloads      []*Workload

	HTTPRoutes []*HTTPRoute
	GRPCRoutes []*GRPCRoute
	TLSRoutes  []*TLSRoute
	TCPRoutes  []*TCPRoute

	ReferenceGrants []*ReferenceGrant
	MTLSPolicies    []*MTLSPolicy
	AccessPolicies  []*AccessPolicy
	BackendPolicies []*BackendPolicy

	// GatewayProxies are the addresses of the gateway proxies registered
	// for each Gateway (trellis-proxy --gateway), filled by the control
	// plane; an east-west gateway is reached there when its Gateway has
	// no spec.addresses (network.go).
	GatewayProxies map[Key][]string
}

// keyed is what every namespaced object of the model has.
type keyed interface{ key() Key }

func (k Key) key() Key { return k }

func sortByKey[T keyed](s []T) {
	slices.SortFunc(s, func(a, b T) int { return a.key().Compare(b.key()) })
}

// Sort puts every slice in its canonical order, so that output built from
// a Config is deterministic.
func (c *Config) Sort() {
	slices.SortFunc(c.GatewayClasses, func(a, b *GatewayClass) int { return cmp.Compare(a.Name, b.Name) })
	sortByKey(c.Gateways)
	sortByKey(c.ListenerSets)
	sortByKey(c.Services)
	sortByKey(c.Workloads)
	sortByKey(c.HTTPRoutes)
	sortByKey(c.GRPCRoutes)
	sortByKey(c.TLSRoutes)
	sortByKey(c.TCPRoutes)
	sortByKey(c.ReferenceGrants)
	sortByKey(c.MTLSPolicies)
	sortByKey(c.AccessPolicies)
	sortByKey(c.BackendPolicies)
}

// Service is a named set of workloads reachable on ports: a core v1
// Service, on Kubernetes and off it.
type Service struct {
	Key
	Source Source
	// Selector picks member workloads by label. When nil, the members are
	// the workloads that declare the service by name (Workload.Services),
	// as a Kubernetes Service without selector has manually managed
	// endpoints.
	Selector map[string]string
	Ports    []ServicePort
	// Headless services (clusterIP: None) are addressed per endpoint.
	Headless bool
	// ClusterIPs are the service's virtual addresses (spec.clusterIPs),
	// which sidecars with transparent capture route by.
	ClusterIPs []string
	// ExternalName is set for a Service of type ExternalName: a DNS name
	// outside the mesh.
	ExternalName string
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name string
	Port uint32
	// TargetPort is the workload port traffic goes to; when zero,
	// TargetPortName names it, and when that is empty too, it equals Port.
	TargetPort     uint32
	TargetPortName string
	Protocol       Protocol
	// ProtocolDeclared tells whether Protocol came from the port's
	// appProtocol or a known name prefix; when false the port is treated
	// as opaque TCP because nothing said otherwise.
	ProtocolDeclared bool
}

// Selects reports whether the service's members include w.
func (s *Service) Selects(w *Workload) bool {
	if w.Namespace != s.Namespace {
		return false
	}
	if s.Selector == nil {
		return slices.Contains(w.Services, s.Name)
	}
	if len(s.Selector) == 0 {
		return false
	}
	for k, v := range s.Selector {
		if got, ok := w.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Port returns the service port numbered port.
func (s *Service) Port(port uint32) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == port {
			return p, true
		}
	}
	return ServicePort{}, false
}

// Workload is one instance of an application: a process behind a sidecar
// that registered itself, a Trellis Workload resource, or (on Kubernetes) a
// pod.
type Workload struct {
	Key
	Source         Source
	Address        string
	Labels         map[string]string
	ServiceAccount string
	// Services lists the services the workload declares itself a member of
	// (used by services without a selector).
	Services []string
	Ports    []WorkloadPort
	// MeshPort is the port on Address where the workload's sidecar accepts
	// mesh mTLS; zero means the workload has no sidecar and is reached in
	// plaintext on its own ports.
	MeshPort uint32
	// InboundCapture is set when the workload's sidecar captures inbound
	// traffic to the application's ports (trellis-proxy --capture): its
	// MTLSPolicy mode is then in effect for what arrives there.
	InboundCapture bool
	Locality       string
	// Network is the network the workload's address belongs to
	// (network.go): workloads of one network reach each other's
	// addresses, those of others only through that network's east-west
	// gateway. Empty is the default network; NetworkOf also reads the
	// namespace's label.
	Network string
}

// WorkloadPort is a port the application listens on.
type WorkloadPort struct {
	Name     string
	Port     uint32
	Protocol Protocol
}

// TargetPort resolves a service port to the workload's port number.
func (w *Workload) TargetPort(sp ServicePort) (uint32, bool) {
	switch {
	case sp.TargetPort != 0:
		return sp.TargetPort, true
	case sp.TargetPortName != "":
		for _, p := range w.Ports {
			if p.Name == sp.TargetPortName {
				return p.Port, true
			}
		}
		return 0, false
	default:
		return sp.Port, true
	}
}

// ServiceHost returns the fully qualified name of a service:
// name.namespace.svc.<clusterDomain>.
func ServiceHost(k Key, clusterDomain string) string {
	return k.Name + "." + k.Namespace + ".svc." + clusterDomain
}

// Index looks objects up by key. Build it with NewIndex after the Config is
// complete; it does not follow later changes.
type Index struct {
	services map[Key]*Service
	// The routes of each kind by parent, in key order.
	httpRoutes map[parentKey][]*HTTPRoute
	grpcRoutes map[parentKey][]*GRPCRoute
	tcpRoutes  map[parentKey][]*TCPRoute
	tlsRoutes  map[parentKey][]*TLSRoute
	// grants are the ReferenceGrants by namespace.
	grants    map[string][]*ReferenceGrant
	gateways  map[Key]*Gateway
	members   map[Key][]*Workload
	memberOf  map[Key][]*Service
	workloads map[Key]*Workload
	// nsWorkloads and accessPolicies are by namespace, backendPolicies by
	// the Services they target (policyindex.go); all in key order.
	nsWorkloads     map[string][]*Workload
	accessPolicies  map[string][]*AccessPolicy
	backendPolicies map[Key][]*BackendPolicy
}

// NewIndex indexes c.
func NewIndex(c *Config) *Index {
	ix := &Index{
		services:  make(map[Key]*Service, len(c.Services)),
		gateways:  make(map[Key]*Gateway, len(c.Gateways)),
		members:   make(map[Key][]*Workload),
		memberOf:  make(map[Key][]*Service),
		workloads: make(map[Key]*Workload, len(c.Workloads)),
	}
	for _, s := range c.Services {
		ix.services[s.Key] = s
	}
	ix.httpRoutes = byParent(c.HTTPRoutes)
	ix.grpcRoutes = byParent(c.GRPCRoutes)
	ix.tcpRoutes = byParent(c.TCPRoutes)
	ix.tlsRoutes = byParent(c.TLSRoutes)
	ix.grants = map[string][]*ReferenceGrant{}
	for _, g := range c.ReferenceGrants {
		ix.grants[g.Namespace] = append(ix.grants[g.Namespace], g)
	}
	ix.indexPolicies(c)
	for _, g := range c.Gateways {
		ix.gateways[g.Key] = g
	}
	sel := newSelectorIndex(c.Services)
	ix.nsWorkloads = map[string][]*Workload{}
	for _, w := range c.Workloads {
		ix.workloads[w.Key] = w
		ix.nsWorkloads[w.Namespace] = append(ix.nsWorkloads[w.Namespace], w)
		for _, s := range sel.selecting(w) {
			ix.members[s.Key] = append(ix.members[s.Key], w)
			ix.memberOf[w.Key] = append(ix.memberOf[w.Key], s)
		}
	}
	return ix
}

// byParent indexes routes by each of their parents.
func byParent[R interface{ parents() []ParentRef }](routes []R) map[parentKey][]R {
	out := map[parentKey][]R{}
	for _, r := range routes {
		for _, pk := range parentKeys(r.parents()) {
			out[pk] = append(out[pk], r)
		}
	}
	return out
}

func (r *Route) parents() []ParentRef { return r.Parents }

// parentKey names a parent routes attach to.
type parentKey struct {
	kind ParentKind
	key  Key
}

// parentKeys lists the distinct parents of a route.
func parentKeys(parents []ParentRef) []parentKey {
	var out []parentKey
	for _, p := range parents {
		pk := parentKey{p.Kind, p.Key}
		if !slices.Contains(out, pk) {
			out = append(out, pk)
		}
	}
	return out
}

// HTTPRoutesOf returns the HTTPRoutes with a parentRef to the parent of
// kind and key (whatever its sectionName or port), in key order.
func (ix *Index) HTTPRoutesOf(kind ParentKind, k Key) []*HTTPRoute {
	return ix.httpRoutes[parentKey{kind, k}]
}

// GRPCRoutesOf returns the GRPCRoutes with a parentRef to the parent of
// kind and key, in key order.
func (ix *Index) GRPCRoutesOf(kind ParentKind, k Key) []*GRPCRoute {
	return ix.grpcRoutes[parentKey{kind, k}]
}

// TCPRoutesOf returns the TCPRoutes with a parentRef to the parent of kind
// and key, in key order.
func (ix *Index) TCPRoutesOf(kind ParentKind, k Key) []*TCPRoute {
	return ix.tcpRoutes[parentKey{kind, k}]
}

// TLSRoutesOf returns the TLSRoutes with a parentRef to the parent of kind
// and key, in key order.
func (ix *Index) TLSRoutesOf(kind ParentKind, k Key) []*TLSRoute {
	return ix.tlsRoutes[parentKey{kind, k}]
}

// Granted reports whether an object of kind from in namespace fromNS may
// reference to: references within a namespace need no grant, others a
// ReferenceGrant in to's namespace.
func (ix *Index) Granted(from GroupKind, fromNS string, to Ref) bool {
	if to.Namespace == fromNS {
		return true
	}
	for _, g := range ix.grants[to.Namespace] {
		if g.Permits(from, fromNS, to) {
			return true
		}
	}
	return false
}

// Service returns the service named k, or nil.
func (ix *Index) Service(k Key) *Service { return ix.services[k] }

// Gateway returns the gateway named k, or nil.
func (ix *Index) Gateway(k Key) *Gateway { return ix.gateways[k] }

// Workload returns the workload named k, or nil.
func (ix *Index) Workload(k Key) *Workload { return ix.workloads[k] }

// Members returns the workloads of service k, in key order.
func (ix *Index) Members(k Key) []*Workload { return ix.members[k] }

// MemberOf returns the services workload k belongs to, in key order.
func (ix *Index) MemberOf(k Key) []*Service { return ix.memberOf[k] }

// HostPort formats an address and port, bracketing IPv6 addresses.
func HostPort(addr string, port uint32) string {
	for i := 0; i < len(addr); i++ {
		if addr[i] == ':' {
			return "[" + addr + "]:" + strconv.FormatUint(uint64(port), 10)
		}
	}
	return fmt.Sprintf("%s:%d", addr, port)
}
