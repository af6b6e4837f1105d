package secrets

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
)

var web = identity.ID{TrustDomain: "example.org", Namespace: "shop", ServiceAccount: "web"}

// issuerOf signs with a real CA, as the control plane does.
func issuerOf(t *testing.T, c *ca.CA) Issuer {
	return IssuerFunc(func(_ context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error) {
		csr, err := ca.ParseCSR(csrPEM)
		if err != nil {
			return nil, nil, err
		}
		id, err := ca.CheckCSR(csr, c.TrustDomain())
		if err != nil {
			return nil, nil, err
		}
		chain, err := c.Sign(csr, id, 0)
		if err != nil {
			return nil, nil, err
		}
		return [][]byte{chain[0].Raw, chain[1].Raw}, c.Roots(), nil
	})
}

func openCA(t *testing.T, now func() time.Time) *ca.CA {
	t.Helper()
	c, err := ca.Open(ca.Options{Dir: filepath.Join(t.TempDir(), "ca"), TrustDomain: "example.org", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestIdentityDir: a manager with an identity directory writes each
// certificate and its key there; a new manager (a restarted proxy) goes on
// with them; what it cannot use it ignores, saying why.
func TestIdentityDir(t *testing.T) {
	c := openCA(t, nil)
	dir := filepath.Join(t.TempDir(), "identity")

	m := New(web, c.Roots(), nil)
	restored, err := m.UseDir(dir)
	if err != nil || restored {
		t.Fatalf("empty directory: %v, %v", restored, err)
	}
	if err := m.Renew(context.Background(), issuerOf(t, c)); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("directory mode %v, want 0700", got)
	}
	if got := mode(t, filepath.Join(dir, KeyFile)); got != 0o600 {
		t.Errorf("key mode %v, want 0600", got)
	}
	if got := mode(t, filepath.Join(dir, ChainFile)); got != 0o644 {
		t.Errorf("chain mode %v, want 0644", got)
	}

	restart := func() (*Manager, bool, string) {
		t.Helper()
		var logs bytes.Buffer
		m := New(web, c.Roots(), slog.New(slog.NewTextHandler(&logs, nil)))
		ok, err := m.UseDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return m, ok, logs.String()
	}
	m2, ok, _ := restart()
	if !ok || !bytes.Equal(m2.Certificate().Leaf.Raw, m.Certificate().Leaf.Raw) {
		t.Fatal("a restart did not go on with the stored certificate")
	}
	// A renewal replaces the files.
	if err := m2.Renew(context.Background(), issuerOf(t, c)); err != nil {
		t.Fatal(err)
	}
	if m3, ok, _ := restart(); !ok || !bytes.Equal(m3.Certificate().Leaf.Raw, m2.Certificate().Leaf.Raw) {
		t.Fatal("the renewed certificate was not stored")
	}

	// Unusable contents: each is ignored with the reason logged.
	other := New(identity.ID{TrustDomain: "example.org", Namespace: "shop", ServiceAccount: "db"}, c.Roots(), nil)
	if _, err := other.UseDir(dir); err != nil {
		t.Fatal(err)
	}
	if other.Certificate() != nil {
		t.Error("a proxy of another identity took the stored certificate")
	}

	keyOf := func(dir string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A key that does not match the chain (a crash between the writes).
	otherDir := filepath.Join(t.TempDir(), "other")
	m4 := New(web, c.Roots(), nil)
	if _, err := m4.UseDir(otherDir); err != nil {
		t.Fatal(err)
	}
	if err := m4.Renew(context.Background(), issuerOf(t, c)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), keyOf(otherDir), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, logs := restart(); ok || !strings.Contains(logs, "does not hold the key of") {
		t.Errorf("mismatched key: restored %v, logs %q", ok, logs)
	}

	// An expired certificate.
	past := openCA(t, func() time.Time { return time.Now().Add(-48 * time.Hour) })
	old := New(web, past.Roots(), nil)
	expiredDir := filepath.Join(t.TempDir(), "expired")
	if err := old.Renew(context.Background(), issuerOf(t, past)); err == nil {
		t.Fatal("installed an expired certificate")
	}
	// Renew refuses it, so write it as a proxy that stopped long ago left it.
	key, chain := newKeyAndChain(t, past)
	if err := os.MkdirAll(expiredDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeIdentity(expiredDir, key, chain); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m5 := New(web, past.Roots(), slog.New(slog.NewTextHandler(&logs, nil)))
	if ok, err := m5.UseDir(expiredDir); err != nil || ok || !strings.Contains(logs.String(), "the certificate expired at") {
		t.Errorf("expired: restored %v (%v), logs %q", ok, err, logs.String())
	}
}

// newKeyAndChain has c sign a new key for web.
func newKeyAndChain(t *testing.T, c *ca.CA) (*ecdsa.PrivateKey, [][]byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{web.URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.Sign(csr, web, 0)
	if err != nil {
		t.Fatal(err)
	}
	return key, [][]byte{chain[0].Raw, chain[1].Raw}
}
