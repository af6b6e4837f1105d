package translate

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"trellis.dev/trellis/internal/model"
)

// TestRefreshEndpoints changes workloads in every way and checks, for
// every proxy, that RefreshEndpoints either declines or builds exactly
// what a full translation builds, and that it does not decline the
// endpoint churn it exists for.
func TestRefreshEndpoints(t *testing.T) {
	type change struct {
		name string
		edit func(c *model.Config)
		// refreshed: every proxy that depends on a touched service must be
		// refreshed without a full translation.
		refreshed bool
	}
	wl := func(c *model.Config, name string) *model.Workload {
		for _, w := range c.Workloads {
			if w.Key.Name == name {
				return w
			}
		}
		t.Fatalf("no workload %s", name)
		return nil
	}
	changes := []change{
		{"address", func(c *model.Config) { wl(c, "catalog-1").Address = "10.0.1.12" }, true},
		{"address of a proxyless workload", func(c *model.Config) { wl(c, "ratings-v1").Address = "10.0.1.15" }, true},
		{"locality", func(c *model.Config) { wl(c, "db-1").Locality = "us/us-1" }, true},
		{"mesh port number", func(c *model.Config) { wl(c, "reviews-v2").MeshPort = 15009 }, true},
		{"new replica, known identity", func(c *model.Config) {
			w := *wl(c, "reviews-v2")
			w.Key.Name, w.Address = "reviews-v2-b", "10.0.0.30"
			c.Workloads = append(c.Workloads, &w)
		}, true},
		{"replica gone", func(c *model.Config) {
			c.Workloads = slices.DeleteFunc(c.Workloads, func(w *model.Workload) bool { return w.Key.Name == "web-1" })
		}, false},
		{"new identity", func(c *model.Config) { wl(c, "reviews-v1").ServiceAccount = "reviews-next" }, false},
		{"sidecar removed", func(c *model.Config) { wl(c, "catalog-1").MeshPort = 0 }, false},
		{"labels move it", func(c *model.Config) {
			wl(c, "reviews-v1").Labels = map[string]string{"app": "reviews", "version": "v2"}
		}, false},
		{"port renamed", func(c *model.Config) { wl(c, "catalog-1").Ports[0].Name = "other" }, false},
	}
	for _, ch := range changes {
		t.Run(ch.name, func(t *testing.T) {
			before := demoMesh()
			after := demoMesh()
			ch.edit(after)
			after.Sort()
			ixBefore, ixAfter := model.NewIndex(before), model.NewIndex(after)
			// The services whose members changed: those selecting a changed
			// workload, before or after.
			touched := map[model.Key]bool{}
			for _, c := range []*model.Config{before, after} {
				for _, w := range c.Workloads {
					old, now := ixBefore.Workload(w.Key), ixAfter.Workload(w.Key)
					if old != nil && now != nil && workloadsEqual(old, now) {
						continue
					}
					for _, ix := range []*model.Index{ixBefore, ixAfter} {
						for _, s := range ix.MemberOf(w.Key) {
							touched[s.Key] = true
						}
					}
				}
			}
			if len(touched) == 0 {
				t.Fatal("the change touches no service")
			}
			compared := 0
			for name, p := range demoProxies(before) {
				in := Input{Config: before, Index: ixBefore, Proxy: p, TrustBundle: []byte("root")}
				prev, _ := Translate(in, Options{})
				services := map[model.Key]bool{}
				for k := range touched {
					if _, ok := slices.BinarySearch(prev.Deps, EndpointsKey(k)); ok {
						services[k] = true
					}
				}
				if len(services) == 0 {
					continue
				}
				compared++
				in.Config, in.Index = after, ixAfter
				want, wantProblems := Translate(in, Options{})
				got, gotProblems, ok := RefreshEndpoints(in, Options{}, prev, services)
				if !ok {
					if ch.refreshed {
						t.Errorf("%s: refresh declined endpoint churn of %v", name, slices.Collect(maps.Keys(services)))
					}
					continue
				}
				if !bytes.Equal(render(t, got, gotProblems), render(t, want, wantProblems)) {
					t.Errorf("%s: refreshed config differs from a full translation:\n%s\nwant:\n%s", name,
						render(t, got, gotProblems), render(t, want, wantProblems))
				}
				if !slices.Equal(got.Deps, want.Deps) {
					t.Errorf("%s: deps %v, want %v", name, got.Deps, want.Deps)
				}
			}
			if compared == 0 {
				t.Fatal("no proxy depends on the endpoints changed")
			}
		})
	}
}

func workloadsEqual(a, b *model.Workload) bool {
	return a.Address == b.Address && a.ServiceAccount == b.ServiceAccount && a.MeshPort == b.MeshPort &&
		a.Locality == b.Locality && maps.Equal(a.Labels, b.Labels) && slices.Equal(a.Ports, b.Ports) && slices.Equal(a.Services, b.Services)
}
