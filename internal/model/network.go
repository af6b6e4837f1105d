package model

import (
	"cmp"
	"net/netip"
	"slices"
)

// Networks, as in Istio's multi-network model: every workload belongs to
// a network (its trellis.dev/network label, a registration's --network,
// else its namespace's label, else the default network ""). Workloads of
// one network reach each other's addresses directly; a client reaches the
// members of a Service in another network through that network's
// east-west gateway, which routes the client's mesh mTLS by its SNI
// without terminating it.
//
// An east-west gateway is a Gateway labeled trellis.dev/network: NAME
// with a listener of protocol TLS, tls.mode Passthrough and tls.options
// trellis.dev/listener-mode: auto-passthrough: it serves every mesh
// service port of its network by SNI, with no routes. Clients reach it at
// its spec.addresses, or else at the addresses of the gateway proxies
// registered for it.

// NetworkLabel names a workload's, a namespace's or a Gateway's network.
const NetworkLabel = "trellis.dev/network"

// EastWestOption is the tls.options key of a Gateway listener that makes
// it an east-west listener, with the value AutoPassthrough.
const (
	EastWestOption  = "trellis.dev/listener-mode"
	AutoPassthrough = "auto-passthrough"
)

// NetworkOf returns the network of workload w: its own, else its
// namespace's label.
func NetworkOf(c *Config, w *Workload) string {
	if w.Network != "" {
		return w.Network
	}
	return c.Namespaces[w.Namespace][NetworkLabel]
}

// GatewayNetwork returns the network of Gateway g: its label, else its
// namespace's.
func GatewayNetwork(c *Config, g *Gateway) string {
	if g.Network != "" {
		return g.Network
	}
	return c.Namespaces[g.Namespace][NetworkLabel]
}

// IsEastWest reports whether listener l asks to be an east-west listener
// (tls.options trellis.dev/listener-mode: auto-passthrough), whether or
// not it is a valid one (EastWestValid).
func (l *Listener) IsEastWest() bool {
	return l.TLS != nil && l.TLS.Options[EastWestOption] == AutoPassthrough
}

// EastWestValid reports whether an east-west listener can be served: of
// protocol TLS, in mode Passthrough.
func (l *Listener) EastWestValid() bool {
	return l.IsEastWest() && l.Protocol == ProtocolTLS && l.TLS.Mode == TLSPassthrough
}

// NetworkGateway is where clients of other networks reach a network's
// members: the addresses of an east-west gateway and the port of its
// east-west listener.
type NetworkGateway struct {
	Gateway   Key
	Addresses []string
	Port      uint32
}

// EastWestListener returns the first valid east-west listener of g, or
// nil.
func EastWestListener(g *Gateway) *Listener {
	for i := range g.Listeners {
		if g.Listeners[i].EastWestValid() {
			return &g.Listeners[i]
		}
	}
	return nil
}

// NetworkGateways returns the east-west gateways of network, in key
// order, each with the IP addresses it is reached at (spec.addresses,
// else its registered proxies'), which may be none.
func NetworkGateways(c *Config, network string) []NetworkGateway {
	var out []NetworkGateway
	for _, g := range c.Gateways {
		if GatewayNetwork(c, g) != network {
			continue
		}
		l := EastWestListener(g)
		if l == nil {
			continue
		}
		addrs := ipAddresses(g.Addresses)
		if len(addrs) == 0 {
			addrs = ipAddresses(c.GatewayProxies[g.Key])
		}
		out = append(out, NetworkGateway{Gateway: g.Key, Addresses: addrs, Port: l.Port})
	}
	slices.SortFunc(out, func(a, b NetworkGateway) int { return a.Gateway.Compare(b.Gateway) })
	return out
}

// ipAddresses returns the IP addresses among addrs, canonical, sorted and
// without duplicates.
func ipAddresses(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Zone() == "" {
			out = append(out, ip.String())
		}
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(a, b) })
	return slices.Compact(out)
}
