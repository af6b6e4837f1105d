// Package nodemeta is the registration contract between a proxy and the
// control plane: what a proxy says about itself and its workload in the
// metadata of its xDS Node. The control plane registers the workload from
// it when the proxy's ADS stream opens, and builds that proxy's config from
// it.
//
// Three kinds of xDS client register this way: the sidecar and the gateway
// (trellis-proxy), and proxyless gRPC applications, which put the same
// metadata in the node of their xDS bootstrap file.
//
// Both binaries import this package; it depends only on protobuf.
package nodemeta

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// Field is the key in Node.metadata under which the registration is sent.
const Field = "trellis"

// Kinds of proxy.
const (
	KindSidecar = "sidecar"
	KindGateway = "gateway"
	// KindGRPC is a gRPC application that is its own xDS client
	// (proxyless): it has no mesh port and no outbound listeners.
	KindGRPC = "grpc"
)

// Metadata is a proxy's registration.
type Metadata struct {
	// Kind is "sidecar", "gateway" or "grpc".
	Kind string `json:"kind"`
	// Name and Namespace name the workload (for a gateway: the gateway
	// instance).
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// ServiceAccount is the identity the workload runs as; its certificate
	// is spiffe://<trust-domain>/ns/<Namespace>/sa/<ServiceAccount>.
	ServiceAccount string `json:"serviceAccount"`
	// Address is the workload's IP address as other workloads reach it.
	Address string            `json:"address"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Services names services (in Namespace) the workload declares itself a
	// member of; services with a selector pick members by Labels instead.
	Services []string `json:"services,omitempty"`
	// Ports are the application's ports; for a gRPC application, the
	// ports its xDS-enabled servers listen on (protocol GRPC when unset).
	Ports []Port `json:"ports,omitempty"`
	// MeshPort is the port on Address where the sidecar accepts mesh mTLS.
	// Not set for a gRPC application.
	MeshPort uint32 `json:"meshPort,omitempty"`
	// AppAddress is where the sidecar reaches the application (default
	// 127.0.0.1). Sidecars only.
	AppAddress string `json:"appAddress,omitempty"`
	// OutboundAddress is where explicit outbound listeners bind (default
	// 127.0.0.1). Sidecars only.
	OutboundAddress string `json:"outboundAddress,omitempty"`
	// OutboundCapturePort and InboundCapturePort are where the sidecar's
	// capture listeners bind when `trellis-proxy init` redirects the
	// workload's outbound and inbound traffic to them (15001 and 15006 by
	// default); zero: no capture, the explicit mode. Sidecars only.
	OutboundCapturePort uint32 `json:"outboundCapturePort,omitempty"`
	InboundCapturePort  uint32 `json:"inboundCapturePort,omitempty"`
	// Upstreams are the explicit outbound listeners the app calls. For a
	// gRPC application they name services it calls besides the gRPC
	// services of its own namespace, and have no LocalPort.
	Upstreams []Upstream `json:"upstreams,omitempty"`
	// Gateway is NAMESPACE/NAME of the Gateway a gateway proxy serves.
	Gateway string `json:"gateway,omitempty"`
	// Locality is region/zone/subzone, for locality-aware load balancing.
	Locality string `json:"locality,omitempty"`
	// Network is the network Address belongs to (empty: the default
	// network, or the namespace's); workloads of other networks reach it
	// through that network's east-west gateway. A gateway's network is its
	// Gateway's trellis.dev/network label when that is set.
	Network string `json:"network,omitempty"`
	// Version is the proxy's build version.
	Version string `json:"version,omitempty"`
}

// Port is an application port.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     uint32 `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Upstream binds LocalPort on the sidecar's OutboundAddress to port Port of
// Service in Namespace (empty: the workload's own namespace). A gRPC
// application has no local ports: its upstreams only name service ports.
type Upstream struct {
	Service   string `json:"service"`
	Namespace string `json:"namespace,omitempty"`
	Port      uint32 `json:"port"`
	LocalPort uint32 `json:"localPort,omitempty"`
}

// Encode returns the Node.metadata struct carrying m.
func (m *Metadata) Encode() (*structpb.Struct, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	return structpb.NewStruct(map[string]any{Field: fields})
}

// Decode reads the registration from a Node's metadata and validates it.
func Decode(s *structpb.Struct) (*Metadata, error) {
	v, ok := s.GetFields()[Field]
	if !ok {
		return nil, fmt.Errorf("nodemeta: node metadata has no %q field: is this a trellis-proxy?", Field)
	}
	b, err := v.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("nodemeta: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var m Metadata
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("nodemeta: %w", err)
	}
	// Empty lists and maps mean the same as absent ones.
	if len(m.Labels) == 0 {
		m.Labels = nil
	}
	if len(m.Services) == 0 {
		m.Services = nil
	}
	if len(m.Ports) == 0 {
		m.Ports = nil
	}
	if len(m.Upstreams) == 0 {
		m.Upstreams = nil
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks that the registration is complete and well formed,
// reporting every problem at once.
func (m *Metadata) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("nodemeta: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch m.Kind {
	case KindSidecar:
	case KindGateway:
		if m.OutboundCapturePort != 0 || m.InboundCapturePort != 0 {
			bad("outboundCapturePort", "a gateway captures no traffic; leave the capture ports out")
		}
		ns, name, ok := strings.Cut(m.Gateway, "/")
		if !ok || ns == "" || name == "" {
			bad("gateway", "%q is not NAMESPACE/NAME", m.Gateway)
		}
	case KindGRPC:
		// A gRPC application is its own data plane: nothing of a sidecar's
		// or a gateway's applies to it.
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"meshPort", m.MeshPort != 0}, {"appAddress", m.AppAddress != ""},
			{"outboundAddress", m.OutboundAddress != ""}, {"gateway", m.Gateway != ""},
			{"outboundCapturePort", m.OutboundCapturePort != 0}, {"inboundCapturePort", m.InboundCapturePort != 0},
		} {
			if f.set {
				bad(f.name, "a gRPC application (kind %q) has no sidecar; leave it out", KindGRPC)
			}
		}
	default:
		bad("kind", "%q is not %q, %q or %q", m.Kind, KindSidecar, KindGateway, KindGRPC)
	}
	for field, v := range map[string]string{"name": m.Name, "namespace": m.Namespace, "serviceAccount": m.ServiceAccount} {
		if v == "" {
			bad(field, "must not be empty")
		}
	}
	for field, v := range map[string]string{"address": m.Address, "appAddress": m.AppAddress, "outboundAddress": m.OutboundAddress} {
		if v == "" && field != "address" {
			continue
		}
		if _, err := netip.ParseAddr(v); err != nil {
			bad(field, "%q is not an IP address", v)
		}
	}
	if m.Network != "" && !validNetwork(m.Network) {
		bad("network", "%q is not a network name: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", m.Network)
	}
	seen := map[uint32]bool{}
	for i, p := range m.Ports {
		if p.Port == 0 || p.Port > 65535 {
			bad(fmt.Sprintf("ports[%d].port", i), "%d is not a port number", p.Port)
		}
		if seen[p.Port] {
			bad(fmt.Sprintf("ports[%d].port", i), "port %d is listed twice", p.Port)
		}
		seen[p.Port] = true
	}
	for field, v := range map[string]uint32{"meshPort": m.MeshPort, "outboundCapturePort": m.OutboundCapturePort, "inboundCapturePort": m.InboundCapturePort} {
		if v > 65535 {
			bad(field, "%d is not a port number", v)
		}
	}
	local := map[uint32]bool{}
	for i, u := range m.Upstreams {
		if u.Service == "" {
			bad(fmt.Sprintf("upstreams[%d].service", i), "must not be empty")
		}
		if u.Port == 0 || u.Port > 65535 {
			bad(fmt.Sprintf("upstreams[%d].port", i), "%d is not a port number", u.Port)
		}
		if m.Kind == KindGRPC {
			if u.LocalPort != 0 {
				bad(fmt.Sprintf("upstreams[%d].localPort", i), "a gRPC application dials xds:/// targets, not local ports; leave it out")
			}
			continue
		}
		if u.LocalPort == 0 || u.LocalPort > 65535 {
			bad(fmt.Sprintf("upstreams[%d].localPort", i), "%d is not a port number", u.LocalPort)
		}
		if local[u.LocalPort] {
			bad(fmt.Sprintf("upstreams[%d].localPort", i), "local port %d is used twice", u.LocalPort)
		}
		local[u.LocalPort] = true
	}
	return errors.Join(errs...)
}

// validNetwork reports whether s can be a network name: a Kubernetes
// label value, as the trellis.dev/network label carries it.
func validNetwork(s string) bool {
	if len(s) > 63 {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return alnum(s[0]) && alnum(s[len(s)-1])
}
