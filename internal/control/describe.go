package control

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/model"
)

// trellis describe: what applies to one workload, and why, decided by
// the functions the translator and the analyzer use (Service.Selects,
// MemberAccepts and MTLSPoliciesFor, AccessPoliciesFor, BackendPoliciesFor
// of package model), over the config as the analyzer sees it, registered
// workloads included.

func (cp *controlPlane) handleDescribe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, name := cmp.Or(q.Get("namespace"), "default"), q.Get("name")
	d, ok := describeWorkload(cp.Analysis(), cp.opts.TrustDomain, model.Key{Namespace: ns, Name: name})
	if !ok {
		writeErrors(w, http.StatusNotFound, fmt.Sprintf("no workload %s/%s: `trellis get workloads -n %s` lists the Workload resources, `trellis proxy-status` the registered proxies", ns, name, ns))
		return
	}
	writeJSON(w, d)
}

// describeWorkload explains what applies to workload key of a; false when
// there is no such workload.
func describeWorkload(a *kubesource.Analysis, trustDomain string, key model.Key) (*controlapi.Description, bool) {
	cfg := a.Config
	ix := model.NewIndex(cfg)
	w := ix.Workload(key)
	if w == nil {
		return nil, false
	}
	d := &controlapi.Description{
		Workload: w.Key.String(), Address: w.Address, ServiceAccount: w.ServiceAccount,
		Identity: identity.ID{TrustDomain: trustDomain, Namespace: w.Namespace, ServiceAccount: w.ServiceAccount}.String(),
		Source:   w.Source.Kind, Sidecar: w.HasSidecar(),
		Services: []controlapi.Applied{}, Ports: []controlapi.PortMode{}, AccessPolicies: []controlapi.Applied{},
		Routes: []controlapi.Applied{}, BackendPolicies: []controlapi.Applied{}, Findings: []analyze.Finding{},
	}
	relevant := map[analyze.Resource]bool{{Kind: "Workload", Namespace: w.Namespace, Name: w.Name}: true}
	add := func(list *[]controlapi.Applied, kind string, k model.Key, why string) {
		*list = append(*list, controlapi.Applied{Kind: kind, Namespace: k.Namespace, Name: k.Name, Why: why})
		relevant[analyze.Resource{Kind: kind, Namespace: k.Namespace, Name: k.Name}] = true
	}

	services := ix.MemberOf(w.Key)
	member := map[model.Key]*model.Service{}
	for _, s := range services {
		member[s.Key] = s
		why := "the workload lists it in spec.services (the Service has no selector)"
		if s.Selector != nil {
			why = "its selector " + formatLabels(s.Selector) + " matches the workload's labels"
		}
		add(&d.Services, "Service", s.Key, why)
	}

	for _, p := range w.Ports {
		pm := controlapi.PortMode{Port: p.Port, Name: p.Name, Mode: string(model.MemberAccepts(cfg, ix, w, p.Port))}
		policies := model.MTLSPoliciesFor(cfg, ix, w, p.Port)
		switch {
		case !w.HasSidecar():
			pm.Why = "no sidecar fronts the workload: plaintext"
		case !w.InboundCapture:
			pm.Why = "its sidecar does not capture inbound traffic: only its mesh port, which takes mesh mTLS only, reaches the port"
		case len(policies) == 0:
			pm.Why = "no MTLSPolicy applies: the default"
		default:
			pm.Why = fmt.Sprintf("MTLSPolicy %s (%s)", policies[0].Policy.Key, policyScope(policies[0].Policy.Targets))
			for _, o := range policies[1:] {
				pm.Why += fmt.Sprintf("; MTLSPolicy %s also applies and is not in effect", o.Policy.Key)
			}
			for _, o := range policies {
				relevant[analyze.Resource{Kind: "MTLSPolicy", Namespace: o.Policy.Namespace, Name: o.Policy.Name}] = true
			}
		}
		d.Ports = append(d.Ports, pm)
	}

	for _, p := range model.AccessPoliciesFor(cfg, ix, w) {
		add(&d.AccessPolicies, "AccessPolicy", p.Key, fmt.Sprintf("%s, %s", p.Action, policyScope(p.Targets)))
	}

	route := func(kind string, r *model.Route, backends func(yield func(rule int, b model.Backend))) {
		var why []string
		for _, p := range r.Parents {
			if p.Kind == model.ParentService && member[p.Key] != nil {
				why = append(why, fmt.Sprintf("its parentRef is Service %s: it routes the mesh's calls to that Service", p.Key))
			}
		}
		seen := map[string]bool{}
		backends(func(rule int, b model.Backend) {
			if b.Kind != "Service" || member[b.Service] == nil {
				return
			}
			s := fmt.Sprintf("rule %d sends to Service %s", rule, b.Service)
			if !seen[s] {
				seen[s] = true
				why = append(why, s)
			}
		})
		if len(why) > 0 {
			add(&d.Routes, kind, r.Key, strings.Join(why, "; "))
		}
	}
	for _, r := range cfg.HTTPRoutes {
		route("HTTPRoute", &r.Route, func(yield func(int, model.Backend)) {
			for i, rule := range r.Rules {
				for _, b := range rule.Backends {
					yield(i, b)
				}
			}
		})
	}
	for _, r := range cfg.GRPCRoutes {
		route("GRPCRoute", &r.Route, func(yield func(int, model.Backend)) {
			for i, rule := range r.Rules {
				for _, b := range rule.Backends {
					yield(i, b)
				}
			}
		})
	}
	for _, r := range cfg.TLSRoutes {
		route("TLSRoute", &r.Route, func(yield func(int, model.Backend)) {
			for i, rule := range r.Rules {
				for _, b := range rule.Backends {
					yield(i, b)
				}
			}
		})
	}
	for _, r := range cfg.TCPRoutes {
		route("TCPRoute", &r.Route, func(yield func(int, model.Backend)) {
			for i, rule := range r.Rules {
				for _, b := range rule.Backends {
					yield(i, b)
				}
			}
		})
	}

	seenPolicy := map[model.Key]bool{}
	for _, s := range services {
		for _, sp := range s.Ports {
			refs := model.BackendPoliciesFor(cfg.BackendPolicies, s, sp)
			if len(refs) == 0 || seenPolicy[refs[0].Policy.Key] {
				continue
			}
			seenPolicy[refs[0].Policy.Key] = true
			add(&d.BackendPolicies, "BackendPolicy", refs[0].Policy.Key,
				fmt.Sprintf("callers of Service %s port %d apply it (it targets the %s)", s.Key, sp.Port, map[bool]string{true: "port", false: "Service"}[refs[0].ByPort()]))
		}
	}

	for _, f := range a.Findings {
		if relevant[f.Resource] {
			d.Findings = append(d.Findings, f)
		}
	}
	return d, true
}

// policyScope says how a policy with targets reaches a workload.
func policyScope(targets []model.TargetRef) string {
	if len(targets) == 0 {
		return "no targetRefs: every workload of its namespace"
	}
	var names []string
	for _, t := range targets {
		if t.IsService() {
			names = append(names, t.Name)
		}
	}
	return "targets Service " + strings.Join(names, ", ")
}

// formatLabels writes labels as k=v,... in key order.
func formatLabels(l map[string]string) string {
	var out []string
	for k, v := range l {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
