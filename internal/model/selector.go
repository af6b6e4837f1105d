package model

import "slices"

// selectorIndex finds the services that select a workload without testing
// every service of its namespace: each service with a label selector is
// filed under one of its selector's pairs, so a workload is only tested
// against the services filed under one of its own labels. Services without
// a selector are found by the names the workload declares.
type selectorIndex struct {
	// byLabel files services under namespace, then one selector pair.
	byLabel map[string]map[labelPair][]*Service
	// byName holds the services without a selector.
	byName map[Key]*Service
}

type labelPair struct{ key, value string }

func newSelectorIndex(services []*Service) *selectorIndex {
	ix := &selectorIndex{byLabel: map[string]map[labelPair][]*Service{}, byName: map[Key]*Service{}}
	for _, s := range services {
		ix.add(s)
	}
	return ix
}

func (ix *selectorIndex) add(s *Service) {
	if s.Selector == nil {
		ix.byName[s.Key] = s
		return
	}
	if len(s.Selector) == 0 {
		return // selects nothing
	}
	// The smallest key: any pair would do, as every pair must match.
	var first labelPair
	for k, v := range s.Selector {
		if first.key == "" || k < first.key {
			first = labelPair{k, v}
		}
	}
	ns := ix.byLabel[s.Namespace]
	if ns == nil {
		ns = map[labelPair][]*Service{}
		ix.byLabel[s.Namespace] = ns
	}
	ns[first] = append(ns[first], s)
}

// selecting returns the services that select w, in key order.
func (ix *selectorIndex) selecting(w *Workload) []*Service {
	var out []*Service
	if ns := ix.byLabel[w.Namespace]; ns != nil {
		for k, v := range w.Labels {
			for _, s := range ns[labelPair{k, v}] {
				if s.Selects(w) {
					out = append(out, s)
				}
			}
		}
	}
	for _, name := range w.Services {
		if s := ix.byName[Key{Namespace: w.Namespace, Name: name}]; s != nil {
			out = append(out, s)
		}
	}
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b *Service) int { return a.Key.Compare(b.Key) })
		out = slices.Compact(out)
	}
	return out
}

// ServicesSelecting returns the services of services that select w, in key
// order.
func ServicesSelecting(services []*Service, w *Workload) []*Service {
	return newSelectorIndex(services).selecting(w)
}
