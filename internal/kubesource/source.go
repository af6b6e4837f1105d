package kubesource

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/store"
)

// Sink receives what the source reads. The control plane implements it.
type Sink interface {
	// Update applies changes of resources, keyed and encoded as the store
	// keeps them (resources/<Kind>/<namespace>/<name>, resource.Encode).
	Update(events []store.Event)
	// SetNamespaces replaces the labels of every namespace.
	SetNamespaces(labels map[string]map[string]string)
}

// Options configure a Source.
type Options struct {
	// Config reaches the API server.
	Config *rest.Config
	Sink   Sink
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Rediscover is how often the source asks the API server again for
	// the kinds it did not serve yet (CRDs installed after the control
	// plane started); zero means every 30 seconds.
	Rediscover time.Duration
}

// Source follows the API server with shared informers and feeds a Sink.
type Source struct {
	opts Options
	log  *slog.Logger
	cs   kubernetes.Interface
	dyn  dynamic.Interface

	core informers.SharedInformerFactory
	// secrets follows TLS Secrets only.
	secrets informers.SharedInformerFactory
	crds    dynamicinformer.DynamicSharedInformerFactory
	// gvrs are the CRD kinds the API server serves, by kind: found at
	// start, and later as their CRDs are installed (rediscover).
	gvrMu sync.RWMutex
	gvrs  map[string]schema.GroupVersionResource

	// changed is signalled after every change the informers deliver,
	// status changes included (the status writer listens).
	changed chan struct{}
	// pending maps the objects whose status was written (Kind/ns/name) to
	// the resourceVersion they were written from; used by the status
	// writer only.
	pending map[string]string

	mu sync.Mutex
	// values are the encodings of each key by origin; the sink sees the
	// one of the highest-ranked origin (effective).
	values    map[string]map[origin][]byte
	effective map[string][]byte
	// handlers are the event handlers' registrations, synced once each
	// has seen its informer's initial list.
	handlers []cache.ResourceEventHandlerRegistration
	// endpoints are the keys of the Workloads made of each selector-less
	// Service's EndpointSlices.
	endpoints map[string][]string

	// gateways and deployer keep the objects of Gateways
	// (gatewaydeploy.go); used by the status writer only.
	gateways GatewayOptions
	deployer gatewayDeployer
	// managed follows the Deployments and ServiceAccounts made for
	// Gateways, so that one deleted is made again.
	managed informers.SharedInformerFactory
	// awaitingACK tells whether a Gateway has Ready pods none of whose
	// proxies has acknowledged its config (gatewayinstances.go).
	awaitingACK bool
}

// origin is where a key's value came from, most authoritative first: a
// Workload resource written by a user wins over a Pod of the same name.
type origin int

const (
	fromResource origin = iota
	fromPod
	fromEndpointSlice
)

// New returns a source reading through cfg. It asks the API server which
// Gateway API and trellis.dev kinds it serves: kinds whose CRDs are not
// installed are left out, with a warning.
func New(opts Options) (*Source, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cs, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	s := &Source{
		opts: opts, log: opts.Logger, cs: cs, dyn: dyn,
		core: informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(stripManagedFields)),
		secrets: informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(secretMetadata),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = "type=" + string(corev1.SecretTypeTLS)
			})),
		crds:      dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		gvrs:      map[string]schema.GroupVersionResource{},
		changed:   make(chan struct{}, 1),
		values:    map[string]map[origin][]byte{},
		effective: map[string][]byte{},
		endpoints: map[string][]string{},
		pending:   map[string]string{},
	}
	if _, err := s.discover(); err != nil {
		return nil, err
	}
	s.unserved()
	s.register()
	s.followGatewayObjects()
	return s, nil
}

// discover finds the served CRD kinds not followed yet and returns them.
// Each group version is asked for once.
func (s *Source) discover() ([]string, error) {
	var found []string
	served := map[string]map[string]bool{} // resources by group version
	for _, k := range resource.Kinds() {
		if _, ok := s.gvr(k.Kind); ok || k.Group == "" {
			continue
		}
		gv := k.APIVersion()
		if _, asked := served[gv]; !asked {
			list, err := s.cs.Discovery().ServerResourcesForGroupVersion(gv)
			if err != nil && !apierrors.IsNotFound(err) {
				return found, fmt.Errorf("kubesource: discovering %s: %w", gv, err)
			}
			served[gv] = map[string]bool{}
			if list != nil {
				for _, r := range list.APIResources {
					served[gv][r.Name] = true
				}
			}
		}
		if !served[gv][k.Plural] {
			continue
		}
		s.gvrMu.Lock()
		s.gvrs[k.Kind] = schema.GroupVersionResource{Group: k.Group, Version: k.Version, Resource: k.Plural}
		s.gvrMu.Unlock()
		found = append(found, k.Kind)
	}
	return found, nil
}

