package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"trellis.dev/trellis/internal/identity"
)

const testTD = "example.org"

var testID = identity.ID{TrustDomain: testTD, Namespace: "demo", ServiceAccount: "web"}

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openCA(t *testing.T, opts Options) *CA {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "ca")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = testTD
	}
	c, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return c
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// makeCSR returns a PEM CSR for key asking for the given URI SANs.
func makeCSR(t testing.TB, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return makeCSRFrom(t, key, tmpl)
}

func makeCSRFrom(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func mustParseCSR(t testing.TB, b []byte) *x509.CertificateRequest {
	t.Helper()
	csr, err := ParseCSR(b)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// verifySVID checks chain (leaf first) and key with go-spiffe, an
// independent implementation of the X509-SVID rules, and returns the SPIFFE
// ID it verified.
func verifySVID(t *testing.T, chain []*x509.Certificate, key crypto.Signer, roots []*x509.Certificate, now time.Time) spiffeid.ID {
	t.Helper()
	var raw []byte
	for _, c := range chain {
		raw = append(raw, c.Raw...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	svid, err := x509svid.ParseRaw(raw, keyDER)
	if err != nil {
		t.Fatalf("x509svid.ParseRaw: %v", err)
	}
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(testTD), roots)
	id, chains, err := x509svid.Verify(chain, bundle, x509svid.WithTime(now))
	if err != nil {
		t.Fatalf("x509svid.Verify: %v", err)
	}
	if id != svid.ID {
		t.Fatalf("Verify ID %s != ParseRaw ID %s", id, svid.ID)
	}
	if len(chains) == 0 || len(chains[0]) != 3 {
		t.Fatalf("verified chains %v, want leaf, intermediate, root", chains)
	}
	return id
}

// checkSigningCert checks a root or intermediate against the SPIFFE rules
// for signing certificates, using go-spiffe to read its SPIFFE ID.
func checkSigningCertSPIFFE(t *testing.T, cert *x509.Certificate, maxPathLen int) {
	t.Helper()
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		t.Fatalf("x509svid.IDFromCert(%s): %v", cert.Subject, err)
	}
	if id.TrustDomain().Name() != testTD || id.Path() != "" {
		t.Errorf("%s: SPIFFE ID %s, want spiffe://%s with no path", cert.Subject, id, testTD)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		t.Errorf("%s: not a CA", cert.Subject)
	}
	if cert.MaxPathLen != maxPathLen || (maxPathLen == 0 && !cert.MaxPathLenZero) {
		t.Errorf("%s: MaxPathLen %d, want %d", cert.Subject, cert.MaxPathLen, maxPathLen)
	}
	if cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("%s: key usage %b, want keyCertSign|cRLSign", cert.Subject, cert.KeyUsage)
	}
	if len(cert.ExtKeyUsage) != 0 {
		t.Errorf("%s: extended key usage %v, want none", cert.Subject, cert.ExtKeyUsage)
	}
	if !criticalExt(cert, "2.5.29.15") {
		t.Errorf("%s: key usage extension is not critical", cert.Subject)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("%s: key %T, want ECDSA", cert.Subject, cert.PublicKey)
	}
}

func criticalExt(cert *x509.Certificate, oid string) bool {
	for _, e := range cert.Extensions {
		if e.Id.String() == oid {
			return e.Critical
		}
	}
	return false
}

func TestOpenCreatesThenReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	c := openCA(t, Options{Dir: dir, Now: func() time.Time { return now }})

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode %v, want 0700", got)
	}
	for name, want := range map[string]os.FileMode{
		StateFile: 0o600, RootCertFile: 0o644, RootKeyFile: 0o600, IntermediateCertFile: 0o644, IntermediateKeyFile: 0o600, BundleFile: 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", name, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if e.Name() != lockFile {
			names = append(names, e.Name())
		}
	}
	if len(names) != 6 {
		t.Errorf("dir holds %v besides the lock file, want the 6 CA files (no leftover temporary files)", names)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, BundleFile)); !bytes.Equal(b, c.BundlePEM()) {
		t.Errorf("%s is not the bundle", BundleFile)
	}

	roots := c.Roots()
	if len(roots) != 1 {
		t.Fatalf("Roots() has %d certificates, want 1", len(roots))
	}
	root := roots[0]
	checkSigningCertSPIFFE(t, root, 1)
	checkSigningCertSPIFFE(t, c.signer(), 0)
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if _, err := c.signer().Verify(x509.VerifyOptions{Roots: certPool(roots), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("intermediate does not verify against the root: %v", err)
	}
	if got, want := root.NotAfter.Sub(root.NotBefore), RootLifetime+ClockSkew; got != want {
		t.Errorf("root lifetime %v, want %v", got, want)
	}
	if got, want := c.signer().NotAfter.Sub(c.signer().NotBefore), IntermediateLifetime+ClockSkew; got != want {
		t.Errorf("intermediate lifetime %v, want %v", got, want)
	}
	if root.SerialNumber.BitLen() > 128 || c.signer().SerialNumber.Cmp(root.SerialNumber) == 0 {
		t.Errorf("serials %x, %x: want distinct and at most 128 bits", root.SerialNumber, c.signer().SerialNumber)
	}
	if !bytes.Equal(c.BundlePEM(), certPEM(root)) {
		t.Errorf("BundlePEM is not the root's PEM")
	}
	if c.TrustDomain() != testTD {
		t.Errorf("TrustDomain() = %q", c.TrustDomain())
	}

	again := openCA(t, Options{Dir: dir, Now: func() time.Time { return now.Add(time.Hour) }})
	if !again.Roots()[0].Equal(root) {
		t.Error("reload gave another root")
	}
	if !again.signer().Equal(c.signer()) {
		t.Error("reload gave another intermediate")
	}
}

