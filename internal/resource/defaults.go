package resource

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/model"
)

// Default fills in what the user may leave out, in place, as the API
// server would: the namespace of namespaced kinds (defaultNamespace, or
// "default" when that is empty; cluster-scoped kinds lose theirs), the
// defaults of the Gateway API v1.6 CRDs (their +kubebuilder:default
// markers), Service defaults (port protocol TCP, targetPort = port, type
// ClusterIP, sessionAffinity None) and Workload defaults (serviceAccount
// "default", port protocol TCP). Default is idempotent.
func Default(o *Object, defaultNamespace string) {
	if o == nil || o.Obj == nil {
		return
	}
	if defaultNamespace == "" {
		defaultNamespace = metav1.NamespaceDefault
	}
	if meta, ok := o.Obj.(metav1.Object); ok {
		info, _ := kindByName(o.Kind)
		switch {
		case !info.Namespaced:
			meta.SetNamespace("")
		case meta.GetNamespace() == "":
			meta.SetNamespace(defaultNamespace)
		}
		o.Namespace = meta.GetNamespace()
		o.Name = meta.GetName()
	}
	switch obj := o.Obj.(type) {
	case *gwv1.Gateway:
		defaultGateway(&obj.Spec)
	case *gwv1.ListenerSet:
		defaultParentGatewayRef(&obj.Spec.ParentRef)
		for i := range obj.Spec.Listeners {
			l := &obj.Spec.Listeners[i]
			defaultListener(&l.AllowedRoutes, l.TLS)
		}
	case *gwv1.HTTPRoute:
		defaultHTTPRoute(&obj.Spec)
	case *gwv1.GRPCRoute:
		defaultGRPCRoute(&obj.Spec)
	case *gwv1.TLSRoute:
		defaultParentRefs(obj.Spec.ParentRefs)
		for i := range obj.Spec.Rules {
			defaultBackendRefs(obj.Spec.Rules[i].BackendRefs)
		}
	case *gwv1.TCPRoute:
		defaultParentRefs(obj.Spec.ParentRefs)
		for i := range obj.Spec.Rules {
			defaultBackendRefs(obj.Spec.Rules[i].BackendRefs)
		}
	case *corev1.Service:
		defaultService(&obj.Spec)
	case *v1alpha1.Workload:
		if obj.Spec.ServiceAccount == "" {
			obj.Spec.ServiceAccount = "default"
		}
		for i := range obj.Spec.Ports {
			if obj.Spec.Ports[i].Protocol == "" {
				obj.Spec.Ports[i].Protocol = string(model.ProtocolTCP)
			}
		}
	}
	// GatewayClass, ReferenceGrant, BackendTLSPolicy and the Trellis
	// policies have no defaults.
}

func ptrTo[T any](v T) *T { return &v }

func defaultService(spec *corev1.ServiceSpec) {
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
}

func defaultGateway(spec *gwv1.GatewaySpec) {
	for i := range spec.Listeners {
		l := &spec.Listeners[i]
		defaultListener(&l.AllowedRoutes, l.TLS)
	}
	for i := range spec.Addresses {
		if spec.Addresses[i].Type == nil {
			spec.Addresses[i].Type = ptrTo(gwv1.IPAddressType)
		}
	}
	if al := spec.AllowedListeners; al != nil {
		if al.Namespaces == nil {
			al.Namespaces = &gwv1.ListenerNamespaces{}
		}
		if al.Namespaces.From == nil {
			al.Namespaces.From = ptrTo(gwv1.NamespacesFromNone)
		}
	}
	if tls := spec.TLS; tls != nil {
		if tls.Backend != nil && tls.Backend.ClientCertificateRef != nil {
			defaultSecretRef(tls.Backend.ClientCertificateRef)
		}
		if f := tls.Frontend; f != nil {
			defaultFrontendValidation(f.Default.Validation)
			for i := range f.PerPort {
				defaultFrontendValidation(f.PerPort[i].TLS.Validation)
			}
		}
	}
}

func defaultFrontendValidation(v *gwv1.FrontendTLSValidation) {
	if v != nil && v.Mode == "" {
		v.Mode = gwv1.AllowValidOnly
	}
}

// defaultListener defaults a Gateway listener or a ListenerSet entry.
func defaultListener(allowed **gwv1.AllowedRoutes, tls *gwv1.ListenerTLSConfig) {
	if *allowed == nil {
		*allowed = &gwv1.AllowedRoutes{}
	}
	ar := *allowed
	if ar.Namespaces == nil {
		ar.Namespaces = &gwv1.RouteNamespaces{}
	}
	if ar.Namespaces.From == nil {
		ar.Namespaces.From = ptrTo(gwv1.NamespacesFromSame)
	}
	for i := range ar.Kinds {
		if ar.Kinds[i].Group == nil {
			ar.Kinds[i].Group = ptrTo(gwv1.Group(gwv1.GroupName))
		}
	}
	if tls != nil {
		if tls.Mode == nil {
			tls.Mode = ptrTo(gwv1.TLSModeTerminate)
		}
		for i := range tls.CertificateRefs {
			defaultSecretRef(&tls.CertificateRefs[i])
		}
	}
}

func defaultSecretRef(r *gwv1.SecretObjectReference) {
	if r.Group == nil {
		r.Group = ptrTo(gwv1.Group(""))
	}
	if r.Kind == nil {
		r.Kind = ptrTo(gwv1.Kind("Secret"))
	}
}

