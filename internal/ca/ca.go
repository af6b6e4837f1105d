package ca

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// Lifetimes and bounds.
const (
	// RootLifetime is the validity of a root the CA generates.
	RootLifetime = 10 * 365 * 24 * time.Hour
	// IntermediateLifetime is the validity of an intermediate, never past
	// the root's expiry.
	IntermediateLifetime = 365 * 24 * time.Hour
	// IntermediateRenewBefore: an intermediate with less time left than this
	// is replaced by a new one from the root, at Open or at the next
	// signature. It is far longer than MaxWorkloadTTL, so a workload
	// certificate is practically never cut short by its intermediate.
	IntermediateRenewBefore = 30 * 24 * time.Hour

	// DefaultWorkloadTTL is the lifetime of workload certificates when
	// Options.WorkloadTTL is zero.
	DefaultWorkloadTTL = 24 * time.Hour
	// MinWorkloadTTL and MaxWorkloadTTL bound Options.WorkloadTTL and the
	// lifetime a request may ask for. One minute lets tests exercise
	// rotation; a week is as long as a certificate that cannot be revoked
	// should live.
	MinWorkloadTTL = time.Minute
	MaxWorkloadTTL = 7 * 24 * time.Hour

	// ClockSkew is how far NotBefore is backdated, so that a peer whose
	// clock is a little behind accepts a fresh certificate.
	ClockSkew = time.Minute
)

// Log keys of the CA's state (server.go has those of requests).
const (
	logKeyStorage  = "storage"
	logKeySource   = "source"
	logKeyRoot     = "root"
	logKeyRotation = "rotation"
)

// ErrInvalidRequest is wrapped by every error caused by what a caller asked
// for (a bad CSR, identity or lifetime), as opposed to a failure of the CA.
var ErrInvalidRequest = errors.New("ca: invalid certificate request")

