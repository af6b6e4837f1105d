package control

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/jointoken"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/translate"
	"trellis.dev/trellis/internal/xds"
)

// Store key prefixes.
const (
	resourcesPrefix = "resources/"
	proxiesPrefix   = "proxies/"
)

func resourceKey(kind, namespace, name string) string {
	if namespace == "" {
		return resourcesPrefix + kind + "/" + name
	}
	return resourcesPrefix + kind + "/" + namespace + "/" + name
}

// controlPlane holds the mesh state and keeps every connected proxy's
// config current.
type controlPlane struct {
	opts  Options
	log   *slog.Logger
	store *store.Store
	ca    *ca.CA
	trust *caTrust
	xds   *xds.Server
	// tokens are the join tokens, under their own prefix of the store.
	tokens *jointoken.Store
	ready  atomic.Bool
	stop   atomic.Bool

	// kick asks the push loop for a rebuild.
	kick chan struct{}

	mu sync.Mutex
	// objects are the stored resources by store key; values their stored
	// encoding.
	objects map[string]*resource.Object
	values  map[string][]byte
	// registrations are the proxies' registrations by node ID, as stored.
	registrations map[string]*nodemeta.Metadata
	// connected maps node IDs with a live ADS stream to it.
	connected map[string]*connection
	// chains are the PEM certificate chains last issued to each node.
	chains map[string][]byte
	// problems are what could not be translated, per node.
	problems map[string][]string
	// pending are the deregistrations of disconnected proxies, waiting out
	// the grace period.
	pending map[string]*time.Timer

	// pushMu serializes translation and pushes.
	pushMu sync.Mutex
	// applyMu serializes applies; queue holds those waiting for it
	// (guarded by queueMu), judged together by whoever holds it (apply.go).
	applyMu sync.Mutex
	queueMu sync.Mutex
	queue   []*applyJob
	// loading counts applies being decoded and validated, on their way to
	// the queue.
	loading atomic.Int64
	// objectsGen counts changes to objects. stored is the set of them with
	// its model, brought up to date with the resources changed since
	// (storedDirty) when asked for (storedLocked); guarded by mu.
	objectsGen  uint64
	stored      *resource.Stored
	storedDirty map[analyze.Resource]bool
	// warned is the set whose conversion errors were last logged
	// (guarded by pushMu).
	warned *resource.Stored
	// models remembers each stored object's conversion to the model, for
	// analysis and translation.
	models *resource.ModelCache
	// services are the stored Services by namespace (guarded by mu), to
	// find which services a workload change concerns.
	services map[string]map[model.Key]*model.Service
	// namespaces are the namespaces' labels, known on Kubernetes only
	// (model.Config.Namespaces); guarded by mu.
	namespaces map[string]map[string]string
	// dirty are the dependency keys (translate.ServiceKey, ...) changes
	// touched since the last push round; dirtyAll asks for every proxy.
	// deps are the keys each proxy's last config was built from.
	dirty    map[string]bool
	dirtyAll bool
	deps     map[string]map[string]bool
	// built is the config last built for each proxy, which endpoint
	// changes refresh (translate.RefreshEndpoints). Guarded by mu.
	built    map[string]*translate.Resources
	lastFull time.Time
	// regsGen counts changes to registrations; before are the findings of
	// the config at beforeGen (objectsGen, regsGen), guarded by applyMu.
	regsGen   uint64
	before    *analysis
	beforeGen [2]uint64
	metrics   *metrics
	// wg tracks the goroutines keeping registrations alive.
	wg sync.WaitGroup
}

type connection struct {
	streamID int64
	cancel   context.CancelFunc
	lease    *store.Lease
}

