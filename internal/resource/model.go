package resource

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/model"
)

// Model converts objects into the normalized model, sorted. Every kind the
// model has is converted: GatewayClass, Gateway, ListenerSet, HTTPRoute,
// GRPCRoute, TLSRoute, TCPRoute, ReferenceGrant, Service, Workload,
// MTLSPolicy, AccessPolicy and BackendPolicy; the others (BackendTLSPolicy)
// are skipped. Config.Namespaces stays nil: no source of namespace labels
// is read here.
//
// The conversion is faithful, so that the analyzer can judge what was
// written and point at it:
//
//   - Every model slice that mirrors a list of the resource has its length
//     and order, so a model index is the index of the field path
//     (spec.rules[2].backendRefs[1]). Nothing is dropped: a parent or
//     backend of a kind Trellis does not serve keeps its place with Kind
//     "Kind.group", a Service backend without port has Port 0, a rule
//     without matches keeps no matches and a route without rules none.
//   - Objects may or may not have been through Default: an unset field
//     reads as the Gateway API (or Trellis) default, and an empty
//     namespace as "default".
//   - Whether references resolve, kinds and protocols are supported or
//     weights make sense is the analyzer's business, not an error here.
//
// An object that cannot be represented at all (a second object with the
// same kind and name, a duration or number that does not parse, a
// ListenerSet whose parent is not a Gateway) is left out and its problems
// are returned, joined, as *Error; the others are still converted.
func Model(objs []*Object) (*model.Config, error) { return modelOf(objs, nil) }

// modelOf is Model, taking each object's conversion from mc when it has it.
func modelOf(objs []*Object, mc *ModelCache) (*model.Config, error) {
	cfg := &model.Config{}
	var errs []error
	first := make(map[string]*Object)
	for _, o := range objs {
		if o == nil || o.Obj == nil || !inModel(o.Obj) {
			continue
		}
		meta, ok := o.Obj.(metav1.Object)
		if !ok {
			continue
		}
		key := objectKey(o, meta)
		name := ref(o.Kind, key.Namespace, key.Name)
		if prev, dup := first[name]; dup {
			where := ""
			if prev.File != "" {
				where = fmt.Sprintf(" (first in %s:%d)", prev.File, prev.Line)
			}
			errs = append(errs, o.errorf("metadata.name", fmt.Sprintf("duplicate %s%s", name, where)))
			continue
		}
		first[name] = o
		if mc == nil {
			c := &converter{o: o, meta: meta, key: key}
			c.convert(cfg)
			errs = append(errs, c.errs...)
			continue
		}
		one := mc.convert(o, meta, key)
		appendConfig(cfg, one.cfg)
		errs = append(errs, one.errs...)
	}
	cfg.Sort()
	return cfg, errors.Join(errs...)
}

// inModel reports whether obj is of a kind the model has.
func inModel(obj any) bool {
	switch obj.(type) {
	case *gwv1.GatewayClass, *gwv1.Gateway, *gwv1.ListenerSet,
		*gwv1.HTTPRoute, *gwv1.GRPCRoute, *gwv1.TLSRoute, *gwv1.TCPRoute, *gwv1.ReferenceGrant,
		*corev1.Service, *v1alpha1.Workload,
		*v1alpha1.MTLSPolicy, *v1alpha1.AccessPolicy, *v1alpha1.BackendPolicy:
		return true
	}
	return false
}

// objectKey names the object: no namespace for the cluster-scoped
// GatewayClass, "default" for a namespaced object without one.
func objectKey(o *Object, meta metav1.Object) model.Key {
	if _, ok := o.Obj.(*gwv1.GatewayClass); ok {
		return model.Key{Name: meta.GetName()}
	}
	ns := cmp.Or(o.Namespace, meta.GetNamespace(), metav1.NamespaceDefault)
	return model.Key{Namespace: ns, Name: meta.GetName()}
}

// converter converts one object, collecting its errors.
type converter struct {
	o    *Object
	meta metav1.Object
	key  model.Key
	errs []error
}

