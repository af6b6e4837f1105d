// Package kubeauth authenticates certificate requests on Kubernetes: a pod's
// sidecar presents its projected service account token (audience
// trellis.dev), and the API server's TokenReview says whose it is. The
// identity comes from the review, never from the request: a token for
// shop/web gets a certificate for spiffe://TD/ns/shop/sa/web and nothing
// else.
//
//	CreateCertificate(token, CSR for id) ──► TokenReview{token, audiences: [trellis.dev]}
//	    authenticated, audience trellis.dev, user system:serviceaccount:NS:SA
//	    NS/SA == id's namespace and service account ──► approved
package kubeauth

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
)

// Audience is the audience the tokens must be issued for: a token meant
// for another service cannot be replayed to the CA.
const Audience = "trellis.dev"

// TokenReviewer authenticates service account tokens with TokenReview.
type TokenReviewer struct {
	Client kubernetes.Interface
	// Audience defaults to Audience.
	Audience string
}

var _ ca.Authenticator = (*TokenReviewer)(nil)

// Authenticate approves a request whose token the API server authenticates,
// for audience, as the service account of id.
func (r *TokenReviewer) Authenticate(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
	aud := r.Audience
	if aud == "" {
		aud = Audience
	}
	review, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: req.GetToken(), Audiences: []string{aud}},
	}, metav1.CreateOptions{})
	if err != nil {
		return status.Errorf(codes.Unavailable, "no certificate for %s: reviewing the service account token: %v", id, err)
	}
	st := review.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "the API server does not authenticate it"
		}
		return status.Errorf(codes.Unauthenticated, "no certificate for %s: service account token: %s", id, msg)
	}
	if !slices.Contains(st.Audiences, aud) {
		return status.Errorf(codes.Unauthenticated, "no certificate for %s: the service account token is not for audience %q", id, aud)
	}
	ns, sa, ok := serviceAccount(st.User.Username)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "no certificate for %s: the token is %q's, not a service account's", id, st.User.Username)
	}
	if ns != id.Namespace || sa != id.ServiceAccount {
		return status.Errorf(codes.PermissionDenied, "no certificate for %s: the token is service account %s/%s's", id, ns, sa)
	}
	return nil
}

// serviceAccount splits system:serviceaccount:NS:SA.
func serviceAccount(user string) (ns, sa string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, sa, ok = strings.Cut(rest, ":")
	return ns, sa, ok && ns != "" && sa != "" && !strings.Contains(sa, ":")
}

// IsServiceAccountToken tells a Kubernetes token (a JWT: three base64url
// parts) from a join token.
func IsServiceAccountToken(token string) bool {
	return strings.Count(token, ".") == 2 && !strings.ContainsAny(token, " \t\n")
}

// Tokens sends service account tokens to kube and any other token to join
// (either may be nil: its tokens are then refused).
func Tokens(join, kube ca.Authenticator) ca.Authenticator {
	return ca.AuthenticatorFunc(func(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
		judge, what := join, "join tokens"
		if IsServiceAccountToken(req.GetToken()) {
			judge, what = kube, "Kubernetes service account tokens"
		}
		if judge == nil {
			return status.Error(codes.Unauthenticated, fmt.Sprintf("no certificate for %s: this control plane accepts no %s", id, what))
		}
		return judge.Authenticate(ctx, req, id)
	})
}
