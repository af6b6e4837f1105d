package resource

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
)

// Validate checks one object on its own, structurally: names, required
// fields, ranges, enums and formats. It runs after Default and reports
// every problem at once, joined, as *Error with the field path and (for
// objects read from a file) the line. Whether references resolve and
// resources conflict is the analyzer's business.
func Validate(o *Object) error {
	if o == nil || o.Obj == nil {
		return errors.New("resource: validate: no object")
	}
	v := &validator{o: o}
	if meta, ok := o.Obj.(metav1.Object); ok {
		v.meta(meta)
	}
	switch obj := o.Obj.(type) {
	case *corev1.Service:
		v.service(&obj.Spec)
	case *gwv1.GatewayClass:
		v.required("spec.controllerName", string(obj.Spec.ControllerName))
	case *gwv1.Gateway:
		v.gateway(&obj.Spec)
	case *gwv1.ListenerSet:
		v.listenerSet(&obj.Spec)
	case *gwv1.HTTPRoute:
		v.httpRoute(&obj.Spec)
	case *gwv1.GRPCRoute:
		v.grpcRoute(&obj.Spec)
	case *gwv1.TLSRoute:
		v.parentRefs(obj.Spec.ParentRefs)
		v.hostnames("spec.hostnames", obj.Spec.Hostnames)
		if len(obj.Spec.Hostnames) == 0 {
			v.add("spec.hostnames", "must have at least one hostname")
		}
		v.l4Rules(len(obj.Spec.Rules), func(i int) []gwv1.BackendRef { return obj.Spec.Rules[i].BackendRefs })
	case *gwv1.TCPRoute:
		v.parentRefs(obj.Spec.ParentRefs)
		v.l4Rules(len(obj.Spec.Rules), func(i int) []gwv1.BackendRef { return obj.Spec.Rules[i].BackendRefs })
	case *gwv1.ReferenceGrant:
		v.referenceGrant(&obj.Spec)
	case *gwv1.BackendTLSPolicy:
		v.backendTLSPolicy(&obj.Spec)
	case *v1alpha1.Workload:
		v.workload(&obj.Spec)
	case *v1alpha1.MTLSPolicy:
		v.mtlsPolicy(&obj.Spec)
	case *v1alpha1.AccessPolicy:
		v.accessPolicy(&obj.Spec)
	case *v1alpha1.BackendPolicy:
		v.backendPolicy(&obj.Spec)
	}
	return errors.Join(v.errs...)
}

type validator struct {
	o    *Object
	errs []error
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, v.o.errorf(field, fmt.Sprintf(format, args...)))
}

func (v *validator) required(field, value string) bool {
	if value == "" {
		v.add(field, "required")
		return false
	}
	return true
}

// Messages for the name formats.
const (
	dns1123SubdomainMsg = "must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)"
	dns1123LabelMsg     = "must consist of lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters (an RFC 1123 label)"
	dns1035LabelMsg     = "must consist of lowercase letters, digits and '-', start with a letter, end with a letter or digit, and be at most 63 characters (an RFC 1035 label)"
	portNameMsg         = "must be at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)"
)

func (v *validator) subdomain(field, value string) {
	if v.required(field, value) && len(validation.IsDNS1123Subdomain(value)) > 0 {
		v.add(field, "invalid name %q: %s", value, dns1123SubdomainMsg)
	}
}

func (v *validator) label(field, value string) {
	if v.required(field, value) && len(validation.IsDNS1123Label(value)) > 0 {
		v.add(field, "invalid name %q: %s", value, dns1123LabelMsg)
	}
}

func (v *validator) dns1035(field, value string) {
	if v.required(field, value) && len(validation.IsDNS1035Label(value)) > 0 {
		v.add(field, "invalid name %q: %s", value, dns1035LabelMsg)
	}
}

func (v *validator) portName(field, value string) {
	if len(validation.IsValidPortName(value)) > 0 {
		v.add(field, "invalid port name %q: %s", value, portNameMsg)
	}
}

func (v *validator) port(field string, p int32) {
	if p < 1 || p > 65535 {
		v.add(field, "port %d is out of range 1-65535", p)
	}
}

