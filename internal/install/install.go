// Package install builds the Kubernetes manifest that `trellis install`
// prints: everything a cluster needs to run the Trellis control plane.
//
//	CRDs        the Gateway API standard channel and the trellis.dev kinds,
//	            the very files package schema validates with
//	Namespace   trellis-system (--namespace)
//	RBAC        ServiceAccount, ClusterRole + ClusterRoleBinding (read the
//	            mesh's inputs, write their status, review tokens, keep the
//	            webhooks' caBundle current, keep each Gateway's Deployment,
//	            Service, ServiceAccount and certificate copies), Role + RoleBinding (leader
//	            election Leases in the namespace)
//	Service     trellis-control: 15012 xDS and CA, 15014 debug and metrics,
//	            15017 webhooks
//	Deployment  one `trellis control`, non-root, read-only root filesystem
//	webhooks    ValidatingWebhookConfiguration (/validate) and
//	            MutatingWebhookConfiguration (/inject, sidecar injection),
//	            caBundle empty: the control plane fills it in
//
// Objects are typed k8s.io/api structs, in that order; Write prints them as
// YAML documents or a JSON List, the same bytes for the same Options.
package install

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/schema"
	"trellis.dev/trellis/internal/version"
)

// Defaults and the names of the objects.
const (
	// DefaultNamespace is the namespace of the control plane's SPIFFE
	// identity (spiffe://TD/ns/trellis-system/sa/trellis-control), which
	// proxies verify; installed in another namespace, the control plane
	// keeps that identity.
	DefaultNamespace = identity.ControlPlaneNamespace
	// ImageRepository is where release images are published; the default
	// image is this at the binary's version.
	ImageRepository = "ghcr.io/trellis-mesh/trellis"

	// Name is the name of the control plane's ServiceAccount, RBAC
	// objects, Service and Deployment: its identity's service account.
	Name = identity.ControlPlaneServiceAccount
	// ValidatingWebhookName and MutatingWebhookName name the webhook
	// configurations whose caBundle the control plane keeps current.
	ValidatingWebhookName = "trellis-validator"
	MutatingWebhookName   = "trellis-injector"

	// InjectLabel on a namespace, "enabled", turns sidecar injection on
	// for its pods; on a pod, "disabled", turns it off for that pod.
	InjectLabel = "trellis.dev/inject"

	// The control plane's ports (docs/ports.md).
	XDSPort     = 15012
	DebugPort   = 15014
	WebhookPort = 15017

	// Webhook paths on WebhookPort.
	ValidatePath = "/validate"
	InjectPath   = "/inject"

	// readyPath is the control plane's readiness endpoint on DebugPort
	// (controlapi.PathReady).
	readyPath = "/ready"
	dataDir   = "/var/lib/trellis"
	// nonRootID is the user and group the control plane runs as.
	nonRootID = 65532
)

// Options select what the manifest holds.
type Options struct {
	// Namespace of the control plane; "" means DefaultNamespace.
	Namespace string
	// Image of the control plane; "" means DefaultImage().
	Image string
	// CRDsOnly leaves out everything but the CRDs.
	CRDsOnly bool
}

// DefaultImage is the control plane image of this binary's version.
func DefaultImage() string { return ImageRepository + ":" + version.Version }

// Object is a Kubernetes object of the manifest.
type Object interface {
	runtime.Object
	metav1.Object
}

// Objects returns the objects of the manifest, in the order to apply them:
// the CRDs (sorted by group, then name), then the namespace, RBAC, the
// Service, the Deployment and the webhook configurations.
func Objects(opts Options) ([]Object, error) {
	ns := cmp.Or(opts.Namespace, DefaultNamespace)
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("install: namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	image := cmp.Or(opts.Image, DefaultImage())
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var objs []Object
	for _, c := range crds {
		objs = append(objs, c)
	}
	if opts.CRDsOnly {
		return objs, nil
	}
	objs = append(objs,
		namespace(ns),
		serviceAccount(ns),
		clusterRole(crds),
		clusterRoleBinding(ns),
		leaseRole(ns),
		leaseRoleBinding(ns),
		service(ns),
		deployment(ns, image),
		validatingWebhooks(ns, crds),
		mutatingWebhooks(ns),
	)
	return objs, nil
}

// CRDs returns the embedded CRDs, Gateway API and trellis.dev, sorted by
// group and name.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := fs.Glob(schema.CRDs(), "*/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		b, err := fs.ReadFile(schema.CRDs(), f)
		if err != nil {
			return nil, err
		}
		c := new(apiextensionsv1.CustomResourceDefinition)
		if err := yaml.UnmarshalStrict(b, c); err != nil {
			return nil, fmt.Errorf("install: CRD %s: %w", f, err)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *apiextensionsv1.CustomResourceDefinition) int {
		return cmp.Or(strings.Compare(a.Spec.Group, b.Spec.Group), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// labels are on every object but the CRDs, and select the control plane's
// pods.
func labels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "trellis",
		"app.kubernetes.io/component": "control-plane",
		"app.kubernetes.io/part-of":   "trellis",
	}
}

func meta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels()}
}

