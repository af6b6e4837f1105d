package control

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/webhook"
)

// webhookMesh is what the control plane holds: a shared Gateway that
// admits routes from every namespace, and team-a's route on
// shop.example.com.
const webhookMesh = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-b}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: team-a}
spec:
  parentRefs: [{name: public, namespace: infra}]
  hostnames: [shop.example.com]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`

// TestValidatingWebhook registers the control plane's validating webhook
// with a real API server: team-b's HTTPRoute taking shop.example.com,
// which team-a's route serves, is refused with the analyzer's TRL2010 and
// its message, as `trellis apply` would refuse it; on its own hostname it
// is created.
func TestValidatingWebhook(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A free port on the API server's address, which it can call.
	ln, err := net.Listen("tcp", net.JoinHostPort(c.IP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := ln.Addr().String()
	ln.Close()
	_, api, dataDir := runControlPlane(t, func(o *Options) { o.WebhookAddress = hookAddr })
	client, err := controlapi.NewClient(api)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "mesh.yaml", Content: webhookMesh}}}); err != nil {
		t.Fatal(err)
	}

	// The Gateway API CRDs, then the webhook for HTTPRoutes.
	crds, err := install.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	ext := apiextensionsclient.NewForConfigOrDie(c.Config)
	for _, crd := range crds {
		if crd.Spec.Group != gwv1.GroupName {
			continue
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitEstablished(t, ctx, ext, "httproutes.gateway.networking.k8s.io")
	bundle, err := os.ReadFile(filepath.Join(dataDir, "ca", ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(c.Config)
	url := "https://" + hookAddr + webhook.ValidatePath
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "trellis-validator"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "validate.trellis.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: bundle},
			FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{gwv1.GroupName}, APIVersions: []string{"v1"}, Resources: []string{"httproutes"}}}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gw := gwclient.NewForConfigOrDie(c.Config)
	route := func(host string) *gwv1.HTTPRoute {
		ns, port := gwv1.Namespace("infra"), gwv1.PortNumber(80)
		return &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "team-b"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "public", Namespace: &ns}}},
				Hostnames:       []gwv1.Hostname{gwv1.Hostname(host)},
				Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "web", Port: &port}}}}}},
			},
		}
	}
	// The configuration reaches the API server's admission chain within
	// moments: try (without storing anything) until the webhook answers.
	var denied error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, denied = gw.GatewayV1().HTTPRoutes("team-b").Create(ctx, route("shop.example.com"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if denied != nil {
			break
		}
	}
	if denied == nil || !strings.Contains(denied.Error(), "TRL2010") || !strings.Contains(denied.Error(), "HTTPRoute team-b/b") {
		t.Fatalf("team-b's route on team-a's hostname: %v, want a denial with TRL2010", denied)
	}
	if _, err := gw.GatewayV1().HTTPRoutes("team-b").Create(ctx, route("b.example.com"), metav1.CreateOptions{}); err != nil {
		t.Errorf("team-b's route on its own hostname: %v", err)
	}
}

func waitEstablished(t *testing.T, ctx context.Context, ext apiextensionsclient.Interface, name string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return
			}
		}
	}
	t.Fatalf("CRD %s not established", name)
}
