package resource

import (
	"cmp"
	"errors"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/model"
)

// Stored is a set of objects, at most one per resource, with their model:
// what a control plane judges each change against and translates from.
// With derives the set a change leaves by converting only the objects
// changed and patching the model, where Model and Analyze convert and sort
// every object: at tens of thousands of resources, a change of one costs
// little more than the analysis itself. A Stored is never modified; it is
// safe for concurrent use.
type Stored struct {
	objs map[analyze.Resource]*Object
	conv map[analyze.Resource]*converted
	// cfg is the model of objs, sorted.
	cfg *model.Config
	mc  *ModelCache
}

// NewStored returns the set of objs (unique by resource; a later
// duplicate replaces an earlier one), converting them with mc's help.
func NewStored(objs []*Object, mc *ModelCache) *Stored {
	s := &Stored{objs: map[analyze.Resource]*Object{}, conv: map[analyze.Resource]*converted{}, cfg: &model.Config{}, mc: mc}
	if mc == nil {
		s.mc = NewModelCache()
	}
	for _, o := range objs {
		s.objs[refOf(o)] = o
	}
	for _, r := range slices.SortedFunc(maps.Keys(s.objs), compareResources) {
		if one := s.convert(s.objs[r]); one != nil {
			s.conv[r] = one
			appendConfig(s.cfg, one.cfg)
		}
	}
	s.cfg.Sort()
	return s
}

// Len is the number of objects in the set.
func (s *Stored) Len() int { return len(s.objs) }

// Objects returns the objects, sorted by resource.
func (s *Stored) Objects() []*Object {
	out := make([]*Object, 0, len(s.objs))
	for _, r := range slices.SortedFunc(maps.Keys(s.objs), compareResources) {
		out = append(out, s.objs[r])
	}
	return out
}

// Model returns the model of the set, sorted. It must not be modified:
// copy it (shallowly, and the slices to change) to amend it.
func (s *Stored) Model() *model.Config { return s.cfg }

// Errors returns the conversion errors of the objects: what of them is not
// in the model, and why.
func (s *Stored) Errors() error {
	var errs []error
	for _, r := range slices.SortedFunc(maps.Keys(s.conv), compareResources) {
		errs = append(errs, s.conv[r].errs...)
	}
	return errors.Join(errs...)
}

// With returns the set with changed stored (each replacing the object of
// its resource) and removed gone.
func (s *Stored) With(changed []*Object, removed []analyze.Resource) *Stored {
	next := &Stored{objs: maps.Clone(s.objs), conv: maps.Clone(s.conv), mc: s.mc}
	// What each resource becomes: nil when removed. A later change of a
	// resource replaces an earlier one.
	final := map[analyze.Resource]*Object{}
	for _, r := range removed {
		final[r] = nil
	}
	for _, o := range changed {
		final[refOf(o)] = o
	}
	var drop, add model.Config
	for r, o := range final {
		if old := next.conv[r]; old != nil {
			appendConfig(&drop, old.cfg)
			delete(next.conv, r)
		}
		delete(next.objs, r)
		if o == nil {
			continue
		}
		next.objs[r] = o
		if one := next.convert(o); one != nil {
			next.conv[r] = one
			appendConfig(&add, one.cfg)
		}
	}
	cfg := *s.cfg
	cfg.GatewayClasses = patch(cfg.GatewayClasses, drop.GatewayClasses, add.GatewayClasses, func(c *model.GatewayClass) model.Key { return model.Key{Name: c.Name} })
	cfg.Gateways = patch(cfg.Gateways, drop.Gateways, add.Gateways, func(g *model.Gateway) model.Key { return g.Key })
	cfg.ListenerSets = patch(cfg.ListenerSets, drop.ListenerSets, add.ListenerSets, func(l *model.ListenerSet) model.Key { return l.Key })
	cfg.Services = patch(cfg.Services, drop.Services, add.Services, func(x *model.Service) model.Key { return x.Key })
	cfg.Workloads = patch(cfg.Workloads, drop.Workloads, add.Workloads, func(w *model.Workload) model.Key { return w.Key })
	cfg.HTTPRoutes = patch(cfg.HTTPRoutes, drop.HTTPRoutes, add.HTTPRoutes, func(r *model.HTTPRoute) model.Key { return r.Key })
	cfg.GRPCRoutes = patch(cfg.GRPCRoutes, drop.GRPCRoutes, add.GRPCRoutes, func(r *model.GRPCRoute) model.Key { return r.Key })
	cfg.TLSRoutes = patch(cfg.TLSRoutes, drop.TLSRoutes, add.TLSRoutes, func(r *model.TLSRoute) model.Key { return r.Key })
	cfg.TCPRoutes = patch(cfg.TCPRoutes, drop.TCPRoutes, add.TCPRoutes, func(r *model.TCPRoute) model.Key { return r.Key })
	cfg.ReferenceGrants = patch(cfg.ReferenceGrants, drop.ReferenceGrants, add.ReferenceGrants, func(g *model.ReferenceGrant) model.Key { return g.Key })
	cfg.MTLSPolicies = patch(cfg.MTLSPolicies, drop.MTLSPolicies, add.MTLSPolicies, func(p *model.MTLSPolicy) model.Key { return p.Key })
	cfg.AccessPolicies = patch(cfg.AccessPolicies, drop.AccessPolicies, add.AccessPolicies, func(p *model.AccessPolicy) model.Key { return p.Key })
	cfg.BackendPolicies = patch(cfg.BackendPolicies, drop.BackendPolicies, add.BackendPolicies, func(p *model.BackendPolicy) model.Key { return p.Key })
	next.cfg = &cfg
	return next
}

