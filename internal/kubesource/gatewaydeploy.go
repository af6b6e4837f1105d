package kubesource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/model"
)

// On Kubernetes each Gateway of a class of Trellis's is its own gateway
// instance: the control plane that leads (the one writing status) keeps,
// in the Gateway's namespace, named GatewayObjectName(gateway):
//
//	ServiceAccount  the gateway's identity (spiffe://TD/ns/NS/sa/<gateway>-trellis)
//	Deployment      trellis-proxy --gateway NS/NAME (inject.GatewayPodSpec), one replica
//	Service         the listeners' ports, selecting the Deployment's pods; type
//	                LoadBalancer unless ServiceTypeAnnotation says otherwise
//	Secrets         copies of the certificateRefs Secrets of other namespaces that
//	                a ReferenceGrant permits (a pod mounts Secrets of its own
//	                namespace only), removed with the grant
//
// and the ConfigMap trellis-ca-root (the mesh's roots, shared with
// sidecars). All but the ConfigMap are owned by the Gateway, so that
// deleting it garbage-collects them, and carry its
// spec.infrastructure labels and annotations. Objects are written with
// server-side apply (field manager trellis-control), only when what this
// control plane would write changed, when one was deleted (the informers
// see it), or once every gatewayResync, which repairs objects changed by
// others; objects of Gateways that are gone (or no longer Trellis's) are
// deleted.

// Labels and annotations of the objects made for Gateways.
const (
	// GatewayNameLabel names the Gateway an object was made for (the
	// Gateway API's own label for this, as Istio and Envoy Gateway use).
	GatewayNameLabel = "gateway.networking.k8s.io/gateway-name"
	// ManagedByLabel marks the objects the control plane manages.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = install.Name
	// ServiceTypeAnnotation, on a Gateway or in its
	// spec.infrastructure.annotations, chooses its Service's type:
	// LoadBalancer (default), ClusterIP or NodePort; another value is
	// finding TRL2050 and makes a ClusterIP Service.
	ServiceTypeAnnotation = model.ServiceTypeAnnotation
	// certificateSourceAnnotation names the Secret a copy was made of.
	certificateSourceAnnotation = "trellis.dev/certificate-source"
	// certificateCopyLabel marks copies of certificate Secrets.
	certificateCopyLabel = "trellis.dev/certificate-copy"
	// certificatesAnnotation lists, on a gateway's pods, the certificate
	// Secrets (NAMESPACE/NAME) that existed when they were made.
	certificatesAnnotation = "trellis.dev/certificates"
)

// gatewayResync is how often every object is applied again, and stray
// objects swept, even when nothing seems to have changed.
const gatewayResync = 5 * time.Minute

// GatewayOptions configure the objects the leader keeps per Gateway.
type GatewayOptions struct {
	// Disabled deploys nothing: the operator runs the gateways, and a
	// Gateway's addresses are those of its registered proxies.
	Disabled bool
	// Inject gives the image and the control plane address, as for
	// sidecars.
	Inject inject.Options
	// TrustDomain of the mesh, passed to the gateways.
	TrustDomain string
	// TrustBundle returns the mesh's roots (PEM), published as
	// trellis-ca-root in the gateways' namespaces; nil publishes none.
	TrustBundle func() []byte
}

// GatewayObjectName is the name of the objects made for Gateway name:
// <name>-trellis, shortened (with a hash) to fit a DNS label, dots turned
// into dashes.
func GatewayObjectName(name string) string {
	const suffix = "-trellis"
	n := strings.ReplaceAll(name, ".", "-")
	if n != name || len(n)+len(suffix) > validation.DNS1035LabelMaxLength || n[0] < 'a' || n[0] > 'z' {
		h := sha256.Sum256([]byte(name))
		n = "gw-" + strings.Trim(n[:min(len(n), validation.DNS1035LabelMaxLength-len(suffix)-3-9)], "-") + "-" + hex.EncodeToString(h[:4])
	}
	return n + suffix
}

// gatewaySelector selects the pods of a Gateway's Deployment.
func gatewaySelector(gateway string) map[string]string {
	v := gateway
	if len(v) > validation.LabelValueMaxLength {
		v = GatewayObjectName(gateway)
	}
	return map[string]string{GatewayNameLabel: v, ManagedByLabel: managedBy}
}