// unserved logs the kinds the API server does not serve (yet).
func (s *Source) unserved() {
	for _, k := range resource.Kinds() {
		if _, ok := s.gvr(k.Kind); !ok && k.Group != "" {
			s.log.Warn("kind not served by the API server; install its CRD (trellis install): it is followed once served", "kind", k.Kind, "apiVersion", k.APIVersion())
		}
	}
}

// gvr returns the resource of a CRD kind the API server serves.
func (s *Source) gvr(kind string) (schema.GroupVersionResource, bool) {
	s.gvrMu.RLock()
	defer s.gvrMu.RUnlock()
	g, ok := s.gvrs[kind]
	return g, ok
}

// rediscover asks the API server, every opts.Rediscover until ctx is
// done, for the kinds not served before, and follows those it now
// serves: CRDs installed after the control plane started take effect
// without a restart.
func (s *Source) rediscover(ctx context.Context) {
	every := s.opts.Rediscover
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		found, err := s.discover()
		if err != nil {
			s.log.Warn("rediscovering the served kinds", "err", err)
		}
		if len(found) == 0 {
			continue
		}
		for _, kind := range found {
			s.log.Info("kind now served by the API server; following it", "kind", kind)
			s.follow(kind)
		}
		s.crds.Start(ctx.Done())
		s.signal()
	}
}

// register adds the event handlers.
func (s *Source) register() {
	handle := func(inf cache.SharedIndexInformer, f func(obj any, deleted bool)) {
		reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { f(obj, false) },
			UpdateFunc: func(_, obj any) { f(obj, false) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				f(obj, true)
			},
		})
		s.handlers = append(s.handlers, reg)
	}
	handle(s.core.Core().V1().Services().Informer(), s.onService)
	handle(s.core.Core().V1().Pods().Informer(), s.onPod)
	handle(s.core.Discovery().V1().EndpointSlices().Informer(), s.onEndpointSlice)
	handle(s.core.Core().V1().Namespaces().Informer(), func(any, bool) { s.onNamespace() })
	handle(s.secrets.Core().V1().Secrets().Informer(), func(any, bool) { s.signal() })
	for _, kind := range slices.Sorted(maps.Keys(s.gvrs)) {
		s.follow(kind)
	}
}

// follow adds the handler of CRD kind kind, served by the API server.
func (s *Source) follow(kind string) {
	gvr, _ := s.gvr(kind)
	inf := s.crds.ForResource(gvr).Informer()
	_ = inf.SetTransform(stripManagedFields) // fails only once started
	reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onCustom(kind, obj, false) },
		UpdateFunc: func(_, obj any) { s.onCustom(kind, obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			s.onCustom(kind, obj, true)
		},
	})
	s.mu.Lock()
	s.handlers = append(s.handlers, reg)
	s.mu.Unlock()
}

// stripManagedFields drops what the informers' caches need not hold:
// managedFields are often most of an object's size.
func stripManagedFields(obj any) (any, error) {
	if a, err := apimeta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// secretMetadata keeps of a Secret what telling whether it exists and
// holds a usable certificate needs: no key material is held in memory.
// Whether tls.crt and tls.key are a certificate chain and its private
// key is judged here, as the Secret arrives, and kept as the annotation
// invalidTLSAnnotation of the cached copy (never written back).
func secretMetadata(obj any) (any, error) {
	// A TLS Secret always has data (the API server requires its two
	// keys): one without is a copy transformed already.
	if sec, ok := obj.(*corev1.Secret); ok && sec.Data != nil {
		if _, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
			sec.Annotations = maps.Clone(sec.Annotations)
			if sec.Annotations == nil {
				sec.Annotations = map[string]string{}
			}
			sec.Annotations[invalidTLSAnnotation] = err.Error()
		}
		sec.Data, sec.StringData = nil, nil
	}
	return stripManagedFields(obj)
}

// invalidTLSAnnotation marks, in the informer's cache only, a TLS Secret
// whose data is not a usable certificate and key, with the reason.
const invalidTLSAnnotation = "trellis.dev/invalid-tls-secret"