func (v *validator) maxItems(field string, n, limit int) {
	if n > limit {
		v.add(field, "too many items: %d, at most %d", n, limit)
	}
}

func (v *validator) enum(field string, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		if value == "" {
			v.add(field, "required; one of %s", strings.Join(allowed, ", "))
			return
		}
		v.add(field, "unsupported value %q; one of %s", value, strings.Join(allowed, ", "))
	}
}

func (v *validator) meta(meta metav1.Object) {
	if v.o.Kind == "Service" {
		v.dns1035("metadata.name", meta.GetName())
	} else {
		v.subdomain("metadata.name", meta.GetName())
	}
	if ns := meta.GetNamespace(); ns != "" {
		v.label("metadata.namespace", ns)
	}
	v.labels("metadata.labels", meta.GetLabels())
	for _, k := range sortedKeys(meta.GetAnnotations()) {
		if len(content.IsLabelKey(strings.ToLower(k))) > 0 {
			v.add(keyPath("metadata.annotations", k), "invalid annotation key %q: must be a name of letters, digits, '-', '_' and '.' with an optional DNS subdomain prefix and '/', e.g. example.com/my-key", k)
		}
	}
}

func (v *validator) labels(field string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		path := keyPath(field, k)
		if len(content.IsLabelKey(k)) > 0 {
			v.add(path, "invalid label key %q: must be a name of letters, digits, '-', '_' and '.' (at most 63) with an optional DNS subdomain prefix and '/', e.g. app.kubernetes.io/name", k)
		}
		if val := labels[k]; len(content.IsLabelValue(val)) > 0 {
			v.add(path, "invalid label value %q: must be empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", val)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Service.

func (v *validator) service(spec *corev1.ServiceSpec) {
	if spec.Type != "" {
		v.enum("spec.type", string(spec.Type), "ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
	}
	switch ip := spec.ClusterIP; ip {
	case "", corev1.ClusterIPNone:
	default:
		if _, err := netip.ParseAddr(ip); err != nil {
			v.add("spec.clusterIP", "%q is neither an IP address nor \"None\"", ip)
		}
	}
	if len(spec.Ports) == 0 && spec.ClusterIP != corev1.ClusterIPNone && spec.Type != corev1.ServiceTypeExternalName {
		v.add("spec.ports", "required: at least one port (only headless and ExternalName services may have none)")
	}
	names := make(map[string]int)
	ports := make(map[string]int)
	for i, p := range spec.Ports {
		path := indexPath("spec.ports", i)
		switch {
		case p.Name == "" && len(spec.Ports) > 1:
			v.add(path+".name", "required when a service has more than one port")
		case p.Name != "":
			if len(validation.IsDNS1123Label(p.Name)) > 0 {
				v.add(path+".name", "invalid port name %q: %s", p.Name, dns1123LabelMsg)
			} else if j, dup := names[p.Name]; dup {
				v.add(path+".name", "duplicate port name %q (also spec.ports[%d])", p.Name, j)
			} else {
				names[p.Name] = i
			}
		}
		v.port(path+".port", p.Port)
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		} else {
			v.enum(path+".protocol", string(p.Protocol), "TCP", "UDP", "SCTP")
		}
		id := strconv.Itoa(int(p.Port)) + "/" + string(proto)
		if j, dup := ports[id]; dup {
			v.add(path+".port", "duplicate port %s (also spec.ports[%d])", id, j)
		} else {
			ports[id] = i
		}
		switch p.TargetPort.Type {
		case intstr.Int:
			// A targetPort defaulted from an invalid port is reported once,
			// at the port.
			if p.TargetPort.IntVal != 0 && p.TargetPort.IntVal != p.Port {
				v.port(path+".targetPort", p.TargetPort.IntVal)
			}
		case intstr.String:
			v.portName(path+".targetPort", p.TargetPort.StrVal)
		}
	}
	v.labels("spec.selector", spec.Selector)
}

// Gateway API.

// Gateway API name formats (shared_types.go in sigs.k8s.io/gateway-api).
var (
	hostnameRE   = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	durationRE   = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	protocolRE   = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$`)
)

// hostname checks a Gateway API Hostname: an RFC 1123 subdomain, possibly
// with a wildcard as its leftmost label, and not an IP address.
func (v *validator) hostname(field, h string) {
	switch {
	case h == "":
		v.add(field, "must not be empty")
	case len(h) > 253:
		v.add(field, "hostname is longer than 253 characters")
	case isIP(h):
		v.add(field, "%q is an IP address; use a hostname", h)
	case strings.Contains(h[min(len(h), 1):], "*") || strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*."):
		v.add(field, "invalid hostname %q: a wildcard is allowed only as the whole leftmost label (*.example.com)", h)
	case !hostnameRE.MatchString(h):
		v.add(field, "invalid hostname %q: must be lowercase letters, digits, '-' and '.' (an RFC 1123 subdomain), optionally starting with \"*.\"", h)
	}
}

// preciseHostname is a hostname without wildcard.
func (v *validator) preciseHostname(field, h string) {
	if strings.Contains(h, "*") {
		v.add(field, "invalid hostname %q: wildcards are not allowed here", h)
		return
	}
	v.hostname(field, h)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (v *validator) hostnames(field string, hs []gwv1.Hostname) {
	for i, h := range hs {
		v.hostname(indexPath(field, i), string(h))
	}
}

func (v *validator) headerName(field, name string) {
	switch {
	case name == "":
		v.add(field, "required")
	case len(name) > 256:
		v.add(field, "header name is longer than 256 characters")
	case !headerNameRE.MatchString(name):
		v.add(field, "invalid header name %q: must be an HTTP token (letters, digits and !#$%%&'*+-.^_`|~)", name)
	}
}

