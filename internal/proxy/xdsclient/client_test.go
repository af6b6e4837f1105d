package xdsclient

import (
	"errors"
	"maps"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// changes records what an UpdateHandler is told.
type changes struct {
	changed []string
	removed []string
	reject  bool
	calls   int
}

func (h *changes) Names(string) []string { return nil }
func (h *changes) Apply(string, map[string]proto.Message) error {
	return errors.New("Apply called on an UpdateHandler")
}
func (h *changes) Update(_ string, changed map[string]Resource, removed []string) error {
	h.calls++
	if h.reject {
		return errors.New("rejected")
	}
	for name, r := range changed {
		if r.Message.(*clusterv3.Cluster).GetName() != name || len(r.Raw) == 0 {
			return errors.New("resource without its name or bytes")
		}
	}
	h.changed, h.removed = slices.Sorted(maps.Keys(changed)), removed
	return nil
}

// cluster is a Cluster whose content differs with timeout.
func cluster(t *testing.T, name string, timeout int64) *anypb.Any {
	t.Helper()
	a, err := anypb.New(&clusterv3.Cluster{Name: name, ConnectTimeout: &durationpb.Duration{Seconds: timeout}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestStateOfTheWorldChanges: an UpdateHandler on a state-of-the-world
// stream is told only the resources whose bytes changed and the names
// that disappeared; a rejected response changes nothing.
func TestStateOfTheWorldChanges(t *testing.T) {
	h := &changes{}
	c := New(Options{}, h)
	send := func(rs ...*anypb.Any) error {
		return c.apply(&discoveryv3.DiscoveryResponse{TypeUrl: ClusterType, Resources: rs})
	}
	check := func(step string, changed, removed []string) {
		t.Helper()
		if !slices.Equal(h.changed, changed) || !slices.Equal(h.removed, removed) {
			t.Errorf("%s: changed %v removed %v, want %v and %v", step, h.changed, h.removed, changed, removed)
		}
	}
	// The first response, empty, is handed over; the same again is not.
	for range 2 {
		if err := send(); err != nil {
			t.Fatal(err)
		}
	}
	if h.calls != 1 {
		t.Errorf("two empty responses: %d updates, want 1", h.calls)
	}
	if err := send(cluster(t, "a", 1), cluster(t, "b", 1), cluster(t, "c", 1)); err != nil {
		t.Fatal(err)
	}
	check("first", []string{"a", "b", "c"}, nil)
	calls := h.calls
	if err := send(cluster(t, "a", 1), cluster(t, "b", 1), cluster(t, "c", 1)); err != nil {
		t.Fatal(err)
	}
	if h.calls != calls {
		t.Error("a response with nothing changed was handed over")
	}
	if err := send(cluster(t, "a", 1), cluster(t, "b", 2), cluster(t, "d", 1)); err != nil {
		t.Fatal(err)
	}
	check("second", []string{"b", "d"}, []string{"c"})
	h.reject = true
	if err := send(cluster(t, "a", 5)); err == nil {
		t.Fatal("a rejected update was not an error")
	}
	h.reject = false
	// After the rejection the client still has a, b (2) and d.
	if err := send(cluster(t, "a", 1), cluster(t, "b", 2), cluster(t, "d", 1), cluster(t, "e", 1)); err != nil {
		t.Fatal(err)
	}
	check("after a rejection", []string{"e"}, nil)
	if err := send(cluster(t, "a", 1), cluster(t, "a", 2)); err == nil {
		t.Error("a resource twice in a response was accepted")
	}
}

// TestDeltaChanges: an UpdateHandler on a delta stream is told what the
// response carries and the removed names it had; versions are kept for
// the next stream, and nothing else.
func TestDeltaChanges(t *testing.T) {
	h := &changes{}
	c := New(Options{Delta: true}, h)
	send := func(removed []string, rs ...*anypb.Any) error {
		resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: ClusterType, RemovedResources: removed}
		for i, r := range rs {
			resp.Resources = append(resp.Resources, &discoveryv3.Resource{Resource: r, Version: string(rune('1' + i))})
		}
		return c.applyDelta(resp)
	}
	if err := send(nil, cluster(t, "a", 1), cluster(t, "b", 1)); err != nil {
		t.Fatal(err)
	}
	if err := send([]string{"a", "never-had"}, cluster(t, "c", 1)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(h.changed, []string{"c"}) || !slices.Equal(h.removed, []string{"a"}) {
		t.Errorf("changed %v removed %v, want [c] and [a]", h.changed, h.removed)
	}
	if got := slices.Sorted(maps.Keys(c.versions[ClusterType])); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("versions of %v, want b and c", got)
	}
	if len(c.applied) != 0 {
		t.Error("the client kept the resources of an UpdateHandler")
	}
	h.reject = true
	if err := send([]string{"b"}); err == nil {
		t.Fatal("a rejected update was not an error")
	}
	if _, ok := c.versions[ClusterType]["b"]; !ok {
		t.Error("a rejected removal was recorded")
	}
}
