package analyze

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// Multi-network checks (model.NetworkOf, model.NetworkGateways): east-west
// listeners that cannot be served, routes attached to them (which they
// ignore), and, in a mesh of several networks, Service members that
// clients of other networks cannot reach.

// eastWest checks east-west listeners and what attaches to them. It runs
// after routes, whose attachments it reads.
func (a *analyzer) eastWest() {
	check := func(res Resource, ls []model.Listener) {
		for i := range ls {
			l := &ls[i]
			if l.IsEastWest() && !l.EastWestValid() {
				a.add(CodeEastWestListener, res, fmt.Sprintf("spec.listeners[%d].tls", i),
					"listener %q has tls.options %s: %s, but is %s in mode %s; an east-west listener is TLS in mode Passthrough",
					l.Name, model.EastWestOption, model.AutoPassthrough, l.Protocol, tlsMode(l))
			}
		}
	}
	for _, g := range a.c.Gateways {
		check(resource(g.Source), g.Listeners)
	}
	for _, s := range a.c.ListenerSets {
		check(resource(s.Source), s.Listeners)
	}
	for _, at := range a.attachedTo {
		var l *model.Listener
		key := model.Key{Namespace: at.Listener.Namespace, Name: at.Listener.Name}
		switch {
		case at.Listener.Kind == "Gateway" && a.gws[key] != nil && at.ListenerIndex < len(a.gws[key].Listeners):
			l = &a.gws[key].Listeners[at.ListenerIndex]
		case at.Listener.Kind == "ListenerSet" && a.listenerSets[key] != nil && at.ListenerIndex < len(a.listenerSets[key].Listeners):
			l = &a.listenerSets[key].Listeners[at.ListenerIndex]
		}
		if l != nil && l.IsEastWest() {
			a.add(CodeEastWestRoute, at.Route, fmt.Sprintf("spec.parentRefs[%d]", at.ParentRef),
				"listener %q of %s %s is an east-west listener, which serves every mesh service of its network by SNI and no route",
				l.Name, at.Listener.Kind, key)
		}
	}
}

func tlsMode(l *model.Listener) string {
	if l.TLS == nil || l.TLS.Mode == "" {
		return "(none)"
	}
	return string(l.TLS.Mode)
}

// networks checks, when the workloads are in more than one network, that
// each Service's members can be reached from the others: those of a
// network with an east-west gateway and a sidecar.
func (a *analyzer) networks() {
	all := map[string]bool{}
	for _, w := range a.c.Workloads {
		all[model.NetworkOf(a.c, w)] = true
	}
	if len(all) < 2 {
		return
	}
	hasGateway := map[string]bool{}
	for n := range all {
		hasGateway[n] = len(model.NetworkGateways(a.c, n)) > 0
	}
	for _, s := range a.c.Services {
		meshed := map[string][]string{}
		plain := map[string][]string{}
		for _, w := range a.ix.Members(s.Key) {
			n := model.NetworkOf(a.c, w)
			if w.HasSidecar() {
				meshed[n] = append(meshed[n], w.Key.String())
			} else {
				plain[n] = append(plain[n], w.Key.String())
			}
		}
		res := resource(s.Source)
		for _, n := range slices.Sorted(maps.Keys(meshed)) {
			if !hasGateway[n] {
				a.add(CodeNoEastWest, res, "", "members %s are in network %s, which has no east-west gateway: clients of other networks cannot reach them",
					strings.Join(meshed[n], ", "), networkName(n))
			}
		}
		for _, n := range slices.Sorted(maps.Keys(plain)) {
			a.add(CodeNetworkPlain, res, "", "members %s of network %s have no sidecar: an east-west gateway passes only mesh mTLS, so clients of other networks cannot reach them",
				strings.Join(plain[n], ", "), networkName(n))
		}
	}
}

func networkName(n string) string {
	if n == "" {
		return `"" (the default network)`
	}
	return fmt.Sprintf("%q", n)
}