func (v *validator) duration(field string, d *gwv1.Duration) {
	if d != nil && !durationRE.MatchString(string(*d)) {
		v.add(field, "invalid duration %q: use up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms", *d)
	}
}

func (v *validator) sectionName(field string, name *gwv1.SectionName) {
	if name != nil {
		v.subdomain(field, string(*name))
	}
}

func (v *validator) parentRefs(refs []gwv1.ParentReference) {
	if len(refs) == 0 {
		v.add("spec.parentRefs", "required: at least one Gateway or Service to attach to")
	}
	v.maxItems("spec.parentRefs", len(refs), 32)
	for i, r := range refs {
		path := indexPath("spec.parentRefs", i)
		v.required(path+".name", string(r.Name))
		if r.Kind != nil {
			v.required(path+".kind", string(*r.Kind))
		}
		if r.Namespace != nil && *r.Namespace != "" {
			v.label(path+".namespace", string(*r.Namespace))
		}
		v.sectionName(path+".sectionName", r.SectionName)
		if r.Port != nil {
			v.port(path+".port", *r.Port)
		}
	}
}

// isServiceBackend reports whether a backend reference names a core
// Service (the default when group and kind are unset).
func isServiceBackend(r gwv1.BackendObjectReference) bool {
	return refIs(r.Group, r.Kind, "", "Service", "", "Service")
}

func (v *validator) backendObjectRef(path string, r gwv1.BackendObjectReference) {
	v.required(path+".name", string(r.Name))
	if r.Kind != nil {
		v.required(path+".kind", string(*r.Kind))
	}
	if r.Namespace != nil && *r.Namespace != "" {
		v.label(path+".namespace", string(*r.Namespace))
	}
	switch {
	case r.Port != nil:
		v.port(path+".port", *r.Port)
	case isServiceBackend(r):
		v.add(path+".port", "required for a Service backend")
	}
}

func (v *validator) backendRefs(field string, refs []gwv1.BackendRef) {
	v.maxItems(field, len(refs), 16)
	for i, r := range refs {
		v.backendRef(indexPath(field, i), r)
	}
}

func (v *validator) backendRef(path string, r gwv1.BackendRef) {
	v.backendObjectRef(path, r.BackendObjectReference)
	if r.Weight != nil && (*r.Weight < 0 || *r.Weight > 1000000) {
		v.add(path+".weight", "weight %d is out of range 0-1000000", *r.Weight)
	}
}

func (v *validator) listener(path string, name gwv1.SectionName, hostname *gwv1.Hostname, port int32, protocol gwv1.ProtocolType) {
	v.subdomain(path+".name", string(name))
	if hostname != nil {
		v.hostname(path+".hostname", string(*hostname))
	}
	v.port(path+".port", port)
	switch {
	case protocol == "":
		v.add(path+".protocol", "required: HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed protocol (example.com/proto)")
	case !protocolRE.MatchString(string(protocol)):
		v.add(path+".protocol", "invalid protocol %q: use HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed protocol (example.com/proto)", protocol)
	}
}

