// Package secrets holds a proxy's workload identity: its private key, which
// never leaves the process, the certificate chain the control plane's CA
// issued for it, and the trust bundle peers are verified against.
//
//	key (generated here) ──CSR──► CA ──chain──► Manager ◄──SDS (ROOTCA, default)
//	                                              │
//	                         TLS configs for inbound and outbound mTLS
//
// Certificates are renewed at half their lifetime; connections already
// established keep going, new handshakes use the new certificate. Changed
// tells watchers (the Workload API) when the certificate or the trust
// bundle changes. With an identity directory (UseDir) the key and chain
// are also kept on disk, so that a restarted proxy goes on with its
// certificate while it is valid.
//
// The trust bundle lists the mesh's active root first. A certificate that
// does not chain to it is renewed early, after a random delay of up to a
// tenth of its remaining lifetime (at most 30 s) so that a mesh's proxies
// do not all ask at once: that is how a root rotation gets every workload
// certificate reissued. If the renewed certificate still does not chain
// to it (the CA has not switched yet), the next attempt waits twice as
// long, up to a minute.
package secrets

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"sync"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// Issuer signs certificate requests: the control plane's certificate
// service.
type Issuer interface {
	// Issue sends a PEM CSR and returns the DER chain (leaf first) and the
	// trust bundle.
	Issue(ctx context.Context, csrPEM []byte) (chain [][]byte, bundle []*x509.Certificate, err error)
}

// IssuerFunc adapts a function to Issuer.
type IssuerFunc func(ctx context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error)

// Issue calls f.
func (f IssuerFunc) Issue(ctx context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error) {
	return f(ctx, csrPEM)
}

// Manager holds the identity of one proxy.
type Manager struct {
	id  identity.ID
	log *slog.Logger

	mu      sync.RWMutex
	key     *ecdsa.PrivateKey
	cert    *tls.Certificate
	roots   *x509.CertPool
	bundle  []*x509.Certificate
	renewAt time.Time
	// early, when set, is when to renew because the certificate does not
	// chain to the bundle's first root; earlyWait is the delay after a
	// renewal that did not help.
	early     time.Time
	earlyWait time.Duration
	changed   chan struct{}
	// dir is the identity directory (UseDir); persistMu serializes writes
	// to it.
	dir       string
	persistMu sync.Mutex
}

// New returns a manager for id with an initial trust bundle (the roots the
// proxy trusts before it hears from the control plane).
func New(id identity.ID, bundle []*x509.Certificate, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{id: id, log: log, changed: make(chan struct{})}
	m.setBundle(bundle)
	return m
}

// ID is the proxy's identity.
func (m *Manager) ID() identity.ID { return m.id }

// ParseIssued turns the PEM certificates of a certificate response, the
// chain (leaf first) and the trust bundle, into what an Issuer returns.
func ParseIssued(chainPEM, bundlePEM []string) (chain [][]byte, bundle []*x509.Certificate, err error) {
	for _, s := range chainPEM {
		certs, err := ParseBundle([]byte(s))
		if err != nil {
			return nil, nil, err
		}
		for _, c := range certs {
			chain = append(chain, c.Raw)
		}
	}
	for _, s := range bundlePEM {
		certs, err := ParseBundle([]byte(s))
		if err != nil {
			return nil, nil, err
		}
		bundle = append(bundle, certs...)
	}
	return chain, bundle, nil
}

// ParseBundle reads PEM certificates.
func ParseBundle(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("secrets: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("secrets: no PEM certificate found")
	}
	return out, nil
}

func (m *Manager) setBundle(bundle []*x509.Certificate) {
	pool := x509.NewCertPool()
	for _, c := range bundle {
		pool.AddCert(c)
	}
	m.mu.Lock()
	if !sameCertificates(m.bundle, bundle) {
		m.notifyLocked()
	}
	m.roots, m.bundle = pool, bundle
	m.checkRootLocked(false)
	m.mu.Unlock()
}

// checkRootLocked schedules an early renewal when the certificate does not
// chain to the first root of the bundle, the active one, and cancels it
// when it does. renewed tells that the certificate was just renewed: if it
// still does not chain to the active root, the next attempt waits longer.
// Callers hold m.mu for writing and wake Run (notifyLocked) when the
// certificate or the bundle changed, the only changes that move the
// schedule.
func (m *Manager) checkRootLocked(renewed bool) {
	if m.cert == nil || len(m.bundle) == 0 || chainsTo(m.cert, m.bundle[0]) {
		m.early, m.earlyWait = time.Time{}, 0
		return
	}
	now := time.Now()
	if !m.early.IsZero() && !renewed {
		return
	}
	if m.earlyWait == 0 {
		window := max(min(m.cert.Leaf.NotAfter.Sub(now)/10, 30*time.Second), 0)
		m.earlyWait = time.Duration(mrand.Int64N(int64(window) + 1))
		m.log.Info("certificate does not chain to the trust bundle's active root; renewing it early",
			"identity", m.id.String(), "in", m.earlyWait, "root", m.bundle[0].Subject.String())
	} else if renewed {
		m.earlyWait = min(max(2*m.earlyWait, time.Second), time.Minute)
	}
	m.early = now.Add(m.earlyWait)
}

// chainsTo reports whether cert's chain ends under root.
func chainsTo(cert *tls.Certificate, root *x509.Certificate) bool {
	top := cert.Leaf
	if n := len(cert.Certificate); n > 1 {
		c, err := x509.ParseCertificate(cert.Certificate[n-1])
		if err != nil {
			return false
		}
		top = c
	}
	return top.CheckSignatureFrom(root) == nil
}

