package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/kubetest"
	"trellis.dev/trellis/internal/netnstest"
)

// gatewayDeployObjects are a Gateway of three listeners (HTTP on 80,
// HTTPS on 443 for two hostnames, one certificate in the Gateway's
// namespace and one in another, granted), with infrastructure labels and
// annotations, and a route to the shop's web Service.
const gatewayDeployObjects = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: infra}
spec:
  gatewayClassName: trellis
  infrastructure:
    labels: {team: edge}
    annotations: {example.com/owner: edge-team}
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.example.com
    allowedRoutes: {namespaces: {from: All}}
    tls: {mode: Terminate, certificateRefs: [{name: shop-cert}]}
  - name: https-other
    port: 443
    protocol: HTTPS
    hostname: other.example.com
    allowedRoutes: {namespaces: {from: All}}
    tls: {mode: Terminate, certificateRefs: [{name: other-cert, namespace: certs}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: infra-gateways, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: public, namespace: infra}]
  rules: [{backendRefs: [{name: web, port: 80}]}]`

// TestKubernetesGatewayDeployment: on Kubernetes each Gateway of a
// trellis.dev/gateway class gets its own gateway instance, which the
// Gateway API conformance suite relies on:
//   - the control plane makes a ServiceAccount, a Deployment and a Service
//     named <gateway>-trellis in the Gateway's namespace, owned by it and
//     carrying its infrastructure labels and annotations, and a copy of
//     the certificate Secret a ReferenceGrant lets it use from another
//     namespace;
//   - the gateway pod (trellis-proxy --gateway, non-root, binding 80 and
//     443 by its pod's sysctl) turns Ready; the Gateway's status lists the
//     pod's IP and it is Programmed, its listeners Accepted, ResolvedRefs
//     and Programmed with the route attached;
//   - requests from the test to status.addresses on 80 and on 443 (with
//     the SNI of either certificate) reach the backend pod;
//   - without the grant the copy goes and its listener says
//     RefNotPermitted; a second Gateway gets its own Deployment, Service
//     (of the type its annotation asks for) and address; deleting a
//     Gateway removes its objects.
func TestKubernetesGatewayDeployment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := startKubeMesh(ctx, t, map[string]string{"example.com/web:1": "app"})
	cs := m.cs
	for _, ns := range []string{"infra", "shop", "certs"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	secret := func(ns, name, host string, serial int64) {
		crt, key, _ := newCert(t, serial, host)
		roots.AppendCertsFromPEM(crt)
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// shop-cert comes after the gateway's pod (below).
	secret("certs", "other-cert", "other.example.com", 2)
	startWebDeployment(ctx, t, m)
	if err := createDocs(ctx, m.dyn, gatewayDeployObjects, false); err != nil {
		t.Fatal(err)
	}

	// The objects of Gateway public.
	name := kubesource.GatewayObjectName("public")
	var deploy *appsv1.Deployment
	var svc *corev1.Service
	eventually(t, 30*time.Second, "the ServiceAccount, Deployment and Service of Gateway public", func() error {
		if _, err := cs.CoreV1().ServiceAccounts("infra").Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		var err error
		if deploy, err = cs.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		svc, err = cs.CoreV1().Services("infra").Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if o := deploy.OwnerReferences; len(o) != 1 || o[0].Kind != "Gateway" || o[0].Name != "public" {
		t.Errorf("the Deployment's owners %+v, want Gateway public", o)
	}
	if deploy.Labels["team"] != "edge" || deploy.Annotations["example.com/owner"] != "edge-team" || deploy.Labels[kubesource.GatewayNameLabel] != "public" {
		t.Errorf("the Deployment's labels %v and annotations %v: want the infrastructure's and the gateway-name label", deploy.Labels, deploy.Annotations)
	}
	if sc := deploy.Spec.Template.Spec.SecurityContext; sc == nil || len(sc.Sysctls) != 1 || sc.Sysctls[0].Name != "net.ipv4.ip_unprivileged_port_start" {
		t.Errorf("the gateway pod's security context %+v: want the sysctl letting it bind ports under 1024", sc)
	}
	var svcPorts []int32
	for _, p := range svc.Spec.Ports {
		svcPorts = append(svcPorts, p.Port)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || !slices.Equal(svcPorts, []int32{80, 443}) || svc.Spec.Selector[kubesource.GatewayNameLabel] != "public" {
		t.Errorf("the Service: type %s, ports %v, selector %v; want LoadBalancer, 80 and 443, the gateway's pods", svc.Spec.Type, svcPorts, svc.Spec.Selector)
	}
	copies := func() ([]corev1.Secret, error) {
		l, err := cs.CoreV1().Secrets("infra").List(ctx, metav1.ListOptions{LabelSelector: "trellis.dev/certificate-copy=true"})
		if err != nil {
			return nil, err
		}
		return l.Items, nil
	}
	if l, err := copies(); err != nil || len(l) != 1 || l[0].Annotations["trellis.dev/certificate-source"] != "certs/other-cert" {
		t.Errorf("copies of certificates in infra: %+v, %v; want one of certs/other-cert", l, err)
	}

	// The gateway pod turns Ready; the Gateway is Programmed at its IP,
	// but for the listener whose certificate does not exist yet.
	gw := waitGatewayProgrammed(ctx, t, m, "public")
	if got := conditionOf(gw.Status.Listeners[1].Conditions, "ResolvedRefs"); got != "False/InvalidCertificateRef" {
		t.Errorf("listener https, its Secret missing: ResolvedRefs %s, want False/InvalidCertificateRef", got)
	}
	// Once the Secret exists, a new pod mounts it (a pod's volumes would
	// get it only when kubelet resyncs them).
	secret("infra", "shop-cert", "shop.example.com", 1)
	eventually(t, 60*time.Second, "every listener Accepted, ResolvedRefs and Programmed, with the route", func() error {
		gw = getGateway(ctx, t, m, "public")
		for _, l := range gw.Status.Listeners {
			for typ, want := range map[string]string{"Accepted": "True/Accepted", "Conflicted": "False/NoConflicts", "ResolvedRefs": "True/ResolvedRefs", "Programmed": "True/Programmed"} {
				if got := conditionOf(l.Conditions, typ); got != want {
					return fmt.Errorf("listener %s %s: %s, want %s", l.Name, typ, got, want)
				}
			}
			if l.AttachedRoutes != 1 {
				return fmt.Errorf("listener %s: %d attached routes, want 1", l.Name, l.AttachedRoutes)
			}
		}
		return nil
	})
	eventually(t, 60*time.Second, "the gateway's pods rolled to mount infra/shop-cert", func() error {
		d, err := cs.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := d.Spec.Template.Annotations["trellis.dev/certificates"]; got != "certs/other-cert,infra/shop-cert" {
			return fmt.Errorf("pod template's certificates %q", got)
		}
		// Rolled out: the old pod gone, the new one Ready.
		if st := d.Status; st.ObservedGeneration != d.Generation || st.Replicas != 1 || st.UpdatedReplicas != 1 || st.ReadyReplicas != 1 {
			return fmt.Errorf("rolling out: %+v", st)
		}
		return nil
	})
	gw = waitGatewayProgrammed(ctx, t, m, "public")
	addr := gw.Status.Addresses[0].Value

	// Requests from the test to status.addresses, on 80 and 443.
	dial := netnstest.Dialer(m.node.NS)
	get := func(url, sni string) (string, error) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: roots}}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if sni != "" {
			req.Host = sni
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s", resp.Status, b)
		}
		return string(b), nil
	}
	for _, tc := range []struct{ url, sni string }{
		{"http://" + net.JoinHostPort(addr, "80") + "/", "shop.example.com"},
		{"https://" + net.JoinHostPort(addr, "443") + "/", "shop.example.com"},
		{"https://" + net.JoinHostPort(addr, "443") + "/", "other.example.com"},
	} {
		eventually(t, 30*time.Second, tc.url+" ("+tc.sni+") reaching the backend", func() error {
			body, err := get(tc.url, tc.sni)
			if err != nil {
				return fmt.Errorf("%v\ngateway log:\n%s", err, gatewayLog(ctx, m, "public"))
			}
			var echo map[string]string
			if err := json.Unmarshal([]byte(body), &echo); err != nil {
				return fmt.Errorf("not the backend's answer: %q", body)
			}
			return nil
		})
	}

	// Without the grant the copy goes.
	if err := m.dyn.Resource(schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "referencegrants"}).Namespace("certs").
		Delete(ctx, "infra-gateways", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the copy of certs/other-cert removed, and https-other RefNotPermitted", func() error {
		l, err := copies()
		if err != nil || len(l) != 0 {
			return fmt.Errorf("copies %d, %v", len(l), err)
		}
		gw := getGateway(ctx, t, m, "public")
		for _, l := range gw.Status.Listeners {
			if l.Name == "https-other" {
				if got := conditionOf(l.Conditions, "ResolvedRefs"); got != "False/RefNotPermitted" {
					return fmt.Errorf("https-other ResolvedRefs %s", got)
				}
			}
		}
		return nil
	})

	// A second Gateway, with a ClusterIP Service, has its own instance.
	if err := createDocs(ctx, m.dyn, `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: internal, namespace: infra, annotations: {trellis.dev/service-type: ClusterIP}}