func (v *validator) uniqueName(seen map[string]int, field, list, name string, i int) {
	if name == "" {
		return
	}
	if j, dup := seen[name]; dup {
		v.add(field, "duplicate name %q (also %s[%d])", name, list, j)
		return
	}
	seen[name] = i
}

func (v *validator) gateway(spec *gwv1.GatewaySpec) {
	v.required("spec.gatewayClassName", string(spec.GatewayClassName))
	if len(spec.Listeners) == 0 {
		v.add("spec.listeners", "required: at least one listener")
	}
	v.maxItems("spec.listeners", len(spec.Listeners), 64)
	seen := make(map[string]int)
	for i, l := range spec.Listeners {
		path := indexPath("spec.listeners", i)
		v.listener(path, l.Name, l.Hostname, l.Port, l.Protocol)
		v.uniqueName(seen, path+".name", "spec.listeners", string(l.Name), i)
	}
	v.maxItems("spec.addresses", len(spec.Addresses), 16)
}

func (v *validator) listenerSet(spec *gwv1.ListenerSetSpec) {
	v.required("spec.parentRef.name", string(spec.ParentRef.Name))
	if len(spec.Listeners) == 0 {
		v.add("spec.listeners", "required: at least one listener")
	}
	v.maxItems("spec.listeners", len(spec.Listeners), 64)
	seen := make(map[string]int)
	for i, l := range spec.Listeners {
		path := indexPath("spec.listeners", i)
		v.listener(path, l.Name, l.Hostname, l.Port, l.Protocol)
		v.uniqueName(seen, path+".name", "spec.listeners", string(l.Name), i)
	}
}

func (v *validator) httpRoute(spec *gwv1.HTTPRouteSpec) {
	v.parentRefs(spec.ParentRefs)
	v.maxItems("spec.hostnames", len(spec.Hostnames), 16)
	v.hostnames("spec.hostnames", spec.Hostnames)
	v.maxItems("spec.rules", len(spec.Rules), 16)
	for i, rule := range spec.Rules {
		path := indexPath("spec.rules", i)
		v.sectionName(path+".name", rule.Name)
		v.maxItems(path+".matches", len(rule.Matches), 64)
		for j, m := range rule.Matches {
			v.httpMatch(indexPath(path+".matches", j), m)
		}
		v.maxItems(path+".backendRefs", len(rule.BackendRefs), 16)
		for j, b := range rule.BackendRefs {
			v.backendRef(indexPath(path+".backendRefs", j), b.BackendRef)
		}
		if t := rule.Timeouts; t != nil {
			v.duration(path+".timeouts.request", t.Request)
			v.duration(path+".timeouts.backendRequest", t.BackendRequest)
		}
		if r := rule.Retry; r != nil {
			v.duration(path+".retry.backoff", r.Backoff)
		}
	}
}

func (v *validator) httpMatch(path string, m gwv1.HTTPRouteMatch) {
	if p := m.Path; p != nil {
		typ := gwv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
			v.enum(path+".path.type", string(typ), "Exact", "PathPrefix", "RegularExpression")
		}
		if p.Value != nil {
			val := *p.Value
			switch {
			case len(val) > 1024:
				v.add(path+".path.value", "path is longer than 1024 characters")
			case typ == gwv1.PathMatchRegularExpression:
				if _, err := regexp.Compile(val); err != nil {
					v.add(path+".path.value", "invalid regular expression: %v", err)
				}
			case !strings.HasPrefix(val, "/"):
				v.add(path+".path.value", "path %q must start with \"/\"", val)
			}
		}
	}
	if m.Method != nil {
		v.enum(path+".method", string(*m.Method), "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
	}
	v.maxItems(path+".headers", len(m.Headers), 16)
	for k, h := range m.Headers {
		hp := indexPath(path+".headers", k)
		v.headerName(hp+".name", string(h.Name))
		v.stringMatch(hp, (*string)(h.Type), h.Value)
	}
	v.maxItems(path+".queryParams", len(m.QueryParams), 16)
	for k, q := range m.QueryParams {
		qp := indexPath(path+".queryParams", k)
		v.headerName(qp+".name", string(q.Name))
		v.stringMatch(qp, (*string)(q.Type), q.Value)
	}
}

