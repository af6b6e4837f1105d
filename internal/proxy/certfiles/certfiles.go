// Package certfiles serves the certificates of a gateway's TLS listeners
// from files, so that private keys never pass through the control plane.
//
// A Gateway listener's certificateRef to Secret NAMESPACE/NAME reaches the
// gateway proxy as the name of an SDS secret; the proxy reads it from
//
//	DIR/NAMESPACE/NAME/tls.crt   the PEM chain, leaf first
//	DIR/NAMESPACE/NAME/tls.key   the PEM private key
//
// the layout of a Kubernetes TLS Secret mounted as a volume. A Store loads
// a certificate when a listener first names it (and forgets it when no
// listener does any more, Retain), then reads the files again
// every few seconds (a few kilobytes each, cheaper and surer than
// modification times, which a quick rewrite can leave unchanged): new
// contents are loaded as a pair, and new
// TLS handshakes get the new certificate while established connections go
// on undisturbed. A pair that cannot be loaded (missing, unreadable, a key
// that does not match) is logged; the last good certificate of that
// secret, if there was one, keeps serving, and without one the handshakes
// that need it fail.
package certfiles

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Files of a secret's directory, as a Kubernetes TLS Secret names them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// DefaultInterval is how often a Store looks for changed files.
const DefaultInterval = 2 * time.Second

// ErrNoDir means the proxy was given no certificate directory.
var ErrNoDir = errors.New("certfiles: no certificate directory is set (trellis-proxy --certs-dir)")

// Key names a Secret.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Store holds the certificates of the secrets listeners name.
type Store struct {
	dir      string
	log      *slog.Logger
	interval time.Duration

	mu      sync.RWMutex
	entries map[Key]*entry
}

// entry is one secret: the last good certificate and what the files
// looked like when last read.
type entry struct {
	cert  *tls.Certificate
	err   error // of the last load; nil when cert is current
	stamp stamp
}

// stamp identifies a version of the two files: a digest of their
// contents, or of the errors reading them.
type stamp [sha256.Size]byte

// New returns a store reading under dir ("" makes every lookup fail with
// ErrNoDir), polling every interval (zero means DefaultInterval). A nil
// log discards.
func New(dir string, interval time.Duration, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Store{dir: dir, log: log, interval: interval, entries: map[Key]*entry{}}
}

// Want loads the secrets not loaded yet, logging those that cannot be.
func (s *Store) Want(keys ...Key) {
	for _, k := range keys {
		s.mu.RLock()
		_, ok := s.entries[k]
		s.mu.RUnlock()
		if !ok {
			s.reload(k, true)
		}
	}
}

// Retain forgets the secrets other than keys: those no listener names any
// more are no longer read.
func (s *Store) Retain(keys ...Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.entries {
		if !slices.Contains(keys, k) {
			delete(s.entries, k)
		}
	}
}

// Get returns the current certificate of secret k, loading it on first
// use.
func (s *Store) Get(k Key) (*tls.Certificate, error) {
	s.mu.RLock()
	e, ok := s.entries[k]
	s.mu.RUnlock()
	if !ok {
		s.Want(k)
		s.mu.RLock()
		e = s.entries[k]
		s.mu.RUnlock()
	}
	if e == nil || e.cert == nil {
		if e != nil && e.err != nil {
			return nil, e.err
		}
		return nil, fmt.Errorf("certfiles: secret %s: not loaded", k)
	}
	return e.cert, nil
}

// Run polls the files of the loaded secrets until ctx is done.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.Poll()
	}
}

// Poll loads again each secret whose files changed since they were last
// read.
func (s *Store) Poll() {
	s.mu.RLock()
	keys := make([]Key, 0, len(s.entries))
	for k := range s.entries {
		keys = append(keys, k)
	}
	s.mu.RUnlock()
	for _, k := range keys {
		s.reload(k, false)
	}
}

// Status is what a store knows of one secret.
type Status struct {
	Secret string `json:"secret"`
	// Serving is set while a certificate is available for handshakes.
	Serving  bool      `json:"serving"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	// Error is why the files could not be loaded last time ("" when they
	// were); with Serving, the previous certificate is still used.
	Error string `json:"error,omitempty"`
}

// Statuses reports every secret the store was asked for, sorted.
func (s *Store) Statuses() []Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Status, 0, len(s.entries))
	for k, e := range s.entries {
		st := Status{Secret: k.String(), Serving: e.cert != nil}
		if e.cert != nil && e.cert.Leaf != nil {
			st.NotAfter = e.cert.Leaf.NotAfter
		}
		if e.err != nil {
			st.Error = e.err.Error()
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Secret, b.Secret) })
	return out
}

func (s *Store) paths(k Key) (crt, key string) {
	d := filepath.Join(s.dir, k.Namespace, k.Name)
	return filepath.Join(d, CertFile), filepath.Join(d, KeyFile)
}

func (s *Store) stampOf(k Key) stamp {
	crt, key := s.paths(k)
	h := sha256.New()
	for _, p := range []string{crt, key} {
		b, err := os.ReadFile(p)
		if err != nil {
			b = []byte("error: " + err.Error())
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var st stamp
	h.Sum(st[:0])
	return st
}

// reload reads secret k's files if they changed (always when first).
func (s *Store) reload(k Key, first bool) {
	st := s.stampOf(k)
	s.mu.RLock()
	prev := s.entries[k]
	s.mu.RUnlock()
	if !first && prev != nil && prev.stamp == st {
		return
	}
	cert, err := s.load(k)
	s.mu.Lock()
	e := s.entries[k]
	if e == nil {
		e = &entry{}
		s.entries[k] = e
	}
	e.stamp = st
	e.err = err
	if err == nil {
		e.cert = cert
	}
	serving := e.cert != nil
	s.mu.Unlock()
	switch {
	case err == nil && prev != nil && prev.cert != nil:
		s.log.Info("gateway certificate reloaded: new TLS connections get it", "secret", k.String(), "notAfter", cert.Leaf.NotAfter)
	case err == nil:
		s.log.Info("gateway certificate loaded", "secret", k.String(), "notAfter", cert.Leaf.NotAfter)
	case serving:
		s.log.Error("gateway certificate files cannot be loaded; the previous certificate keeps serving", "secret", k.String(), "err", err)
	default:
		s.log.Error("gateway certificate files cannot be loaded; TLS connections that need this certificate fail until they can", "secret", k.String(), "err", err)
	}
}

// load reads and checks one secret's pair.
func (s *Store) load(k Key) (*tls.Certificate, error) {
	if s.dir == "" {
		return nil, ErrNoDir
	}
	crt, key := s.paths(k)
	crtPEM, err := os.ReadFile(crt)
	if err != nil {
		return nil, fmt.Errorf("certfiles: secret %s: %w", k, err)
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		return nil, fmt.Errorf("certfiles: secret %s: %w", k, err)
	}
	cert, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certfiles: secret %s: %s and %s: %w", k, crt, key, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certfiles: secret %s: %w", k, err)
		}
	}
	return &cert, nil
}

// Choose returns, of the certificates of secrets keys, the first the
// client's hello supports (key type, signature schemes, server name),
// else the first available: how a listener with several certificateRefs
// (say an RSA and an ECDSA one) serves each client.
func (s *Store) Choose(hello *tls.ClientHelloInfo, keys []Key) (*tls.Certificate, error) {
	var first *tls.Certificate
	var errs []error
	for _, k := range keys {
		c, err := s.Get(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first == nil {
			first = c
		}
		if hello == nil || hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	if first != nil {
		return first, nil
	}
	return nil, errors.Join(errs...)
}