func namespace(ns string) *corev1.Namespace {
	m := meta(ns, "")
	// The control plane meets the restricted Pod Security Standard; the
	// namespace enforces it.
	m.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: m,
	}
}

func serviceAccount(ns string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(Name, ns),
	}
}

var (
	readVerbs   = []string{"get", "list", "watch"}
	statusVerbs = []string{"update", "patch"}
)

// clusterRole is what the control plane needs across the cluster, and no
// more: read the mesh's inputs (the kinds of crds among them), write the
// status of the kinds that have one, review service-account tokens,
// publish the mesh's roots in ConfigMaps, update the caBundle of its
// own two webhook configurations, and keep what each Gateway runs on.
func clusterRole(crds []*apiextensionsv1.CustomResourceDefinition) *rbacv1.ClusterRole {
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "secrets", "serviceaccounts", "services"}, Verbs: readVerbs},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
	}
	byGroup := map[string][]*apiextensionsv1.CustomResourceDefinition{}
	var groups []string
	for _, c := range crds {
		if byGroup[c.Spec.Group] == nil {
			groups = append(groups, c.Spec.Group)
		}
		byGroup[c.Spec.Group] = append(byGroup[c.Spec.Group], c)
	}
	slices.Sort(groups)
	for _, g := range groups {
		var all, status []string
		for _, c := range byGroup[g] {
			all = append(all, c.Spec.Names.Plural)
			if hasStatus(c) {
				status = append(status, c.Spec.Names.Plural+"/status")
			}
		}
		slices.Sort(all)
		slices.Sort(status)
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: all, Verbs: readVerbs})
		if len(status) > 0 {
			rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: status, Verbs: statusVerbs})
		}
	}
	rules = append(rules,
		rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		// The mesh's roots, as ConfigMap trellis-ca-root in the namespaces
		// labelled for injection (create cannot be limited by name).
		// (patch: server-side apply in the namespaces of Gateways.)
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update", "patch"}},
		// What each Gateway runs on (kubesource/gatewaydeploy.go): its
		// ServiceAccount, Deployment and Service, and the copies of the
		// certificate Secrets of other namespaces that ReferenceGrants
		// permit, written with server-side apply (create and patch),
		// watched (made again when deleted), and deleted when their
		// Gateway is gone.
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets", "serviceaccounts", "services"}, Verbs: []string{"create", "patch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"list", "watch", "create", "patch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"},
			ResourceNames: []string{ValidatingWebhookName}, Verbs: []string{"get", "update", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
			ResourceNames: []string{MutatingWebhookName}, Verbs: []string{"get", "update", "patch"}},
	)
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta(Name, ""),
		Rules:      rules,
	}
}

// hasStatus reports whether a served version of c has a status
// subresource.
func hasStatus(c *apiextensionsv1.CustomResourceDefinition) bool {
	for _, v := range c.Spec.Versions {
		if v.Served && v.Subresources != nil && v.Subresources.Status != nil {
			return true
		}
	}
	return false
}

func subject(ns string) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: ns}}
}

func clusterRoleBinding(ns string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta(Name, ""),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
		Subjects:   subject(ns),
	}
}

// leaseRole lets the control planes elect a leader with a Lease in their
// own namespace, and nowhere else.
func leaseRole(ns string) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: meta(Name, ns),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
		},
	}
}

func leaseRoleBinding(ns string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: meta(Name, ns),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name},
		Subjects:   subject(ns),
	}
}

// Port names, shared by the Service and the container.
const (
	xdsPortName     = "grpc-xds"
	debugPortName   = "http-debug"
	webhookPortName = "https-webhook"
)

func service(ns string) *corev1.Service {
	port := func(name string, p int32, appProtocol string) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: p, TargetPort: intstr.FromString(name), Protocol: corev1.ProtocolTCP, AppProtocol: &appProtocol}
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(Name, ns),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: labels(),
			Ports: []corev1.ServicePort{
				port(xdsPortName, XDSPort, "grpc"),
				port(debugPortName, DebugPort, "http"),
				port(webhookPortName, WebhookPort, "https"),
			},
		},
	}
}

// serviceName is the control plane's DNS name in the cluster, which its
// xDS certificate names.
func serviceName(ns string) string { return Name + "." + ns + ".svc" }