func (v *validator) stringMatch(path string, typ *string, value string) {
	if typ == nil {
		return
	}
	v.enum(path+".type", *typ, "Exact", "RegularExpression")
	if *typ == "RegularExpression" {
		if _, err := regexp.Compile(value); err != nil {
			v.add(path+".value", "invalid regular expression: %v", err)
		}
	}
}

var (
	grpcServiceRE = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethodRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
)

func (v *validator) grpcRoute(spec *gwv1.GRPCRouteSpec) {
	v.parentRefs(spec.ParentRefs)
	v.maxItems("spec.hostnames", len(spec.Hostnames), 16)
	v.hostnames("spec.hostnames", spec.Hostnames)
	v.maxItems("spec.rules", len(spec.Rules), 16)
	for i, rule := range spec.Rules {
		path := indexPath("spec.rules", i)
		v.sectionName(path+".name", rule.Name)
		v.maxItems(path+".matches", len(rule.Matches), 64)
		for j, m := range rule.Matches {
			mp := indexPath(path+".matches", j)
			if mm := m.Method; mm != nil {
				exact := true
				if mm.Type != nil {
					v.enum(mp+".method.type", string(*mm.Type), "Exact", "RegularExpression")
					exact = *mm.Type == gwv1.GRPCMethodMatchExact
				}
				if mm.Service == nil && mm.Method == nil {
					v.add(mp+".method", "set service, method or both")
				}
				if exact && mm.Service != nil && !grpcServiceRE.MatchString(*mm.Service) {
					v.add(mp+".method.service", "invalid gRPC service %q: dotted identifiers, e.g. helloworld.Greeter", *mm.Service)
				}
				if exact && mm.Method != nil && !grpcMethodRE.MatchString(*mm.Method) {
					v.add(mp+".method.method", "invalid gRPC method %q: an identifier, e.g. SayHello", *mm.Method)
				}
			}
			v.maxItems(mp+".headers", len(m.Headers), 16)
			for k, h := range m.Headers {
				hp := indexPath(mp+".headers", k)
				v.headerName(hp+".name", string(h.Name))
				v.stringMatch(hp, (*string)(h.Type), h.Value)
			}
		}
		v.maxItems(path+".backendRefs", len(rule.BackendRefs), 16)
		for j, b := range rule.BackendRefs {
			v.backendRef(indexPath(path+".backendRefs", j), b.BackendRef)
		}
	}
}

// l4Rules checks the single rule of a TLSRoute or TCPRoute.
func (v *validator) l4Rules(n int, backends func(i int) []gwv1.BackendRef) {
	if n != 1 {
		v.add("spec.rules", "must have exactly one rule, got %d", n)
	}
	for i := range n {
		path := indexPath("spec.rules", i)
		refs := backends(i)
		if len(refs) == 0 {
			v.add(path+".backendRefs", "required: at least one backend")
		}
		v.backendRefs(path+".backendRefs", refs)
	}
}

func (v *validator) referenceGrant(spec *gwv1.ReferenceGrantSpec) {
	if len(spec.From) == 0 {
		v.add("spec.from", "required: at least one entry")
	}
	if len(spec.To) == 0 {
		v.add("spec.to", "required: at least one entry")
	}
	v.maxItems("spec.from", len(spec.From), 16)
	v.maxItems("spec.to", len(spec.To), 16)
	for i, f := range spec.From {
		path := indexPath("spec.from", i)
		v.required(path+".kind", string(f.Kind))
		v.label(path+".namespace", string(f.Namespace))
	}
	for i, t := range spec.To {
		path := indexPath("spec.to", i)
		v.required(path+".kind", string(t.Kind))
	}
}

