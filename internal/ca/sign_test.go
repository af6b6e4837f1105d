package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/identity"
)

func TestSignIssuesSVID(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	c := openCA(t, Options{Now: func() time.Time { return now }})
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"default", 0, DefaultWorkloadTTL},
		{"shorter", time.Hour, time.Hour},
		{"minimum", MinWorkloadTTL, MinWorkloadTTL},
		{"longer is capped", 48 * time.Hour, DefaultWorkloadTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := newP256(t)
			chain, err := c.Sign(mustParseCSR(t, makeCSR(t, key, testID.String())), testID, tc.ttl)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 2 || !chain[1].Equal(c.signer()) {
				t.Fatalf("chain of %d, want leaf and the intermediate", len(chain))
			}
			id := verifySVID(t, chain, key, c.Roots(), now)
			if id.String() != testID.String() {
				t.Errorf("SPIFFE ID %s, want %s", id, testID)
			}
			checkLeaf(t, chain[0], testID)
			if !key.PublicKey.Equal(chain[0].PublicKey) {
				t.Error("leaf does not carry the CSR's key")
			}
			if want := now.Add(-ClockSkew); !chain[0].NotBefore.Equal(want) {
				t.Errorf("NotBefore %v, want %v", chain[0].NotBefore, want)
			}
			if want := now.Add(tc.want); !chain[0].NotAfter.Equal(want) {
				t.Errorf("NotAfter %v, want %v", chain[0].NotAfter, want)
			}
		})
	}
}

// checkLeaf checks what go-spiffe does not: the exact key usages, the
// critical extensions and the absence of everything else.
func checkLeaf(t *testing.T, leaf *x509.Certificate, id identity.ID) {
	t.Helper()
	if got, err := identity.FromCertificate(leaf); err != nil || got != id {
		t.Errorf("identity %v (%v), want %v", got, err, id)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Error("leaf: want BasicConstraints CA=false")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf key usage %b, want digitalSignature only", leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("leaf extended key usage %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	if !criticalExt(leaf, "2.5.29.15") {
		t.Error("leaf key usage extension is not critical")
	}
	if len(leaf.Subject.Names) == 0 && !criticalExt(leaf, "2.5.29.17") {
		t.Error("leaf has an empty subject but a non-critical SAN extension")
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x: want positive, at most 128 bits", leaf.SerialNumber)
	}
	if len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has email SANs %v", leaf.EmailAddresses)
	}
}

func TestSignSerialsDiffer(t *testing.T) {
	c := openCA(t, Options{})
	csr := mustParseCSR(t, makeCSR(t, newP256(t), testID.String()))
	seen := map[string]bool{}
	for range 20 {
		chain, err := c.Sign(csr, testID, 0)
		if err != nil {
			t.Fatal(err)
		}
		s := serialHex(chain[0])
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

// Nothing but the key and the SPIFFE ID is taken from a CSR.
func TestSignIgnoresRequestedExtensions(t *testing.T) {
	c := openCA(t, Options{})
	bc, _ := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{true})
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "root of all evil", Organization: []string{"evil"}},
		URIs:            []*url.URL{testID.URL()},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}},
	}
	key := newP256(t)
	chain, err := c.Sign(mustParseCSR(t, makeCSRFrom(t, key, tmpl)), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if chain[0].IsCA || len(chain[0].Subject.Names) != 0 {
		t.Errorf("leaf IsCA=%v subject %q: requested extensions or subject were copied", chain[0].IsCA, chain[0].Subject)
	}
	verifySVID(t, chain, key, c.Roots(), time.Now())
}

