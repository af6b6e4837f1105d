package control

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/identity"
)

// TestCertificatesNeedTokens: the control plane's certificate service
// refuses a request without credentials and issues for a join token made
// through the API, once.
func TestCertificatesNeedTokens(t *testing.T) {
	ctx := context.Background()
	xdsAddr, api, dataDir := runControlPlane(t)
	client, err := controlapi.NewClient(api)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "ca", "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	certs := capb.NewCertificateServiceClient(conn)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(identity.ID{TrustDomain: identity.DefaultTrustDomain, Namespace: "shop", ServiceAccount: "web"}.String())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))

	_, err = certs.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csr, NodeId: "web-1.shop"})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("without a token: %v, want Unauthenticated", err)
	}
	made, err := client.CreateTokens(ctx, []controlapi.TokenSpec{{Namespace: "shop", ServiceAccount: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csr, NodeId: "web-1.shop", Token: made[0].Token}); err != nil {
		t.Fatalf("with a token: %v", err)
	}
	_, err = certs.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csr, NodeId: "web-1.shop", Token: made[0].Token})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no uses left") {
		t.Fatalf("the token again: %v, want Unauthenticated", err)
	}
	list, err := client.Tokens(ctx)
	if err != nil || len(list) != 1 || list[0].State != "used" || list[0].UsesLeft != 0 {
		t.Errorf("after use: %+v, %v", list, err)
	}
}
