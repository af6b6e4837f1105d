package secrets

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
)

// caIssuer signs with a real CA in a temporary directory, as the control
// plane's certificate service does.
func caIssuer(c *ca.CA) Issuer {
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
		var raw [][]byte
		for _, cert := range chain {
			raw = append(raw, cert.Raw)
		}
		return raw, c.Roots(), nil
	})
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChangedOnRenewalAndNewBundle(t *testing.T) {
	c := openCA(t, nil)
	id := identity.ID{TrustDomain: "example.org", Namespace: "shop", ServiceAccount: "cart"}
	m := New(id, c.Roots(), nil)

	ch := m.Changed()
	if closed(ch) {
		t.Fatal("Changed is closed before anything changed")
	}
	if err := m.Renew(context.Background(), caIssuer(c)); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("a new certificate did not close Changed")
	}

	// The same bundle again, as the control plane re-sends it over SDS, is
	// no change.
	ch = m.Changed()
	if err := m.SetTrustBundle(c.BundlePEM()); err != nil {
		t.Fatal(err)
	}
	if closed(ch) {
		t.Error("an unchanged trust bundle closed Changed")
	}

	// A second root (a root rotation in progress) is a change.
	other := openCA(t, nil)
	both := append(c.BundlePEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Roots()[0].Raw})...)
	if err := m.SetTrustBundle(both); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Error("a new trust bundle did not close Changed")
	}
	if got := len(m.TrustBundle()); got != 2 {
		t.Errorf("trust bundle holds %d roots, want 2", got)
	}
}

// TestRunWakesOnChange checks that the renewal loop, which waits on the
// same channel, keeps working when bundle changes wake it.
func TestRunWakesOnChange(t *testing.T) {
	c := openCA(t, nil)
	id := identity.ID{TrustDomain: "example.org", Namespace: "shop", ServiceAccount: "cart"}
	m := New(id, c.Roots(), nil)
	issuer := caIssuer(c)
	if err := m.Renew(context.Background(), issuer); err != nil {
		t.Fatal(err)
	}
	first := m.Certificate()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, issuer)
	}()
	other := openCA(t, nil)
	for range 3 {
		if err := m.SetTrustBundle(append(c.BundlePEM(), other.BundlePEM()...)); err != nil {
			t.Fatal(err)
		}
		if err := m.SetTrustBundle(c.BundlePEM()); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if m.Certificate() != first {
		t.Error("bundle changes renewed the certificate; it is not due for 12 hours")
	}
}
