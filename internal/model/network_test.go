package model

import (
	"slices"
	"testing"
)

func TestNetworks(t *testing.T) {
	c := &Config{
		Namespaces: map[string]map[string]string{"east": {NetworkLabel: "east"}},
		Gateways: []*Gateway{
			{Key: Key{Namespace: "mesh", Name: "a"}, Network: "west", Addresses: []string{"gw.example.com", "192.0.2.1"},
				Listeners: []Listener{{Name: "x", Port: 15443, Protocol: ProtocolTLS,
					TLS: &ListenerTLS{Mode: TLSPassthrough, Options: map[string]string{EastWestOption: AutoPassthrough}}}}},
			{Key: Key{Namespace: "mesh", Name: "b"}, Network: "west",
				Listeners: []Listener{{Name: "x", Port: 15444, Protocol: ProtocolTLS,
					TLS: &ListenerTLS{Mode: TLSPassthrough, Options: map[string]string{EastWestOption: AutoPassthrough}}}}},
			{Key: Key{Namespace: "east", Name: "c"},
				Listeners: []Listener{{Name: "x", Port: 15443, Protocol: ProtocolHTTPS,
					TLS: &ListenerTLS{Mode: TLSTerminate, Options: map[string]string{EastWestOption: AutoPassthrough}}}}},
		},
		GatewayProxies: map[Key][]string{{Namespace: "mesh", Name: "a"}: {"198.51.100.1"}, {Namespace: "mesh", Name: "b"}: {"198.51.100.2", "198.51.100.2"}},
	}
	if n := NetworkOf(c, &Workload{Key: Key{Namespace: "east", Name: "w"}}); n != "east" {
		t.Errorf("namespace label: network %q", n)
	}
	if n := NetworkOf(c, &Workload{Key: Key{Namespace: "east", Name: "w"}, Network: "west"}); n != "west" {
		t.Errorf("own label: network %q", n)
	}
	// spec.addresses (IPs only) win over registered proxies'; duplicates
	// collapse.
	got := NetworkGateways(c, "west")
	want := []NetworkGateway{
		{Gateway: Key{Namespace: "mesh", Name: "a"}, Addresses: []string{"192.0.2.1"}, Port: 15443},
		{Gateway: Key{Namespace: "mesh", Name: "b"}, Addresses: []string{"198.51.100.2"}, Port: 15444},
	}
	if !slices.EqualFunc(got, want, func(x, y NetworkGateway) bool {
		return x.Gateway == y.Gateway && x.Port == y.Port && slices.Equal(x.Addresses, y.Addresses)
	}) {
		t.Errorf("NetworkGateways = %+v, want %+v", got, want)
	}
	// An HTTPS listener asking to be east-west is not one.
	if got := NetworkGateways(c, "east"); len(got) != 0 {
		t.Errorf("east: %+v", got)
	}
}
