package resource

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/model"
)

// Model converts objects into the normalized model, sorted. It expects
// defaulted, validated objects, but reads unset Gateway API fields with
// their default meaning (a rule without matches matches every request) and
// an empty namespace as "default".
//
// Services, Workloads, Gateways and HTTPRoutes are converted; the other
// kinds are not in the model yet and are skipped. An object that cannot be
// converted (a listener protocol or backend kind Trellis does not support,
// a second object with the same kind and name, ...) is left out and its
// problems are returned, joined, as *Error; the others are still converted.
func Model(objs []*Object) (*model.Config, error) {
	c := &model.Config{}
	var errs []error
	first := make(map[string]*Object)
	for _, o := range objs {
		if o == nil || o.Obj == nil {
			continue
		}
		meta, ok := o.Obj.(metav1.Object)
		if !ok {
			continue
		}
		switch o.Obj.(type) {
		case *corev1.Service, *v1alpha1.Workload, *gwv1.Gateway, *gwv1.HTTPRoute:
		default:
			continue
		}
		conv := converter{o: o, meta: meta, key: objectKey(o, meta)}
		id := o.Kind + " " + conv.key.String()
		if prev, dup := first[id]; dup {
			where := ""
			if prev.File != "" {
				where = fmt.Sprintf(" (first in %s:%d)", prev.File, prev.Line)
			}
			errs = append(errs, o.errorf("metadata.name", fmt.Sprintf("duplicate %s %s%s", o.Kind, conv.key, where)))
			continue
		}
		first[id] = o
		switch obj := o.Obj.(type) {
		case *corev1.Service:
			if s := conv.service(obj); conv.ok() {
				c.Services = append(c.Services, s)
			}
		case *v1alpha1.Workload:
			if w := conv.workload(obj); conv.ok() {
				c.Workloads = append(c.Workloads, w)
			}
		case *gwv1.Gateway:
			if g := conv.gateway(obj); conv.ok() {
				c.Gateways = append(c.Gateways, g)
			}
		case *gwv1.HTTPRoute:
			if r := conv.httpRoute(obj); conv.ok() {
				c.HTTPRoutes = append(c.HTTPRoutes, r)
			}
		}
		errs = append(errs, conv.errs...)
	}
	c.Sort()
	return c, errors.Join(errs...)
}

func objectKey(o *Object, meta metav1.Object) model.Key {
	ns := o.Namespace
	if ns == "" {
		ns = meta.GetNamespace()
	}
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	return model.Key{Namespace: ns, Name: meta.GetName()}
}

// converter converts one object, collecting its errors.
type converter struct {
	o    *Object
	meta metav1.Object
	key  model.Key
	errs []error
}

func (c *converter) ok() bool { return len(c.errs) == 0 }

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

// port converts a port number, reporting one out of 1-65535.
func (c *converter) port(field string, p int32) uint32 {
	if p < 1 || p > 65535 {
		c.errorf(field, "port %d is out of range 1-65535", p)
		return 0
	}
	return uint32(p)
}

func (c *converter) service(svc *corev1.Service) *model.Service {
	s := &model.Service{
		Key:      c.key,
		Source:   c.source(),
		Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	// Without a selector, Kubernetes endpoints are managed by hand; here
	// the members are the workloads that name the service.
	if len(svc.Spec.Selector) > 0 {
		s.Selector = maps.Clone(svc.Spec.Selector)
	}
	for i, p := range svc.Spec.Ports {
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
			sp.Protocol = servicePortProtocol(p.Name, p.AppProtocol)
		case corev1.ProtocolUDP:
			sp.Protocol = model.ProtocolUDP
		default:
			c.errorf(path+".protocol", "protocol %s is not supported; use TCP or UDP", p.Protocol)
		}
		s.Ports = append(s.Ports, sp)
	}
	return s
}

