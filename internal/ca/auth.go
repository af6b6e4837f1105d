package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
)

// errNoPeerCertificate: the caller presented no certificate on its
// connection.
var errNoPeerCertificate = errors.New("ca: no client certificate")

// PeerOrToken returns the control plane's Authenticator. A request for
// identity id is approved when
//
//  1. (renewal) the caller presented, on the TLS connection of the call, a
//     certificate that verifies now as an X509-SVID of c's trust bundle, for
//     exactly id; a token the request also carries is then not looked at;
//  2. (first contact) otherwise, the request carries a token and tokens
//     approves it: a join token (jointoken.Store.Authenticate), or on
//     Kubernetes a service account token reviewed by the API server,
//     told apart by their form (kubeauth.Tokens).
//
// Anything else is refused: a certificate for another identity with
// PermissionDenied (a certificate renews only its own identity), no
// credentials or a certificate that does not verify with Unauthenticated.
// A nil tokens refuses every token.
func PeerOrToken(c *CA, tokens Authenticator) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
		peerID, peerErr := c.peerIdentity(ctx)
		if peerErr == nil && peerID == id {
			return nil
		}
		if req.GetToken() != "" {
			if tokens == nil {
				return status.Errorf(codes.Unauthenticated, "no certificate for %s: this control plane accepts no tokens", id)
			}
			return tokens.Authenticate(ctx, req, id)
		}
		switch {
		case peerErr == nil:
			return status.Errorf(codes.PermissionDenied,
				"no certificate for %s: the client certificate is for %s, and a certificate renews only its own identity; present a join token for %s",
				id, peerID, id)
		case errors.Is(peerErr, errNoPeerCertificate):
			return status.Errorf(codes.Unauthenticated,
				"no certificate for %s: no credentials; on first contact send a join token (`trellis token create --namespace %s --service-account %s`), to renew present the current certificate",
				id, id.Namespace, id.ServiceAccount)
		default:
			return status.Errorf(codes.Unauthenticated, "no certificate for %s: %v; present a valid certificate or a join token", id, peerErr)
		}
	})
}

// peerIdentity returns the identity of the certificate the caller in ctx
// presented on its TLS connection, after verifying it now with go-spiffe
// as an X509-SVID of c's trust bundle that is good for client
// authentication. It does not rely on the TLS server having verified it.
func (c *CA) peerIdentity(ctx context.Context) (identity.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return identity.ID{}, errNoPeerCertificate
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return identity.ID{}, errNoPeerCertificate
	}
	certs := info.State.PeerCertificates
	td, err := spiffeid.TrustDomainFromString(c.td)
	if err != nil {
		return identity.ID{}, fmt.Errorf("ca: %w", err)
	}
	bundle := x509bundle.FromX509Authorities(td, c.Roots())
	if _, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(c.now())); err != nil {
		return identity.ID{}, fmt.Errorf("the client certificate does not verify: %w", err)
	}
	leaf := certs[0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return identity.ID{}, errors.New("the client certificate is not for client authentication")
	}
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		return identity.ID{}, fmt.Errorf("the client certificate: %w", err)
	}
	if id.TrustDomain != c.td {
		return identity.ID{}, fmt.Errorf("the client certificate is for trust domain %q, not %q", id.TrustDomain, c.td)
	}
	return id, nil
}
