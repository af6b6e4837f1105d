package secrets

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// testCA is a root that signs workload certificates directly, with a
// lifetime short enough to see renewals happen.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issuer signs CSRs with whichever CA current returns, for ttl, and
// counts its calls.
type issuer struct {
	t       *testing.T
	ttl     time.Duration
	mu      sync.Mutex
	ca      *testCA
	bundle  []*x509.Certificate
	calls   int
	serials []*big.Int
}

func (is *issuer) set(ca *testCA, bundle ...*x509.Certificate) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.ca, is.bundle = ca, bundle
}

func (is *issuer) Issue(_ context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.calls++
	block, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), URIs: csr.URIs,
		NotBefore: now.Add(-time.Second), NotAfter: now.Add(is.ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.ca.cert, csr.PublicKey, is.ca.key)
	if err != nil {
		return nil, nil, err
	}
	is.serials = append(is.serials, tmpl.SerialNumber)
	return [][]byte{der}, is.bundle, nil
}

var (
	serverID = identity.ID{TrustDomain: "example.org", Namespace: "demo", ServiceAccount: "server"}
	clientID = identity.ID{TrustDomain: "example.org", Namespace: "demo", ServiceAccount: "client"}
)

// run starts m with is until the test ends.
func run(t *testing.T, m *Manager, is Issuer) {
	t.Helper()
	if err := m.Renew(t.Context(), is); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, is)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitFor polls cond until it holds; the deadline only guards against a
// hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoServer serves mesh mTLS with m and echoes lines.
func echoServer(t *testing.T, m *Manager) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.ServerConfig(AllowIDs("example.org")))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// Certificates are renewed at half their lifetime; a connection made with
// the old certificates keeps working, and new handshakes present the new
// ones.
func TestRenewalKeepsConnections(t *testing.T) {
	root := newTestCA(t, "root")
	is := &issuer{t: t, ttl: 4 * time.Second}
	is.set(root, root.cert)
	server := New(serverID, []*x509.Certificate{root.cert}, nil)
	client := New(clientID, []*x509.Certificate{root.cert}, nil)
	run(t, server, is)
	run(t, client, is)
	addr := echoServer(t, server)

	firstServer, firstClient := server.Certificate(), client.Certificate()
	old, err := tls.Dial("tcp", addr, client.ClientConfig("", AllowIDs("example.org", serverID)))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldR := bufio.NewReader(old)
	if err := roundTrip(old, oldR, "before"); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "both certificates renewed", func() bool {
		return server.Certificate() != firstServer && client.Certificate() != firstClient
	})
	if err := roundTrip(old, oldR, "after renewal"); err != nil {
		t.Fatalf("connection made before the renewal: %v", err)
	}
	fresh, err := tls.Dial("tcp", addr, client.ClientConfig("", AllowIDs("example.org", serverID)))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := roundTrip(fresh, bufio.NewReader(fresh), "new"); err != nil {
		t.Fatal(err)
	}
	if got := fresh.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(firstServer.Leaf.SerialNumber) == 0 {
		t.Error("a new handshake presented the server's old certificate")
	}
}

// A certificate that does not chain to the bundle's first root is renewed
// early; while the CA still issues from the old root, attempts back off
// rather than loop.
func TestRenewsEarlyForNewActiveRoot(t *testing.T) {
	oldRoot, newRoot := newTestCA(t, "old"), newTestCA(t, "new")
	// 30 s: early renewals come within 3 s, long before half life.
	is := &issuer{t: t, ttl: 30 * time.Second}
	is.set(oldRoot, oldRoot.cert)
	m := New(serverID, []*x509.Certificate{oldRoot.cert}, nil)
	run(t, m, is)
	first := m.Certificate()

	// Phase 1: the new root joins the bundle second. Nothing to renew.
	if err := m.SetTrustBundle(pemOf(oldRoot.cert, newRoot.cert)); err != nil {
		t.Fatal(err)
	}
	m.mu.RLock()
	early := m.early
	m.mu.RUnlock()
	if !early.IsZero() {
		t.Fatal("renewal scheduled while the certificate chains to the active root")
	}

	// Phase 2, seen by the proxy before the CA switched: the renewal
	// brings another certificate of the old root (and no bundle), and the
	// proxy tries again later.
	is.set(oldRoot)
	if err := m.SetTrustBundle(pemOf(newRoot.cert, oldRoot.cert)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an early renewal", func() bool { return m.Certificate() != first })
	if chainsTo(m.Certificate(), newRoot.cert) {
		t.Fatal("renewed from the new root although the CA issues from the old one")
	}
	m.mu.RLock()
	early, wait := m.early, m.earlyWait
	m.mu.RUnlock()
	if early.IsZero() || wait < time.Second {
		t.Fatalf("next attempt at %v after %v; want one scheduled at least a second later", early, wait)
	}

	// The CA switches: the next attempt gets a certificate of the new
	// root, and no more early renewals follow.
	is.set(newRoot, newRoot.cert, oldRoot.cert)
	waitFor(t, "a certificate of the new root", func() bool { return chainsTo(m.Certificate(), newRoot.cert) })
	m.mu.RLock()
	early = m.early
	m.mu.RUnlock()
	if !early.IsZero() {
		t.Error("early renewal still scheduled on the new root")
	}
	// Phase 3: the old root leaves the bundle.
	if err := m.SetTrustBundle(pemOf(newRoot.cert)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(m.Certificate().Certificate); err != nil {
		t.Errorf("own certificate does not verify against the new bundle: %v", err)
	}
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// A chain the control plane pushes for a key the proxy no longer holds (or
// does not hold yet) is ignored, so that it does not fail the whole SDS
// update that also carries the trust bundle.
func TestSetChainIgnoresOtherKeys(t *testing.T) {
	root := newTestCA(t, "root")
	is := &issuer{t: t, ttl: time.Hour}
	is.set(root, root.cert)
	m := New(serverID, []*x509.Certificate{root.cert}, nil)
	if err := m.Renew(t.Context(), is); err != nil {
		t.Fatal(err)
	}
	stale := m.Certificate()
	if err := m.Renew(t.Context(), is); err != nil {
		t.Fatal(err)
	}
	current := m.Certificate()
	var chain []byte
	for _, c := range stale.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := m.SetChain(chain); err != nil {
		t.Fatalf("SetChain with the chain of a replaced key: %v", err)
	}
	if m.Certificate() != current {
		t.Error("the chain of a replaced key was installed")
	}
}