// applied is an object to apply: its resource and its content.
type applied struct {
	gvr schema.GroupVersionResource
	obj *unstructured.Unstructured
}

func (a applied) key() string {
	return a.gvr.Resource + "/" + a.obj.GetNamespace() + "/" + a.obj.GetName()
}

var (
	gvrServiceAccounts = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	gvrServices        = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrSecrets         = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	gvrConfigMaps      = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrDeployments     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	// ownedKinds are the kinds of the objects owned by Gateways, swept
	// when their Gateway is gone.
	ownedKinds = []schema.GroupVersionResource{gvrDeployments, gvrServices, gvrSecrets, gvrServiceAccounts}
)

// gatewayDeployer is the state of the objects applied for Gateways.
type gatewayDeployer struct {
	// hashes are the contents last applied, by key.
	hashes map[string]string
	// since is when hashes were last reset.
	since time.Time
	// sources are the certificates of the Secrets copied, read at the
	// resourceVersion the informer holds; used marks those read this
	// round.
	sources map[model.Key]sourceSecret
	used    map[model.Key]bool
}

type sourceSecret struct {
	resourceVersion string
	data            map[string][]byte
}

// certificateData returns the certificate and key of TLS Secret ref, to
// copy: read from the API server only when the informer, which keeps no
// key material, has seen it change. nil when there is no such Secret.
func (s *Source) certificateData(ctx context.Context, ref model.Key) (map[string][]byte, error) {
	d := &s.deployer
	meta, ok := s.Secret(ref.Namespace, ref.Name)
	if !ok {
		return nil, nil
	}
	d.used[ref] = true
	if c, ok := d.sources[ref]; ok && c.resourceVersion == meta.ResourceVersion {
		return c.data, nil
	}
	sec, err := s.cs.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{corev1.TLSCertKey: sec.Data[corev1.TLSCertKey], corev1.TLSPrivateKeyKey: sec.Data[corev1.TLSPrivateKeyKey]}
	d.sources[ref] = sourceSecret{resourceVersion: sec.ResourceVersion, data: data}
	return data, nil
}

// followGatewayObjects follows the Deployments and ServiceAccounts made
// for Gateways (Services and certificate copies, TLS Secrets, the source
// follows anyway): a change, a deletion above all, starts a round.
func (s *Source) followGatewayObjects() {
	sel := labels.SelectorFromSet(labels.Set{ManagedByLabel: managedBy}).String() + "," + GatewayNameLabel
	s.managed = informers.NewSharedInformerFactoryWithOptions(s.cs, 0, informers.WithTransform(stripManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	signal := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.signal() },
		UpdateFunc: func(any, any) {},
		DeleteFunc: func(any) { s.signal() },
	}
	// Not waited for (WaitForSync): a control plane without the right to
	// watch them still serves; it then repairs them every gatewayResync.
	_, _ = s.managed.Apps().V1().Deployments().Informer().AddEventHandler(signal)
	_, _ = s.managed.Core().V1().ServiceAccounts().Informer().AddEventHandler(signal)
}

// gone reports whether an object applied before is known to be gone:
// deleted by someone, it is applied again.
func (s *Source) gone(o applied) bool {
	ns, name := o.obj.GetNamespace(), o.obj.GetName()
	var inf cache.SharedIndexInformer
	switch o.gvr {
	case gvrDeployments:
		inf = s.managed.Apps().V1().Deployments().Informer()
	case gvrServiceAccounts:
		inf = s.managed.Core().V1().ServiceAccounts().Informer()
	case gvrServices:
		inf = s.core.Core().V1().Services().Informer()
	case gvrSecrets:
		inf = s.secrets.Core().V1().Secrets().Informer()
	default:
		return false
	}
	if !inf.HasSynced() {
		return false
	}
	_, exists, err := inf.GetStore().GetByKey(ns + "/" + name)
	return err == nil && !exists
}

