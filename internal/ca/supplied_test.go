package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certSpec describes a test CA certificate; the zero value is a valid
// self-signed P-256 root with keyCertSign and no URI SAN.
type certSpec struct {
	cn         string
	parent     *x509.Certificate
	parentKey  crypto.Signer
	key        crypto.Signer
	notCA      bool
	keyUsage   x509.KeyUsage
	notBefore  time.Time
	notAfter   time.Time
	uris       []string
	pathLen0   bool
	eku        []x509.ExtKeyUsage
	excluded   []string
	permitted  []string
	maxPathLen int
}

var serialCounter int64 = 1

func makeCert(t *testing.T, s certSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	if s.key == nil {
		s.key = newP256(t)
	}
	if s.keyUsage == 0 {
		s.keyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(5 * 365 * 24 * time.Hour)
	}
	if s.cn == "" {
		s.cn = "Test CA"
	}
	serialCounter++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialCounter),
		Subject:               pkix.Name{CommonName: s.cn, Organization: []string{"Example Corp"}},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              s.keyUsage,
		BasicConstraintsValid: true,
		IsCA:                  !s.notCA,
		MaxPathLen:            s.maxPathLen,
		MaxPathLenZero:        s.pathLen0,
		ExtKeyUsage:           s.eku,
		ExcludedURIDomains:    s.excluded,
		PermittedURIDomains:   s.permitted,
	}
	if s.maxPathLen == 0 && !s.pathLen0 {
		tmpl.MaxPathLen = -1
	}
	for _, u := range s.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	parent, parentKey := tmpl, s.key
	if s.parent != nil {
		parent, parentKey = s.parent, s.parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, s.key
}