// Analyze analyzes the set as the package's Analyze analyzes its objects.
// amend may only add workloads.
func (s *Stored) Analyze(amend func(*model.Config)) []analyze.Finding {
	return s.AnalyzeParts(amend, analyze.AllParts)
}

// AnalyzeParts is Analyze with the analyzer's checks of parts only. The
// objects' conversion errors go with analyze.PartWorkloads: they are
// among the findings when parts has it.
func (s *Stored) AnalyzeParts(amend func(*model.Config), parts analyze.Part) []analyze.Finding {
	var findings []analyze.Finding
	if parts&analyze.PartWorkloads != 0 {
		findings = errorFindings(analyze.CodeUnusable, s.Errors())
	}
	cfg := *s.cfg
	if amend != nil {
		cfg.Workloads = slices.Clone(cfg.Workloads)
		amend(&cfg)
		slices.SortStableFunc(cfg.Workloads, func(a, b *model.Workload) int { return a.Key.Compare(b.Key) })
	}
	located := analyze.AnalyzeParts(&cfg, parts)
	for i, f := range located {
		if o := s.objs[f.Resource]; o != nil && o.File != "" {
			located[i].File = o.File
			located[i].Line = o.LineOf(f.Field)
		}
	}
	findings = append(findings, located...)
	analyze.Sort(findings)
	return findings
}

// convert returns o's conversion, nil for an object of a kind the model
// does not have.
func (s *Stored) convert(o *Object) *converted {
	if o == nil || o.Obj == nil || !inModel(o.Obj) {
		return nil
	}
	meta, ok := o.Obj.(metav1.Object)
	if !ok {
		return nil
	}
	return s.mc.convert(o, meta, objectKey(o, meta))
}

func refOf(o *Object) analyze.Resource {
	return analyze.Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
}

func compareResources(a, b analyze.Resource) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// patch returns sorted s without the objects of drop and with those of
// add, in order; s is not modified.
func patch[T comparable](s, drop, add []T, key func(T) model.Key) []T {
	if len(drop) == 0 && len(add) == 0 {
		return s
	}
	out := slices.Clone(s)
	find := func(k model.Key) int {
		i, _ := slices.BinarySearchFunc(out, k, func(x T, k model.Key) int { return key(x).Compare(k) })
		return i
	}
	for _, d := range drop {
		k := key(d)
		for i := find(k); i < len(out) && key(out[i]) == k; i++ {
			if out[i] == d {
				out = slices.Delete(out, i, i+1)
				break
			}
		}
	}
	for _, a := range add {
		k := key(a)
		i := find(k)
		for i < len(out) && key(out[i]) == k {
			i++
		}
		out = slices.Insert(out, i, a)
	}
	if len(out) == 0 {
		return nil // as a model built anew has it
	}
	return out
}
