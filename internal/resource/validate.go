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
//
// The Gateway API and trellis.dev kinds are checked by their CRDs
// (package schema) exactly as the kube-apiserver checks them: OpenAPI
// schema, list keys and CEL rules; then the regular expressions of their
// matches, which the CRDs leave to the implementation. Services are
// checked as the apiserver checks them; the metadata of every kind as the
// apiserver checks it.
func Validate(o *Object) error {
	if o == nil || o.Obj == nil {
		return errors.New("resource: validate: no object")
	}
	v := &validator{o: o}
	if meta, ok := o.Obj.(metav1.Object); ok {
		v.meta(meta)
	}
	if sv, ok, err := crdValidator(o); ok {
		if err != nil {
			v.add("", "cannot validate: %v", err)
		} else {
			v.crd(sv)
		}
	}
	switch obj := o.Obj.(type) {
	case *corev1.Service:
		v.service(&obj.Spec)
	case *v1alpha1.AccessPolicy:
		v.accessPolicy(&obj.Spec)
	default:
		v.regexes()
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

// Service, as the kube-apiserver validates it (ValidateService in
// k8s.io/kubernetes pkg/apis/core/validation) after its defaults: checks
// of fields the apiserver defaults (internalTrafficPolicy, ipFamilies, ...)
// and Default leaves unset apply only when they are set.

func (v *validator) service(spec *corev1.ServiceSpec) {
	typ := spec.Type
	if typ != "" {
		v.enum("spec.type", string(typ), "ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
	}
	headless := spec.ClusterIP == corev1.ClusterIPNone
	switch ip := spec.ClusterIP; {
	case ip == "":
	case headless:
		if typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer {
			v.add("spec.clusterIP", "may not be \"None\" for %s services", typ)
		}
	default:
		if _, err := netip.ParseAddr(ip); err != nil {
			v.add("spec.clusterIP", "%q is neither an IP address nor \"None\"", ip)
		}
	}
	if typ == corev1.ServiceTypeExternalName {
		if spec.ClusterIP != "" {
			v.add("spec.clusterIP", "may not be set for ExternalName services")
		}
		if len(spec.IPFamilies) > 0 {
			v.add("spec.ipFamilies", "may not be set for ExternalName services")
		}
		if spec.IPFamilyPolicy != nil {
			v.add("spec.ipFamilyPolicy", "may not be set for ExternalName services")
		}
		// A trailing dot marks the name fully qualified.
		if name := strings.TrimSuffix(spec.ExternalName, "."); name == "" {
			v.add("spec.externalName", "required for ExternalName services: the DNS name the service is an alias of")
		} else if len(validation.IsDNS1123Subdomain(name)) > 0 {
			v.add("spec.externalName", "invalid name %q: %s", spec.ExternalName, dns1123SubdomainMsg)
		}
	}
	if len(spec.Ports) == 0 && !headless && typ != corev1.ServiceTypeExternalName {
		v.add("spec.ports", "required: at least one port (only headless and ExternalName services may have none)")
	}
	v.servicePorts(spec)
	v.labels("spec.selector", spec.Selector)
	if spec.SessionAffinity != "" {
		v.enum("spec.sessionAffinity", string(spec.SessionAffinity), "None", "ClientIP")
	}
	if c := spec.SessionAffinityConfig; c != nil {
		switch {
		case spec.SessionAffinity != corev1.ServiceAffinityClientIP:
			v.add("spec.sessionAffinityConfig", "may be set only when sessionAffinity is ClientIP")
		case c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && (*c.ClientIP.TimeoutSeconds < 1 || *c.ClientIP.TimeoutSeconds > 86400):
			v.add("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "%d is out of range 1-86400", *c.ClientIP.TimeoutSeconds)
		}
	}
	for i, ip := range spec.ExternalIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			v.add(indexPath("spec.externalIPs", i), "%q is not an IP address", ip)
		}
	}
	for i, r := range spec.LoadBalancerSourceRanges {
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			v.add(indexPath("spec.loadBalancerSourceRanges", i), "%q is not a CIDR, e.g. 10.0.0.0/8", r)
		}
	}
	if len(spec.LoadBalancerSourceRanges) > 0 && typ != corev1.ServiceTypeLoadBalancer {
		v.add("spec.loadBalancerSourceRanges", "may be set only when type is LoadBalancer")
	}
	if spec.ExternalTrafficPolicy != "" {
		if typ != corev1.ServiceTypeNodePort && typ != corev1.ServiceTypeLoadBalancer {
			v.add("spec.externalTrafficPolicy", "may be set only for NodePort and LoadBalancer services")
		} else {
			v.enum("spec.externalTrafficPolicy", string(spec.ExternalTrafficPolicy), "Cluster", "Local")
		}
	}
	if p := spec.InternalTrafficPolicy; p != nil {
		v.enum("spec.internalTrafficPolicy", string(*p), "Cluster", "Local")
	}
	if p := spec.IPFamilyPolicy; p != nil {
		v.enum("spec.ipFamilyPolicy", string(*p), "SingleStack", "PreferDualStack", "RequireDualStack")
	}
	if len(spec.IPFamilies) > 2 {
		v.add("spec.ipFamilies", "at most two families (IPv4 and IPv6)")
	}
	for i, f := range spec.IPFamilies {
		path := indexPath("spec.ipFamilies", i)
		v.enum(path, string(f), "IPv4", "IPv6")
		if slices.Contains(spec.IPFamilies[:i], f) {
			v.add(path, "duplicate family %s", f)
		}
	}
}

func (v *validator) servicePorts(spec *corev1.ServiceSpec) {
	names := make(map[string]int)
	ports := make(map[string]int)
	nodePorts := make(map[string]int)
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
		if p.AppProtocol != nil && len(validation.IsQualifiedName(*p.AppProtocol)) > 0 {
			v.add(path+".appProtocol", "invalid appProtocol %q: a name of letters, digits, '-', '_' and '.' with an optional DNS subdomain prefix and '/', e.g. http or kubernetes.io/h2c", *p.AppProtocol)
		}
		if p.NodePort != 0 {
			switch spec.Type {
			case corev1.ServiceTypeClusterIP, "":
				v.add(path+".nodePort", "may not be used when type is ClusterIP")
				continue
			}
			v.port(path+".nodePort", p.NodePort)
			id := strconv.Itoa(int(p.NodePort)) + "/" + string(proto)
			if j, dup := nodePorts[id]; dup {
				v.add(path+".nodePort", "duplicate node port %s (also spec.ports[%d])", id, j)
			} else {
				nodePorts[id] = i
			}
		}
	}
}

