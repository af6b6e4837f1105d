package analyze

import (
	"fmt"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// route is what the attachment and reference checks need of any route
// kind.
type route struct {
	kind string // HTTPRoute, GRPCRoute, TLSRoute, TCPRoute
	r    *model.Route
	res  Resource
	// http is set for HTTPRoutes, whose matches the precedence checks
	// compare.
	http *model.HTTPRoute
}

func (rt route) groupKind() model.GroupKind {
	return model.GroupKind{Group: model.GatewayGroup, Kind: rt.kind}
}

// place is where a route serves: a Gateway port and hostname, or a
// Service port.
type place struct {
	// key identifies the place for precedence: requests to one place are
	// matched against the routes attached there.
	key string
	// describe says where it is, for messages.
	describe string
	host     string
}

// routes checks every route's parents and backends, and records where
// HTTPRoutes attach.
func (a *analyzer) routes() {
	for _, r := range a.c.HTTPRoutes {
		rt := route{kind: "HTTPRoute", r: &r.Route, res: resource(r.Source), http: r}
		places := a.parents(rt)
		for i, rule := range r.Rules {
			path := index("spec.rules", i)
			a.backends(rt, path, rule.Backends)
			a.ruleFilters(rt, path, rule.Filters, rule.Backends)
			a.recordAttachments(r, i, places)
		}
	}
	for _, r := range a.c.GRPCRoutes {
		rt := route{kind: "GRPCRoute", r: &r.Route, res: resource(r.Source)}
		a.parents(rt)
		for i, rule := range r.Rules {
			path := index("spec.rules", i)
			a.backends(rt, path, rule.Backends)
			a.ruleFilters(rt, path, rule.Filters, rule.Backends)
		}
	}
	for _, r := range a.c.TLSRoutes {
		rt := route{kind: "TLSRoute", r: &r.Route, res: resource(r.Source)}
		a.recordL4(rt, a.parents(rt))
		for i, rule := range r.Rules {
			a.backends(rt, index("spec.rules", i), rule.Backends)
		}
	}
	for _, r := range a.c.TCPRoutes {
		rt := route{kind: "TCPRoute", r: &r.Route, res: resource(r.Source)}
		a.recordL4(rt, a.parents(rt))
		for i, rule := range r.Rules {
			a.backends(rt, index("spec.rules", i), rule.Backends)
		}
	}
}

// routeKinds are the route kinds Trellis serves.
var routeKinds = []string{"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute"}

// ListenerKinds returns the route kinds listener l admits that Trellis
// serves, and those its allowedRoutes.kinds names that it does not: a
// Gateway's status reports them as supportedKinds and InvalidRouteKinds.
func ListenerKinds(l *model.Listener) (supported []string, invalid []model.GroupKind) {
	for _, k := range routeKinds {
		if l.AdmitsKind(k) {
			supported = append(supported, k)
		}
	}
	for _, k := range l.AllowedRoutes.Kinds {
		if (k.Group != model.GatewayGroup && k.Group != "") || !slices.Contains(supported, k.Kind) {
			invalid = append(invalid, k)
		}
	}
	return supported, invalid
}

// parents checks each parentRef of a route and returns, per parentRef,
// the places the route attaches to.
func (a *analyzer) parents(rt route) [][]place {
	out := make([][]place, len(rt.r.Parents))
	for i, p := range rt.r.Parents {
		field := index("spec.parentRefs", i)
		switch p.Kind {
		case model.ParentGateway:
			g := a.gws[p.Key]
			if g == nil {
				a.add(CodeNoParent, rt.res, field, "Gateway %s does not exist", p.Key)
				continue
			}
			var ls []listenerRef
			for j := range g.Listeners {
				ls = append(ls, listenerRef{owner: resource(g.Source), index: j, l: &g.Listeners[j]})
			}
			out[i] = a.attachListeners(rt, i, p, g.Key, g.Namespace, "Gateway "+g.Key.String(), ls)
		case model.ParentListenerSet:
			set := a.listenerSets[p.Key]
			if set == nil {
				a.add(CodeNoParent, rt.res, field, "ListenerSet %s does not exist", p.Key)
				continue
			}
			if !slices.Contains(a.attached[set.Gateway], set) {
				continue // the ListenerSet's own finding says why
			}
			var ls []listenerRef
			for j := range set.Listeners {
				ls = append(ls, listenerRef{owner: resource(set.Source), index: j, l: &set.Listeners[j]})
			}
			out[i] = a.attachListeners(rt, i, p, set.Gateway, set.Namespace, "ListenerSet "+set.Key.String(), ls)
		case model.ParentService:
			out[i] = a.attachService(rt, field, p)
		default:
			a.add(CodeParentKind, rt.res, field, "parent kind %s is not one Trellis attaches routes to", p.Kind)
		}
	}
	return out
}

// attachListeners attaches a route's parentRef pi to the listeners it
// selects, records where (Attachments), and reports why, when it attaches
// to none.
func (a *analyzer) attachListeners(rt route, pi int, p model.ParentRef, gw model.Key, ownerNS, parent string, ls []listenerRef) []place {
	field := index("spec.parentRefs", pi)
	var candidates []listenerRef
	var names []string
	for _, lr := range ls {
		names = append(names, fmt.Sprintf("%s (port %d)", lr.l.Name, lr.l.Port))
		if p.SectionName != "" && lr.l.Name != p.SectionName {
			continue
		}
		if p.Port != 0 && lr.l.Port != p.Port {
			continue
		}
		candidates = append(candidates, lr)
	}
	if len(candidates) == 0 {
		what := []string{}
		if p.SectionName != "" {
			what = append(what, fmt.Sprintf("sectionName %q", p.SectionName))
		}
		if p.Port != 0 {
			what = append(what, fmt.Sprintf("port %d", p.Port))
		}
		a.add(CodeNoListener, rt.res, field, "%s has no listener with %s; its listeners are %s",
			parent, strings.Join(what, " and "), orNone(names))
		return nil
	}
	var places []place
	var nsRejected, kindRejected, hostRejected, hostTaken []string
	for _, lr := range candidates {
		l := lr.l
		hosts, why := model.AttachToListener(rt.kind, rt.r, p, l, ownerNS, a.c.Namespaces)
		switch why {
		case model.RejectKind:
			kindRejected = append(kindRejected, fmt.Sprintf("%q (%s)", l.Name, l.Protocol))
			continue
		case model.RejectSelectorUnknown:
			a.add(CodeSelectorUnkn, rt.res, field, "listener %q of %s admits routes by namespace selector, and the labels of namespace %s are unknown",
				l.Name, parent, rt.r.Namespace)
			continue
		case model.RejectNamespace:
			nsRejected = append(nsRejected, fmt.Sprintf("%q (from %s)", l.Name, l.AllowedRoutes.Namespaces.From))
			continue
		case model.RejectHostname:
			hostRejected = append(hostRejected, fmt.Sprintf("%q (hostname %s)", l.Name, l.Hostname))
			continue
		}
		a.attachedTo = append(a.attachedTo, Attachment{Route: rt.res, ParentRef: pi, Listener: lr.owner, ListenerIndex: lr.index})
		for _, h := range hosts {
			if model.HasHostnames(l.Protocol) {
				if best, _ := model.MostSpecificListener(a.portHostnames(gw, l), h); best != l.Hostname {
					// A more specific listener of the port serves h: the
					// route does not, whatever it asks for.
					hostTaken = append(hostTaken, fmt.Sprintf("%s (on listener %q)", h, l.Name))
					continue
				}
			}
			places = append(places, place{
				key:      fmt.Sprintf("gateway %s port %d host %s", gw, l.Port, h),
				describe: fmt.Sprintf("%s listener %q", parent, l.Name),
				host:     h,
			})
		}
	}
	if len(hostTaken) > 0 {
		a.add(CodeHostTaken, rt.res, field, "the route's hostnames %s are served by more specific listeners of %s: requests for them do not reach this route",
			strings.Join(hostTaken, ", "), parent)
	}
	if len(places) == 0 {
		switch {
		case len(hostRejected) > 0:
			a.add(CodeNoHostname, rt.res, field, "no hostname of the route (%s) is served by listener %s of %s",
				orNone(rt.r.Hostnames), strings.Join(hostRejected, ", "), parent)
		case len(nsRejected) > 0:
			a.add(CodeNotAllowedNS, rt.res, field, "listener %s of %s does not admit routes from namespace %s",
				strings.Join(nsRejected, ", "), parent, rt.r.Namespace)
		case len(kindRejected) > 0:
			a.add(CodeNotAllowedKin, rt.res, field, "listener %s of %s does not admit %ss",
				strings.Join(kindRejected, ", "), parent, rt.kind)
		}
	}
	return places
}

// portHostnames are the hostnames of the listeners of Gateway gw (and of
// the ListenerSets attached to it) that share l's port and transport.
func (a *analyzer) portHostnames(gw model.Key, l *model.Listener) []string {
	var out []string
	add := func(ls []model.Listener) {
		for i := range ls {
			if ls[i].Port == l.Port && model.Transport(ls[i].Protocol) == model.Transport(l.Protocol) {
				out = append(out, ls[i].Hostname)
			}
		}
	}
	if g := a.gws[gw]; g != nil {
		add(g.Listeners)
	}
	for _, set := range a.attached[gw] {
		add(set.Listeners)
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// attachService checks a mesh (GAMMA) parentRef to a Service.
func (a *analyzer) attachService(rt route, field string, p model.ParentRef) []place {
	s := a.ix.Service(p.Key)
	if s == nil {
		a.add(CodeNoParentSvc, rt.res, field, "Service %s does not exist", p.Key)
		return nil
	}
	var places []place
	var ports []string
	for _, sp := range s.Ports {
		ports = append(ports, fmt.Sprintf("%d", sp.Port))
		if p.Port != 0 && sp.Port != p.Port || p.SectionName != "" && sp.Name != p.SectionName {
			continue
		}
		http := rt.kind == "HTTPRoute" || rt.kind == "GRPCRoute"
		if http != sp.Protocol.IsHTTP() {
			a.add(CodePortProtocol, rt.res, field, "port %d of Service %s is %s; routes of kind %s do not apply to it",
				sp.Port, s.Key, sp.Protocol, rt.kind)
			continue
		}
		// A route of another namespace than the Service's is a consumer
		// route (GEP-1294): it applies to its own namespace's calls only,
		// so it overlaps only with routes of that namespace.
		pl := place{
			key:      fmt.Sprintf("service %s port %d", s.Key, sp.Port),
			describe: fmt.Sprintf("Service %s port %d", s.Key, sp.Port),
		}
		if ns := rt.r.Namespace; ns != s.Namespace {
			pl.key += " from " + ns
			pl.describe += " for callers in namespace " + ns
		}
		places = append(places, pl)
	}
	if len(places) == 0 && (p.Port != 0 || p.SectionName != "") {
		matched := false
		for _, sp := range s.Ports {
			if (p.Port == 0 || sp.Port == p.Port) && (p.SectionName == "" || sp.Name == p.SectionName) {
				matched = true
			}
		}
		if !matched {
			a.add(CodeNoParentSvc, rt.res, field, "Service %s has no port %s; its ports are %s", s.Key, servicePortName(p), orNone(ports))
		}
	}
	return places
}

func servicePortName(p model.ParentRef) string {
	if p.SectionName != "" {
		return fmt.Sprintf("%q", p.SectionName)
	}
	return fmt.Sprintf("%d", p.Port)
}

// backends checks the backends of one rule.
func (a *analyzer) backends(rt route, rulePath string, bs []model.Backend) {
	total := uint32(0)
	for k, b := range bs {
		a.backend(rt, fmt.Sprintf("%s.backendRefs[%d]", rulePath, k), b)
		total += b.Weight
	}
	if len(bs) > 0 && total == 0 {
		a.add(CodeZeroWeights, rt.res, rulePath+".backendRefs", "all %d backends have weight 0: every request matching the rule gets 500", len(bs))
	}
}

// backend checks one backend reference.
func (a *analyzer) backend(rt route, field string, b model.Backend) {
	if !b.IsService() {
		a.add(CodeBackendKind, rt.res, field, "backend %s %s: Trellis sends only to Services", b.Kind, b.Service)
		return
	}
	to := model.Ref{Kind: "Service", Key: b.Service}
	if !rt.r.MeshOnly() && !a.granted(rt.groupKind(), rt.r.Namespace, to) {
		a.add(CodeNoGrant, rt.res, field, "Service %s is in another namespace and no ReferenceGrant in %s allows %ss from %s to use it",
			b.Service, b.Service.Namespace, rt.kind, rt.r.Namespace)
	}
	s := a.ix.Service(b.Service)
	if s == nil {
		a.add(CodeNoBackend, rt.res, field, "Service %s does not exist", b.Service)
		return
	}
	if s.ExternalName != "" && len(s.Ports) == 0 {
		return
	}
	if b.Port == 0 {
		a.add(CodeNoBackendPort, rt.res, field+".port", "a Service backend needs a port; Service %s has %s", s.Key, portList(s))
		return
	}
	if _, ok := s.Port(b.Port); !ok {
		a.add(CodeNoBackendPort, rt.res, field+".port", "Service %s has no port %d; it has %s", s.Key, b.Port, portList(s))
	}
}

func portList(s *model.Service) string {
	var ports []string
	for _, p := range s.Ports {
		ports = append(ports, fmt.Sprintf("%d", p.Port))
	}
	if len(ports) == 0 {
		return "no ports"
	}
	return "port " + strings.Join(ports, ", ")
}

// ruleFilters checks the filters of a rule and of its backends.
func (a *analyzer) ruleFilters(rt route, rulePath string, fs []model.HTTPFilter, backends []model.Backend) {
	a.httpFilters(rt, rulePath+".filters", fs, false)
	for k, b := range backends {
		a.httpFilters(rt, fmt.Sprintf("%s.backendRefs[%d].filters", rulePath, k), b.Filters, true)
	}
}

// httpFilters checks filters: their mirror backends, and what the data
// plane cannot apply (the rule would answer 500). onBackend is set for
// the filters of a backendRef.
func (a *analyzer) httpFilters(rt route, path string, fs []model.HTTPFilter, onBackend bool) {
	for i, f := range fs {
		field := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case f.Type == model.FilterExtensionRef:
			what := "an ExtensionRef"
			if r := f.ExtensionRef; r != nil {
				what = fmt.Sprintf("ExtensionRef %s %s", r.GroupKind(), r.Name)
			}
			a.add(CodeExtensionRef, rt.res, field+".extensionRef", "%s: ExtensionRef filters are not supported; requests matching the rule get 500", what)
			continue
		case onBackend && f.Type != model.FilterRequestHeaderModifier && f.Type != model.FilterResponseHeaderModifier:
			a.add(CodeBackendFilter, rt.res, field, "a %s filter on a backendRef is not supported; requests matching the rule get 500", f.Type)
			continue
		}
		for _, m := range []*model.HeaderModifier{f.RequestHeaders, f.ResponseHeaders} {
			if name := m.HostHeader(); name != "" {
				a.add(CodeHostHeader, rt.res, field, "header %s cannot be changed by a header modifier; requests matching the rule get 500", name)
			}
		}
		if f.Mirror != nil {
			a.backend(rt, field+".requestMirror.backendRef", f.Mirror.Backend)
		}
	}
}