func (v *validator) backendTLSPolicy(spec *gwv1.BackendTLSPolicySpec) {
	if len(spec.TargetRefs) == 0 {
		v.add("spec.targetRefs", "required: at least one target")
	}
	v.maxItems("spec.targetRefs", len(spec.TargetRefs), 16)
	for i, r := range spec.TargetRefs {
		v.policyTarget(indexPath("spec.targetRefs", i), r.LocalPolicyTargetReference, "")
	}
	val := &spec.Validation
	v.preciseHostname("spec.validation.hostname", string(val.Hostname))
	hasRefs, hasWellKnown := len(val.CACertificateRefs) > 0, val.WellKnownCACertificates != nil && *val.WellKnownCACertificates != ""
	switch {
	case hasRefs && hasWellKnown:
		v.add("spec.validation", "set caCertificateRefs or wellKnownCACertificates, not both")
	case !hasRefs && !hasWellKnown:
		v.add("spec.validation", "required: caCertificateRefs or wellKnownCACertificates")
	}
}

// policyTarget checks a targetRef; kind, when set, is the only kind the
// policy may target.
func (v *validator) policyTarget(path string, r gwv1.LocalPolicyTargetReference, kind string) {
	v.required(path+".name", string(r.Name))
	if v.required(path+".kind", string(r.Kind)) && kind != "" && (r.Kind != gwv1.Kind(kind) || r.Group != "" && r.Group != "core") {
		v.add(path, "cannot target %s; set group \"\" and kind %s", refName(&r.Group, &r.Kind, "", ""), kind)
	}
}

// Trellis kinds.

func (v *validator) workload(spec *v1alpha1.WorkloadSpec) {
	if v.required("spec.address", spec.Address) {
		if a, err := netip.ParseAddr(spec.Address); err != nil || a.Zone() != "" {
			v.add("spec.address", "%q is not an IP address", spec.Address)
		}
	}
	if spec.ServiceAccount != "" {
		v.subdomain("spec.serviceAccount", spec.ServiceAccount)
	}
	for i, s := range spec.Services {
		v.dns1035(indexPath("spec.services", i), s)
	}
	names := make(map[string]int)
	ports := make(map[int32]int)
	for i, p := range spec.Ports {
		path := indexPath("spec.ports", i)
		v.port(path+".port", p.Port)
		if j, dup := ports[p.Port]; dup {
			v.add(path+".port", "duplicate port %d (also spec.ports[%d])", p.Port, j)
		} else {
			ports[p.Port] = i
		}
		if p.Name != "" {
			v.portName(path+".name", p.Name)
			v.uniqueName(names, path+".name", "spec.ports", p.Name, i)
		}
		if p.Protocol != "" {
			v.enum(path+".protocol", p.Protocol, "HTTP", "HTTP2", "GRPC", "TLS", "TCP")
		}
	}
	if spec.MeshPort != nil {
		v.port("spec.meshPort", *spec.MeshPort)
		if j, dup := ports[*spec.MeshPort]; dup {
			v.add("spec.meshPort", "port %d is also an application port (spec.ports[%d]); the sidecar needs its own port", *spec.MeshPort, j)
		}
	}
}

var mtlsModes = []string{string(v1alpha1.MTLSStrict), string(v1alpha1.MTLSPermissive), string(v1alpha1.MTLSDisable)}

func (v *validator) mtlsPolicy(spec *v1alpha1.MTLSPolicySpec) {
	for i, r := range spec.TargetRefs {
		v.policyTarget(indexPath("spec.targetRefs", i), r, "Service")
	}
	v.enum("spec.mode", string(spec.Mode), mtlsModes...)
	seen := make(map[int32]int)
	for i, p := range spec.Ports {
		path := indexPath("spec.ports", i)
		v.port(path+".port", p.Port)
		if j, dup := seen[p.Port]; dup {
			v.add(path+".port", "duplicate port %d (also spec.ports[%d])", p.Port, j)
		} else {
			seen[p.Port] = i
		}
		v.enum(path+".mode", string(p.Mode), mtlsModes...)
	}
}

