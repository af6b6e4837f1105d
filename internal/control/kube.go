package control

import (
	"context"
	"maps"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/store"
)

// On Kubernetes (Options.Kube), package kubesource feeds the resources
// through Update, the very path the store's watch takes
// (applyItemLocked): one mesh state, one push loop, whatever the source.
// The store then keeps only what is not config (registrations, join
// tokens, the CA); its resources/ keys are ignored.

var (
	_ kubesource.Sink = (*controlPlane)(nil)
	_ kubesource.View = (*controlPlane)(nil)
)

// errKubernetesSource refuses writes of resources through the API when
// the API server holds them.
const errKubernetesSource = "the control plane reads its config from Kubernetes: write resources with kubectl (kubectl apply -f FILE), not trellis apply or delete"

// fromKube reports whether the resources come from Kubernetes.
func (cp *controlPlane) fromKube() bool { return cp.opts.Kube != nil }

// ignoredStoreKey reports whether the store's value of key is not part of
// the mesh state: resources, when they come from Kubernetes.
func (cp *controlPlane) ignoredStoreKey(key string) bool {
	return cp.fromKube() && strings.HasPrefix(key, resourcesPrefix)
}

// Update applies changes of resources from Kubernetes.
func (cp *controlPlane) Update(events []store.Event) {
	cp.mu.Lock()
	for _, ev := range events {
		cp.applyItemLocked(ev)
	}
	cp.mu.Unlock()
	cp.trigger()
}

// SetNamespaces replaces the namespace labels: route attachment by
// namespace selector may change for any proxy.
func (cp *controlPlane) SetNamespaces(labels map[string]map[string]string) {
	cp.mu.Lock()
	if maps.EqualFunc(cp.namespaces, labels, maps.Equal) {
		cp.mu.Unlock()
		return
	}
	cp.namespaces = labels
	cp.objectsGen++
	cp.markDirtyLocked(allProxies)
	cp.mu.Unlock()
	cp.trigger()
}

// Analysis is the config as the analyzer sees it, with registered
// workloads and namespace labels, its findings and route attachments:
// what status is made of.
func (cp *controlPlane) Analysis() *kubesource.Analysis {
	stored, amend, _ := cp.analysisInput()
	cfg := *stored.Model()
	cfg.Workloads = slices.Clone(cfg.Workloads)
	amend(&cfg)
	return &kubesource.Analysis{
		Config:      &cfg,
		Findings:    stored.Analyze(amend),
		Attachments: analyze.Attachments(&cfg),
		Proxies:     cp.gatewayProxies(),
	}
}

// listResources lists the resources under prefix, sorted by key: those
// the control plane holds when they come from Kubernetes, else the
// store's.
func (cp *controlPlane) listResources(ctx context.Context, prefix string) ([]store.Item, error) {
	if !cp.fromKube() {
		items, _, err := cp.store.List(ctx, prefix)
		return items, err
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var items []store.Item
	for _, k := range slices.Sorted(maps.Keys(cp.values)) {
		if strings.HasPrefix(k, prefix) {
			items = append(items, store.Item{Key: k, Value: cp.values[k]})
		}
	}
	return items, nil
}
