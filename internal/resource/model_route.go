package resource

import (
	"cmp"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/internal/model"
)

// Conversion of the route kinds: HTTPRoute, GRPCRoute, TLSRoute, TCPRoute.

func (c *converter) route(parents []gwv1.ParentReference, hostnames []gwv1.Hostname) model.Route {
	return model.Route{
		Key:    c.key,
		Source: c.source(),
		Parents: convertAll(parents, func(i int, p gwv1.ParentReference) model.ParentRef {
			return c.parentRef(indexPath("spec.parentRefs", i), p)
		}),
		Hostnames: strs(hostnames),
	}
}

// parentRef converts a parentRef (default: a Gateway in the route's
// namespace). A kind Trellis does not serve keeps its place as
// "Kind.group".
func (c *converter) parentRef(path string, p gwv1.ParentReference) model.ParentRef {
	r := model.ParentRef{
		Key:         model.Key{Namespace: c.namespace(p.Namespace), Name: string(p.Name)},
		SectionName: string(deref(p.SectionName)),
	}
	switch gk := groupKind(p.Group, p.Kind, gwv1.GroupName, "Gateway"); gk {
	case model.GroupKind{Group: gwv1.GroupName, Kind: "Gateway"}:
		r.Kind = model.ParentGateway
	case model.GroupKind{Group: gwv1.GroupName, Kind: "ListenerSet"}:
		r.Kind = model.ParentListenerSet
	case serviceKind:
		r.Kind = model.ParentService
	default:
		r.Kind = model.ParentKind(gk.String())
	}
	if p.Port != nil {
		r.Port = c.port(path+".port", *p.Port)
	}
	return r
}

// backend converts a backendRef (default: a Service in the route's
// namespace, weight 1). Another kind keeps its place as "Kind.group"; an
// unset port is 0.
func (c *converter) backend(path string, r gwv1.BackendObjectReference, weight *int32) model.Backend {
	b := model.Backend{
		Kind:    "Service",
		Service: model.Key{Namespace: c.namespace(r.Namespace), Name: string(r.Name)},
		Weight:  1,
	}
	if gk := groupKind(r.Group, r.Kind, "", "Service"); gk != serviceKind {
		b.Kind = gk.String()
	}
	if r.Port != nil {
		b.Port = c.port(path+".port", *r.Port)
	}
	if weight != nil {
		b.Weight = c.unsigned(path+".weight", *weight)
	}
	return b
}

func (c *converter) httpRoute(hr *gwv1.HTTPRoute) *model.HTTPRoute {
	spec := &hr.Spec
	return &model.HTTPRoute{
		Route: c.route(spec.ParentRefs, spec.Hostnames),
		Rules: convertAll(spec.Rules, func(i int, r gwv1.HTTPRouteRule) model.HTTPRouteRule {
			return c.httpRule(indexPath("spec.rules", i), r)
		}),
	}
}

func (c *converter) httpRule(path string, r gwv1.HTTPRouteRule) model.HTTPRouteRule {
	mr := model.HTTPRouteRule{
		Name:    string(deref(r.Name)),
		Matches: convertAll(r.Matches, func(_ int, m gwv1.HTTPRouteMatch) model.HTTPMatch { return httpMatch(m) }),
		Filters: c.httpFilters(path+".filters", r.Filters),
		Backends: convertAll(r.BackendRefs, func(j int, b gwv1.HTTPBackendRef) model.Backend {
			bpath := indexPath(path+".backendRefs", j)
			be := c.backend(bpath, b.BackendObjectReference, b.Weight)
			be.Filters = c.httpFilters(bpath+".filters", b.Filters)
			return be
		}),
	}
	if t := r.Timeouts; t != nil {
		mr.Timeout = c.optionalDuration(path+".timeouts.request", t.Request)
		mr.BackendTimeout = c.optionalDuration(path+".timeouts.backendRequest", t.BackendRequest)
	}
	return mr
}

// optionalDuration converts a duration that may be unset (nil), keeping
// "0s" (which disables a timeout) apart from unset.
func (c *converter) optionalDuration(field string, d *gwv1.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := c.duration(field, d)
	return &v
}