spec:
  gatewayClassName: trellis
  listeners: [{name: http, port: 80, protocol: HTTP}]`, false); err != nil {
		t.Fatal(err)
	}
	internal := waitGatewayProgrammed(ctx, t, m, "internal")
	if a := internal.Status.Addresses[0].Value; a == addr {
		t.Errorf("Gateways public and internal share the address %s", a)
	}
	if s, err := cs.CoreV1().Services("infra").Get(ctx, kubesource.GatewayObjectName("internal"), metav1.GetOptions{}); err != nil || s.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Gateway internal's Service: %v; want type ClusterIP", err)
	}

	// Deleting Gateway public removes its objects (garbage collection
	// of what it owns).
	if err := m.dyn.Resource(schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "gateways"}).Namespace("infra").
		Delete(ctx, "public", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "Gateway public's objects removed", func() error {
		_, e1 := cs.AppsV1().Deployments("infra").Get(ctx, name, metav1.GetOptions{})
		_, e2 := cs.CoreV1().Services("infra").Get(ctx, name, metav1.GetOptions{})
		_, e3 := cs.CoreV1().ServiceAccounts("infra").Get(ctx, name, metav1.GetOptions{})
		for _, err := range []error{e1, e2, e3} {
			if !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %v %v %v", e1, e2, e3)
			}
		}
		return nil
	})
	if _, err := cs.AppsV1().Deployments("infra").Get(ctx, kubesource.GatewayObjectName("internal"), metav1.GetOptions{}); err != nil {
		t.Errorf("Gateway internal's Deployment after public's deletion: %v", err)
	}
}

// startWebDeployment runs the backend: Deployment and Service web in
// namespace shop (port 80 to the app's 8080), outside the mesh.
func startWebDeployment(ctx context.Context, t *testing.T, m *kubeMesh) {
	t.Helper()
	replicas := int32(1)
	lbl := map[string]string{"app": "web"}
	if _, err := m.cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "web", Image: "example.com/web:1", Args: []string{"8080", "9090", "7000"},
				Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}},
			}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// getGateway reads Gateway infra/name.
func getGateway(ctx context.Context, t *testing.T, m *kubeMesh, name string) gwv1.Gateway {
	t.Helper()
	u, err := m.dyn.Resource(schema.GroupVersionResource{Group: gwv1.GroupName, Version: "v1", Resource: "gateways"}).Namespace("infra").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var gw gwv1.Gateway
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &gw); err != nil {
		t.Fatal(err)
	}
	return gw
}

// waitGatewayProgrammed waits until Gateway infra/name is Accepted and
// Programmed with the IP of its one Ready pod as its address.
func waitGatewayProgrammed(ctx context.Context, t *testing.T, m *kubeMesh, name string) gwv1.Gateway {
	t.Helper()
	var gw gwv1.Gateway
	eventually(t, 3*time.Minute, "Gateway "+name+" Programmed at its pod's IP", func() error {
		pods, err := m.cs.CoreV1().Pods("infra").List(ctx, metav1.ListOptions{LabelSelector: labels.Set{kubesource.GatewayNameLabel: name}.String()})
		if err != nil {
			return err
		}
		var ready []string
		for _, p := range pods.Items {
			if kubetest.PodReady(&p) {
				ready = append(ready, p.Status.PodIP)
			}
		}
		gw = getGateway(ctx, t, m, name)
		prog := conditionOf(gw.Status.Conditions, "Programmed")
		if len(ready) != 1 || prog != "True/Programmed" || len(gw.Status.Addresses) != 1 || gw.Status.Addresses[0].Value != ready[0] ||
			conditionOf(gw.Status.Conditions, "Accepted") != "True/Accepted" {
			return fmt.Errorf("Ready pods %v; Programmed %s, addresses %+v\ngateway log:\n%s", ready, prog, gw.Status.Addresses, gatewayLog(ctx, m, name))
		}
		return nil
	})
	return gw
}

// gatewayLog is the end of what the pods of Gateway infra/name wrote.
func gatewayLog(ctx context.Context, m *kubeMesh, name string) string {
	pods, err := m.cs.CoreV1().Pods("infra").List(ctx, metav1.ListOptions{LabelSelector: labels.Set{kubesource.GatewayNameLabel: name}.String()})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s (%s %s):\n%s\n", p.Name, p.Status.Phase, p.Status.Message, m.node.Log(&p, inject.GatewayContainer))
	}
	return b.String()
}
