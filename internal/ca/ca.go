package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// Files in Options.Dir.
const (
	RootCertFile         = "root-cert.pem"
	RootKeyFile          = "root-key.pem"
	IntermediateCertFile = "ca-cert.pem"
	IntermediateKeyFile  = "ca-key.pem"
)

// Lifetimes and bounds.
const (
	// RootLifetime is the validity of a root created by Open.
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

// ErrInvalidRequest is wrapped by every error caused by what a caller asked
// for (a bad CSR, identity or lifetime), as opposed to a failure of the CA.
var ErrInvalidRequest = errors.New("ca: invalid certificate request")

// Options configure Open.
type Options struct {
	// Dir holds the root and intermediate (see the package comment). It is
	// created with mode 0700 if missing. Required.
	Dir string
	// TrustDomain the CA issues identities in. Empty means
	// identity.DefaultTrustDomain. A Dir created for one trust domain is
	// refused for another.
	TrustDomain string
	// WorkloadTTL is the default and the maximum lifetime of workload
	// certificates; a request may ask for less. Zero means
	// DefaultWorkloadTTL; otherwise it must lie within
	// [MinWorkloadTTL, MaxWorkloadTTL].
	WorkloadTTL time.Duration
	// Logger receives CA events. Nil discards them.
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// CA is a certificate authority loaded from or created in a directory. It is
// safe for concurrent use.
type CA struct {
	dir string
	td  string
	ttl time.Duration
	log *slog.Logger
	now func() time.Time

	// The root is fixed after Open. roots is the trust bundle: today only
	// root; during a root rotation it will hold several.
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	roots   []*x509.Certificate

	mu           sync.Mutex
	inter        *x509.Certificate
	interKey     *ecdsa.PrivateKey
	renewFailure time.Time // last failed renewal, to retry at most once a minute
}

// Open loads the CA in opts.Dir, creating the root and the intermediate on
// first use, and renewing the intermediate if it expires within
// IntermediateRenewBefore.
//
// On load it checks that each certificate matches its key, that the
// intermediate is signed by the root, that both are CA certificates with
// keyCertSign and that both name opts.TrustDomain. Files it does not expect
// to find in pairs are an error that says how to recover: removing both
// intermediate files makes Open issue a new intermediate from the root.
func Open(opts Options) (*CA, error) {
	if opts.Dir == "" {
		return nil, errors.New("ca: Options.Dir is empty; set the directory for the CA files")
	}
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
	c := &CA{
		dir: opts.Dir,
		td:  td,
		ttl: ttl,
		log: opts.Logger,
		now: opts.Now,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	// Control planes sharing the directory create and renew one at a time.
	unlock, err := lockDir(c.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := c.loadOrCreateRoot(); err != nil {
		return nil, err
	}
	c.roots = []*x509.Certificate{c.root}
	if err := c.loadOrIssueIntermediate(); err != nil {
		return nil, err
	}
	c.log.Info("certificate authority ready",
		logKeyDir, c.dir,
		logKeyTrustDomain, c.td,
		logKeyRootExpiry, c.root.NotAfter,
		logKeyIntermediateExpiry, c.inter.NotAfter)
	return c, nil
}

// TrustDomain returns the trust domain the CA issues identities in.
func (c *CA) TrustDomain() string { return c.td }

// WorkloadTTL returns the default and maximum workload certificate lifetime.
func (c *CA) WorkloadTTL() time.Duration { return c.ttl }

// Roots returns the trust bundle: the root certificates a workload should
// trust. The slice is a copy; the certificates must not be modified.
func (c *CA) Roots() []*x509.Certificate {
	return append([]*x509.Certificate(nil), c.roots...)
}

// BundlePEM returns Roots as concatenated PEM blocks.
func (c *CA) BundlePEM() []byte {
	var b bytes.Buffer
	for _, r := range c.roots {
		b.Write(certPEM(r))
	}
	return b.Bytes()
}

func (c *CA) path(name string) string { return filepath.Join(c.dir, name) }

func (c *CA) loadOrCreateRoot() error {
	haveCert, err := exists(c.path(RootCertFile))
	if err != nil {
		return err
	}
	haveKey, err := exists(c.path(RootKeyFile))
	if err != nil {
		return err
	}
	switch {
	case !haveCert && !haveKey:
		for _, name := range []string{IntermediateCertFile, IntermediateKeyFile} {
			if ok, err := exists(c.path(name)); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("ca: %s has %s but no root (%s, %s); restore the root or remove the directory to start a new CA",
					c.dir, name, RootCertFile, RootKeyFile)
			}
		}
		return c.createRoot()
	case haveCert != haveKey:
		return fmt.Errorf("ca: %s has only one of %s and %s; restore the other, or remove the directory to start a new CA",
			c.dir, RootCertFile, RootKeyFile)
	}

	cert, key, err := c.loadPair(RootCertFile, RootKeyFile)
	if err != nil {
		return err
	}
	if err := c.checkSigningCert(cert, RootCertFile); err != nil {
		return err
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("ca: %s is not a self-signed root: %w", c.path(RootCertFile), err)
	}
	now := c.now()
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("ca: root certificate %s expired at %s; start a new CA in an empty directory (every proxy then needs the new trust bundle)",
			c.path(RootCertFile), cert.NotAfter.Format(time.RFC3339))
	}
	if cert.NotAfter.Sub(now) < IntermediateLifetime {
		c.log.Warn("root certificate expires soon; plan a root rotation",
			logKeyDir, c.dir, logKeyRootExpiry, cert.NotAfter)
	}
	c.root, c.rootKey = cert, key
	return nil
}

func (c *CA) createRoot() error {
	key, err := newKey()
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := c.now()
	tmpl := c.signingTemplate("Trellis Root CA", serial, now.Add(-ClockSkew), now.Add(RootLifetime), 1)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("ca: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("ca: parse new root certificate: %w", err)
	}
	if err := c.writePair(RootCertFile, RootKeyFile, cert, key); err != nil {
		return err
	}
	c.root, c.rootKey = cert, key
	c.log.Info("created root certificate",
		logKeyDir, c.dir, logKeyTrustDomain, c.td,
		logKeySerial, serialHex(cert), logKeyExpiry, cert.NotAfter)
	return nil
}

func (c *CA) loadOrIssueIntermediate() error {
	haveCert, err := exists(c.path(IntermediateCertFile))
	if err != nil {
		return err
	}
	haveKey, err := exists(c.path(IntermediateKeyFile))
	if err != nil {
		return err
	}
	now := c.now()
	switch {
	case !haveCert && !haveKey:
		return c.issueIntermediate(now)
	case haveCert != haveKey:
		return fmt.Errorf("ca: %s has only one of %s and %s; remove both to issue a new intermediate from the root",
			c.dir, IntermediateCertFile, IntermediateKeyFile)
	}

	cert, key, err := c.loadPair(IntermediateCertFile, IntermediateKeyFile)
	if err != nil {
		return fmt.Errorf("%w (remove %s and %s to issue a new intermediate from the root)", err, IntermediateCertFile, IntermediateKeyFile)
	}
	if err := c.checkSigningCert(cert, IntermediateCertFile); err != nil {
		return err
	}
	if err := cert.CheckSignatureFrom(c.root); err != nil {
		return fmt.Errorf("ca: %s is not signed by %s: %w (remove %s and %s to issue a new intermediate from the root)",
			c.path(IntermediateCertFile), RootCertFile, err, IntermediateCertFile, IntermediateKeyFile)
	}
	c.inter, c.interKey = cert, key
	if c.intermediateDue(now) {
		if err := c.issueIntermediate(now); err != nil {
			if !now.Before(cert.NotAfter) {
				return err
			}
			c.log.Error("could not renew the intermediate; keeping the current one",
				logKeyExpiry, cert.NotAfter, logKeyError, err)
		}
	}
	return nil
}

// intermediateDue reports whether the intermediate should be replaced: it
// expires within IntermediateRenewBefore and a new one would live longer
// (it cannot outlive the root).
func (c *CA) intermediateDue(now time.Time) bool {
	return now.After(c.inter.NotAfter.Add(-IntermediateRenewBefore)) && c.inter.NotAfter.Before(c.root.NotAfter)
}

// issueIntermediate signs a new intermediate with the root, writes it and
// makes it current. Callers hold c.mu or have not published c yet.
func (c *CA) issueIntermediate(now time.Time) error {
	if !now.Before(c.root.NotAfter) {
		return fmt.Errorf("ca: root certificate expired at %s; cannot issue an intermediate", c.root.NotAfter.Format(time.RFC3339))
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	notAfter := now.Add(IntermediateLifetime)
	if notAfter.After(c.root.NotAfter) {
		notAfter = c.root.NotAfter
	}
	tmpl := c.signingTemplate("Trellis Intermediate CA", serial, now.Add(-ClockSkew), notAfter, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, key.Public(), c.rootKey)
	if err != nil {
		return fmt.Errorf("ca: create intermediate certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("ca: parse new intermediate certificate: %w", err)
	}
	if err := c.writePair(IntermediateCertFile, IntermediateKeyFile, cert, key); err != nil {
		return err
	}
	c.inter, c.interKey = cert, key
	c.log.Info("issued intermediate certificate",
		logKeyDir, c.dir, logKeySerial, serialHex(cert), logKeyExpiry, cert.NotAfter)
	return nil
}

// renewShared renews the intermediate under the directory lock. Another
// control plane sharing the directory may have renewed it already: then
// its intermediate is loaded instead of issuing a second one. Callers hold
// c.mu.
func (c *CA) renewShared(now time.Time) error {
	unlock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	defer unlock()
	if cert, key, err := c.loadPair(IntermediateCertFile, IntermediateKeyFile); err == nil &&
		cert.CheckSignatureFrom(c.root) == nil && cert.NotAfter.After(c.inter.NotAfter) {
		c.inter, c.interKey = cert, key
		if !c.intermediateDue(now) {
			c.log.Info("loaded the intermediate another control plane renewed", logKeySerial, serialHex(cert), logKeyExpiry, cert.NotAfter)
			return nil
		}
	}
	return c.issueIntermediate(now)
}

// issuer returns the intermediate to sign with, renewing it when due.
func (c *CA) issuer(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.intermediateDue(now) && now.Sub(c.renewFailure) >= time.Minute {
		if err := c.renewShared(now); err != nil {
			c.renewFailure = now
			c.log.Error("could not renew the intermediate; keeping the current one",
				logKeyExpiry, c.inter.NotAfter, logKeyError, err)
		}
	}
	if !now.Before(c.inter.NotAfter) {
		return nil, nil, fmt.Errorf("ca: intermediate certificate expired at %s and could not be renewed; see earlier errors",
			c.inter.NotAfter.Format(time.RFC3339))
	}
	return c.inter, c.interKey, nil
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

// checkSigningCert checks what Open relies on in a root or intermediate read
// from disk.
func (c *CA) checkSigningCert(cert *x509.Certificate, name string) error {
	p := c.path(name)
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("ca: %s is not a CA certificate (needs CA=true and keyCertSign)", p)
	}
	td, err := certTrustDomain(cert)
	if err != nil {
		return fmt.Errorf("ca: %s: %w", p, err)
	}
	if td != c.td {
		return fmt.Errorf("ca: %s was made for trust domain %q, not %q; use trust domain %q with this directory, or another directory for %q",
			c.dir, td, c.td, td, c.td)
	}
	return nil
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

// loadPair reads a certificate and its key and checks that they match.
func (c *CA) loadPair(certName, keyName string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := c.path(certName), c.path(keyName)
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("ca: %s holds no PEM CERTIFICATE block", certPath)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, fmt.Errorf("ca: %s holds more than one PEM block; want exactly one certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", certPath, err)
	}

	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		c.log.Warn("private key file is readable by others; chmod 600 it",
			logKeyFile, keyPath, logKeyMode, fi.Mode().Perm().String())
	}
	b, err = os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	key, err := parseKeyPEM(b)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", keyPath, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("ca: %s does not hold the key of %s", keyPath, certPath)
	}
	return cert, key, nil
}

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
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY (PKCS#8)", block.Type)
	}
	if err != nil {
		return nil, err
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 key")
	}
	return k, nil
}

// writePair writes the key first, then the certificate, each atomically.
func (c *CA) writePair(certName, keyName string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("ca: marshal key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeFileAtomic(c.path(keyName), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(c.path(certName), certPEM(cert), 0o644)
}

// writeFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path, so that path holds either the old or
// the new content, never a part.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("ca: write %s: %w", path, err)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("ca: %w", err)
	}
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