// Options configure Open.
type Options struct {
	// Storage keeps the CA's state. Nil means NewDirStorage(Dir).
	Storage Storage
	// Dir is the CA directory when Storage is nil (see dir.go).
	Dir string
	// TrustDomain the CA issues identities in. Empty means
	// identity.DefaultTrustDomain. A CA created for one trust domain is
	// refused for another.
	TrustDomain string
	// WorkloadTTL is the default and the maximum lifetime of workload
	// certificates; a request may ask for less. Zero means
	// DefaultWorkloadTTL; otherwise it must lie within
	// [MinWorkloadTTL, MaxWorkloadTTL].
	WorkloadTTL time.Duration
	// Supplied, when not nil, is a root or intermediate an operator
	// supplied (LoadSupplied). An empty storage starts with it; a storage
	// that holds a CA must hold this one (or have rotated away from it).
	Supplied *Authority
	// Logger receives CA events. Nil discards them.
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// CA is a certificate authority whose state lives in a Storage. It is
// safe for concurrent use.
type CA struct {
	storage Storage
	td      string
	ttl     time.Duration
	log     *slog.Logger
	now     func() time.Time

	// cur is the state in use and what is derived from it; readers load it
	// without locking.
	cur atomic.Pointer[view]

	// mu serializes changes to the state.
	mu           sync.Mutex
	renewFailure time.Time // last failed renewal, to retry at most once a minute
}

// view is a State and what the CA derives from it.
type view struct {
	state     *State
	raw       []byte
	roots     []*x509.Certificate
	pool      *x509.CertPool
	bundlePEM []byte
}

// Open loads the CA from its storage, creating a root and an intermediate
// on first use (or starting from opts.Supplied), and renewing the
// intermediate if it expires within IntermediateRenewBefore.
//
// The stored state is checked: each certificate matches its key, the
// intermediate chains to the root, both are CA certificates with
// keyCertSign, and they name opts.TrustDomain.
func Open(opts Options) (*CA, error) {
	td := opts.TrustDomain
	if td == "" {
		td = identity.DefaultTrustDomain
	}
	if err := identity.ControlPlane(td).Validate(); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	ttl := opts.WorkloadTTL
	if ttl == 0 {
		ttl = DefaultWorkloadTTL
	}
	if ttl < MinWorkloadTTL || ttl > MaxWorkloadTTL {
		return nil, fmt.Errorf("ca: workload certificate lifetime %v is outside [%v, %v]", ttl, MinWorkloadTTL, MaxWorkloadTTL)
	}
	c := &CA{storage: opts.Storage, td: td, ttl: ttl, log: opts.Logger, now: opts.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.storage == nil {
		if opts.Dir == "" {
			return nil, errors.New("ca: Options.Dir is empty; set the directory for the CA files")
		}
		c.storage = NewDirStorage(opts.Dir, c.log)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.updateLocked(context.Background(), func(s *State) (*State, error) {
		return c.prepare(s, opts.Supplied, c.now())
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("certificate authority ready",
		logKeyStorage, c.storage.String(),
		logKeyTrustDomain, c.td,
		logKeySource, string(s.Active.Source),
		logKeyRoot, ShortFingerprint(Fingerprint(s.Active.Root)),
		logKeyRootExpiry, s.Active.Root.NotAfter,
		logKeyIntermediateExpiry, s.Active.Signer.NotAfter)
	if s.Rotation != nil {
		c.log.Info("root rotation in progress", logKeyRotation, s.Rotation.String())
	}
	return c, nil
}

// prepare makes a loaded state (nil: none) ready to sign: created if
// missing, checked against the supplied authority, with a current
// intermediate.
func (c *CA) prepare(s *State, supplied *Authority, now time.Time) (*State, error) {
	if s == nil {
		a := supplied
		if a == nil {
			var err error
			if a, err = c.generate(now); err != nil {
				return nil, err
			}
		}
		s = &State{TrustDomain: c.td, Active: a}
		c.log.Info("created certificate authority", logKeyStorage, c.storage.String(), logKeySource, string(a.Source),
			logKeyRoot, ShortFingerprint(Fingerprint(a.Root)), logKeyExpiry, a.Root.NotAfter)
	} else if supplied != nil {
		if err := c.checkSupplied(s, supplied); err != nil {
			return nil, err
		}
	}
	a := s.Active
	if !now.Before(a.Root.NotAfter) {
		return nil, fmt.Errorf("ca: root certificate in %s expired at %s; start a new CA (every proxy then needs the new trust bundle)",
			c.storage, a.Root.NotAfter.Format(time.RFC3339))
	}
	if a.Root.NotAfter.Sub(now) < IntermediateLifetime {
		c.log.Warn("root certificate expires soon; plan a root rotation (trellis ca rotate)",
			logKeyStorage, c.storage.String(), logKeyRootExpiry, a.Root.NotAfter)
	}
	if !a.renewable() {
		if !now.Before(a.Signer.NotAfter) {
			return nil, fmt.Errorf("ca: the supplied intermediate expired at %s; rotate to a new one (trellis ca rotate --ca-cert, --ca-key)",
				a.Signer.NotAfter.Format(time.RFC3339))
		}
		if a.Signer.NotAfter.Sub(now) < IntermediateRenewBefore {
			c.log.Warn("the supplied intermediate expires soon and cannot be renewed without its root's key; rotate to a new one (trellis ca rotate --ca-cert, --ca-key)",
				logKeyExpiry, a.Signer.NotAfter)
		}
		return s, nil
	}
	if !intermediateDue(a, now) {
		return s, nil
	}
	na, err := c.issueIntermediate(a, now)
	if err != nil {
		if a.Signer != nil && now.Before(a.Signer.NotAfter) {
			c.log.Error("could not renew the intermediate; keeping the current one", logKeyExpiry, a.Signer.NotAfter, logKeyError, err)
			return s, nil
		}
		return nil, err
	}
	n := s.clone()
	n.Active = na
	return n, nil
}

// checkSupplied checks that a supplied authority is the one the state
// holds, or one a rotation replaced.
func (c *CA) checkSupplied(s *State, supplied *Authority) error {
	fp := Fingerprint(supplied.Root)
	active := s.Active
	switch {
	case supplied.Source == SourceIntermediate && active.Signer != nil && supplied.Signer.Equal(active.Signer):
		return nil
	case supplied.Source == SourceRoot && supplied.Root.Equal(active.Root):
		return nil
	case s.Rotation != nil && (fp == s.Rotation.From || fp == s.Rotation.To):
		return nil
	case containsString(s.Retired, fp) || (supplied.Source == SourceIntermediate && supplied.Root.Equal(active.Root)):
		c.log.Warn("the supplied CA certificate is not the active one (a rotation replaced it); the stored CA is used, drop --ca-cert and --ca-key",
			logKeyRoot, ShortFingerprint(fp))
		return nil
	}
	return fmt.Errorf("ca: the CA in %s has root %s (%s), but the supplied certificate's root is %s (%s); to move to it, run `trellis ca rotate --ca-cert ... --ca-key ...`; to start a new CA with it, use an empty CA storage (every proxy then needs the new trust bundle)",
		c.storage, ShortFingerprint(Fingerprint(active.Root)), active.Root.Subject, ShortFingerprint(fp), supplied.Root.Subject)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// updateLocked changes the stored state with fn and makes the result
// current. fn returns its argument to change nothing. Callers hold c.mu.
func (c *CA) updateLocked(ctx context.Context, fn func(*State) (*State, error)) (*State, error) {
	raw, err := c.storage.Update(ctx, func(cur []byte) ([]byte, error) {
		var s *State
		if cur != nil {
			var err error
			if s, err = c.decode(cur); err != nil {
				return nil, err
			}
		}
		next, err := fn(s)
		if err != nil {
			return nil, err
		}
		if next == s {
			return nil, nil
		}
		next = next.clone()
		if s != nil {
			next.Generation = s.Generation + 1
		} else {
			next.Generation = 1
		}
		return EncodeState(next)
	})
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("ca: %s holds no CA", c.storage)
	}
	s, err := c.decode(raw)
	if err != nil {
		return nil, err
	}
	c.install(s, raw)
	return s, nil
}

// decode decodes a stored state and checks its trust domain.
func (c *CA) decode(raw []byte) (*State, error) {
	s, err := DecodeState(raw)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", c.storage, err)
	}
	if s.TrustDomain != c.td {
		return nil, fmt.Errorf("ca: %s was made for trust domain %q, not %q; use trust domain %q with it, or another CA storage for %q",
			c.storage, s.TrustDomain, c.td, s.TrustDomain, c.td)
	}
	return s, nil
}

func (c *CA) install(s *State, raw []byte) {
	v := &view{state: s, raw: raw, roots: s.Bundle(), pool: x509.NewCertPool()}
	for _, r := range v.roots {
		v.pool.AddCert(r)
		v.bundlePEM = append(v.bundlePEM, certPEM(r)...)
	}
	c.cur.Store(v)
}

func (c *CA) view() *view { return c.cur.Load() }

// Reload reads the state again and reports whether it changed: control
// planes sharing a CA call it to follow each other's changes (rotations,
// renewed intermediates).
func (c *CA) Reload(ctx context.Context) (bool, error) {
	raw, err := c.storage.Load(ctx)
	if err != nil {
		return false, err
	}
	if raw == nil {
		return false, fmt.Errorf("ca: %s holds no CA any more", c.storage)
	}
	if bytes.Equal(raw, c.view().raw) {
		return false, nil
	}
	s, err := c.decode(raw)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Generation < c.view().state.Generation {
		return false, nil
	}
	c.install(s, raw)
	return true, nil
}

// TrustDomain returns the trust domain the CA issues identities in.
func (c *CA) TrustDomain() string { return c.td }

// WorkloadTTL returns the default and maximum workload certificate lifetime.
func (c *CA) WorkloadTTL() time.Duration { return c.ttl }

// State returns the state in use. It must not be modified.
func (c *CA) State() *State { return c.view().state }

// Storage returns where the CA keeps its state.
func (c *CA) Storage() Storage { return c.storage }

// Roots returns the trust bundle: the root certificates a workload should
// trust, the active root first. The slice is a copy; the certificates must
// not be modified.
func (c *CA) Roots() []*x509.Certificate {
	return append([]*x509.Certificate(nil), c.view().roots...)
}

// RootPool returns the trust bundle as a pool. It must not be modified.
func (c *CA) RootPool() *x509.CertPool { return c.view().pool }

// BundlePEM returns Roots as concatenated PEM blocks.
func (c *CA) BundlePEM() []byte { return c.view().bundlePEM }

// WriteCertificates writes the active root (RootCertFile), its
// intermediate (IntermediateCertFile) and the trust bundle (BundleFile) to
// dir, where they differ from what is there; no keys. It is for a CA
// whose storage is not a directory, so that proxies on the host find the
// bundle in the usual place.
func (c *CA) WriteCertificates(dir string) error {
	return writeViews(dir, c.view().state, false)
}

// generate returns a new root and intermediate.
func (c *CA) generate(now time.Time) (*Authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := c.signingTemplate("Trellis Root CA", serial, now.Add(-ClockSkew), now.Add(RootLifetime), 1)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse new root certificate: %w", err)
	}
	c.log.Info("created root certificate", logKeyTrustDomain, c.td,
		logKeyRoot, ShortFingerprint(Fingerprint(root)), logKeySerial, serialHex(root), logKeyExpiry, root.NotAfter)
	return c.issueIntermediate(&Authority{Source: SourceGenerated, Root: root, RootKey: key}, now)
}

// intermediateDue reports whether a's intermediate should be replaced: it
// is missing, or expires within IntermediateRenewBefore and a new one would
// live longer (it cannot outlive the root).
func intermediateDue(a *Authority, now time.Time) bool {
	if a.Signer == nil {
		return true
	}
	return now.After(a.Signer.NotAfter.Add(-IntermediateRenewBefore)) && a.Signer.NotAfter.Before(a.Root.NotAfter)
}

// issueIntermediate returns a copy of a with a new intermediate signed by
// its root.
func (c *CA) issueIntermediate(a *Authority, now time.Time) (*Authority, error) {
	if !now.Before(a.Root.NotAfter) {
		return nil, fmt.Errorf("ca: root certificate expired at %s; cannot issue an intermediate", a.Root.NotAfter.Format(time.RFC3339))
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(IntermediateLifetime)
	if notAfter.After(a.Root.NotAfter) {
		notAfter = a.Root.NotAfter
	}
	tmpl := c.signingTemplate("Trellis Intermediate CA", serial, now.Add(-ClockSkew), notAfter, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Root, key.Public(), a.RootKey)
	if err != nil {
		return nil, fmt.Errorf("ca: create intermediate certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse new intermediate certificate: %w", err)
	}
	c.log.Info("issued intermediate certificate",
		logKeyRoot, ShortFingerprint(Fingerprint(a.Root)), logKeySerial, serialHex(cert), logKeyExpiry, cert.NotAfter)
	n := *a
	n.Signer, n.SignerKey, n.Chain = cert, key, nil
	return &n, nil
}

// issuer returns the authority to sign with, renewing its intermediate
// when due. Another control plane sharing the CA may have renewed it
// already: the stored one is used then.
func (c *CA) issuer(now time.Time) (*Authority, error) {
	a := c.view().state.Active
	if a.renewable() && intermediateDue(a, now) {
		c.mu.Lock()
		a = c.view().state.Active
		if intermediateDue(a, now) && now.Sub(c.renewFailure) >= time.Minute {
			_, err := c.updateLocked(context.Background(), func(s *State) (*State, error) {
				if !s.Active.renewable() || !intermediateDue(s.Active, now) {
					return s, nil
				}
				na, err := c.issueIntermediate(s.Active, now)
				if err != nil {
					return nil, err
				}
				n := s.clone()
				n.Active = na
				return n, nil
			})
			if err != nil {
				c.renewFailure = now
				c.log.Error("could not renew the intermediate; keeping the current one",
					logKeyExpiry, a.Signer.NotAfter, logKeyError, err)
			}
			a = c.view().state.Active
		}
		c.mu.Unlock()
	}
	if !now.Before(a.Signer.NotAfter) {
		return nil, fmt.Errorf("ca: intermediate certificate expired at %s and could not be renewed; see earlier errors",
			a.Signer.NotAfter.Format(time.RFC3339))
	}
	return a, nil
}

// signingTemplate is a root or intermediate: CA=true, keyCertSign and
// cRLSign, the trust domain as its only URI SAN, and a subject made unique by
// the serial so that old and new CAs are never confused by name.
func (c *CA) signingTemplate(cn string, serial *big.Int, notBefore, notAfter time.Time, maxPathLen int) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Trellis"},
			CommonName:   cn,
			SerialNumber: serial.Text(16),
		},
		URIs:                  []*url.URL{trustDomainURL(c.td)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
	}
}

// certTrustDomain returns the trust domain named by a signing certificate's
// URI SAN spiffe://<td>.
func certTrustDomain(cert *x509.Certificate) (string, error) {
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("has %d URI SANs, want one naming the trust domain (spiffe://<trust-domain>)", len(cert.URIs))
	}
	u := cert.URIs[0]
	if u.Scheme != "spiffe" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("URI SAN %q is not a trust domain ID (spiffe://<trust-domain>)", u)
	}
	return u.Host, nil
}

func trustDomainURL(td string) *url.URL { return &url.URL{Scheme: "spiffe", Host: td} }

func parseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("more than one PEM block; want exactly one key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		if _, encrypted := block.Headers["DEK-Info"]; encrypted {
			return nil, errors.New("the key is encrypted; decrypt it first (openssl ec -in KEY -out PLAIN)")
		}
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out PLAIN)")
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY (PKCS#8) or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %s, not ECDSA P-256", keyKind(key))
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("the key is ECDSA %s, not P-256", k.Curve.Params().Name)
	}
	return k, nil
}

func keyKind(key any) string {
	switch key.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case ed25519.PrivateKey:
		return "Ed25519"
	case *ecdh.PrivateKey:
		return "X25519"
	}
	return fmt.Sprintf("%T", key)
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	return key, nil
}

// newSerial returns a random, non-zero 128-bit serial number.
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("ca: serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}

func serialHex(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

func certPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}
