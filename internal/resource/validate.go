package resource

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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
// The Gateway API kinds are checked by their CRDs (package schema)
// exactly as the kube-apiserver checks them: OpenAPI schema, list keys and
// CEL rules. Services are checked as the apiserver checks them, the
// trellis.dev kinds by their own rules; the metadata of every kind as the
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
		v.regexes()
		return errors.Join(v.errs...)
	}
	switch obj := o.Obj.(type) {
	case *corev1.Service:
		v.service(&obj.Spec)
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

// Formats shared with the Gateway API (shared_types.go in
// sigs.k8s.io/gateway-api), for the trellis.dev kinds.
var (
	headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	durationRE   = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
)

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

// policyTarget checks a targetRef; kind, when set, is the only kind the
// policy may target.
func (v *validator) policyTarget(path string, r gwv1.LocalPolicyTargetReference, kind string) {
	v.required(path+".name", string(r.Name))
	if v.required(path+".kind", string(r.Kind)) && kind != "" && (r.Kind != gwv1.Kind(kind) || r.Group != "" && r.Group != "core") {
		target := string(r.Kind)
		if r.Group != "" {
			target += "." + string(r.Group)
		}
		v.add(path, "cannot target %s; set group \"\" and kind %s", target, kind)
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
		path := indexPath("spec.targetRefs", i)
		v.policyTarget(path, r.LocalPolicyTargetReference, "Service")
		if r.SectionName != nil && v.required(path+".sectionName", string(*r.SectionName)) {
			v.portName(path+".sectionName", string(*r.SectionName)) // a Service port's name
		}
	}
	if tls := spec.TLS; tls != nil {
		v.enum("spec.tls.mode", tls.Mode, "Mesh", "RequireMesh", "Disable")
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
			if d, err := time.ParseDuration(string(rl.Per)); err == nil && d < 50*time.Millisecond {
				v.add("spec.rateLimit.per", "%s is shorter than 50ms, the shortest refill interval of the proxies' token bucket", rl.Per)
			}
		}
		v.nonNegative("spec.rateLimit.burst", rl.Burst)
	}
	if f := spec.Faults; f != nil {
		if f.Delay == nil && f.Abort == nil {
			v.add("spec.faults", "set delay, abort or both")
		}
		if d := f.Delay; d != nil {
			v.percent("spec.faults.delay.percent", d.Percent)
			if d.Duration == "" {
				v.add("spec.faults.delay.duration", "required, e.g. 2s")
			} else {
				v.duration("spec.faults.delay.duration", &d.Duration)
			}
		}
		if a := f.Abort; a != nil {
			v.percent("spec.faults.abort.percent", a.Percent)
			switch {
			case a.HTTPStatus == nil && a.GRPCStatus == nil:
				v.add("spec.faults.abort", "set httpStatus (200-599) or grpcStatus (0-16)")
			case a.HTTPStatus != nil && a.GRPCStatus != nil:
				v.add("spec.faults.abort", "set httpStatus or grpcStatus, not both")
			case a.HTTPStatus != nil && (*a.HTTPStatus < 200 || *a.HTTPStatus > 599):
				v.add("spec.faults.abort.httpStatus", "%d is out of range 200-599", *a.HTTPStatus)
			case a.GRPCStatus != nil && (*a.GRPCStatus < 0 || *a.GRPCStatus > 16):
				v.add("spec.faults.abort.grpcStatus", "%d is out of range 0-16", *a.GRPCStatus)
			}
		}
	}
}

func (v *validator) percent(field string, p int32) {
	if p < 0 || p > 100 {
		v.add(field, "%d is out of range 0-100", p)
	}
}

func (v *validator) nonNegative(field string, n *int32) {
	if n != nil && *n < 0 {
		v.add(field, "must not be negative")
	}
}
