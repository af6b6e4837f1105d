package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
)

// BenchmarkSign measures CA.Sign of a parsed P-256 CSR on every core
// (b.RunParallel), and, as its baseline, one bare ECDSA P-256 signature
// over a SHA-256 digest with the same intermediate key. The ratio of the
// two is the CA's work beyond the signature itself: the CSR's checks (its
// signature verification above all), the certificate's encoding and
// parsing.
//
//	go test -run '^$' -bench Sign -cpu 2 ./internal/ca
func BenchmarkSign(b *testing.B) {
	c, err := Open(Options{Dir: filepath.Join(b.TempDir(), "ca"), TrustDomain: testTD})
	if err != nil {
		b.Fatal(err)
	}
	id := identity.ID{TrustDomain: testTD, Namespace: "bench", ServiceAccount: "web"}
	csr := mustParseCSR(b, makeCSR(b, newP256(b), id.String()))
	key := c.State().Active.SignerKey
	digest := sha256.Sum256(csr.Raw)

	b.Run("ca", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Sign(csr, id, 0); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signatures/s")
	})
	b.Run("bare-ecdsa", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signatures/s")
	})
}

// BenchmarkServerCreateCertificate measures the CA service's whole request
// path (checks, an approving Authenticator, signing, PEM encoding) on
// every core, without gRPC.
func BenchmarkServerCreateCertificate(b *testing.B) {
	c, err := Open(Options{Dir: filepath.Join(b.TempDir(), "ca"), TrustDomain: testTD})
	if err != nil {
		b.Fatal(err)
	}
	id := identity.ID{TrustDomain: testTD, Namespace: "bench", ServiceAccount: "web"}
	allow := AuthenticatorFunc(func(context.Context, *capb.CreateCertificateRequest, identity.ID) error { return nil })
	s := NewServer(c, allow, nil)
	req := &capb.CreateCertificateRequest{NodeId: "bench", Csr: string(makeCSR(b, newP256(b), id.String()))}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.CreateCertificate(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certificates/s")
}
