package resource

import (
	"runtime"
	"sync"
	"weak"

	"trellis.dev/trellis/internal/analyze"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/model"
)

// ModelCache remembers the model conversion of each object, so that a
// caller converting nearly the same objects again and again (the control
// plane, which judges every apply against everything stored) converts only
// the objects that are new. An object must not change once converted.
// Entries live as long as their object; a ModelCache is safe for
// concurrent use.
type ModelCache struct {
	mu      sync.Mutex
	entries map[weak.Pointer[Object]]*converted
}

// converted is one object's conversion: a Config holding only it (nothing
// when it could not be converted) and its errors.
type converted struct {
	cfg  *model.Config
	errs []error
}

// NewModelCache returns an empty cache.
func NewModelCache() *ModelCache {
	return &ModelCache{entries: map[weak.Pointer[Object]]*converted{}}
}

// Model is the package's Model, with conversions taken from the cache.
func (mc *ModelCache) Model(objs []*Object) (*model.Config, error) { return modelOf(objs, mc) }

// Analyze is the package's Analyze, with conversions taken from the cache.
func (mc *ModelCache) Analyze(objs []*Object, amend func(*model.Config)) []analyze.Finding {
	return analyzeWith(objs, amend, mc)
}

func (mc *ModelCache) convert(o *Object, meta metav1.Object, key model.Key) *converted {
	wp := weak.Make(o)
	mc.mu.Lock()
	one := mc.entries[wp]
	mc.mu.Unlock()
	if one != nil {
		return one
	}
	c := &converter{o: o, meta: meta, key: key}
	one = &converted{cfg: &model.Config{}}
	c.convert(one.cfg)
	one.errs = c.errs
	mc.mu.Lock()
	if _, ok := mc.entries[wp]; !ok {
		mc.entries[wp] = one
		runtime.AddCleanup(o, func(wp weak.Pointer[Object]) {
			mc.mu.Lock()
			delete(mc.entries, wp)
			mc.mu.Unlock()
		}, wp)
	}
	mc.mu.Unlock()
	return one
}

// len reports how many conversions the cache holds.
func (mc *ModelCache) len() int {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return len(mc.entries)
}

// appendConfig appends the objects of src to dst.
func appendConfig(dst, src *model.Config) {
	dst.GatewayClasses = append(dst.GatewayClasses, src.GatewayClasses...)
	dst.Gateways = append(dst.Gateways, src.Gateways...)
	dst.ListenerSets = append(dst.ListenerSets, src.ListenerSets...)
	dst.Services = append(dst.Services, src.Services...)
	dst.Workloads = append(dst.Workloads, src.Workloads...)
	dst.HTTPRoutes = append(dst.HTTPRoutes, src.HTTPRoutes...)
	dst.GRPCRoutes = append(dst.GRPCRoutes, src.GRPCRoutes...)
	dst.TLSRoutes = append(dst.TLSRoutes, src.TLSRoutes...)
	dst.TCPRoutes = append(dst.TCPRoutes, src.TCPRoutes...)
	dst.ReferenceGrants = append(dst.ReferenceGrants, src.ReferenceGrants...)
	dst.MTLSPolicies = append(dst.MTLSPolicies, src.MTLSPolicies...)
	dst.AccessPolicies = append(dst.AccessPolicies, src.AccessPolicies...)
	dst.BackendPolicies = append(dst.BackendPolicies, src.BackendPolicies...)
}