// httpMatch converts a match; an unset path is PathPrefix "/", unset
// match types Exact.
func httpMatch(m gwv1.HTTPRouteMatch) model.HTTPMatch {
	mm := model.HTTPMatch{
		PathType:  model.PathPrefix,
		PathValue: "/",
		Method:    string(deref(m.Method)),
		Headers: convertAll(m.Headers, func(_ int, h gwv1.HTTPHeaderMatch) model.ValueMatch {
			return valueMatch((*string)(h.Type), string(h.Name), h.Value)
		}),
		Query: convertAll(m.QueryParams, func(_ int, q gwv1.HTTPQueryParamMatch) model.ValueMatch {
			return valueMatch((*string)(q.Type), string(q.Name), q.Value)
		}),
	}
	if p := m.Path; p != nil {
		if p.Type != nil {
			mm.PathType = model.PathMatchType(*p.Type)
		}
		if p.Value != nil {
			mm.PathValue = *p.Value
		}
	}
	return mm
}

func valueMatch(typ *string, name, value string) model.ValueMatch {
	vm := model.ValueMatch{Type: model.MatchExact, Name: name, Value: value}
	if typ != nil {
		vm.Type = model.StringMatchType(*typ)
	}
	return vm
}

func (c *converter) httpFilters(path string, fs []gwv1.HTTPRouteFilter) []model.HTTPFilter {
	return convertAll(fs, func(i int, f gwv1.HTTPRouteFilter) model.HTTPFilter {
		return c.httpFilter(indexPath(path, i), f)
	})
}

// httpFilter converts a filter of any type. The configuration of every
// type the model has is converted when present; ExternalAuth (experimental
// channel), which the model does not have, keeps only its type.
func (c *converter) httpFilter(path string, f gwv1.HTTPRouteFilter) model.HTTPFilter {
	mf := model.HTTPFilter{
		Type:            model.HTTPFilterType(f.Type),
		RequestHeaders:  headerModifier(f.RequestHeaderModifier),
		ResponseHeaders: headerModifier(f.ResponseHeaderModifier),
	}
	if r := f.RequestRedirect; r != nil {
		mf.Redirect = &model.Redirect{
			Scheme:     deref(r.Scheme),
			Hostname:   string(deref(r.Hostname)),
			Path:       pathModifier(r.Path),
			StatusCode: 302,
		}
		if r.Port != nil {
			mf.Redirect.Port = c.port(path+".requestRedirect.port", *r.Port)
		}
		if r.StatusCode != nil {
			mf.Redirect.StatusCode = *r.StatusCode
		}
	}
	if r := f.URLRewrite; r != nil {
		mf.Rewrite = &model.URLRewrite{Hostname: string(deref(r.Hostname)), Path: pathModifier(r.Path)}
	}
	if m := f.RequestMirror; m != nil {
		mpath := path + ".requestMirror"
		mf.Mirror = &model.Mirror{
			Backend: c.backend(mpath+".backendRef", m.BackendRef, nil),
			Percent: c.mirrorPercent(mpath, m),
		}
	}
	if r := f.ExtensionRef; r != nil {
		ref := c.localRef(*r)
		mf.ExtensionRef = &ref
	}
	if cf := f.CORS; cf != nil {
		mf.CORS = corsFilter(cf)
	}
	return mf
}

// corsFilter converts a CORS filter; an unset maxAge is the Gateway API
// default, 5 seconds.
func corsFilter(cf *gwv1.HTTPCORSFilter) *model.CORS {
	out := &model.CORS{
		AllowOrigins:     strs(cf.AllowOrigins),
		AllowMethods:     strs(cf.AllowMethods),
		AllowHeaders:     strs(cf.AllowHeaders),
		ExposeHeaders:    strs(cf.ExposeHeaders),
		AllowCredentials: deref(cf.AllowCredentials),
		MaxAge:           cf.MaxAge,
	}
	if out.MaxAge <= 0 {
		out.MaxAge = 5
	}
	return out
}

func headerModifier(h *gwv1.HTTPHeaderFilter) *model.HeaderModifier {
	if h == nil {
		return nil
	}
	headers := func(_ int, h gwv1.HTTPHeader) model.Header { return model.Header{Name: string(h.Name), Value: h.Value} }
	return &model.HeaderModifier{
		Set:    convertAll(h.Set, headers),
		Add:    convertAll(h.Add, headers),
		Remove: convertAll(h.Remove, func(_ int, s string) string { return s }),
	}
}

func pathModifier(p *gwv1.HTTPPathModifier) *model.PathModifier {
	if p == nil {
		return nil
	}
	pm := &model.PathModifier{Type: model.PathModifierType(p.Type)}
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		pm.Value = deref(p.ReplaceFullPath)
	case gwv1.PrefixMatchHTTPPathModifier:
		pm.Value = deref(p.ReplacePrefixMatch)
	default:
		pm.Value = deref(cmp.Or(p.ReplaceFullPath, p.ReplacePrefixMatch))
	}
	return pm
}