func TestSignRejects(t *testing.T) {
	c := openCA(t, Options{})
	p256 := newP256(t)
	good := makeCSR(t, p256, testID.String())
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uri := testID.URL()

	badSig := func() []byte {
		block, _ := pem.Decode(good)
		der := bytes.Clone(block.Bytes)
		der[len(der)-1] ^= 0x01 // last byte of the signature's s
		return der
	}
	otherNameSAN := func() []byte {
		oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1})
		val, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: must(asn1.Marshal("admin"))})
		san, _ := asn1.Marshal([]asn1.RawValue{
			{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri.String())},
			{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, val...)},
		})
		return makeCSRFrom(t, p256, &x509.CertificateRequest{
			ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Value: san}},
		})
	}

	for _, tc := range []struct {
		name string
		csr  []byte
		id   identity.ID   // zero: testID
		ttl  time.Duration // zero: default
		want string
	}{
		{name: "RSA key", csr: makeCSR(t, rsaKey, testID.String()), want: "key is RSA 2048-bit; generate an ECDSA P-256 key"},
		{name: "P-384 key", csr: makeCSR(t, p384, testID.String()), want: "key is ECDSA P-384"},
		{name: "Ed25519 key", csr: makeCSR(t, edKey, testID.String()), want: "key is Ed25519"},
		{name: "two URI SANs", csr: makeCSR(t, p256, testID.String(), "spiffe://example.org/ns/demo/sa/db"), want: "2 URI SANs"},
		{name: "DNS SAN", csr: makeCSRFrom(t, p256, &x509.CertificateRequest{URIs: []*url.URL{uri}, DNSNames: []string{"web.demo.svc"}}), want: `DNS SANs ["web.demo.svc"] are not allowed`},
		{name: "IP SAN", csr: makeCSRFrom(t, p256, &x509.CertificateRequest{URIs: []*url.URL{uri}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), want: "IP SANs"},
		{name: "email SAN", csr: makeCSRFrom(t, p256, &x509.CertificateRequest{URIs: []*url.URL{uri}, EmailAddresses: []string{"a@example.org"}}), want: "email SANs"},
		{name: "otherName SAN", csr: otherNameSAN(), want: "SAN of type otherName"},
		{name: "no SAN", csr: makeCSR(t, p256), want: "no URI SAN"},
		{name: "foreign trust domain", csr: makeCSR(t, p256, "spiffe://other.org/ns/demo/sa/web"), want: `trust domain "other.org"`},
		{name: "bad SPIFFE path", csr: makeCSR(t, p256, "spiffe://example.org/workload/web"), want: "is not of the form"},
		{name: "not spiffe", csr: makeCSR(t, p256, "https://example.org/ns/demo/sa/web"), want: "is not a spiffe:// ID"},
		{name: "trust domain ID", csr: makeCSR(t, p256, "spiffe://example.org"), want: "has no path"},
		{name: "bad signature", csr: badSig(), want: "signature does not verify"},
		{name: "garbage", csr: []byte("\x30\x82\x01\x00garbage"), want: "not a PKCS#10 CSR"},
		{name: "empty", csr: nil, want: "CSR is empty"},
		{name: "certificate PEM", csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.activeRoot().Raw}), want: "want CERTIFICATE REQUEST"},
		{name: "two PEM blocks", csr: append(bytes.Clone(good), good...), want: "data after the PEM block"},
		{name: "malformed PEM", csr: []byte("-----BEGIN CERTIFICATE REQUEST-----\n!!!"), want: "malformed PEM"},
		{name: "huge", csr: make([]byte, maxCSRSize+1), want: "more than the"},
		{name: "other identity", csr: good, id: identity.ID{TrustDomain: testTD, Namespace: "demo", ServiceAccount: "db"}, want: "CSR asks for spiffe://example.org/ns/demo/sa/web, not spiffe://example.org/ns/demo/sa/db"},
		{name: "lifetime too short", csr: good, ttl: 30 * time.Second, want: "shorter than the minimum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id
			if id == (identity.ID{}) {
				id = testID
			}
			csr, err := ParseCSR(tc.csr)
			if err == nil {
				var chain []*x509.Certificate
				chain, err = c.Sign(csr, id, tc.ttl)
				if err == nil {
					t.Fatalf("issued %s", chain[0].URIs)
				}
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("error %q does not wrap ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseCSRForms(t *testing.T) {
	pemCSR := makeCSR(t, newP256(t), testID.String())
	block, _ := pem.Decode(pemCSR)
	for name, b := range map[string][]byte{
		"PEM":                     pemCSR,
		"PEM with whitespace":     append(append([]byte("\n  "), pemCSR...), "\n\n"...),
		"DER":                     block.Bytes,
		"NEW CERTIFICATE REQUEST": pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: block.Bytes}),
	} {
		csr, err := ParseCSR(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if id, err := CheckCSR(csr, testTD); err != nil || id != testID {
			t.Errorf("%s: CheckCSR = %v, %v", name, id, err)
		}
	}
}

func TestServerCertificate(t *testing.T) {
	c := openCA(t, Options{})
	id := identity.ControlPlane(testTD)
	cert, err := c.ServerCertificate(id, []string{"trellis-control.trellis-system.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{cert.Leaf, c.signer()}
	if len(cert.Certificate) != 2 || !bytes.Equal(cert.Certificate[1], c.signer().Raw) || !bytes.Equal(cert.Certificate[0], cert.Leaf.Raw) {
		t.Fatal("tls.Certificate does not hold leaf then intermediate")
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", cert.PrivateKey)
	}
	if got := verifySVID(t, chain, key, c.Roots(), time.Now()); got.String() != id.String() {
		t.Errorf("SPIFFE ID %s, want %s", got, id)
	}
	checkLeaf(t, cert.Leaf, id)
	if err := cert.Leaf.VerifyHostname("trellis-control.trellis-system.svc"); err != nil {
		t.Error(err)
	}
	if err := cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}

	if _, err := c.ServerCertificate(identity.ControlPlane("other.org"), nil, nil); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("server certificate in another trust domain: %v", err)
	}
}

func TestServerCertificateFuncRenewsAtHalfLife(t *testing.T) {
	clk := newClock(time.Now())
	c := openCA(t, Options{Now: clk.Now, WorkloadTTL: time.Hour})
	get := c.ServerCertificateFunc(identity.ControlPlane(testTD), nil, nil)
	first, err := get(nil)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(20 * time.Minute)
	if again, _ := get(nil); again != first {
		t.Error("renewed before half life")
	}
	clk.Advance(20 * time.Minute)
	renewed, err := get(nil)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Error("not renewed after half life")
	}
}

func FuzzParseCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good := makeCSR(f, key, testID.String())
	block, _ := pem.Decode(good)
	f.Add(good)
	f.Add(block.Bytes)
	f.Add(makeCSR(f, key, testID.String(), "spiffe://example.org/ns/a/sa/b"))
	f.Add(makeCSRFrom(f, key, &x509.CertificateRequest{DNSNames: []string{"x"}}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x80})

	c, err := Open(Options{Dir: filepath.Join(f.TempDir(), "ca"), TrustDomain: testTD})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("ParseCSR error %q does not wrap ErrInvalidRequest", err)
			}
			return
		}
		id, err := CheckCSR(csr, testTD)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("CheckCSR error %q does not wrap ErrInvalidRequest", err)
			}
			return
		}
		chain, err := c.Sign(csr, id, 0)
		if err != nil {
			t.Fatalf("Sign after CheckCSR accepted the CSR: %v", err)
		}
		if got, err := identity.FromCertificate(chain[0]); err != nil || got != id {
			t.Fatalf("issued identity %v (%v), want %v", got, err, id)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