// deployGateways keeps the objects of every Gateway Trellis serves.
func (s *Source) deployGateways(ctx context.Context, view View) error {
	if s.gateways.Disabled {
		return nil
	}
	gvr, ok := s.gvr("Gateway")
	if !ok {
		return nil
	}
	d := &s.deployer
	sweep := false
	if d.hashes == nil || time.Since(d.since) > gatewayResync {
		d.hashes, d.since, sweep = map[string]string{}, time.Now(), true
	}
	if d.sources == nil {
		d.sources = map[model.Key]sourceSecret{}
	}
	d.used = map[model.Key]bool{}
	defer func() { maps.DeleteFunc(d.sources, func(k model.Key, _ sourceSecret) bool { return !d.used[k] }) }()
	in := newStatusInput(view.Analysis())
	list, err := s.crds.ForResource(gvr).Lister().List(labels.Everything())
	if err != nil {
		return err
	}
	var bundle []byte
	if s.gateways.TrustBundle != nil {
		bundle = s.gateways.TrustBundle()
	}
	var errs []error
	desired := map[string]applied{}
	var order []string // what needs what first: a pod's ServiceAccount and volumes before its Deployment
	for _, obj := range list {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var gw gwv1.Gateway
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &gw); err != nil {
			errs = append(errs, err)
			continue
		}
		if gw.DeletionTimestamp != nil || !in.ours(model.Key{Namespace: gw.Namespace, Name: gw.Name}) {
			continue
		}
		objs, err := s.gatewayObjects(ctx, &gw, in, bundle)
		if err != nil {
			errs = append(errs, err)
		}
		for _, o := range objs {
			desired[o.key()] = o
			order = append(order, o.key())
		}
	}
	for _, k := range order {
		o := desired[k]
		b, err := json.Marshal(o.obj.Object)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := sha256.Sum256(b)
		if d.hashes[k] == string(h[:]) && !s.gone(o) {
			continue
		}
		force := true
		if _, err := s.dyn.Resource(o.gvr).Namespace(o.obj.GetNamespace()).Apply(ctx, o.obj.GetName(), o.obj,
			metav1.ApplyOptions{FieldManager: fieldManager, Force: force}); err != nil {
			errs = append(errs, fmt.Errorf("kubesource: applying %s %s/%s: %w", o.obj.GetKind(), o.obj.GetNamespace(), o.obj.GetName(), err))
			delete(d.hashes, k)
			continue
		}
		d.hashes[k] = string(h[:])
	}
	// What was applied and is no longer wanted goes.
	for _, k := range slices.Sorted(maps.Keys(d.hashes)) {
		if _, ok := desired[k]; ok {
			continue
		}
		delete(d.hashes, k)
		res, rest, _ := strings.Cut(k, "/")
		ns, name, _ := strings.Cut(rest, "/")
		for _, g := range ownedKinds {
			if g.Resource == res {
				errs = append(errs, s.deleteOwned(ctx, g, ns, name))
			}
		}
	}
	if sweep {
		errs = append(errs, s.sweepGatewayObjects(ctx, desired))
	}
	return errors.Join(errs...)
}

