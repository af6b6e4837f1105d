package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIndexMembersMatchSelects checks the indexed membership against the
// definition, Service.Selects, on random meshes.
func TestIndexMembersMatchSelects(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) string { return fmt.Sprint(rnd.IntN(n)) }
	labels := func() map[string]string {
		m := map[string]string{}
		for range rnd.IntN(4) {
			m["k"+pick(3)] = "v" + pick(3)
		}
		return m
	}
	for round := range 200 {
		c := &Config{}
		for i := range rnd.IntN(12) {
			s := &Service{Key: Key{Namespace: "ns" + pick(2), Name: fmt.Sprint("s", i)}}
			switch rnd.IntN(4) {
			case 0: // no selector: members by name
			case 1:
				s.Selector = map[string]string{} // selects nothing
			default:
				s.Selector = labels()
			}
			c.Services = append(c.Services, s)
		}
		for i := range rnd.IntN(12) {
			w := &Workload{Key: Key{Namespace: "ns" + pick(2), Name: fmt.Sprint("w", i)}, Labels: labels()}
			for range rnd.IntN(3) {
				w.Services = append(w.Services, "s"+pick(12))
			}
			c.Workloads = append(c.Workloads, w)
		}
		c.Sort()
		ix := NewIndex(c)
		for _, s := range c.Services {
			var want []*Workload
			for _, w := range c.Workloads {
				if s.Selects(w) {
					want = append(want, w)
				}
			}
			if got := ix.Members(s.Key); !slices.Equal(got, want) {
				t.Fatalf("round %d: members of %s = %v, want %v", round, s.Key, keys(got), keys(want))
			}
		}
		// PolicyWorkloads finds through the indexes what PolicySelects
		// says of every workload.
		for range 3 {
			ns := "ns" + pick(2)
			var targets []TargetRef
			for range rnd.IntN(3) {
				kind := "Service"
				if rnd.IntN(4) == 0 {
					kind = "Gateway"
				}
				targets = append(targets, TargetRef{GroupKind: GroupKind{Kind: kind}, Name: "s" + pick(12)})
			}
			var want []*Workload
			for _, w := range c.Workloads {
				if ix.PolicySelects(ns, targets, w) {
					want = append(want, w)
				}
			}
			if got := ix.PolicyWorkloads(ns, targets); !slices.Equal(got, want) {
				t.Fatalf("round %d: PolicyWorkloads(%s, %v) = %v, want %v", round, ns, targets, keys(got), keys(want))
			}
		}
		for _, w := range c.Workloads {
			var want []*Service
			for _, s := range c.Services {
				if s.Selects(w) {
					want = append(want, s)
				}
			}
			if got := ix.MemberOf(w.Key); !slices.Equal(got, want) {
				t.Fatalf("round %d: services of %s = %v, want %v", round, w.Key, keys(got), keys(want))
			}
			if got := ServicesSelecting(c.Services, w); !slices.Equal(got, want) {
				t.Fatalf("round %d: ServicesSelecting(%s) = %v, want %v", round, w.Key, keys(got), keys(want))
			}
		}
	}
}

func keys[T interface{ comparable }](in []T) []string {
	var out []string
	for _, v := range in {
		out = append(out, fmt.Sprint(v))
	}
	return out
}
