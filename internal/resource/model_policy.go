package resource

import (
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/model"
)

// Conversion of ReferenceGrant and the Trellis policies.

func (c *converter) referenceGrant(rg *gwv1.ReferenceGrant) *model.ReferenceGrant {
	spec := &rg.Spec
	return &model.ReferenceGrant{
		Key:    c.key,
		Source: c.source(),
		From: convertAll(spec.From, func(_ int, f gwv1.ReferenceGrantFrom) model.GrantFrom {
			return model.GrantFrom{GroupKind: groupKind(&f.Group, &f.Kind, "", ""), Namespace: string(f.Namespace)}
		}),
		To: convertAll(spec.To, func(_ int, t gwv1.ReferenceGrantTo) model.GrantTo {
			return model.GrantTo{GroupKind: groupKind(&t.Group, &t.Kind, "", ""), Name: string(deref(t.Name))}
		}),
	}
}

func (c *converter) mtlsPolicy(p *v1alpha1.MTLSPolicy) *model.MTLSPolicy {
	spec := &p.Spec
	return &model.MTLSPolicy{
		Key:     c.key,
		Source:  c.source(),
		Targets: targetRefs(spec.TargetRefs),
		Mode:    model.MTLSMode(spec.Mode),
		Ports: convertAll(spec.Ports, func(i int, pm v1alpha1.PortMTLS) model.PortMTLS {
			return model.PortMTLS{Port: c.port(indexPath("spec.ports", i)+".port", pm.Port), Mode: model.MTLSMode(pm.Mode)}
		}),
	}
}

func (c *converter) accessPolicy(p *v1alpha1.AccessPolicy) *model.AccessPolicy {
	spec := &p.Spec
	return &model.AccessPolicy{
		Key:     c.key,
		Source:  c.source(),
		Targets: targetRefs(spec.TargetRefs),
		Action:  model.AccessAction(spec.Action),
		Rules: convertAll(spec.Rules, func(i int, r v1alpha1.AccessRule) model.AccessRule {
			path := indexPath("spec.rules", i)
			return model.AccessRule{
				From: convertAll(r.From, func(_ int, f v1alpha1.AccessSource) model.AccessSource {
					return model.AccessSource{Identities: strs(f.Identities), Namespaces: strs(f.Namespaces)}
				}),
				To: convertAll(r.To, func(j int, t v1alpha1.AccessTarget) model.AccessTarget {
					tpath := indexPath(path+".to", j)
					return model.AccessTarget{
						Ports: convertAll(t.Ports, func(k int, port int32) uint32 {
							return c.port(indexPath(tpath+".ports", k), port)
						}),
						Paths:   strs(t.Paths),
						Methods: strs(t.Methods),
						Headers: convertAll(t.Headers, func(_ int, h gwv1.HTTPHeaderMatch) model.ValueMatch {
							return valueMatch((*string)(h.Type), string(h.Name), h.Value)
						}),
					}
				}),
			}
		}),
	}
}

func (c *converter) backendPolicy(p *v1alpha1.BackendPolicy) *model.BackendPolicy {
	spec := &p.Spec
	bp := &model.BackendPolicy{
		Key:    c.key,
		Source: c.source(),
		Targets: convertAll(spec.TargetRefs, func(_ int, r gwv1.LocalPolicyTargetReferenceWithSectionName) model.TargetRef {
			t := targetRefs([]gwv1.LocalPolicyTargetReference{r.LocalPolicyTargetReference})[0]
			t.SectionName = string(deref(r.SectionName))
			return t
		}),
		TLS:         model.BackendTLSMesh,
		IdleTimeout: c.duration("spec.idleTimeout", spec.IdleTimeout),
	}
	if t := spec.TLS; t != nil && t.Mode != "" {
		bp.TLS = model.BackendTLSMode(t.Mode)
	}
	if lb := spec.LoadBalancer; lb != nil {
		bp.LoadBalancer = &model.LoadBalancer{Type: lb.Type, HashHeader: lb.HashHeader, HashCookie: lb.HashCookie}
	}
	if cl := spec.ConnectionLimits; cl != nil {
		const path = "spec.connectionLimits"
		bp.ConnectionLimits = &model.ConnectionLimits{
			MaxConnections:     c.count(path+".maxConnections", cl.MaxConnections),
			MaxPendingRequests: c.count(path+".maxPendingRequests", cl.MaxPendingRequests),
			MaxRequests:        c.count(path+".maxRequests", cl.MaxRequests),
		}
	}
	if od := spec.OutlierDetection; od != nil {
		const path = "spec.outlierDetection"
		bp.OutlierDetection = &model.OutlierDetection{
			Consecutive5xx:           c.count(path+".consecutive5xx", od.Consecutive5xx),
			ConsecutiveConnectErrors: c.count(path+".consecutiveConnectErrors", od.ConsecutiveConnectError),
			Interval:                 c.duration(path+".interval", od.Interval),
			BaseEjectionTime:         c.duration(path+".baseEjectionTime", od.BaseEjectionTime),
			MaxEjectionPercent:       c.count(path+".maxEjectionPercent", od.MaxEjectionPercent),
		}
	}
	if rb := spec.RetryBudget; rb != nil {
		bp.RetryBudget = &model.RetryBudget{
			Percent:    c.unsigned("spec.retryBudget.percent", rb.Percent),
			MinRetries: c.unsigned("spec.retryBudget.minRetriesConcurrency", rb.MinRetries),
		}
	}
	if rl := spec.RateLimit; rl != nil {
		bp.RateLimit = &model.RateLimit{
			Requests: c.unsigned("spec.rateLimit.requests", rl.Requests),
			Per:      c.duration("spec.rateLimit.per", &rl.Per),
			Burst:    c.count("spec.rateLimit.burst", rl.Burst),
		}
	}
	if f := spec.Faults; f != nil {
		bp.Faults = &model.Faults{}
		if d := f.Delay; d != nil {
			bp.Faults.DelayPercent = c.unsigned("spec.faults.delay.percent", d.Percent)
			bp.Faults.Delay = c.duration("spec.faults.delay.duration", &d.Duration)
		}
		if a := f.Abort; a != nil {
			bp.Faults.AbortPercent = c.unsigned("spec.faults.abort.percent", a.Percent)
			bp.Faults.AbortHTTPStatus = c.count("spec.faults.abort.httpStatus", a.HTTPStatus)
			bp.Faults.AbortGRPCStatus = c.count("spec.faults.abort.grpcStatus", a.GRPCStatus)
		}
	}
	return bp
}