func (v *validator) accessPolicy(spec *v1alpha1.AccessPolicySpec) {
	for i, r := range spec.TargetRefs {
		v.policyTarget(indexPath("spec.targetRefs", i), r, "")
	}
	v.enum("spec.action", string(spec.Action), string(v1alpha1.AccessAllow), string(v1alpha1.AccessDeny), string(v1alpha1.AccessAudit))
	for i, rule := range spec.Rules {
		path := indexPath("spec.rules", i)
		for j, f := range rule.From {
			fp := indexPath(path+".from", j)
			for k, id := range f.Identities {
				if !strings.HasPrefix(id, "spiffe://") && id != "*" {
					v.add(indexPath(fp+".identities", k), "invalid identity %q: a SPIFFE ID (spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT), optionally ending in *", id)
				}
			}
			for k, ns := range f.Namespaces {
				v.label(indexPath(fp+".namespaces", k), ns)
			}
		}
		for j, t := range rule.To {
			tp := indexPath(path+".to", j)
			for k, p := range t.Ports {
				v.port(indexPath(tp+".ports", k), p)
			}
			for k, p := range t.Paths {
				if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "*") {
					v.add(indexPath(tp+".paths", k), "path %q must start with \"/\" (or \"*\" for a suffix match)", p)
				}
			}
			for k, m := range t.Methods {
				if !headerNameRE.MatchString(m) {
					v.add(indexPath(tp+".methods", k), "invalid method %q", m)
				}
			}
			for k, h := range t.Headers {
				hp := indexPath(tp+".headers", k)
				v.headerName(hp+".name", string(h.Name))
				v.stringMatch(hp, (*string)(h.Type), h.Value)
			}
		}
	}
}

func (v *validator) backendPolicy(spec *v1alpha1.BackendPolicySpec) {
	if len(spec.TargetRefs) == 0 {
		v.add("spec.targetRefs", "required: at least one Service")
	}
	for i, r := range spec.TargetRefs {
		v.policyTarget(indexPath("spec.targetRefs", i), r, "Service")
	}
	if lb := spec.LoadBalancer; lb != nil {
		v.enum("spec.loadBalancer.type", lb.Type, "RoundRobin", "LeastRequest", "ConsistentHash")
		if lb.Type != "ConsistentHash" && (lb.HashHeader != "" || lb.HashCookie != "") {
			v.add("spec.loadBalancer", "hashHeader and hashCookie need type ConsistentHash")
		}
		if lb.HashHeader != "" {
			v.headerName("spec.loadBalancer.hashHeader", lb.HashHeader)
		}
	}
	if cl := spec.ConnectionLimits; cl != nil {
		v.nonNegative("spec.connectionLimits.maxConnections", cl.MaxConnections)
		v.nonNegative("spec.connectionLimits.maxPendingRequests", cl.MaxPendingRequests)
		v.nonNegative("spec.connectionLimits.maxRequests", cl.MaxRequests)
	}
	if od := spec.OutlierDetection; od != nil {
		v.nonNegative("spec.outlierDetection.consecutive5xx", od.Consecutive5xx)
		v.nonNegative("spec.outlierDetection.consecutiveConnectErrors", od.ConsecutiveConnectError)
		v.duration("spec.outlierDetection.interval", od.Interval)
		v.duration("spec.outlierDetection.baseEjectionTime", od.BaseEjectionTime)
		if p := od.MaxEjectionPercent; p != nil && (*p < 0 || *p > 100) {
			v.add("spec.outlierDetection.maxEjectionPercent", "%d is out of range 0-100", *p)
		}
	}
	if rb := spec.RetryBudget; rb != nil {
		if rb.Percent < 0 || rb.Percent > 100 {
			v.add("spec.retryBudget.percent", "%d is out of range 0-100", rb.Percent)
		}
		if rb.MinRetries < 0 {
			v.add("spec.retryBudget.minRetriesConcurrency", "must not be negative")
		}
	}
	v.duration("spec.idleTimeout", spec.IdleTimeout)
	if rl := spec.RateLimit; rl != nil {
		if rl.Requests < 1 {
			v.add("spec.rateLimit.requests", "must be at least 1")
		}
		if rl.Per == "" {
			v.add("spec.rateLimit.per", "required, e.g. 1s")
		} else {
			v.duration("spec.rateLimit.per", &rl.Per)
		}
		v.nonNegative("spec.rateLimit.burst", rl.Burst)
	}
}

func (v *validator) nonNegative(field string, n *int32) {
	if n != nil && *n < 0 {
		v.add(field, "must not be negative")
	}
}