func deployment(ns, image string) *appsv1.Deployment {
	replicas := int32(1)
	yes, no := true, false
	id := int64(nonRootID)
	containerPort := func(name string, p int32) corev1.ContainerPort {
		return corev1.ContainerPort{Name: name, ContainerPort: p, Protocol: corev1.ProtocolTCP}
	}
	// The control plane's own pods get no sidecar, whatever the label of
	// their namespace.
	podLabels := labels()
	podLabels[InjectLabel] = "disabled"
	container := corev1.Container{
		Name:  "control",
		Image: image,
		Args: []string{
			"control",
			fmt.Sprintf("--xds-address=:%d", XDSPort),
			fmt.Sprintf("--debug-address=:%d", DebugPort),
			fmt.Sprintf("--webhook-address=:%d", WebhookPort),
			"--data-dir=" + dataDir,
			"--server-names=" + serviceName(ns),
		},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		Ports: []corev1.ContainerPort{
			containerPort(xdsPortName, XDSPort),
			containerPort(debugPortName, DebugPort),
			containerPort(webhookPortName, WebhookPort),
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: readyPath, Port: intstr.FromString(debugPortName)}},
			PeriodSeconds:    5,
			FailureThreshold: 3,
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("128Mi"),
			},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: dataDir}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &yes,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(Name, ns),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					Containers:         []corev1.Container{container},
					Volumes:            []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   &yes,
						RunAsUser:      &id,
						RunAsGroup:     &id,
						FSGroup:        &id,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
				},
			},
		},
	}
}

func webhookClient(ns, path string) admissionregistrationv1.WebhookClientConfig {
	port := int32(WebhookPort)
	return admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: Name, Path: &path, Port: &port},
		// CABundle is left empty: the control plane fills it in.
	}
}

// validatingWebhooks sends the trellis.dev kinds, the Gateway API kinds
// (those of crds) and Services to the analyzer on /validate. A trellis.dev
// object is refused while the control plane is unreachable (failurePolicy
// Fail): nothing else checks it. Gateway API objects and Services are let
// through then, so that an outage of the mesh does not stop the cluster.
func validatingWebhooks(ns string, crds []*apiextensionsv1.CustomResourceDefinition) *admissionregistrationv1.ValidatingWebhookConfiguration {
	var trellis, gateway []string
	var gatewayGroup string
	for _, c := range crds {
		switch c.Spec.Group {
		case "trellis.dev":
			trellis = append(trellis, c.Spec.Names.Plural)
		default:
			gatewayGroup = c.Spec.Group
			gateway = append(gateway, c.Spec.Names.Plural)
		}
	}
	slices.Sort(trellis)
	slices.Sort(gateway)
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	rule := func(group string, resources []string) admissionregistrationv1.RuleWithOperations {
		scope := admissionregistrationv1.AllScopes
		return admissionregistrationv1.RuleWithOperations{
			Operations: ops,
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"}, Resources: resources, Scope: &scope},
		}
	}
	fail, ignore := admissionregistrationv1.Fail, admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	timeout := int32(10)
	webhook := func(name string, policy *admissionregistrationv1.FailurePolicyType, rules ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name:                    name,
			ClientConfig:            webhookClient(ns, ValidatePath),
			Rules:                   rules,
			FailurePolicy:           policy,
			MatchPolicy:             &equivalent,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: meta(ValidatingWebhookName, ""),
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			webhook("validate.trellis.dev", &fail, rule("trellis.dev", trellis)),
			webhook("validate-gateway-api.trellis.dev", &ignore, rule(gatewayGroup, gateway), rule("", []string{"services"})),
		},
	}
}

// mutatingWebhooks injects the sidecar into the pods created in
// namespaces labelled trellis.dev/inject=enabled, but for pods labelled
// trellis.dev/inject=disabled. Injection runs again after other mutating
// webhooks changed a pod (reinvocationPolicy IfNeeded), and a pod is not
// created without it while the control plane is unreachable.
func mutatingWebhooks(ns string) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(10)
	scope := admissionregistrationv1.NamespacedScope
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: meta(MutatingWebhookName, ""),
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "inject.trellis.dev",
			ClientConfig: webhookClient(ns, InjectPath),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{InjectLabel: "enabled"}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: InjectLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
			}},
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			ReinvocationPolicy:      &ifNeeded,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// Unstructured returns o as JSON-like maps, as printed: no status, no
// empty spec, no null values (creationTimestamp: null).
func Unstructured(o Object) (map[string]any, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("install: converting %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
	}
	delete(u, "status")
	if spec, ok := u["spec"].(map[string]any); ok && len(spec) == 0 {
		delete(u, "spec") // a Namespace's
	}
	dropNulls(u)
	return u, nil
}

func dropNulls(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				delete(v, k)
				continue
			}
			dropNulls(x)
		}
	case []any:
		for _, x := range v {
			dropNulls(x)
		}
	}
}

// Write prints objs in format "yaml" (documents separated by ---) or
// "json" (one v1 List, indented).
func Write(w io.Writer, objs []Object, format string) error {
	items := make([]any, 0, len(objs))
	for _, o := range objs {
		u, err := Unstructured(o)
		if err != nil {
			return err
		}
		items = append(items, u)
	}
	var buf bytes.Buffer
	switch format {
	case "yaml":
		for _, u := range items {
			b, err := yaml.Marshal(u)
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			buf.WriteString("---\n")
			buf.Write(b)
		}
	case "json":
		list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
		b, err := json.MarshalIndent(list, "", "  ")
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	default:
		return fmt.Errorf("install: unknown format %q: want yaml or json", format)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