func defaultParentRefs(refs []gwv1.ParentReference) {
	for i := range refs {
		if refs[i].Group == nil {
			refs[i].Group = ptrTo(gwv1.Group(gwv1.GroupName))
		}
		if refs[i].Kind == nil {
			refs[i].Kind = ptrTo(gwv1.Kind("Gateway"))
		}
	}
}

func defaultParentGatewayRef(r *gwv1.ParentGatewayReference) {
	if r.Group == nil {
		r.Group = ptrTo(gwv1.Group(gwv1.GroupName))
	}
	if r.Kind == nil {
		r.Kind = ptrTo(gwv1.Kind("Gateway"))
	}
}

func defaultBackendObjectRef(r *gwv1.BackendObjectReference) {
	if r.Group == nil {
		r.Group = ptrTo(gwv1.Group(""))
	}
	if r.Kind == nil {
		r.Kind = ptrTo(gwv1.Kind("Service"))
	}
}

func defaultBackendRef(r *gwv1.BackendRef) {
	defaultBackendObjectRef(&r.BackendObjectReference)
	if r.Weight == nil {
		r.Weight = ptrTo(int32(1))
	}
}

func defaultBackendRefs(refs []gwv1.BackendRef) {
	for i := range refs {
		defaultBackendRef(&refs[i])
	}
}

func defaultHTTPRoute(spec *gwv1.HTTPRouteSpec) {
	defaultParentRefs(spec.ParentRefs)
	if spec.Rules == nil {
		spec.Rules = []gwv1.HTTPRouteRule{{}}
	}
	for i := range spec.Rules {
		rule := &spec.Rules[i]
		if rule.Matches == nil {
			rule.Matches = []gwv1.HTTPRouteMatch{{}}
		}
		for j := range rule.Matches {
			m := &rule.Matches[j]
			if m.Path == nil {
				m.Path = &gwv1.HTTPPathMatch{}
			}
			if m.Path.Type == nil {
				m.Path.Type = ptrTo(gwv1.PathMatchPathPrefix)
			}
			if m.Path.Value == nil {
				m.Path.Value = ptrTo("/")
			}
			for k := range m.Headers {
				if m.Headers[k].Type == nil {
					m.Headers[k].Type = ptrTo(gwv1.HeaderMatchExact)
				}
			}
			for k := range m.QueryParams {
				if m.QueryParams[k].Type == nil {
					m.QueryParams[k].Type = ptrTo(gwv1.QueryParamMatchExact)
				}
			}
		}
		defaultHTTPFilters(rule.Filters)
		for j := range rule.BackendRefs {
			defaultBackendRef(&rule.BackendRefs[j].BackendRef)
			defaultHTTPFilters(rule.BackendRefs[j].Filters)
		}
		defaultSessionPersistence(rule.SessionPersistence)
	}
}

func defaultHTTPFilters(filters []gwv1.HTTPRouteFilter) {
	for i := range filters {
		f := &filters[i]
		defaultMirror(f.RequestMirror)
		if f.RequestRedirect != nil && f.RequestRedirect.StatusCode == nil {
			f.RequestRedirect.StatusCode = ptrTo(302)
		}
		if f.CORS != nil && f.CORS.MaxAge == 0 {
			f.CORS.MaxAge = 5
		}
		if f.ExternalAuth != nil {
			defaultBackendObjectRef(&f.ExternalAuth.BackendRef)
		}
	}
}

func defaultMirror(m *gwv1.HTTPRequestMirrorFilter) {
	if m == nil {
		return
	}
	defaultBackendObjectRef(&m.BackendRef)
	if m.Fraction != nil && m.Fraction.Denominator == nil {
		m.Fraction.Denominator = ptrTo(int32(100))
	}
}

func defaultSessionPersistence(sp *gwv1.SessionPersistence) {
	if sp == nil {
		return
	}
	if sp.Type == nil {
		sp.Type = ptrTo(gwv1.CookieBasedSessionPersistence)
	}
	if sp.CookieConfig != nil && sp.CookieConfig.LifetimeType == nil {
		sp.CookieConfig.LifetimeType = ptrTo(gwv1.SessionCookieLifetimeType)
	}
}

func defaultGRPCRoute(spec *gwv1.GRPCRouteSpec) {
	defaultParentRefs(spec.ParentRefs)
	for i := range spec.Rules {
		rule := &spec.Rules[i]
		for j := range rule.Matches {
			m := &rule.Matches[j]
			if m.Method != nil && m.Method.Type == nil {
				m.Method.Type = ptrTo(gwv1.GRPCMethodMatchExact)
			}
			for k := range m.Headers {
				if m.Headers[k].Type == nil {
					m.Headers[k].Type = ptrTo(gwv1.GRPCHeaderMatchExact)
				}
			}
		}
		defaultGRPCFilters(rule.Filters)
		for j := range rule.BackendRefs {
			defaultBackendRef(&rule.BackendRefs[j].BackendRef)
			defaultGRPCFilters(rule.BackendRefs[j].Filters)
		}
		defaultSessionPersistence(rule.SessionPersistence)
	}
}

func defaultGRPCFilters(filters []gwv1.GRPCRouteFilter) {
	for i := range filters {
		defaultMirror(filters[i].RequestMirror)
	}
}