// convert adds the object to cfg unless it could not be converted.
func (c *converter) convert(cfg *model.Config) {
	switch obj := c.o.Obj.(type) {
	case *gwv1.GatewayClass:
		keep(c, &cfg.GatewayClasses, c.gatewayClass(obj))
	case *gwv1.Gateway:
		keep(c, &cfg.Gateways, c.gateway(obj))
	case *gwv1.ListenerSet:
		keep(c, &cfg.ListenerSets, c.listenerSet(obj))
	case *gwv1.HTTPRoute:
		keep(c, &cfg.HTTPRoutes, c.httpRoute(obj))
	case *gwv1.GRPCRoute:
		keep(c, &cfg.GRPCRoutes, c.grpcRoute(obj))
	case *gwv1.TLSRoute:
		keep(c, &cfg.TLSRoutes, c.tlsRoute(obj))
	case *gwv1.TCPRoute:
		keep(c, &cfg.TCPRoutes, c.tcpRoute(obj))
	case *gwv1.ReferenceGrant:
		keep(c, &cfg.ReferenceGrants, c.referenceGrant(obj))
	case *corev1.Service:
		keep(c, &cfg.Services, c.service(obj))
	case *v1alpha1.Workload:
		keep(c, &cfg.Workloads, c.workload(obj))
	case *v1alpha1.MTLSPolicy:
		keep(c, &cfg.MTLSPolicies, c.mtlsPolicy(obj))
	case *v1alpha1.AccessPolicy:
		keep(c, &cfg.AccessPolicies, c.accessPolicy(obj))
	case *v1alpha1.BackendPolicy:
		keep(c, &cfg.BackendPolicies, c.backendPolicy(obj))
	}
}

// keep appends v to s when its object converted without errors.
func keep[T any](c *converter, s *[]T, v T) {
	if len(c.errs) == 0 {
		*s = append(*s, v)
	}
}

func (c *converter) errorf(field, format string, args ...any) {
	c.errs = append(c.errs, c.o.errorf(field, fmt.Sprintf(format, args...)))
}

func (c *converter) source() model.Source {
	s := model.Source{
		Kind:       c.o.Kind,
		Key:        c.key,
		File:       c.o.File,
		Line:       c.o.Line,
		Generation: c.meta.GetGeneration(),
	}
	if ts := c.meta.GetCreationTimestamp(); !ts.IsZero() {
		s.CreationUnix = ts.Unix()
	}
	return s
}

// convertAll converts each element of in, keeping length and order; nil
// for an empty list.
func convertAll[T, U any](in []T, f func(i int, v T) U) []U {
	if len(in) == 0 {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(i, v)
	}
	return out
}