// servicePortProtocol tells the application protocol of a TCP service
// port: appProtocol when set, else the port name's prefix, Istio-style
// ("http", "http-web", "grpc-api": the part before the first "-"), else
// TCP.
func servicePortProtocol(name string, appProtocol *string) model.Protocol {
	if appProtocol != nil && *appProtocol != "" {
		switch strings.ToLower(*appProtocol) {
		case "http":
			return model.ProtocolHTTP
		case "http2", "h2c", "kubernetes.io/h2c":
			return model.ProtocolHTTP2
		case "grpc":
			return model.ProtocolGRPC
		case "https":
			return model.ProtocolHTTPS
		case "tls":
			return model.ProtocolTLS
		}
		return model.ProtocolTCP
	}
	name = strings.ToLower(name)
	if name == "grpc-web" || strings.HasPrefix(name, "grpc-web-") {
		return model.ProtocolHTTP // gRPC-Web is HTTP/1.1-compatible
	}
	prefix, _, _ := strings.Cut(name, "-")
	switch prefix {
	case "http":
		return model.ProtocolHTTP
	case "http2":
		return model.ProtocolHTTP2
	case "grpc":
		return model.ProtocolGRPC
	case "https":
		return model.ProtocolHTTPS
	case "tls":
		return model.ProtocolTLS
	}
	return model.ProtocolTCP
}

// workloadProtocols are the protocols a Workload port may declare.
var workloadProtocols = []model.Protocol{
	model.ProtocolHTTP, model.ProtocolHTTP2, model.ProtocolGRPC, model.ProtocolTLS, model.ProtocolTCP,
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
	}
	if len(wl.Labels) > 0 {
		w.Labels = maps.Clone(wl.Labels)
	}
	if a, err := netip.ParseAddr(spec.Address); err != nil || a.Zone() != "" {
		c.errorf("spec.address", "%q is not an IP address", spec.Address)
	} else {
		w.Address = a.String()
	}
	for i, p := range spec.Ports {
		path := indexPath("spec.ports", i)
		proto := model.Protocol(cmp.Or(p.Protocol, string(model.ProtocolTCP)))
		if !slices.Contains(workloadProtocols, proto) {
			c.errorf(path+".protocol", "unsupported protocol %q; use one of %s", p.Protocol, protocolList(workloadProtocols))
		}
		w.Ports = append(w.Ports, model.WorkloadPort{Name: p.Name, Port: c.port(path+".port", p.Port), Protocol: proto})
	}
	if spec.MeshPort != nil {
		w.MeshPort = c.port("spec.meshPort", *spec.MeshPort)
	}
	return w
}

func protocolList(ps []model.Protocol) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// listenerProtocols maps the Gateway listener protocols Trellis serves.
var listenerProtocols = map[gwv1.ProtocolType]model.Protocol{
	gwv1.HTTPProtocolType:  model.ProtocolHTTP,
	gwv1.HTTPSProtocolType: model.ProtocolHTTPS,
	gwv1.TLSProtocolType:   model.ProtocolTLS,
	gwv1.TCPProtocolType:   model.ProtocolTCP,
	gwv1.UDPProtocolType:   model.ProtocolUDP,
}

func (c *converter) gateway(gw *gwv1.Gateway) *model.Gateway {
	g := &model.Gateway{Key: c.key, Source: c.source(), ClassName: string(gw.Spec.GatewayClassName)}
	for i, l := range gw.Spec.Listeners {
		path := indexPath("spec.listeners", i)
		proto, ok := listenerProtocols[l.Protocol]
		if !ok {
			c.errorf(path+".protocol", "protocol %q is not supported; use HTTP, HTTPS, TLS, TCP or UDP", l.Protocol)
		}
		ml := model.Listener{Name: string(l.Name), Port: c.port(path+".port", l.Port), Protocol: proto}
		if l.Hostname != nil {
			ml.Hostname = string(*l.Hostname)
		}
		g.Listeners = append(g.Listeners, ml)
	}
	return g
}

