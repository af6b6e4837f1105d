package kubeauth

import (
	"context"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/kubetest"
)

// TestTokenReview asks a real API server: a projected token of shop/web
// for audience trellis.dev gets shop/web's identity and no other; a token
// for another audience, a garbled one and a join token's form are
// refused.
func TestTokenReview(t *testing.T) {
	c := kubetest.Start(t)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"web", "db"} {
		if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(sa, audience string) string {
		tr, err := cs.CoreV1().ServiceAccounts("shop").CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	web := identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: "shop", ServiceAccount: "web"}
	auth := Tokens(nil, &TokenReviewer{Client: cs})
	webToken := token("web", Audience)
	if !IsServiceAccountToken(webToken) {
		t.Fatalf("a service account token is not told from a join token: %q", webToken)
	}
	for _, tc := range []struct {
		name  string
		token string
		id    identity.ID
		want  codes.Code
	}{
		{"its own identity", webToken, web, codes.OK},
		{"another service account's identity", webToken, identity.ID{TrustDomain: web.TrustDomain, Namespace: "shop", ServiceAccount: "db"}, codes.PermissionDenied},
		{"another namespace", webToken, identity.ID{TrustDomain: web.TrustDomain, Namespace: "kube-system", ServiceAccount: "web"}, codes.PermissionDenied},
		{"a token for another audience", token("web", "vault"), web, codes.Unauthenticated},
		{"a garbled token", webToken[:len(webToken)-4] + "AAAA", web, codes.Unauthenticated},
		{"a join token, which this control plane does not accept", "tok_0123456789abcdef.secret", web, codes.Unauthenticated},
	} {
		err := auth.Authenticate(ctx, &capb.CreateCertificateRequest{Token: tc.token}, tc.id)
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: %v (%s), want %s", tc.name, err, got, tc.want)
		}
	}
	var _ ca.Authenticator = auth
}