func strs[T ~string](in []T) []string {
	return convertAll(in, func(_ int, s T) string { return string(s) })
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Numbers and durations.

// port converts a port number, reporting one out of 1-65535.
func (c *converter) port(field string, p int32) uint32 {
	if p < 1 || p > 65535 {
		c.errorf(field, "port %d is out of range 1-65535", p)
		return 0
	}
	return uint32(p)
}

// count converts a count that is zero when unset, reporting a negative one.
func (c *converter) count(field string, n *int32) uint32 {
	if n == nil {
		return 0
	}
	return c.unsigned(field, *n)
}

func (c *converter) unsigned(field string, n int32) uint32 {
	if n < 0 {
		c.errorf(field, "must not be negative")
		return 0
	}
	return uint32(n)
}

// gatewayDurationRE is the Gateway API duration format (GEP-2257).
var gatewayDurationRE = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// duration parses a Gateway API duration; unset or empty is zero.
func (c *converter) duration(field string, d *gwv1.Duration) time.Duration {
	if d == nil || *d == "" {
		return 0
	}
	var v time.Duration
	err := errors.New("bad format")
	if gatewayDurationRE.MatchString(string(*d)) {
		v, err = time.ParseDuration(string(*d))
	}
	if err != nil {
		c.errorf(field, "invalid duration %q: use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms", *d)
		return 0
	}
	return v
}

// References.

// refIs reports whether a reference names wantGroup/wantKind, reading an
// unset group or kind as its default and group "core" as "".
func refIs(group *gwv1.Group, kind *gwv1.Kind, defGroup, defKind, wantGroup, wantKind string) bool {
	return groupKind(group, kind, defGroup, defKind) == model.GroupKind{Group: wantGroup, Kind: wantKind}
}

// refName formats a reference's kind as Kind or Kind.group.
func refName(group *gwv1.Group, kind *gwv1.Kind, defGroup, defKind string) string {
	g, k := defGroup, defKind
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	if g == "" {
		return k
	}
	return k + "." + g
}

// groupKind reads a reference's group and kind, unset ones as their
// defaults, and the core group "core" as "".
func groupKind(group *gwv1.Group, kind *gwv1.Kind, defGroup, defKind string) model.GroupKind {
	gk := model.GroupKind{Group: defGroup, Kind: defKind}
	if group != nil {
		gk.Group = string(*group)
	}
	if kind != nil {
		gk.Kind = string(*kind)
	}
	if gk.Group == "core" {
		gk.Group = ""
	}
	return gk
}

var serviceKind = model.GroupKind{Kind: "Service"}

// namespace returns a reference's namespace, the object's own when unset.
func (c *converter) namespace(ns *gwv1.Namespace) string {
	if ns == nil || *ns == "" {
		return c.key.Namespace
	}
	return string(*ns)
}

// objectRef converts a reference to any kind in any namespace.
func (c *converter) objectRef(group *gwv1.Group, kind *gwv1.Kind, ns *gwv1.Namespace, name gwv1.ObjectName, defGroup, defKind string) model.Ref {
	gk := groupKind(group, kind, defGroup, defKind)
	return model.Ref{Group: gk.Group, Kind: gk.Kind, Key: model.Key{Namespace: c.namespace(ns), Name: string(name)}}
}

// localRef converts a reference to an object in the same namespace.
func (c *converter) localRef(r gwv1.LocalObjectReference) model.Ref {
	return c.objectRef(&r.Group, &r.Kind, nil, r.Name, "", "")
}

// targetRefs converts policy targetRefs.
func targetRefs(refs []gwv1.LocalPolicyTargetReference) []model.TargetRef {
	return convertAll(refs, func(_ int, r gwv1.LocalPolicyTargetReference) model.TargetRef {
		return model.TargetRef{GroupKind: groupKind(&r.Group, &r.Kind, "", ""), Name: string(r.Name)}
	})
}

// selector converts a label selector; nil stays nil.
func selector(s *metav1.LabelSelector) *model.Selector {
	if s == nil {
		return nil
	}
	out := &model.Selector{}
	if len(s.MatchLabels) > 0 {
		out.MatchLabels = maps.Clone(s.MatchLabels)
	}
	out.Expressions = convertAll(s.MatchExpressions, func(_ int, r metav1.LabelSelectorRequirement) model.SelectorRequirement {
		return model.SelectorRequirement{Key: r.Key, Operator: string(r.Operator), Values: slices.Clone(r.Values)}
	})
	return out
}

// Service and Workload.

func (c *converter) service(svc *corev1.Service) *model.Service {
	s := &model.Service{
		Key:      c.key,
		Source:   c.source(),
		Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	if !s.Headless {
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if _, err := netip.ParseAddr(ip); err == nil {
				s.ClusterIPs = append(s.ClusterIPs, ip)
			}
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		s.ExternalName = svc.Spec.ExternalName
	}
	// Without a selector, Kubernetes endpoints are managed by hand; here
	// the members are the workloads that name the service.
	if len(svc.Spec.Selector) > 0 {
		s.Selector = maps.Clone(svc.Spec.Selector)
	}
	s.Ports = convertAll(svc.Spec.Ports, func(i int, p corev1.ServicePort) model.ServicePort {
		path := indexPath("spec.ports", i)
		sp := model.ServicePort{Name: p.Name, Port: c.port(path+".port", p.Port)}
		switch p.TargetPort.Type {
		case intstr.Int:
			if p.TargetPort.IntVal != 0 {
				sp.TargetPort = c.port(path+".targetPort", p.TargetPort.IntVal)
			}
		case intstr.String:
			sp.TargetPortName = p.TargetPort.StrVal
		}
		switch p.Protocol {
		case "", corev1.ProtocolTCP:
			sp.Protocol, sp.ProtocolDeclared = servicePortProtocol(p.Name, p.AppProtocol)
		default: // UDP, or SCTP which Trellis does not serve
			sp.Protocol, sp.ProtocolDeclared = model.Protocol(p.Protocol), true
		}
		return sp
	})
	return s
}

// servicePortProtocol tells the application protocol of a TCP service
// port and whether it was declared: appProtocol when set, else the port
// name's prefix, Istio-style ("http", "http-web", "grpc-api": the part
// before the first "-"), else TCP, undeclared. An appProtocol Trellis does
// not know is TCP, undeclared.
func servicePortProtocol(name string, appProtocol *string) (model.Protocol, bool) {
	if appProtocol != nil && *appProtocol != "" {
		switch strings.ToLower(*appProtocol) {
		case "http":
			return model.ProtocolHTTP, true
		case "http2", "h2c", "kubernetes.io/h2c":
			return model.ProtocolHTTP2, true
		case "grpc":
			return model.ProtocolGRPC, true
		case "https":
			return model.ProtocolHTTPS, true
		case "tls":
			return model.ProtocolTLS, true
		case "tcp":
			return model.ProtocolTCP, true
		}
		return model.ProtocolTCP, false
	}
	name = strings.ToLower(name)
	if name == "grpc-web" || strings.HasPrefix(name, "grpc-web-") {
		return model.ProtocolHTTP, true // gRPC-Web is HTTP/1.1-compatible
	}
	prefix, _, _ := strings.Cut(name, "-")
	switch prefix {
	case "http":
		return model.ProtocolHTTP, true
	case "http2":
		return model.ProtocolHTTP2, true
	case "grpc":
		return model.ProtocolGRPC, true
	case "https":
		return model.ProtocolHTTPS, true
	case "tls":
		return model.ProtocolTLS, true
	case "tcp":
		return model.ProtocolTCP, true
	}
	return model.ProtocolTCP, false
}

func (c *converter) workload(wl *v1alpha1.Workload) *model.Workload {
	spec := &wl.Spec
	w := &model.Workload{
		Key:            c.key,
		Source:         c.source(),
		Address:        spec.Address,
		ServiceAccount: cmp.Or(spec.ServiceAccount, "default"),
		Services:       slices.Clone(spec.Services),
		Locality:       spec.Locality,
		Network:        wl.Labels[model.NetworkLabel],
	}
	if len(wl.Labels) > 0 {
		w.Labels = maps.Clone(wl.Labels)
	}
	if a, err := netip.ParseAddr(spec.Address); err == nil && a.Zone() == "" {
		w.Address = a.String()
	}
	w.Ports = convertAll(spec.Ports, func(i int, p v1alpha1.WorkloadPort) model.WorkloadPort {
		return model.WorkloadPort{
			Name:     p.Name,
			Port:     c.port(indexPath("spec.ports", i)+".port", p.Port),
			Protocol: model.Protocol(cmp.Or(p.Protocol, string(model.ProtocolTCP))),
		}
	})
	if spec.MeshPort != nil {
		w.MeshPort = c.port("spec.meshPort", *spec.MeshPort)
	}
	return w
}

// GatewayClass, Gateway and ListenerSet.

func (c *converter) gatewayClass(gc *gwv1.GatewayClass) *model.GatewayClass {
	return &model.GatewayClass{Name: c.key.Name, Source: c.source(), ControllerName: string(gc.Spec.ControllerName)}
}

func (c *converter) gateway(gw *gwv1.Gateway) *model.Gateway {
	spec := &gw.Spec
	g := &model.Gateway{
		Key:       c.key,
		Source:    c.source(),
		ClassName: string(spec.GatewayClassName),
		Addresses: convertAll(spec.Addresses, func(_ int, a gwv1.GatewaySpecAddress) string { return a.Value }),
		Network:   gw.Labels[model.NetworkLabel],
	}
	g.Listeners = convertAll(spec.Listeners, func(i int, l gwv1.Listener) model.Listener {
		return c.listener(indexPath("spec.listeners", i), l.Name, l.Hostname, l.Port, l.Protocol, l.TLS, l.AllowedRoutes)
	})
	// allowedListeners defaults to namespaces from None.
	if al := spec.AllowedListeners; al != nil && al.Namespaces != nil && al.Namespaces.From != nil && *al.Namespaces.From != gwv1.NamespacesFromNone {
		g.AllowListenerSets = &model.NamespaceFilter{From: model.From(*al.Namespaces.From), Selector: selector(al.Namespaces.Selector)}
	}
	g.ServiceType, g.ServiceTypeField = gatewayServiceType(gw)
	if inf := spec.Infrastructure; inf != nil && inf.ParametersRef != nil {
		p := inf.ParametersRef
		g.ParametersRef = fmt.Sprintf("%s.%s/%s", p.Kind, p.Group, p.Name)
	}
	return g
}

// gatewayServiceType reads the Service type a Gateway asks for, and
// where: spec.infrastructure.annotations first, then the Gateway's own.
func gatewayServiceType(gw *gwv1.Gateway) (typ, field string) {
	if inf := gw.Spec.Infrastructure; inf != nil {
		if v, ok := inf.Annotations[gwv1.AnnotationKey(model.ServiceTypeAnnotation)]; ok {
			return string(v), "spec.infrastructure.annotations[" + model.ServiceTypeAnnotation + "]"
		}
	}
	if v, ok := gw.Annotations[model.ServiceTypeAnnotation]; ok {
		return v, "metadata.annotations[" + model.ServiceTypeAnnotation + "]"
	}
	return "", ""
}

func (c *converter) listenerSet(ls *gwv1.ListenerSet) *model.ListenerSet {
	spec := &ls.Spec
	p := spec.ParentRef
	if !refIs(p.Group, p.Kind, gwv1.GroupName, "Gateway", gwv1.GroupName, "Gateway") {
		c.errorf("spec.parentRef", "parent %s cannot be represented; a ListenerSet attaches to a Gateway (group gateway.networking.k8s.io)",
			groupKind(p.Group, p.Kind, gwv1.GroupName, "Gateway"))
	}
	s := &model.ListenerSet{
		Key:     c.key,
		Source:  c.source(),
		Gateway: model.Key{Namespace: c.namespace(p.Namespace), Name: string(p.Name)},
	}
	s.Listeners = convertAll(spec.Listeners, func(i int, l gwv1.ListenerEntry) model.Listener {
		return c.listener(indexPath("spec.listeners", i), l.Name, l.Hostname, l.Port, l.Protocol, l.TLS, l.AllowedRoutes)
	})
	return s
}

// listener converts a Gateway listener or a ListenerSet entry. The
// protocol is kept as written: HTTP, HTTPS, TLS, TCP and UDP are the
// model's protocols of the same name.
func (c *converter) listener(path string, name gwv1.SectionName, hostname *gwv1.Hostname, port int32, protocol gwv1.ProtocolType,
	tls *gwv1.ListenerTLSConfig, allowed *gwv1.AllowedRoutes) model.Listener {
	l := model.Listener{
		Name:     string(name),
		Port:     c.port(path+".port", port),
		Protocol: model.Protocol(protocol),
		Hostname: string(deref(hostname)),
		AllowedRoutes: model.AllowedRoutes{
			Namespaces: model.NamespaceFilter{From: model.FromSame},
		},
	}
	if tls != nil {
		l.TLS = &model.ListenerTLS{
			Mode: model.TLSTerminate,
			CertificateRefs: convertAll(tls.CertificateRefs, func(_ int, r gwv1.SecretObjectReference) model.Ref {
				return c.objectRef(r.Group, r.Kind, r.Namespace, r.Name, "", "Secret")
			}),
		}
		if tls.Mode != nil {
			l.TLS.Mode = model.TLSMode(*tls.Mode)
		}
		for k, v := range tls.Options {
			if l.TLS.Options == nil {
				l.TLS.Options = map[string]string{}
			}
			l.TLS.Options[string(k)] = string(v)
		}
	}
	if allowed != nil {
		if ns := allowed.Namespaces; ns != nil {
			if ns.From != nil {
				l.AllowedRoutes.Namespaces.From = model.From(*ns.From)
			}
			l.AllowedRoutes.Namespaces.Selector = selector(ns.Selector)
		}
		l.AllowedRoutes.Kinds = convertAll(allowed.Kinds, func(_ int, k gwv1.RouteGroupKind) model.GroupKind {
			return groupKind(k.Group, &k.Kind, gwv1.GroupName, "")
		})
	}
	return l
}