func TestOpenRefusesOtherTrustDomain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	openCA(t, Options{Dir: dir, TrustDomain: "one.example"})
	_, err := Open(Options{Dir: dir, TrustDomain: "two.example"})
	if err == nil {
		t.Fatal("Open with another trust domain succeeded")
	}
	for _, want := range []string{`"one.example"`, `"two.example"`, dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// asOldDir removes what a CA directory written before StateFile existed
// did not have.
func asOldDir(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{StateFile, BundleFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenRefusesInconsistentDir damages the PEM files of a directory
// written before StateFile existed, which Open reads and converts.
func TestOpenRefusesInconsistentDir(t *testing.T) {
	other := openCA(t, Options{})
	otherFile := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(other.storage.String()), name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"intermediate from another root", func(dir string) {
			os.WriteFile(filepath.Join(dir, IntermediateCertFile), otherFile(IntermediateCertFile), 0o644)
			os.WriteFile(filepath.Join(dir, IntermediateKeyFile), otherFile(IntermediateKeyFile), 0o600)
		}, "is not signed by"},
		{"root key of another root", func(dir string) {
			os.WriteFile(filepath.Join(dir, RootKeyFile), otherFile(RootKeyFile), 0o600)
		}, "does not hold the key"},
		{"intermediate key of another intermediate", func(dir string) {
			os.WriteFile(filepath.Join(dir, IntermediateKeyFile), otherFile(IntermediateKeyFile), 0o600)
		}, "does not hold the key"},
		{"root key missing", func(dir string) {
			os.Remove(filepath.Join(dir, RootKeyFile))
		}, "only one of"},
		{"root missing", func(dir string) {
			os.Remove(filepath.Join(dir, RootKeyFile))
			os.Remove(filepath.Join(dir, RootCertFile))
		}, "no root"},
		{"intermediate key missing", func(dir string) {
			os.Remove(filepath.Join(dir, IntermediateKeyFile))
		}, "remove both"},
		{"garbage root certificate", func(dir string) {
			os.WriteFile(filepath.Join(dir, RootCertFile), []byte("not pem"), 0o644)
		}, "no PEM CERTIFICATE"},
		{"garbage key", func(dir string) {
			os.WriteFile(filepath.Join(dir, RootKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, RootKeyFile},
		{"leaf as root", func(dir string) {
			key := newP256(t)
			chain, err := other.Sign(mustParseCSR(t, makeCSR(t, key, testID.String())), testID, 0)
			if err != nil {
				t.Fatal(err)
			}
			der, _ := x509.MarshalPKCS8PrivateKey(key)
			os.WriteFile(filepath.Join(dir, RootCertFile), certPEM(chain[0]), 0o644)
			os.WriteFile(filepath.Join(dir, RootKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		}, "not a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			openCA(t, Options{Dir: dir})
			asOldDir(t, dir)
			tc.damage(dir)
			_, err := Open(Options{Dir: dir, TrustDomain: testTD})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestOpenReissuesMissingIntermediate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c := openCA(t, Options{Dir: dir})
	asOldDir(t, dir)
	os.Remove(filepath.Join(dir, IntermediateCertFile))
	os.Remove(filepath.Join(dir, IntermediateKeyFile))
	again := openCA(t, Options{Dir: dir})
	if !again.activeRoot().Equal(c.activeRoot()) {
		t.Error("root changed")
	}
	if again.signer().Equal(c.signer()) {
		t.Error("intermediate not reissued")
	}
	if err := again.signer().CheckSignatureFrom(c.activeRoot()); err != nil {
		t.Error(err)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{TrustDomain: testTD}, "Dir is empty"},
		{"bad trust domain", Options{Dir: t.TempDir(), TrustDomain: "Example.ORG"}, "not allowed"},
		{"ttl too short", Options{Dir: t.TempDir(), WorkloadTTL: time.Second}, "outside"},
		{"ttl too long", Options{Dir: t.TempDir(), WorkloadTTL: 30 * 24 * time.Hour}, "outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want error containing %q", err, tc.want)
			}
		})
	}
	d, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if d.TrustDomain() != identity.DefaultTrustDomain || d.WorkloadTTL() != DefaultWorkloadTTL {
		t.Errorf("defaults: trust domain %q, workload TTL %v", d.TrustDomain(), d.WorkloadTTL())
	}
}

// An intermediate close to expiry is replaced from the root at the next
// signature, on disk too; certificates from both verify against the same
// root.
func TestIntermediateRenewal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	clk := newClock(time.Now())
	c := openCA(t, Options{Dir: dir, Now: clk.Now})
	first := c.signer()

	clk.Advance(IntermediateLifetime - IntermediateRenewBefore - time.Hour)
	key := newP256(t)
	csr := mustParseCSR(t, makeCSR(t, key, testID.String()))
	chain, err := c.Sign(csr, testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[1].Equal(first) {
		t.Fatal("intermediate renewed too early")
	}

	clk.Advance(2 * time.Hour)
	chain, err = c.Sign(csr, testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if chain[1].Equal(first) {
		t.Fatal("intermediate not renewed within IntermediateRenewBefore of its expiry")
	}
	checkSigningCertSPIFFE(t, chain[1], 0)
	verifySVID(t, chain, key, c.Roots(), clk.Now())

	again := openCA(t, Options{Dir: dir, Now: clk.Now})
	if !again.signer().Equal(chain[1]) {
		t.Error("renewed intermediate not written to disk")
	}
}

// Near the root's expiry the intermediate and the workload certificates are
// cut to the root's NotAfter, and the intermediate is not reissued on every
// signature.
func TestLifetimesClampedToRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	clk := newClock(time.Now())
	c := openCA(t, Options{Dir: dir, Now: clk.Now})
	rootEnd := c.activeRoot().NotAfter

	clk.t = rootEnd.Add(-time.Hour)
	c = openCA(t, Options{Dir: dir, Now: clk.Now})
	if !c.signer().NotAfter.Equal(rootEnd) {
		t.Fatalf("intermediate NotAfter %v, want the root's %v", c.signer().NotAfter, rootEnd)
	}
	inter := c.signer()
	key := newP256(t)
	chain, err := c.Sign(mustParseCSR(t, makeCSR(t, key, testID.String())), testID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(rootEnd) {
		t.Errorf("leaf NotAfter %v, want the root's %v", chain[0].NotAfter, rootEnd)
	}
	if !chain[1].Equal(inter) {
		t.Error("intermediate reissued although it already ends with the root")
	}
	verifySVID(t, chain, key, c.Roots(), clk.Now())

	clk.t = rootEnd.Add(time.Second)
	if _, err := Open(Options{Dir: dir, TrustDomain: testTD, Now: clk.Now}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Open with an expired root: %v, want an error saying it expired", err)
	}
}

func certPool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestOpenConcurrently opens one empty directory from several goroutines
// at once, as control planes sharing a CA directory may: all end up with
// the same root and intermediate.
func TestOpenConcurrently(t *testing.T) {
	dir := t.TempDir()
	cas := make([]*CA, 8)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			c, err := Open(Options{Dir: dir, TrustDomain: "cluster.local"})
			if err != nil {
				t.Error(err)
				return
			}
			cas[i] = c
		})
	}
	wg.Wait()
	for i, c := range cas[1:] {
		if c == nil || cas[0] == nil {
			t.Fatal("an Open failed")
		}
		if !c.activeRoot().Equal(cas[0].activeRoot()) || !c.signer().Equal(cas[0].signer()) {
			t.Errorf("Open %d got another root or intermediate", i+1)
		}
	}
}

func (c *CA) signer() *x509.Certificate     { return c.State().Active.Signer }
func (c *CA) activeRoot() *x509.Certificate { return c.State().Active.Root }