// certificateSecret tells why the TLS Secret ns/name cannot serve as a
// listener's certificate, or nil when it can.
func (s *Source) certificateSecret(ns, name string) error {
	sec, ok := s.Secret(ns, name)
	switch {
	case !ok:
		return fmt.Errorf("no TLS Secret %s/%s", ns, name)
	case sec.Annotations[invalidTLSAnnotation] != "":
		return fmt.Errorf("TLS Secret %s/%s holds no usable certificate and key: %s", ns, name, sec.Annotations[invalidTLSAnnotation])
	}
	return nil
}

// Start runs the informers until ctx is done.
func (s *Source) Start(ctx context.Context) error {
	s.core.Start(ctx.Done())
	s.secrets.Start(ctx.Done())
	s.managed.Start(ctx.Done())
	s.crds.Start(ctx.Done())
	s.rediscover(ctx)
	s.core.Shutdown()
	s.secrets.Shutdown()
	s.managed.Shutdown()
	s.crds.Shutdown()
	return nil
}

// WaitForSync waits until every informer has listed once and its handler
// has seen the list, so that the sink holds the whole cluster.
func (s *Source) WaitForSync(ctx context.Context) error {
	s.mu.Lock()
	synced := make([]cache.InformerSynced, len(s.handlers))
	for i, h := range s.handlers {
		synced[i] = h.HasSynced
	}
	s.mu.Unlock()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("kubesource: the informers did not sync: %w", context.Cause(ctx))
	}
	return nil
}

// Changed is signalled after changes of what the source follows.
func (s *Source) Changed() <-chan struct{} { return s.changed }

func (s *Source) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// set records value (nil: none) for key from o and passes the change of
// the key's effective value to the sink. Callers hold s.mu.
func (s *Source) setLocked(key string, o origin, value []byte) []store.Event {
	vs := s.values[key]
	if value == nil {
		delete(vs, o)
	} else {
		if vs == nil {
			vs = map[origin][]byte{}
			s.values[key] = vs
		}
		vs[o] = value
	}
	var eff []byte
	for _, from := range []origin{fromResource, fromPod, fromEndpointSlice} {
		if v, ok := vs[from]; ok {
			eff = v
			break
		}
	}
	if len(vs) == 0 {
		delete(s.values, key)
	}
	prev, had := s.effective[key]
	switch {
	case eff == nil && !had:
		return nil
	case eff == nil:
		delete(s.effective, key)
		return []store.Event{{Item: store.Item{Key: key}, Deleted: true}}
	case had && string(prev) == string(eff):
		return nil
	}
	s.effective[key] = eff
	return []store.Event{{Item: store.Item{Key: key, Value: eff}}}
}

// send passes events to the sink. Callers hold s.mu, which keeps the
// sink's order that of the changes.
func (s *Source) sendLocked(events []store.Event) {
	if len(events) > 0 {
		s.opts.Sink.Update(events)
	}
}

// Key is the store key of a resource, as the control plane keys them.
func Key(kind, namespace, name string) string {
	if namespace == "" {
		return "resources/" + kind + "/" + name
	}
	return "resources/" + kind + "/" + namespace + "/" + name
}