func newControlPlane(ctx context.Context, opts Options, st *store.Store, authority *ca.CA) *controlPlane {
	cp := &controlPlane{
		opts:          opts,
		log:           opts.Logger,
		store:         st,
		ca:            authority,
		tokens:        jointoken.New(st, jointoken.Options{TrustDomain: opts.TrustDomain, Logger: opts.Logger}),
		kick:          make(chan struct{}, 1),
		objects:       map[string]*resource.Object{},
		values:        map[string][]byte{},
		models:        resource.NewModelCache(),
		services:      map[string]map[model.Key]*model.Service{},
		registrations: map[string]*nodemeta.Metadata{},
		connected:     map[string]*connection{},
		chains:        map[string][]byte{},
		problems:      map[string][]string{},
		pending:       map[string]*time.Timer{},
		dirty:         map[string]bool{},
		storedDirty:   map[analyze.Resource]bool{},
		deps:          map[string]map[string]bool{},
		built:         map[string]*translate.Resources{},
	}
	cp.xds = xds.New(ctx, cp, opts.Logger)
	cp.metrics = newMetrics(func() float64 {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return float64(len(cp.connected))
	})
	return cp
}

func (cp *controlPlane) setReady() { cp.ready.Store(true) }
func (cp *controlPlane) stopping() { cp.stop.Store(true) }
func (cp *controlPlane) wait()     { cp.wg.Wait() }
func (cp *controlPlane) trigger() {
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// load replaces the in-memory state with the whole store and returns the
// revision it was read at.
func (cp *controlPlane) load(ctx context.Context) (int64, error) {
	items, rev, err := cp.store.List(ctx, "")
	if err != nil {
		return 0, fmt.Errorf("control: %w", err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.objects = map[string]*resource.Object{}
	cp.values = map[string][]byte{}
	cp.stored = nil
	cp.services = map[string]map[model.Key]*model.Service{}
	cp.registrations = map[string]*nodemeta.Metadata{}
	cp.objectsGen++
	cp.regsGen++
	cp.dirtyAll = true
	for _, it := range items {
		if !cp.ignoredStoreKey(it.Key) {
			cp.applyItemLocked(store.Event{Item: it})
		}
	}
	return rev, nil
}

// watch follows the store from revision rev and keeps the in-memory state
// current, reloading when the watch breaks (a compaction, a lost
// connection to an external etcd).
func (cp *controlPlane) watch(ctx context.Context, rev int64) error {
	for ctx.Err() == nil {
		err := cp.store.Watch(ctx, "", rev, func(events []store.Event) {
			mesh := false
			cp.mu.Lock()
			for _, ev := range events {
				// Join tokens, and what the control planes report about
				// the CA, change nothing any proxy is sent.
				if !strings.HasPrefix(ev.Key, jointoken.Prefix) && !strings.HasPrefix(ev.Key, "ca/") && !cp.ignoredStoreKey(ev.Key) {
					cp.applyItemLocked(ev)
					mesh = true
				}
			}
			cp.mu.Unlock()
			if mesh {
				cp.trigger()
			}
		})
		if ctx.Err() != nil {
			break
		}
		cp.log.Warn("store watch ended; reloading", "err", err)
		for ctx.Err() == nil {
			sleep(ctx, 100*time.Millisecond)
			if rev, err = cp.load(ctx); err == nil {
				cp.trigger()
				break
			}
			cp.log.Warn("reloading the store", "err", err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (cp *controlPlane) applyItemLocked(ev store.Event) {
	switch {
	case strings.HasPrefix(ev.Key, resourcesPrefix):
		if !ev.Deleted && bytes.Equal(cp.values[ev.Key], ev.Value) {
			// Already in effect: the store's watch delivering a write this
			// control plane applied at once.
			return
		}
		cp.objectsGen++
		if old := cp.objects[ev.Key]; old != nil {
			cp.markDirtyLocked(cp.changeKeysLocked(old)...)
			cp.indexServiceLocked(old, false)
			cp.storedDirty[resourceOf(old)] = true
		}
		delete(cp.values, ev.Key)
		if ev.Deleted {
			delete(cp.objects, ev.Key)
			return
		}
		kind, _, _ := strings.Cut(strings.TrimPrefix(ev.Key, resourcesPrefix), "/")
		obj, err := resource.DecodeOne(kind, ev.Value)
		if err != nil {
			// Everything stored was validated on the way in; a value that no
			// longer decodes (written by another version?) is skipped.
			cp.log.Error("stored resource does not decode; ignoring it", "key", ev.Key, "err", err)
			delete(cp.objects, ev.Key)
			return
		}
		cp.objects[ev.Key] = obj
		cp.values[ev.Key] = ev.Value
		cp.storedDirty[resourceOf(obj)] = true
		cp.indexServiceLocked(obj, true)
		cp.markDirtyLocked(cp.changeKeysLocked(obj)...)
	case strings.HasPrefix(ev.Key, proxiesPrefix):
		cp.regsGen++
		id := strings.TrimPrefix(ev.Key, proxiesPrefix)
		if old := cp.registrations[id]; old != nil {
			cp.markDirtyLocked(cp.registrationKeysLocked(id, old)...)
		}
		if ev.Deleted {
			delete(cp.registrations, id)
			return
		}
		meta, err := decodeRegistration(ev.Value)
		if err != nil {
			cp.log.Error("stored registration does not decode; ignoring it", "node", id, "err", err)
			return
		}
		cp.registrations[id] = meta
		cp.markDirtyLocked(cp.registrationKeysLocked(id, meta)...)
	}
}

// resourceOf names an object for the analyzer.
func resourceOf(o *resource.Object) analyze.Resource {
	return analyze.Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
}

// storedLocked returns the set of stored objects, brought up to date.
// Callers hold cp.mu.
func (cp *controlPlane) storedLocked() *resource.Stored {
	if cp.stored == nil {
		cp.stored = resource.NewStored(slices.Collect(maps.Values(cp.objects)), cp.models)
		clear(cp.storedDirty)
		return cp.stored
	}
	if len(cp.storedDirty) == 0 {
		return cp.stored
	}
	var changed []*resource.Object
	var removed []analyze.Resource
	for r := range cp.storedDirty {
		if o := cp.objects[resourceKey(r.Kind, r.Namespace, r.Name)]; o != nil {
			changed = append(changed, o)
		} else {
			removed = append(removed, r)
		}
	}
	clear(cp.storedDirty)
	cp.stored = cp.stored.With(changed, removed)
	return cp.stored
}

// markDirtyLocked records dependency keys a change touched; "*" asks for
// every proxy. Callers hold cp.mu.
func (cp *controlPlane) markDirtyLocked(keys ...string) {
	for _, k := range keys {
		if k == allProxies {
			cp.dirtyAll = true
			continue
		}
		cp.dirty[k] = true
	}
}

// allProxies is the change key that concerns every proxy.
const allProxies = "*"

// proxyKey is the dependency key of a proxy's own registration.
func proxyKey(id string) string { return "proxy/" + id }

// registrationKeysLocked are the keys a proxy's registration touches: the
// proxy itself and, through its workload, the services that select it.
// Callers hold cp.mu.
func (cp *controlPlane) registrationKeysLocked(id string, m *nodemeta.Metadata) []string {
	keys := []string{proxyKey(id)}
	if meshWorkload(m) {
		w := workloadOf(m)
		keys = append(keys, cp.selectingKeysLocked(&w)...)
	}
	return append(keys, gatewayProxyKeys(m)...)
}

// selectingKeysLocked are the endpoint keys of the stored services that
// select w: a change of w changes their endpoints and, at most, their
// clusters in other proxies' config (see translate.RefreshEndpoints).
// Callers hold cp.mu.
func (cp *controlPlane) selectingKeysLocked(w *model.Workload) []string {
	var keys []string
	for _, s := range model.ServicesSelecting(slices.Collect(maps.Values(cp.services[w.Namespace])), w) {
		keys = append(keys, translate.EndpointsKey(s.Key))
	}
	return keys
}

// indexServiceLocked adds a stored Service to cp.services, or removes it.
// Callers hold cp.mu.
func (cp *controlPlane) indexServiceLocked(o *resource.Object, add bool) {
	if o.Kind != "Service" {
		return
	}
	key := model.Key{Namespace: o.Namespace, Name: o.Name}
	ns := cp.services[o.Namespace]
	if !add {
		delete(ns, key)
		return
	}
	cfg, err := cp.models.Model([]*resource.Object{o})
	if err != nil || len(cfg.Services) != 1 {
		return
	}
	if ns == nil {
		ns = map[model.Key]*model.Service{}
		cp.services[o.Namespace] = ns
	}
	ns[key] = cfg.Services[0]
}

// changeKeysLocked are the dependency keys a stored resource touches.
// Kinds the translator does not read depend on nothing yet; their change
// concerns every proxy, to be safe when the translator learns them.
// Callers hold cp.mu.
func (cp *controlPlane) changeKeysLocked(o *resource.Object) []string {
	key := model.Key{Namespace: o.Namespace, Name: o.Name}
	switch o.Kind {
	case "Service":
		return []string{translate.ServiceKey(key), translate.NamespaceKey(o.Namespace), translate.AllServicesKey}
	case "Workload":
		cfg, err := cp.models.Model([]*resource.Object{o})
		if err != nil || len(cfg.Workloads) != 1 {
			return []string{translate.NamespaceKey(o.Namespace)}
		}
		return cp.selectingKeysLocked(cfg.Workloads[0])
	case "Gateway":
		return append([]string{translate.GatewayKey(key)}, cp.gatewayNetworkKeysLocked(o)...)
	case "HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute":
		cfg, err := cp.models.Model([]*resource.Object{o})
		if err != nil || cfg == nil {
			return []string{allProxies}
		}
		var parents []model.ParentRef
		for _, r := range cfg.HTTPRoutes {
			parents = append(parents, r.Parents...)
		}
		for _, r := range cfg.GRPCRoutes {
			parents = append(parents, r.Parents...)
		}
		for _, r := range cfg.TCPRoutes {
			parents = append(parents, r.Parents...)
		}
		for _, r := range cfg.TLSRoutes {
			parents = append(parents, r.Parents...)
		}
		var keys []string
		for _, p := range parents {
			switch p.Kind {
			case model.ParentService:
				keys = append(keys, translate.ServiceKey(p.Key))
			case model.ParentGateway:
				keys = append(keys, translate.GatewayKey(p.Key))
			default:
				return []string{allProxies}
			}
		}
		return keys
	case "AccessPolicy":
		cfg, err := cp.models.Model([]*resource.Object{o})
		if err != nil || cfg == nil || len(cfg.AccessPolicies) != 1 {
			return []string{allProxies}
		}
		return translate.AccessPolicyKeys(cfg.AccessPolicies[0])
	case "BackendPolicy":
		// A BackendPolicy shapes the clusters of the Services it targets
		// (and the routes toward them): the proxies that depend on them.
		cfg, err := cp.models.Model([]*resource.Object{o})
		if err != nil || cfg == nil {
			return []string{allProxies}
		}
		var keys []string
		for _, p := range cfg.BackendPolicies {
			for _, t := range p.Targets {
				if t.Kind == "Service" && (t.Group == "" || t.Group == "core") {
					keys = append(keys, translate.ServiceKey(model.Key{Namespace: p.Namespace, Name: t.Name}))
				}
			}
		}
		return keys
	}
	return []string{allProxies}
}

// pushLoop rebuilds and pushes every proxy's config after changes, once
// they have been quiet for the debounce period.
func (cp *controlPlane) pushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.kick:
		}
		quiet := time.NewTimer(cp.opts.Debounce)
		deadline := time.NewTimer(10 * cp.opts.Debounce)
	debounce:
		for {
			select {
			case <-ctx.Done():
				quiet.Stop()
				deadline.Stop()
				return
			case <-cp.kick:
				quiet.Reset(cp.opts.Debounce)
			case <-quiet.C:
				break debounce
			case <-deadline.C:
				break debounce
			}
		}
		quiet.Stop()
		deadline.Stop()
		cp.mu.Lock()
		all, keys := cp.dirtyAll || time.Since(cp.lastFull) >= fullPushInterval, cp.dirty
		cp.dirtyAll, cp.dirty = false, map[string]bool{}
		cp.mu.Unlock()
		if all {
			cp.pushAll(ctx)
		} else {
			cp.pushAffected(ctx, keys)
		}
	}
}

// fullPushInterval bounds how long a round may pass without rebuilding
// every proxy, as a safety net under the dependency tracking.
const fullPushInterval = 5 * time.Minute

// snapshot is the input of one round of translation.
type snapshot struct {
	config *model.Config
	index  *model.Index
	// proxies are the connected proxies.
	proxies map[string]*model.Proxy
	chains  map[string][]byte
}

// build turns the in-memory state into the model. The part built from
// stored resources is kept until they change: registrations come and go
// far more often. Callers hold pushMu.
func (cp *controlPlane) build() *snapshot {
	cp.mu.Lock()
	stored := cp.storedLocked()
	regs := maps.Clone(cp.registrations)
	connected := slices.Collect(maps.Keys(cp.connected))
	chains := maps.Clone(cp.chains)
	namespaces := cp.namespaces
	cp.mu.Unlock()

	if stored != cp.warned {
		if err := stored.Errors(); err != nil {
			cp.log.Warn("some stored resources are not in effect", "err", err)
		}
		cp.warned = stored
	}
	// A shallow copy: only the workloads differ.
	cfg := *stored.Model()
	cfg.Workloads = slices.Clone(cfg.Workloads)
	cfg.Namespaces = namespaces
	addRegistered(&cfg, regs, cp.fromKube())
	cfg.GatewayProxies = gatewayProxies(regs)
	slices.SortFunc(cfg.Workloads, func(a, b *model.Workload) int { return a.Key.Compare(b.Key) })
	snap := &snapshot{config: &cfg, index: model.NewIndex(&cfg), proxies: map[string]*model.Proxy{}, chains: chains}
	for _, id := range connected {
		if m := regs[id]; m != nil {
			snap.proxies[id] = proxyOf(id, m)
		}
	}
	return snap
}

// pushAll rebuilds every connected proxy's config, translating in
// parallel (translation is pure), and pushes what changed.
func (cp *controlPlane) pushAll(ctx context.Context) {
	cp.mu.Lock()
	cp.lastFull = time.Now()
	cp.mu.Unlock()
	cp.pushRound(ctx, nil)
}

// pushAffected rebuilds the configs that depend on one of keys, and those
// of proxies never built.
func (cp *controlPlane) pushAffected(ctx context.Context, keys map[string]bool) {
	cp.pushRound(ctx, keys)
}

// pushRound rebuilds, in parallel, the configs of the connected proxies
// that depend on one of the dirty keys (all when dirty is nil), and
// pushes what changed.
func (cp *controlPlane) pushRound(ctx context.Context, dirty map[string]bool) {
	cp.pushMu.Lock()
	defer cp.pushMu.Unlock()
	start := time.Now()
	snap := cp.build()
	ids := slices.Sorted(maps.Keys(snap.proxies))
	// touched are the dirty keys each proxy depends on; nil for a proxy
	// to build in full.
	touched := make([][]string, len(ids))
	if dirty != nil {
		cp.mu.Lock()
		n := 0
		for _, id := range ids {
			deps := cp.deps[id]
			var keys []string
			for k := range dirty {
				if deps[k] {
					keys = append(keys, k)
				}
			}
			if deps == nil || len(keys) > 0 {
				ids[n], touched[n] = id, keys
				if deps == nil {
					touched[n] = nil
				}
				n++
			}
		}
		cp.mu.Unlock()
		ids, touched = ids[:n], touched[:n]
		if len(ids) == 0 {
			return
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(ids)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				cp.pushLocked(ctx, snap, ids[i], touched[i])
			}
		})
	}
	wg.Wait()
	cp.metrics.rounds.Inc()
	cp.metrics.roundSeconds.Observe(time.Since(start).Seconds())
}

// pushOne builds and pushes the config of one proxy now.
func (cp *controlPlane) pushOne(ctx context.Context, id string) {
	cp.pushMu.Lock()
	defer cp.pushMu.Unlock()
	snap := cp.build()
	if snap.proxies[id] != nil {
		cp.pushLocked(ctx, snap, id, nil)
	}
}

// pushLocked builds and pushes the config of proxy id. touched are the
// changed dependency keys that called for it: when they are all endpoint
// keys, the config last built is refreshed rather than translated anew.
func (cp *controlPlane) pushLocked(ctx context.Context, snap *snapshot, id string, touched []string) {
	start := time.Now()
	in := translate.Input{
		Config:           snap.config,
		Index:            snap.index,
		Proxy:            snap.proxies[id],
		CertificateChain: snap.chains[id],
		TrustBundle:      cp.ca.BundlePEM(),
	}
	opts := translate.Options{TrustDomain: cp.opts.TrustDomain, ClusterDomain: cp.opts.ClusterDomain, RegistryOnly: cp.opts.RegistryOnly}
	var res *translate.Resources
	var problems []translate.Problem
	if services := endpointServices(touched); services != nil {
		cp.mu.Lock()
		prev := cp.built[id]
		cp.mu.Unlock()
		if prev != nil {
			var ok bool
			if res, problems, ok = translate.RefreshEndpoints(in, opts, prev, services); ok {
				cp.metrics.refreshes.WithLabelValues("refreshed").Inc()
			} else {
				cp.metrics.refreshes.WithLabelValues("declined").Inc()
			}
		}
	}
	if res == nil {
		res, problems = translate.Translate(in, opts)
	}
	cp.metrics.translateSecs.Observe(time.Since(start).Seconds())
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.String()
	}
	// Nothing a proxy would reject is pushed: a config that differs from
	// the one pushed is compiled with the proxy's own code first, and on
	// failure the proxy keeps what it has.
	var check xds.CheckFunc
	if k := snap.proxies[id].Kind; k == model.KindSidecar || k == model.KindGateway {
		check = func(res *translate.Resources, versions map[string]map[string]string) error {
			err := proxy.Check(proxy.Config{Listeners: res.Listeners, Routes: res.Routes, Clusters: res.Clusters, Endpoints: res.Endpoints,
				Keys: versions})
			if err != nil {
				return fmt.Errorf("%w: %w", errProxyWouldReject, err)
			}
			return nil
		}
	}
	changed, err := cp.xds.Push(ctx, id, res, check)
	if errors.Is(err, errProxyWouldReject) {
		msgs = append(msgs, "config not pushed: "+err.Error())
	}
	deps := map[string]bool{proxyKey(id): true}
	for _, k := range res.Deps {
		deps[k] = true
	}
	cp.mu.Lock()
	changedProblems := !slices.Equal(cp.problems[id], msgs)
	cp.problems[id] = msgs
	cp.deps[id] = deps
	cp.built[id] = res
	cp.mu.Unlock()
	if changedProblems && len(msgs) > 0 {
		cp.log.Warn("parts of a proxy's config are not in effect", "node", id, "problems", strings.Join(msgs, "; "))
	}
	switch {
	case err != nil:
		cp.metrics.pushes.WithLabelValues("refused").Inc()
		cp.log.Error("push refused; the proxy keeps the config it has", "node", id, "err", err)
	case changed:
		cp.metrics.pushes.WithLabelValues("changed").Inc()
		cp.log.Debug("pushed", "node", id)
	default:
		cp.metrics.pushes.WithLabelValues("unchanged").Inc()
	}
}

// endpointServices returns the services of touched when every key is an
// endpoint key (translate.EndpointsKey), and nil otherwise.
func endpointServices(touched []string) map[model.Key]bool {
	if len(touched) == 0 {
		return nil
	}
	services := make(map[model.Key]bool, len(touched))
	for _, k := range touched {
		s, ok := translate.EndpointsKeyService(k)
		if !ok {
			return nil
		}
		services[s] = true
	}
	return services
}

// addRegistered adds the workloads that sidecars and proxyless gRPC
// applications registered to cfg. With replace (on Kubernetes), a
// registration replaces the workload of the same name that cfg has (a
// Pod's): one workload, described by its live sidecar.
func addRegistered(cfg *model.Config, regs map[string]*nodemeta.Metadata, replace bool) {
	// On Kubernetes (replace) a registration stands for its Pod's
	// workload, whose labels stay the Pod's: the API server's word, not
	// the proxy's, decides which Services select it.
	pods := map[model.Key]*model.Workload{}
	if replace {
		registered := map[model.Key]bool{}
		for _, m := range regs {
			if meshWorkload(m) {
				registered[model.Key{Namespace: m.Namespace, Name: m.Name}] = true
			}
		}
		if len(registered) > 0 {
			cfg.Workloads = slices.DeleteFunc(cfg.Workloads, func(w *model.Workload) bool {
				if registered[w.Key] {
					pods[w.Key] = w
					return true
				}
				return false
			})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(regs)) {
		if m := regs[id]; meshWorkload(m) {
			w := workloadOf(m)
			if pod := pods[w.Key]; pod != nil {
				w.Labels = pod.Labels
				w.Locality = cmp.Or(w.Locality, pod.Locality)
				w.Network = cmp.Or(w.Network, pod.Network)
			}
			cfg.Workloads = append(cfg.Workloads, &w)
		}
	}
}

// meshWorkload reports whether a registration is a workload of the mesh:
// a sidecar's, a gRPC application's, or a gateway's registered with a mesh
// port (an egress gateway that mesh clients reach over mTLS).
func meshWorkload(m *nodemeta.Metadata) bool {
	return m.Kind == nodemeta.KindSidecar || m.Kind == nodemeta.KindGRPC || m.Kind == nodemeta.KindGateway && m.MeshPort != 0
}

// workloadOf is the workload a sidecar or a gRPC application registered.
// A port without protocol is TCP behind a sidecar, and GRPC for a gRPC
// application.
func workloadOf(m *nodemeta.Metadata) model.Workload {
	w := model.Workload{
		Key:            model.Key{Namespace: m.Namespace, Name: m.Name},
		Source:         model.Source{Kind: "Registration", Key: model.Key{Namespace: m.Namespace, Name: m.Name}},
		Address:        m.Address,
		Labels:         m.Labels,
		ServiceAccount: m.ServiceAccount,
		Services:       m.Services,
		MeshPort:       m.MeshPort,
		InboundCapture: m.InboundCapturePort != 0,
		Locality:       m.Locality,
		Network:        m.Network,
	}
	for _, p := range m.Ports {
		proto := model.Protocol(strings.ToUpper(p.Protocol))
		switch {
		case proto != "":
		case m.Kind == nodemeta.KindGRPC:
			proto = model.ProtocolGRPC
		default:
			proto = model.ProtocolTCP
		}
		w.Ports = append(w.Ports, model.WorkloadPort{Name: p.Name, Port: p.Port, Protocol: proto})
	}
	return w
}

// proxyOf is the proxy a registration describes.
func proxyOf(id string, m *nodemeta.Metadata) *model.Proxy {
	p := &model.Proxy{
		ID:              id,
		Kind:            model.ProxyKind(m.Kind),
		Workload:        workloadOf(m),
		OutboundAddress: m.OutboundAddress,
		AppAddress:      m.AppAddress,

		OutboundCapturePort: m.OutboundCapturePort,
		InboundCapturePort:  m.InboundCapturePort,
	}
	if ns, name, ok := strings.Cut(m.Gateway, "/"); ok {
		p.Gateway = model.Key{Namespace: ns, Name: name}
	}
	for _, u := range m.Upstreams {
		ns := u.Namespace
		if ns == "" {
			ns = m.Namespace
		}
		p.Upstreams = append(p.Upstreams, model.Upstream{Service: model.Key{Namespace: ns, Name: u.Service}, Port: u.Port, LocalPort: u.LocalPort})
	}
	return p
}

// issued records a chain the CA issued to a node, to serve it over SDS.
func (cp *controlPlane) issued(node string, chain []*x509.Certificate) {
	if node == "" {
		return
	}
	var pemChain []byte
	for _, c := range chain {
		pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	cp.mu.Lock()
	cp.chains[node] = pemChain
	_, live := cp.connected[node]
	cp.mu.Unlock()
	if live {
		cp.pushOne(context.Background(), node)
	}
}

var errShuttingDown = errors.New("control: shutting down")

// errProxyWouldReject marks a config the proxy's own code refuses.
var errProxyWouldReject = errors.New("the proxy would reject it")