// SetTrustBundle replaces the roots peers are verified against (SDS
// ROOTCA).
func (m *Manager) SetTrustBundle(pemBytes []byte) error {
	certs, err := ParseBundle(pemBytes)
	if err != nil {
		return err
	}
	for _, c := range certs {
		if !c.IsCA {
			return fmt.Errorf("secrets: trust bundle certificate %q is not a CA", c.Subject)
		}
	}
	m.setBundle(certs)
	return nil
}

// TrustBundle returns the current roots.
func (m *Manager) TrustBundle() []*x509.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.bundle
}

// SetChain installs a certificate chain delivered over SDS, when it is for
// the proxy's current key and newer than the current certificate. A chain
// for another key is ignored, not refused: it is one the control plane
// pushed for a key the proxy has since replaced, or pushed before the
// certificate response that brings the key's own chain; the proxy
// installs the certificates it renews itself.
func (m *Manager) SetChain(pemBytes []byte) error {
	certs, err := ParseBundle(pemBytes)
	if err != nil {
		return err
	}
	m.mu.RLock()
	key, cur := m.key, m.cert
	m.mu.RUnlock()
	pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if key == nil || !ok || !pub.Equal(&key.PublicKey) {
		m.log.Debug("certificate chain from the control plane is not for the current key; ignoring it",
			"identity", m.id.String(), "serial", certs[0].SerialNumber.Text(16))
		return nil
	}
	if cur != nil && !certs[0].NotAfter.After(cur.Leaf.NotAfter) {
		return nil
	}
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return m.install(key, raw)
}

func (m *Manager) install(key *ecdsa.PrivateKey, chain [][]byte) error {
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	got, err := identity.FromCertificate(leaf)
	if err != nil {
		return fmt.Errorf("secrets: issued certificate: %w", err)
	}
	if got != m.id {
		return fmt.Errorf("secrets: issued certificate is for %s, want %s", got, m.id)
	}
	if _, err := m.Verify(chain); err != nil {
		return fmt.Errorf("secrets: issued certificate does not verify against the trust bundle: %w", err)
	}
	cert := &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
	m.mu.Lock()
	m.key, m.cert = key, cert
	m.renewAt = halfLife(leaf, time.Now())
	m.notifyLocked()
	m.checkRootLocked(true)
	m.mu.Unlock()
	m.log.Info("certificate installed", "identity", m.id.String(), "serial", leaf.SerialNumber.Text(16), "expires", leaf.NotAfter)
	m.persist()
	return nil
}

// halfLife is when a certificate received at now has lived half of what
// it had left. A CA backdates NotBefore to allow for clock skew (the
// Trellis CA by a minute), which would otherwise make a short-lived
// certificate due for renewal as soon as it arrives.
func halfLife(leaf *x509.Certificate, now time.Time) time.Time {
	start := now
	if leaf.NotBefore.After(now) {
		start = leaf.NotBefore
	}
	return start.Add(leaf.NotAfter.Sub(start) / 2)
}

// Renew generates a new key, has the CSR signed, and installs the result.
func (m *Manager) Renew(ctx context.Context, issuer Issuer) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{m.id.URL()}}, key)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	chain, bundle, err := issuer.Issue(ctx, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	if err != nil {
		return fmt.Errorf("secrets: certificate request for %s: %w", m.id, err)
	}
	if len(chain) == 0 {
		return errors.New("secrets: the CA returned an empty chain")
	}
	if len(bundle) > 0 {
		m.setBundle(bundle)
	}
	return m.install(key, chain)
}

// Run renews the certificate at half its lifetime, or early when it does
// not chain to the bundle's active root, until ctx is done, retrying with
// backoff on failure.
func (m *Manager) Run(ctx context.Context, issuer Issuer) {
	backoff := time.Second
	for {
		m.mu.RLock()
		at := m.renewAt
		if !m.early.IsZero() && m.early.Before(at) {
			at = m.early
		}
		wait := time.Until(at)
		changed := m.changed
		m.mu.RUnlock()
		select {
		case <-ctx.Done():
			return
		case <-changed:
			continue
		case <-time.After(wait):
		}
		if err := m.Renew(ctx, issuer); err != nil {
			m.log.Warn("certificate renewal failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// Certificate returns the current certificate, or nil before the first is
// issued.
func (m *Manager) Certificate() *tls.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert
}

// ValidCertificate returns the current certificate if it has not expired,
// else nil: what the proxy can authenticate with.
func (m *Manager) ValidCertificate() *tls.Certificate {
	c := m.Certificate()
	if c == nil || !time.Now().Before(c.Leaf.NotAfter) {
		return nil
	}
	return c
}

// Verify checks a peer's chain against the trust bundle and returns its
// SPIFFE identity.
func (m *Manager) Verify(rawCerts [][]byte) (identity.ID, error) {
	if len(rawCerts) == 0 {
		return identity.ID{}, errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return identity.ID{}, err
		}
		certs[i] = c
	}
	leaf := certs[0]
	if leaf.IsCA {
		return identity.ID{}, errors.New("peer certificate is a CA certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	m.mu.RLock()
	roots := m.roots
	m.mu.RUnlock()
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return identity.ID{}, err
	}
	return identity.FromCertificate(leaf)
}