// encode turns an object as the API server serves it (as a map) into the
// store's encoding of kind: server-managed metadata and status dropped,
// then decoded strictly and encoded as resource.Encode does.
func encode(kind string, obj map[string]any) ([]byte, error) {
	obj = maps.Clone(obj)
	delete(obj, "status")
	if md, ok := obj["metadata"].(map[string]any); ok {
		md = maps.Clone(md)
		// Kept: name, namespace, labels, annotations, generation (for
		// observedGeneration) and creationTimestamp (Gateway API
		// precedence). A status write changes none of them, so it does
		// not reach the sink.
		for _, f := range []string{"managedFields", "resourceVersion", "uid", "selfLink", "ownerReferences", "finalizers", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName"} {
			delete(md, f)
		}
		if ann, ok := md["annotations"].(map[string]any); ok {
			ann = maps.Clone(ann)
			delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
			if len(ann) == 0 {
				delete(md, "annotations")
			} else {
				md["annotations"] = ann
			}
		}
		obj["metadata"] = md
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	o, err := resource.DecodeOne(kind, b)
	if err != nil {
		return nil, err
	}
	return resource.Encode(o)
}

// encodeTyped is encode for a typed object.
func encodeTyped(kind, apiVersion string, obj runtime.Object) ([]byte, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	m["kind"], m["apiVersion"] = kind, apiVersion
	return encode(kind, m)
}

// onCustom follows the Gateway API and trellis.dev kinds.
func (s *Source) onCustom(kind string, obj any, deleted bool) {
	defer s.signal()
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := Key(kind, u.GetNamespace(), u.GetName())
	var value []byte
	if !deleted {
		var err error
		if value, err = encode(kind, u.Object); err != nil {
			// The API server validated it against the CRD; a value this
			// version cannot read is left out rather than half-read.
			s.log.Error("resource does not decode; ignoring it", "key", key, "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendLocked(s.setLocked(key, fromResource, value))
}

// onService follows Services, and the Workloads of the EndpointSlices of
// those without a selector.
func (s *Source) onService(obj any, deleted bool) {
	defer s.signal()
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	key := Key("Service", svc.Namespace, svc.Name)
	var value []byte
	if !deleted {
		var err error
		if value, err = encodeTyped("Service", "v1", svc); err != nil {
			s.log.Error("Service does not decode; ignoring it", "key", key, "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	events := s.setLocked(key, fromResource, value)
	events = append(events, s.endpointWorkloadsLocked(svc.Namespace, svc.Name)...)
	s.sendLocked(events)
}

// onPod follows Pods as Workloads.
func (s *Source) onPod(obj any, deleted bool) {
	defer s.signal()
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := Key("Workload", pod.Namespace, pod.Name)
	var value []byte
	if w := podWorkload(pod); w != nil && !deleted {
		var err error
		if value, err = encodeTyped("Workload", w.APIVersion, w); err != nil {
			s.log.Error("the Workload of a Pod does not encode; ignoring it", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendLocked(s.setLocked(key, fromPod, value))
}

// onEndpointSlice follows the EndpointSlices of selector-less Services.
func (s *Source) onEndpointSlice(obj any, _ bool) {
	defer s.signal()
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	svc := es.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendLocked(s.endpointWorkloadsLocked(es.Namespace, svc))
}

// endpointWorkloadsLocked recomputes the Workloads of Service ns/name's
// EndpointSlices: none when it has a selector (its Pods are Workloads
// already) or does not exist. Callers hold s.mu.
func (s *Source) endpointWorkloadsLocked(ns, name string) []store.Event {
	svcKey := ns + "/" + name
	next := map[string][]byte{}
	svc, err := s.core.Core().V1().Services().Lister().Services(ns).Get(name)
	if err == nil && len(svc.Spec.Selector) == 0 {
		list, _ := s.core.Discovery().V1().EndpointSlices().Lister().EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
		for _, w := range sliceWorkloads(name, list) {
			b, err := encodeTyped("Workload", w.APIVersion, w)
			if err != nil {
				s.log.Error("the Workload of an endpoint does not encode; ignoring it", "service", svcKey, "address", w.Spec.Address, "err", err)
				continue
			}
			next[Key("Workload", ns, w.Name)] = b
		}
	}
	var events []store.Event
	for _, k := range s.endpoints[svcKey] {
		if _, ok := next[k]; !ok {
			events = append(events, s.setLocked(k, fromEndpointSlice, nil)...)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(next)) {
		events = append(events, s.setLocked(k, fromEndpointSlice, next[k])...)
	}
	if len(next) == 0 {
		delete(s.endpoints, svcKey)
	} else {
		s.endpoints[svcKey] = slices.Sorted(maps.Keys(next))
	}
	return events
}

// onNamespace passes every namespace's labels to the sink.
func (s *Source) onNamespace() {
	defer s.signal()
	list, err := s.core.Core().V1().Namespaces().Lister().List(labels.Everything())
	if err != nil {
		return
	}
	nsLabels := make(map[string]map[string]string, len(list))
	for _, ns := range list {
		l := maps.Clone(ns.Labels)
		if l == nil {
			l = map[string]string{}
		}
		// The API server sets it; selectors rely on it.
		l[corev1.LabelMetadataName] = ns.Name
		nsLabels[ns.Name] = l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Sink.SetNamespaces(nsLabels)
}

// Secret returns a Secret the source knows of: TLS Secrets only
// (certificate references of Gateway listeners), without their data. ok
// is false when there is none. This is the seam for serving Gateway
// certificates, which will need the data of the Secrets listeners
// reference (secretMetadata drops it today).
func (s *Source) Secret(ns, name string) (*corev1.Secret, bool) {
	sec, err := s.secrets.Core().V1().Secrets().Lister().Secrets(ns).Get(name)
	if err != nil {
		return nil, false
	}
	return sec, true
}
