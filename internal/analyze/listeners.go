package analyze

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// listenerRef is a listener with where it was written: a Gateway's or an
// attached ListenerSet's spec.listeners[index].
type listenerRef struct {
	owner Resource
	index int
	l     *model.Listener
}

func (lr listenerRef) field() string { return index("spec.listeners", lr.index) }

func (lr listenerRef) describe() string {
	return fmt.Sprintf("listener %q (%s %s)", lr.l.Name, lr.owner, lr.field())
}

// udp reports whether p runs over UDP; TCP- and UDP-based listeners may
// share a port number.
func udp(p model.Protocol) bool { return p == model.ProtocolUDP }

// gateways checks each Gateway with the ListenerSets attached to it, and
// Gateways claiming the same address.
func (a *analyzer) gateways() {
	for _, ls := range a.c.ListenerSets {
		a.listenerSet(ls)
	}
	type claim struct {
		gw   *model.Gateway
		l    listenerRef
		addr string
	}
	claims := map[string]claim{} // "address/port/transport"
	for _, g := range a.c.Gateways {
		res := resource(g.Source)
		if _, ok := a.classes[g.ClassName]; !ok && g.ClassName != "" {
			a.add(CodeNoClass, res, "spec.gatewayClassName", "GatewayClass %q does not exist", g.ClassName)
		}
		if g.ParametersRef != "" {
			a.add(CodeParamsRef, res, "spec.infrastructure.parametersRef", "%s: Trellis has no parameters kind; the Gateway is not accepted and serves nothing", g.ParametersRef)
		}
		if g.ServiceType != "" && !slices.Contains(model.ServiceTypes, g.ServiceType) {
			a.add(CodeServiceType, res, g.ServiceTypeField, "Service type %q: want %s", g.ServiceType, strings.Join(model.ServiceTypes, ", "))
		}
		var ls []listenerRef
		for i := range g.Listeners {
			ls = append(ls, listenerRef{owner: res, index: i, l: &g.Listeners[i]})
			a.certificateRefs(res, g.Namespace, i, &g.Listeners[i])
		}
		for _, set := range a.attached[g.Key] {
			for i := range set.Listeners {
				ls = append(ls, listenerRef{owner: resource(set.Source), index: i, l: &set.Listeners[i]})
				a.certificateRefs(resource(set.Source), set.Namespace, i, &set.Listeners[i])
			}
		}
		a.portConflicts(ls)
		for _, addr := range g.Addresses {
			for _, lr := range ls {
				k := addr + "/" + strconv.Itoa(int(lr.l.Port)) + "/" + strconv.FormatBool(udp(lr.l.Protocol))
				if prev, ok := claims[k]; ok && prev.gw.Key != g.Key {
					a.add(CodeAddress, lr.owner, lr.field()+".port",
						"Gateway %s (listener %q) and Gateway %s (listener %q) both claim %s port %d; only one of them can bind it",
						prev.gw.Key, prev.l.l.Name, g.Key, lr.l.Name, addr, lr.l.Port)
					continue
				}
				if _, ok := claims[k]; !ok {
					claims[k] = claim{gw: g, l: lr, addr: addr}
				}
			}
		}
	}
}

// portConflicts checks the listeners one Gateway instance binds.
func (a *analyzer) portConflicts(ls []listenerRef) {
	firstOnPort := map[string]listenerRef{} // port/udp → first listener
	seen := map[string]listenerRef{}        // port/protocol/hostname
	for _, lr := range ls {
		l := lr.l
		portKey := strconv.Itoa(int(l.Port)) + "/" + strconv.FormatBool(udp(l.Protocol))
		if first, ok := firstOnPort[portKey]; ok {
			switch {
			case model.Transport(first.l.Protocol) != model.Transport(l.Protocol):
				a.add(CodeProtocols, lr.owner, lr.field()+".protocol",
					"port %d is already %s for %s; %s cannot share it", l.Port, first.l.Protocol, first.describe(), l.Protocol)
				continue
			case l.Protocol == model.ProtocolTCP || l.Protocol == model.ProtocolUDP:
				a.add(CodeL4Shared, lr.owner, lr.field()+".port",
					"%s port %d is already used by %s; nothing in a %s connection tells them apart", l.Protocol, l.Port, first.describe(), l.Protocol)
				continue
			}
		} else {
			firstOnPort[portKey] = lr
		}
		key := fmt.Sprintf("%d/%s/%s", l.Port, l.Protocol, l.Hostname)
		if prev, ok := seen[key]; ok {
			host := l.Hostname
			if host == "" {
				host = "(any)"
			}
			a.add(CodeDuplicate, lr.owner, lr.field(),
				"%s port %d hostname %s is already served by %s; one of them cannot be programmed", l.Protocol, l.Port, host, prev.describe())
			continue
		}
		seen[key] = lr
	}
}

// certificateRefs checks that certificates in other namespaces are
// granted.
func (a *analyzer) certificateRefs(owner Resource, ns string, li int, l *model.Listener) {
	if l.TLS == nil {
		return
	}
	from := model.GroupKind{Group: model.GatewayGroup, Kind: owner.Kind}
	for i, ref := range l.TLS.CertificateRefs {
		if !a.granted(from, ns, ref) {
			a.add(CodeNoGrant, owner, fmt.Sprintf("spec.listeners[%d].tls.certificateRefs[%d]", li, i),
				"%s in namespace %s may not be used by a %s in %s: no ReferenceGrant in %s allows it", ref.GroupKind(), ref.Namespace, owner.Kind, ns, ref.Namespace)
		}
	}
}

// listenerSet checks that a ListenerSet can attach to its Gateway and
// records it if it can.
func (a *analyzer) listenerSet(ls *model.ListenerSet) {
	res := resource(ls.Source)
	g := a.gws[ls.Gateway]
	if g == nil {
		a.add(CodeListenSet, res, "spec.parentRef", "Gateway %s does not exist", ls.Gateway)
		return
	}
	if g.AllowListenerSets == nil {
		a.add(CodeListenSet, res, "spec.parentRef", "Gateway %s does not allow ListenerSets (spec.allowedListeners is not set)", g.Key)
		return
	}
	ok, known := g.AllowListenerSets.Admits(g.Namespace, ls.Namespace, a.c.Namespaces)
	switch {
	case !known:
		a.add(CodeSelectorUnkn, res, "spec.parentRef", "Gateway %s admits ListenerSets by namespace selector, and the labels of namespace %s are unknown", g.Key, ls.Namespace)
		return
	case !ok:
		a.add(CodeListenSet, res, "spec.parentRef", "Gateway %s does not admit ListenerSets from namespace %s (spec.allowedListeners)", g.Key, ls.Namespace)
		return
	}
	a.attached[g.Key] = append(a.attached[g.Key], ls)
}
