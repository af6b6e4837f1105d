package control

import (
	"maps"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/translate"
)

// Multi-network: clients reach the members of a Service in another
// network through that network's east-west gateway, at its
// spec.addresses or else at the addresses of the gateway proxies
// registered for it (model.NetworkGateways). What their config reads of
// a network's gateways is under translate.NetworkKey; a gateway proxy's
// registration touches its Gateway's key.

// gatewayProxies are the addresses of the registered gateway proxies by
// the Gateway they serve (model.Config.GatewayProxies).
func gatewayProxies(regs map[string]*nodemeta.Metadata) map[model.Key][]string {
	var out map[model.Key][]string
	for _, id := range slices.Sorted(maps.Keys(regs)) {
		m := regs[id]
		ns, name, ok := strings.Cut(m.Gateway, "/")
		if m.Kind != nodemeta.KindGateway || !ok {
			continue
		}
		if out == nil {
			out = map[model.Key][]string{}
		}
		k := model.Key{Namespace: ns, Name: name}
		out[k] = append(out[k], m.Address)
	}
	return out
}

// gatewayProxyKeys are the keys a gateway proxy's registration touches
// besides its own: its Gateway's, on which the clients of the Gateway's
// network depend when it is an east-west gateway reached at its proxies'
// addresses.
func gatewayProxyKeys(m *nodemeta.Metadata) []string {
	ns, name, ok := strings.Cut(m.Gateway, "/")
	if m.Kind != nodemeta.KindGateway || !ok {
		return nil
	}
	return []string{translate.GatewayKey(model.Key{Namespace: ns, Name: name})}
}

// gatewayNetworkKeysLocked are the network keys a stored Gateway
// touches: those of the network it is labeled with (a Gateway may
// become, or stop being, an east-west gateway of it), and of the default
// network when it has no label (its namespace's label may name another
// network: a Namespace's change rebuilds every proxy anyway). Callers
// hold cp.mu.
func (cp *controlPlane) gatewayNetworkKeysLocked(o *resource.Object) []string {
	cfg, err := cp.models.Model([]*resource.Object{o})
	if err != nil || cfg == nil || len(cfg.Gateways) != 1 {
		return []string{allProxies}
	}
	g := cfg.Gateways[0]
	return []string{translate.NetworkKey(model.GatewayNetwork(&model.Config{Namespaces: cp.namespaces}, g))}
}