// mirrorPercent is the share of requests a mirror copies: percent, or
// fraction (denominator 100 by default) as a whole percentage, or 100.
// A fraction between none and all stays between 1 and 99, so that
// rounding never turns "some" into "none" or "all".
func (c *converter) mirrorPercent(path string, m *gwv1.HTTPRequestMirrorFilter) int {
	switch {
	case m.Percent != nil:
		return int(*m.Percent)
	case m.Fraction != nil:
		num, den := int64(m.Fraction.Numerator), int64(100)
		if m.Fraction.Denominator != nil {
			den = int64(*m.Fraction.Denominator)
		}
		if den < 1 {
			c.errorf(path+".fraction.denominator", "must be at least 1")
			return 0
		}
		if num <= 0 || num >= den {
			return int(num * 100 / den)
		}
		return int(min(max((num*100+den/2)/den, 1), 99))
	}
	return 100
}

func (c *converter) grpcRoute(gr *gwv1.GRPCRoute) *model.GRPCRoute {
	spec := &gr.Spec
	return &model.GRPCRoute{
		Route: c.route(spec.ParentRefs, spec.Hostnames),
		Rules: convertAll(spec.Rules, func(i int, r gwv1.GRPCRouteRule) model.GRPCRouteRule {
			path := indexPath("spec.rules", i)
			return model.GRPCRouteRule{
				Name:    string(deref(r.Name)),
				Matches: convertAll(r.Matches, func(_ int, m gwv1.GRPCRouteMatch) model.GRPCMatch { return grpcMatch(m) }),
				Filters: c.grpcFilters(path+".filters", r.Filters),
				Backends: convertAll(r.BackendRefs, func(j int, b gwv1.GRPCBackendRef) model.Backend {
					bpath := indexPath(path+".backendRefs", j)
					be := c.backend(bpath, b.BackendObjectReference, b.Weight)
					be.Filters = c.grpcFilters(bpath+".filters", b.Filters)
					return be
				}),
			}
		}),
	}
}

// grpcMatch converts a match; the method match type is Exact when unset.
func grpcMatch(m gwv1.GRPCRouteMatch) model.GRPCMatch {
	gm := model.GRPCMatch{
		Type: model.MatchExact,
		Headers: convertAll(m.Headers, func(_ int, h gwv1.GRPCHeaderMatch) model.ValueMatch {
			return valueMatch((*string)(h.Type), string(h.Name), h.Value)
		}),
	}
	if mm := m.Method; mm != nil {
		if mm.Type != nil {
			gm.Type = model.StringMatchType(*mm.Type)
		}
		gm.Service, gm.Method = deref(mm.Service), deref(mm.Method)
	}
	return gm
}

// grpcFilters converts GRPCRoute filters, a subset of HTTPRoute's.
func (c *converter) grpcFilters(path string, fs []gwv1.GRPCRouteFilter) []model.HTTPFilter {
	return convertAll(fs, func(i int, f gwv1.GRPCRouteFilter) model.HTTPFilter {
		return c.httpFilter(indexPath(path, i), gwv1.HTTPRouteFilter{
			Type:                   gwv1.HTTPRouteFilterType(f.Type),
			RequestHeaderModifier:  f.RequestHeaderModifier,
			ResponseHeaderModifier: f.ResponseHeaderModifier,
			RequestMirror:          f.RequestMirror,
			ExtensionRef:           f.ExtensionRef,
		})
	})
}

func (c *converter) tlsRoute(tr *gwv1.TLSRoute) *model.TLSRoute {
	spec := &tr.Spec
	return &model.TLSRoute{
		Route: c.route(spec.ParentRefs, spec.Hostnames),
		Rules: convertAll(spec.Rules, func(i int, r gwv1.TLSRouteRule) model.L4Rule {
			return c.l4Rule(indexPath("spec.rules", i), r.Name, r.BackendRefs)
		}),
	}
}

func (c *converter) tcpRoute(tr *gwv1.TCPRoute) *model.TCPRoute {
	spec := &tr.Spec
	return &model.TCPRoute{
		Route: c.route(spec.ParentRefs, nil),
		Rules: convertAll(spec.Rules, func(i int, r gwv1.TCPRouteRule) model.L4Rule {
			return c.l4Rule(indexPath("spec.rules", i), r.Name, r.BackendRefs)
		}),
	}
}

func (c *converter) l4Rule(path string, name *gwv1.SectionName, refs []gwv1.BackendRef) model.L4Rule {
	return model.L4Rule{
		Name: string(deref(name)),
		Backends: convertAll(refs, func(j int, b gwv1.BackendRef) model.Backend {
			return c.backend(indexPath(path+".backendRefs", j), b.BackendObjectReference, b.Weight)
		}),
	}
}
