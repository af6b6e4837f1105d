package secrets

import (
	"encoding/pem"
	"slices"
	"testing"

	"trellis.dev/trellis/internal/identity"
)

// TestParseIssued reads a certificate response's PEM chain and bundle:
// the chain's DER in order, leaf first, and every root of the bundle.
func TestParseIssued(t *testing.T) {
	c := openCA(t, nil)
	cert, err := c.ServerCertificate(identity.ID{TrustDomain: "example.org", Namespace: "shop", ServiceAccount: "cart"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var chainPEM []string
	for _, der := range cert.Certificate {
		chainPEM = append(chainPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	}
	chain, bundle, err := ParseIssued(chainPEM, []string{string(c.BundlePEM())})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(chain, cert.Certificate, slices.Equal[[]byte]) {
		t.Errorf("chain of %d certificates, not the %d issued in order", len(chain), len(cert.Certificate))
	}
	if len(bundle) != len(c.Roots()) || !bundle[0].Equal(c.Roots()[0]) {
		t.Errorf("bundle of %d certificates, want the CA's %d roots", len(bundle), len(c.Roots()))
	}
	if _, _, err := ParseIssued([]string{"not PEM"}, nil); err == nil {
		t.Error("a chain without a certificate was accepted")
	}
}
