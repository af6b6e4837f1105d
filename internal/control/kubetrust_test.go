package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/kubeauth"
	"trellis.dev/trellis/internal/kubesource"
)

// TestKubernetesTrustAndTokens: on Kubernetes the control plane fills in
// the caBundle of its webhook configurations and publishes its roots as
// ConfigMap trellis-ca-root in namespaces labelled for injection; and its
// CA issues a pod's service account, and no other, a certificate for the
// projected token (audience trellis.dev) that the API server reviews.
func TestKubernetesTrustAndTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, cs, _ := startCluster(ctx, t)
	objs, err := install.Objects(install.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch w := o.(type) {
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			_, err = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, w, metav1.CreateOptions{})
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, w, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{inject.InjectLabel: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "db"} {
		if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cp := startKube(t, c.Config, kubesource.StatusOptions{LeaseNamespace: "default"})
	bundle, err := cp.api.CABundle(ctx)
	if err != nil || !strings.Contains(bundle, "BEGIN CERTIFICATE") {
		t.Fatalf("trust bundle: %q %v", bundle, err)
	}
	waitUntil(ctx, t, "the webhooks' caBundle and ConfigMap trellis-ca-root hold the trust bundle", func() (bool, error) {
		v, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, install.ValidatingWebhookName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.MutatingWebhookName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, w := range v.Webhooks {
			if string(w.ClientConfig.CABundle) != bundle {
				return false, nil
			}
		}
		for _, w := range m.Webhooks {
			if string(w.ClientConfig.CABundle) != bundle {
				return false, nil
			}
		}
		cm, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, inject.CARootConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && cm.Data["root-cert.pem"] == bundle, err
	})
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, inject.CARootConfigMap, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a namespace not labelled for injection got the ConfigMap: %v", err)
	}

	// A certificate for a projected service account token.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(bundle))
	conn, err := grpc.NewClient(cp.xds, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	certs := capb.NewCertificateServiceClient(conn)
	tr, err := cs.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "web", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{kubeauth.Audience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr := func(sa string) string {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: "shop", ServiceAccount: sa}.String())
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	if _, err := certs.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csr("web"), NodeId: "web-0.shop", Token: tr.Status.Token}); err != nil {
		t.Errorf("web's certificate for web's token: %v", err)
	}
	_, err = certs.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csr("db"), NodeId: "web-0.shop", Token: tr.Status.Token})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("db's certificate for web's token: %v, want PermissionDenied", err)
	}
}