// writeSupplied writes certs and key as --ca-cert and --ca-key files.
func writeSupplied(t *testing.T, certs []*x509.Certificate, key any) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	var b []byte
	for _, c := range certs {
		b = append(b, certPEM(c)...)
	}
	if err := os.WriteFile(certFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func loadSupplied(t *testing.T, certFile, keyFile string) *Authority {
	t.Helper()
	a, err := LoadSupplied(certFile, keyFile, testTD, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A supplied root: the CA issues its own intermediate under it, and
// workload certificates chain to it.
func TestSuppliedRoot(t *testing.T) {
	for name, uris := range map[string][]string{"without URI SAN": nil, "naming the trust domain": {"spiffe://" + testTD}} {
		t.Run(name, func(t *testing.T) {
			root, key := makeCert(t, certSpec{cn: "Example Root", uris: uris})
			certFile, keyFile := writeSupplied(t, []*x509.Certificate{root}, key)
			a := loadSupplied(t, certFile, keyFile)
			if a.Source != SourceRoot || a.Signer != nil {
				t.Fatalf("authority %+v", a)
			}
			dir := filepath.Join(t.TempDir(), "ca")
			c := openCA(t, Options{Dir: dir, Supplied: a})
			if !c.activeRoot().Equal(root) {
				t.Fatal("the CA does not use the supplied root")
			}
			checkSigningCertSPIFFE(t, c.signer(), 0)
			chain, leafKey := signWithKey(t, c)
			verifySVID(t, chain, leafKey, []*x509.Certificate{root}, time.Now())

			// Restarted with the same flags, or without: the same CA.
			again := openCA(t, Options{Dir: dir, Supplied: a})
			if !again.signer().Equal(c.signer()) {
				t.Error("restart with the same --ca-cert issued another intermediate")
			}
			openCA(t, Options{Dir: dir})

			// Another root is refused: that takes a rotation.
			other, otherKey := makeCert(t, certSpec{cn: "Other Root"})
			oc, ok := writeSupplied(t, []*x509.Certificate{other}, otherKey)
			_, err := Open(Options{Dir: dir, TrustDomain: testTD, Supplied: loadSupplied(t, oc, ok)})
			if err == nil || !strings.Contains(err.Error(), "trellis ca rotate --ca-cert") {
				t.Errorf("Open with another supplied root: %v, want a pointer to trellis ca rotate", err)
			}
		})
	}
}

// A supplied intermediate with its chain: the CA signs with it as is and
// sends the chain up to the root.
func TestSuppliedIntermediate(t *testing.T) {
	root, rootKey := makeCert(t, certSpec{cn: "Example Root"})
	mid, midKey := makeCert(t, certSpec{cn: "Example Policy CA", parent: root, parentKey: rootKey})
	inter, interKey := makeCert(t, certSpec{cn: "Example Mesh CA", parent: mid, parentKey: midKey, uris: []string{"spiffe://" + testTD}})
	certFile, keyFile := writeSupplied(t, []*x509.Certificate{inter, mid, root}, interKey)
	a := loadSupplied(t, certFile, keyFile)
	if a.Source != SourceIntermediate || a.RootKey != nil || !a.Root.Equal(root) || len(a.Chain) != 1 {
		t.Fatalf("authority %+v", a)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	c := openCA(t, Options{Dir: dir, Supplied: a})
	chain, leafKey := signWithKey(t, c)
	if len(chain) != 3 || !chain[1].Equal(inter) || !chain[2].Equal(mid) {
		t.Fatalf("chain %v, want leaf, intermediate, policy CA", chain)
	}
	verifySVIDChain(t, chain, leafKey, root)
	if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); !os.IsNotExist(err) {
		t.Errorf("%s exists for a CA that holds no root key: %v", RootKeyFile, err)
	}
	openCA(t, Options{Dir: dir})

	// Without its root's key it cannot generate a root by itself.
	if _, err := c.StartRotation(t.Context(), RotateOptions{}); err == nil || !strings.Contains(err.Error(), "--generate") {
		t.Errorf("rotation without a new CA: %v, want a hint at --ca-cert or --generate", err)
	}
	if _, err := c.StartRotation(t.Context(), RotateOptions{Generate: true}); err != nil {
		t.Errorf("rotation with --generate: %v", err)
	}
}

// verifySVIDChain verifies a chain of any length against root, for both
// TLS uses.
func verifySVIDChain(t *testing.T, chain []*x509.Certificate, key crypto.Signer, root *x509.Certificate) {
	t.Helper()
	if !keyMatches(chain[0], key.(*ecdsa.PrivateKey)) {
		t.Fatal("leaf does not match its key")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: certPool([]*x509.Certificate{root}), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatal(err)
		}
	}
}

// A rotation to a supplied root: its intermediate is issued when the
// rotation starts.
func TestRotationToSuppliedRoot(t *testing.T) {
	c := openCA(t, Options{})
	root, key := makeCert(t, certSpec{cn: "Example Root"})
	certFile, keyFile := writeSupplied(t, []*x509.Certificate{root}, key)
	s, err := c.StartRotation(t.Context(), RotateOptions{Next: loadSupplied(t, certFile, keyFile)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Next.Root.Equal(root) || s.Next.Signer == nil {
		t.Fatalf("next authority %+v", s.Next)
	}
	if _, err := c.Advance(t.Context(), PhaseAdding); err != nil {
		t.Fatal(err)
	}
	chain, leafKey := signWithKey(t, c)
	verifySVIDChain(t, chain, leafKey, root)
}

func TestLoadSuppliedRejects(t *testing.T) {
	root, rootKey := makeCert(t, certSpec{cn: "Example Root"})
	inter, interKey := makeCert(t, certSpec{cn: "Example Mesh CA", parent: root, parentKey: rootKey})
	otherRoot, otherKey := makeCert(t, certSpec{cn: "Other Root"})
	now := time.Now()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)

	type files struct{ cert, key string }
	write := func(certs []*x509.Certificate, key any) files {
		c, k := writeSupplied(t, certs, key)
		return files{c, k}
	}
	rewriteKey := func(f files, data string) files {
		os.WriteFile(f.key, []byte(data), 0o600)
		return f
	}
	rewriteCert := func(f files, data string) files {
		os.WriteFile(f.cert, []byte(data), 0o644)
		return f
	}
	self := func(s certSpec) files {
		c, k := makeCert(t, s)
		return write([]*x509.Certificate{c}, k)
	}
	for _, tc := range []struct {
		name  string
		files files
		want  string
	}{
		{"key of another certificate", write([]*x509.Certificate{root}, otherKey), "is not the key of the first certificate"},
		{"RSA key", func() files {
			c, _ := makeCert(t, certSpec{key: rsaKey})
			return write([]*x509.Certificate{c}, rsaKey)
		}(), "the key is RSA, not ECDSA P-256"},
		{"P-384 key", self(certSpec{key: p384}), "the key is ECDSA P-384, not P-256"},
		{"encrypted key", rewriteKey(write([]*x509.Certificate{root}, rootKey), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), "encrypted"},
		{"not a CA", self(certSpec{notCA: true, keyUsage: x509.KeyUsageDigitalSignature}), "is not a CA certificate"},
		{"no keyCertSign", self(certSpec{keyUsage: x509.KeyUsageDigitalSignature}), "lacks the keyCertSign key usage"},
		{"expired", self(certSpec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}), "expired at"},
		{"not yet valid", self(certSpec{notBefore: now.Add(time.Hour)}), "is not valid before"},
		{"chain does not verify", write([]*x509.Certificate{inter, otherRoot}, interKey), "is not signed by"},
		{"intermediate without its chain", write([]*x509.Certificate{inter}, interKey), "is not self-signed"},
		{"root followed by more", write([]*x509.Certificate{root, otherRoot}, rootKey), "self-signed root but more certificates follow"},
		{"chain without its root", func() files {
			leafCA, k := makeCert(t, certSpec{cn: "Issuing", parent: inter, parentKey: interKey})
			return write([]*x509.Certificate{leafCA, inter}, k)
		}(), "is not a self-signed root"},
		{"another trust domain", self(certSpec{uris: []string{"spiffe://other.org"}}), `is for SPIFFE trust domain "other.org", and this mesh's is "example.org"`},
		{"URI SAN that is not a trust domain", self(certSpec{uris: []string{"https://example.org/ca"}}), "is not a trust domain ID"},
		{"name constraints exclude the trust domain", self(certSpec{excluded: []string{testTD}}), "name constraints exclude"},
		{"name constraints permit only another domain", self(certSpec{permitted: []string{"other.org"}}), "name constraints exclude"},
		{"extended key usage without clientAuth", self(certSpec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), "restricts extended key usage"},
		{"root with pathlen 0", self(certSpec{pathLen0: true}), "pathlen 0"},
		{"key in the certificate file", func() files {
			f := write([]*x509.Certificate{root}, rootKey)
			b, _ := os.ReadFile(f.key)
			return rewriteCert(f, string(certPEM(root))+string(b))
		}(), `holds a "PRIVATE KEY" PEM block`},
		{"no certificate", rewriteCert(write([]*x509.Certificate{root}, rootKey), "not pem"), "holds no PEM CERTIFICATE block"},
		{"missing certificate file", files{filepath.Join(t.TempDir(), "missing.pem"), "x"}, "no such file"},
		{"missing key file", files{write([]*x509.Certificate{root}, rootKey).cert, filepath.Join(t.TempDir(), "missing-key.pem")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSupplied(tc.files.cert, tc.files.key, testTD, now, nil)
			if err == nil {
				t.Fatal("LoadSupplied succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), filepath.Base(tc.files.cert)) && !strings.Contains(err.Error(), filepath.Base(tc.files.key)) {
				t.Errorf("error %q names neither file", err)
			}
		})
	}
}