// sweepGatewayObjects deletes the managed objects of Gateways that no
// longer want them, which another leader may have made.
func (s *Source) sweepGatewayObjects(ctx context.Context, desired map[string]applied) error {
	var errs []error
	sel := labels.SelectorFromSet(labels.Set{ManagedByLabel: managedBy}).String() + "," + GatewayNameLabel
	for _, g := range ownedKinds {
		list, err := s.dyn.Resource(g).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			errs = append(errs, fmt.Errorf("kubesource: listing %s of Gateways: %w", g.Resource, err))
			continue
		}
		for _, it := range list.Items {
			if _, ok := desired[g.Resource+"/"+it.GetNamespace()+"/"+it.GetName()]; !ok {
				errs = append(errs, s.deleteOwned(ctx, g, it.GetNamespace(), it.GetName()))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Source) deleteOwned(ctx context.Context, g schema.GroupVersionResource, ns, name string) error {
	bg := metav1.DeletePropagationBackground
	err := s.dyn.Resource(g).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubesource: deleting %s %s/%s: %w", g.Resource, ns, name, err)
	}
	if err == nil {
		s.log.Info("deleted an object of a Gateway that is gone", "resource", g.Resource, "object", ns+"/"+name)
	}
	return nil
}

// gatewayListeners are the listeners Gateway gw serves: its own, and
// those of the ListenerSets attached to it, with the resource and field
// path each is reported under.
func gatewayListeners(gw *gwv1.Gateway, in *statusInput) []ownedListener {
	key := model.Key{Namespace: gw.Namespace, Name: gw.Name}
	var out []ownedListener
	if mg := in.gateways[key]; mg != nil {
		for i := range mg.Listeners {
			out = append(out, ownedListener{analyze.Resource{Kind: "Gateway", Namespace: gw.Namespace, Name: gw.Name}, i, &mg.Listeners[i]})
		}
	}
	for _, set := range in.Config.ListenerSets {
		if set.Gateway != key || !in.setAttached(set) {
			continue
		}
		for i := range set.Listeners {
			out = append(out, ownedListener{analyze.Resource{Kind: "ListenerSet", Namespace: set.Namespace, Name: set.Name}, i, &set.Listeners[i]})
		}
	}
	return out
}

type ownedListener struct {
	owner analyze.Resource
	index int
	l     *model.Listener
}

// usableCertificates are the Secrets of the listeners' certificateRefs
// that the analyzer found nothing wrong with (a Secret, in the listener's
// namespace or granted by a ReferenceGrant), sorted.
func usableCertificates(ls []ownedListener, in *statusInput) []model.Key {
	seen := map[model.Key]bool{}
	for _, ol := range ls {
		if ol.l.TLS == nil {
			continue
		}
		for j, ref := range ol.l.TLS.CertificateRefs {
			field := fmt.Sprintf("spec.listeners[%d].tls.certificateRefs[%d]", ol.index, j)
			if ref.Kind != "Secret" || (ref.Group != "" && ref.Group != "core") || len(under(in.findings[ol.owner], field)) > 0 {
				continue
			}
			seen[ref.Key] = true
		}
	}
	return slices.SortedFunc(maps.Keys(seen), func(a, b model.Key) int { return a.Compare(b) })
}

// certificateCopyName names the copy, in a Gateway's namespace, of
// Secret src of another namespace.
func certificateCopyName(gateway string, src model.Key) string {
	h := sha256.Sum256([]byte(src.Namespace + "/" + src.Name))
	return GatewayObjectName(gateway) + "-" + hex.EncodeToString(h[:5])
}

// gatewayObjects are the objects Gateway gw needs. A Secret to copy that
// cannot be read is left out, and reported.
func (s *Source) gatewayObjects(ctx context.Context, gw *gwv1.Gateway, in *statusInput, bundle []byte) ([]applied, error) {
	name := GatewayObjectName(gw.Name)
	selector := gatewaySelector(gw.Name)
	var infraLabels, infraAnnotations map[string]string
	if inf := gw.Spec.Infrastructure; inf != nil {
		infraLabels = map[string]string{}
		for k, v := range inf.Labels {
			infraLabels[string(k)] = string(v)
		}
		infraAnnotations = map[string]string{}
		for k, v := range inf.Annotations {
			infraAnnotations[string(k)] = string(v)
		}
	}
	objLabels := maps.Clone(infraLabels)
	if objLabels == nil {
		objLabels = map[string]string{}
	}
	maps.Copy(objLabels, selector)
	yes := true
	owner := []metav1.OwnerReference{{APIVersion: gwv1.GroupVersion.String(), Kind: "Gateway", Name: gw.Name, UID: gw.UID, Controller: &yes}}
	meta := func(n string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: n, Namespace: gw.Namespace, Labels: maps.Clone(objLabels), Annotations: maps.Clone(infraAnnotations), OwnerReferences: owner}
	}

	ls := gatewayListeners(gw, in)
	var errs []error
	var certs []inject.GatewayCertificate
	var copies []*corev1.Secret
	// present are the certificates whose Secrets exist: a pod mounts
	// an optional Secret that appears later only once kubelet resyncs
	// its volumes, so their list, in the pod template, rolls the pods.
	var present []string
	for _, ref := range usableCertificates(ls, in) {
		if ref.Namespace == gw.Namespace {
			certs = append(certs, inject.GatewayCertificate{Namespace: ref.Namespace, Name: ref.Name, Local: ref.Name})
			if _, ok := s.Secret(ref.Namespace, ref.Name); ok {
				present = append(present, ref.String())
			}
			continue
		}
		data, err := s.certificateData(ctx, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubesource: reading Secret %s for Gateway %s/%s: %w", ref, gw.Namespace, gw.Name, err))
			continue
		}
		if data == nil {
			continue
		}
		local := certificateCopyName(gw.Name, ref)
		m := meta(local)
		m.Labels[certificateCopyLabel] = "true"
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[certificateSourceAnnotation] = ref.String()
		copies = append(copies, &corev1.Secret{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: m, Type: corev1.SecretTypeTLS,
			Data: data,
		})
		certs = append(certs, inject.GatewayCertificate{Namespace: ref.Namespace, Name: ref.Name, Local: local})
		present = append(present, ref.String())
	}

	ports := map[int32]string{}
	for _, ol := range ls {
		p := int32(ol.l.Port)
		if _, ok := ports[p]; !ok {
			ports[p] = strings.ToLower(string(ol.l.Protocol))
		}
	}
	var svcPorts []corev1.ServicePort
	for _, p := range slices.Sorted(maps.Keys(ports)) {
		svcPorts = append(svcPorts, corev1.ServicePort{Name: ports[p] + "-" + strconv.Itoa(int(p)), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP})
	}
	svcType := corev1.ServiceTypeLoadBalancer
	if mg := in.gateways[model.Key{Namespace: gw.Namespace, Name: gw.Name}]; mg != nil && mg.ServiceType != "" {
		// A type Trellis does not make (finding TRL2050) exposes the
		// Gateway no further than the cluster.
		svcType = corev1.ServiceTypeClusterIP
		if slices.Contains(model.ServiceTypes, mg.ServiceType) {
			svcType = corev1.ServiceType(mg.ServiceType)
		}
	}

	podLabels := maps.Clone(objLabels)
	// A gateway pod gets no sidecar, whatever its namespace's label.
	podLabels[inject.InjectLabel] = "disabled"
	podAnnotations := maps.Clone(infraAnnotations)
	if len(present) > 0 {
		if podAnnotations == nil {
			podAnnotations = map[string]string{}
		}
		slices.Sort(present)
		podAnnotations[certificatesAnnotation] = strings.Join(present, ",")
	}
	spec := inject.GatewayPodSpec(inject.Gateway{
		Namespace: gw.Namespace, Name: gw.Name, ServiceAccount: name,
		Ports: slices.Sorted(maps.Keys(ports)), Certificates: certs, TrustDomain: s.gateways.TrustDomain,
	}, s.gateways.Inject)
	replicas := int32(1)
	typed := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(name)},
	}
	for _, c := range copies {
		typed = append(typed, c)
	}
	svc := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: meta(name),
		Spec: corev1.ServiceSpec{Type: svcType, Selector: selector, Ports: svcPorts}}
	if len(svcPorts) == 0 {
		// A Service needs a port; a Gateway without listeners still gets
		// its address.
		svc.Spec.Ports = []corev1.ServicePort{{Name: "trellis-ready", Port: inject.ReadinessPort, TargetPort: intstr.FromInt32(inject.ReadinessPort)}}
	}
	typed = append(typed, svc, &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: meta(name),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations}, Spec: spec},
		}})
	if bundle != nil {
		typed = append([]runtime.Object{&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: inject.CARootConfigMap, Namespace: gw.Namespace, Labels: map[string]string{ManagedByLabel: managedBy}},
			Data:       map[string]string{"root-cert.pem": string(bundle)},
		}}, typed...)
	}
	var out []applied
	for _, o := range typed {
		u, err := install.Unstructured(o.(install.Object))
		if err != nil {
			return nil, err
		}
		var gvr schema.GroupVersionResource
		switch o.(type) {
		case *corev1.ServiceAccount:
			gvr = gvrServiceAccounts
		case *corev1.Secret:
			gvr = gvrSecrets
		case *corev1.ConfigMap:
			gvr = gvrConfigMaps
		case *corev1.Service:
			gvr = gvrServices
		case *appsv1.Deployment:
			gvr = gvrDeployments
		}
		out = append(out, applied{gvr: gvr, obj: &unstructured.Unstructured{Object: u}})
	}
	return out, errors.Join(errs...)
}
