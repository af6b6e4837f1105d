package control

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/xds"
)

// A Gateway's status (its addresses, its Programmed condition) depends
// on the gateway proxies that serve it, which only the control plane
// knows: gatewayProxies reports them with the rest of the Analysis. On
// Kubernetes the status writer (package kubesource) matches them with the
// Gateway's pods; elsewhere trellis get shows a Gateway with the status
// the same code computes from them (withGatewayStatus).

// gatewayProxies are the registered gateway proxies. A proxy's ACK state
// is known to the control plane holding its stream: one registered
// through another control plane (sharing the store) counts as connected
// and acknowledged, its registration standing for its live stream.
func (cp *controlPlane) gatewayProxies() []kubesource.GatewayProxy {
	type local struct{ connected, acked bool }
	here := map[string]local{}
	for _, s := range cp.xds.Status() {
		l := local{connected: s.Connected}
		// Acknowledged listeners, not just a config: a gateway proxy
		// acknowledges an empty one before its Gateway has listeners. (A
		// delta client that resubscribed with the current versions was
		// sent nothing on this stream, and has them.)
		_, acked, _ := cp.xds.SentConfig(s.ID, resource.ListenerType)
		for _, t := range s.Types {
			if t.TypeURL == resource.ListenerType {
				l.acked = len(acked.Resources) > 0 || (t.State == xds.StateSynced && t.Responses == 0 && t.Current != "")
			}
		}
		here[s.ID] = l
	}
	cp.mu.Lock()
	regs := maps.Clone(cp.registrations)
	cp.mu.Unlock()
	var out []kubesource.GatewayProxy
	for _, id := range slices.Sorted(maps.Keys(regs)) {
		m := regs[id]
		ns, name, ok := strings.Cut(m.Gateway, "/")
		if m.Kind != nodemeta.KindGateway || !ok {
			continue
		}
		p := kubesource.GatewayProxy{ID: id, Gateway: model.Key{Namespace: ns, Name: name}, Address: m.Address, Connected: true, Acked: true}
		if l, ok := here[id]; ok {
			p.Connected, p.Acked = l.connected, l.connected && l.acked
		}
		out = append(out, p)
	}
	return out
}

// withGatewayStatus adds their status to Gateways listed off Kubernetes,
// where no status is written back; on Kubernetes the objects' status is
// what kubectl shows.
func (cp *controlPlane) withGatewayStatus(kind string, list []controlapi.Resource) []controlapi.Resource {
	if kind != "Gateway" || cp.fromKube() || len(list) == 0 {
		return list
	}
	a := cp.Analysis()
	for i, r := range list {
		var gw gwv1.Gateway
		var obj map[string]any
		if json.Unmarshal(r.Object, &gw) != nil || json.Unmarshal(r.Object, &obj) != nil {
			continue
		}
		st, ok := kubesource.GatewayStatus(a, &gw, nil)
		if !ok {
			continue
		}
		obj["status"] = st
		if b, err := json.Marshal(obj); err == nil {
			list[i].Object = b
		}
	}
	return list
}