// refIs reports whether a reference names wantGroup/wantKind, reading an
// unset group or kind as its default and group "core" as "".
func refIs(group *gwv1.Group, kind *gwv1.Kind, defGroup, defKind, wantGroup, wantKind string) bool {
	g, k := defGroup, defKind
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	if g == "core" {
		g = ""
	}
	return g == wantGroup && k == wantKind
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

func (c *converter) httpRoute(hr *gwv1.HTTPRoute) *model.HTTPRoute {
	spec := &hr.Spec
	r := &model.HTTPRoute{Key: c.key, Source: c.source()}
	for i, p := range spec.ParentRefs {
		path := indexPath("spec.parentRefs", i)
		ref := model.ParentRef{Key: model.Key{Namespace: c.key.Namespace, Name: string(p.Name)}}
		switch {
		case refIs(p.Group, p.Kind, gwv1.GroupName, "Gateway", gwv1.GroupName, "Gateway"):
			ref.Kind = model.ParentGateway
		case refIs(p.Group, p.Kind, gwv1.GroupName, "Gateway", "", "Service"):
			ref.Kind = model.ParentService
		default:
			c.errorf(path, "parent %s is not supported; use a Gateway (group gateway.networking.k8s.io) or a Service (group \"\")",
				refName(p.Group, p.Kind, gwv1.GroupName, "Gateway"))
		}
		if p.Namespace != nil && *p.Namespace != "" {
			ref.Namespace = string(*p.Namespace)
		}
		if p.SectionName != nil {
			ref.SectionName = string(*p.SectionName)
		}
		if p.Port != nil {
			ref.Port = c.port(path+".port", *p.Port)
		}
		r.Parents = append(r.Parents, ref)
	}
	for _, h := range spec.Hostnames {
		r.Hostnames = append(r.Hostnames, string(h))
	}
	rules := spec.Rules
	if len(rules) == 0 {
		rules = []gwv1.HTTPRouteRule{{}}
	}
	for i, rule := range rules {
		path := indexPath("spec.rules", i)
		mr := model.HTTPRouteRule{}
		if rule.Name != nil {
			mr.Name = string(*rule.Name)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		for j, m := range matches {
			mr.Matches = append(mr.Matches, c.httpMatch(indexPath(path+".matches", j), m))
		}
		for j, b := range rule.BackendRefs {
			bpath := indexPath(path+".backendRefs", j)
			if be, ok := c.backend(bpath, b.BackendRef); ok {
				mr.Backends = append(mr.Backends, be)
			}
		}
		r.Rules = append(r.Rules, mr)
	}
	return r
}

func (c *converter) httpMatch(path string, m gwv1.HTTPRouteMatch) model.HTTPMatch {
	mm := model.HTTPMatch{PathType: model.PathPrefix, PathValue: "/"}
	if p := m.Path; p != nil {
		if p.Type != nil {
			switch *p.Type {
			case gwv1.PathMatchExact:
				mm.PathType = model.PathExact
			case gwv1.PathMatchPathPrefix:
				mm.PathType = model.PathPrefix
			case gwv1.PathMatchRegularExpression:
				mm.PathType = model.PathRegularExpression
			default:
				c.errorf(path+".path.type", "unknown path match type %q", *p.Type)
			}
		}
		if p.Value != nil {
			mm.PathValue = *p.Value
		}
	}
	if m.Method != nil {
		mm.Method = string(*m.Method)
	}
	for k, h := range m.Headers {
		mm.Headers = append(mm.Headers, c.valueMatch(indexPath(path+".headers", k), (*string)(h.Type), string(h.Name), h.Value))
	}
	for k, q := range m.QueryParams {
		mm.Query = append(mm.Query, c.valueMatch(indexPath(path+".queryParams", k), (*string)(q.Type), string(q.Name), q.Value))
	}
	return mm
}

func (c *converter) valueMatch(path string, typ *string, name, value string) model.ValueMatch {
	vm := model.ValueMatch{Type: model.MatchExact, Name: name, Value: value}
	if typ != nil {
		switch *typ {
		case "Exact":
			vm.Type = model.MatchExact
		case "RegularExpression":
			vm.Type = model.MatchRegularExpression
		default:
			c.errorf(path+".type", "unknown match type %q", *typ)
		}
	}
	return vm
}

func (c *converter) backend(path string, b gwv1.BackendRef) (model.Backend, bool) {
	if !refIs(b.Group, b.Kind, "", "Service", "", "Service") {
		c.errorf(path, "backend %s is not supported; Trellis routes to Services", refName(b.Group, b.Kind, "", "Service"))
		return model.Backend{}, false
	}
	be := model.Backend{Service: model.Key{Namespace: c.key.Namespace, Name: string(b.Name)}, Weight: 1}
	if b.Namespace != nil && *b.Namespace != "" {
		be.Service.Namespace = string(*b.Namespace)
	}
	if b.Port == nil {
		c.errorf(path+".port", "required for a Service backend")
		return model.Backend{}, false
	}
	be.Port = c.port(path+".port", *b.Port)
	if b.Weight != nil {
		if *b.Weight < 0 {
			c.errorf(path+".weight", "must not be negative")
			return model.Backend{}, false
		}
		be.Weight = uint32(*b.Weight)
	}
	return be, true
}