// regexes checks the regular expressions of route matches, which the
// CRDs leave to the implementation: Trellis's proxies use RE2, and a
// regular expression they cannot compile would make them reject their
// whole route configuration.
func (v *validator) regexes() {
	switch obj := v.o.Obj.(type) {
	case *gwv1.HTTPRoute:
		for i, rule := range obj.Spec.Rules {
			for j, m := range rule.Matches {
				path := fmt.Sprintf("spec.rules[%d].matches[%d]", i, j)
				if m.Path != nil && m.Path.Type != nil && *m.Path.Type == gwv1.PathMatchRegularExpression && m.Path.Value != nil {
					v.regex(path+".path.value", *m.Path.Value)
				}
				for k, h := range m.Headers {
					if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
						v.regex(fmt.Sprintf("%s.headers[%d].value", path, k), h.Value)
					}
				}
				for k, q := range m.QueryParams {
					if q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression {
						v.regex(fmt.Sprintf("%s.queryParams[%d].value", path, k), q.Value)
					}
				}
			}
		}
	case *gwv1.GRPCRoute:
		for i, rule := range obj.Spec.Rules {
			for j, m := range rule.Matches {
				path := fmt.Sprintf("spec.rules[%d].matches[%d]", i, j)
				if mm := m.Method; mm != nil && mm.Type != nil && *mm.Type == gwv1.GRPCMethodMatchRegularExpression {
					if mm.Service != nil {
						v.regex(path+".method.service", *mm.Service)
					}
					if mm.Method != nil {
						v.regex(path+".method.method", *mm.Method)
					}
				}
				for k, h := range m.Headers {
					if h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression {
						v.regex(fmt.Sprintf("%s.headers[%d].value", path, k), h.Value)
					}
				}
			}
		}
	}
}

func (v *validator) regex(field, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		v.add(field, "invalid regular expression (RE2 syntax): %v", err)
	}
}

// Trellis kinds: what their CRDs cannot say.

// accessPolicy checks the regular expressions of header matches, which
// the CRD leaves to the implementation, as regexes does for routes.
func (v *validator) accessPolicy(spec *v1alpha1.AccessPolicySpec) {
	for i, rule := range spec.Rules {
		for j, t := range rule.To {
			for k, h := range t.Headers {
				if h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression {
					v.regex(fmt.Sprintf("spec.rules[%d].to[%d].headers[%d].value", i, j, k), h.Value)
				}
			}
		}
	}
}
