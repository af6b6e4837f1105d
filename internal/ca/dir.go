package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Files in a CA directory. StateFile holds everything and is the one the
// CA reads; the PEM files are copies written after each change, for
// people, for proxies' --ca-bundle and for tools. A directory from before
// StateFile existed (only the four PEM files) is read as it is and
// converted on first use.
const (
	StateFile            = "state.json"
	RootCertFile         = "root-cert.pem"
	RootKeyFile          = "root-key.pem"
	IntermediateCertFile = "ca-cert.pem"
	IntermediateKeyFile  = "ca-key.pem"
	BundleFile           = "bundle.pem"
)

// dirStorage keeps a CA in a directory. Control planes sharing the
// directory (a shared volume) take turns through a file lock.
type dirStorage struct {
	dir string
	log *slog.Logger
}

var _ Storage = (*dirStorage)(nil)

// NewDirStorage returns a Storage in dir, which is created with mode 0700
// on the first Update. A nil logger discards.
func NewDirStorage(dir string, logger *slog.Logger) Storage {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &dirStorage{dir: dir, log: logger}
}

func (d *dirStorage) String() string { return d.path(StateFile) }

func (d *dirStorage) path(name string) string { return filepath.Join(d.dir, name) }

// Load reads StateFile, or converts the PEM files of an older directory.
func (d *dirStorage) Load(context.Context) ([]byte, error) {
	b, err := os.ReadFile(d.path(StateFile))
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: %w", err)
	}
	s, err := d.readPEMFiles()
	if err != nil || s == nil {
		return nil, err
	}
	return EncodeState(s)
}

// Update changes StateFile under the directory lock, then rewrites the
// PEM copies that differ from it.
func (d *dirStorage) Update(ctx context.Context, fn func([]byte) ([]byte, error)) ([]byte, error) {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	unlock, err := lockDir(d.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	haveState, err := exists(d.path(StateFile))
	if err != nil {
		return nil, err
	}
	cur, err := d.Load(ctx)
	if err != nil {
		return nil, err
	}
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	if next == nil && cur != nil && !haveState {
		// Converting an older directory: keep what was read.
		next = cur
	}
	if next != nil {
		if err := writeFileAtomic(d.path(StateFile), next, 0o600); err != nil {
			return nil, err
		}
		cur = next
	}
	if cur == nil {
		return nil, nil
	}
	s, err := DecodeState(cur)
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", d.path(StateFile), err)
	}
	if err := writeViews(d.dir, s, true); err != nil {
		return nil, err
	}
	return cur, nil
}

// writeViews writes the PEM copies of s into dir that differ from what is
// there: the active root, its intermediate (with the chain to the root),
// the trust bundle and, with keys, the active keys (0600).
func writeViews(dir string, s *State, keys bool) error {
	type file struct {
		name string
		data []byte
		perm fs.FileMode
	}
	a := s.Active
	files := []file{
		{RootCertFile, certPEM(a.Root), 0o644},
		{BundleFile, certsPEMBytes(s.Bundle()), 0o644},
	}
	if a.Signer != nil {
		files = append(files, file{IntermediateCertFile, certsPEMBytes(a.signerChain()), 0o644})
	}
	if keys {
		for name, key := range map[string]*ecdsa.PrivateKey{RootKeyFile: a.RootKey, IntermediateKeyFile: a.SignerKey} {
			if key == nil {
				if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("ca: %w", err)
				}
				continue
			}
			b, err := keyPEM(key)
			if err != nil {
				return err
			}
			files = append(files, file{name, []byte(b), 0o600})
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := writeFileAtomic(p, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

func certsPEMBytes(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(certPEM(c))
	}
	return b.Bytes()
}

// readPEMFiles reads a directory written before StateFile existed: a root
// and an intermediate, each a certificate and a key. It returns nil for
// an empty directory, and an error that says how to recover for files
// that do not belong together. A root without intermediate is read with
// no signer: Open issues one.
func (d *dirStorage) readPEMFiles() (*State, error) {
	have := map[string]bool{}
	for _, name := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile} {
		ok, err := exists(d.path(name))
		if err != nil {
			return nil, err
		}
		have[name] = ok
	}
	switch {
	case !have[RootCertFile] && !have[RootKeyFile]:
		for _, name := range []string{IntermediateCertFile, IntermediateKeyFile} {
			if have[name] {
				return nil, fmt.Errorf("ca: %s has %s but no root (%s, %s); restore the root or remove the directory to start a new CA",
					d.dir, name, RootCertFile, RootKeyFile)
			}
		}
		return nil, nil
	case have[RootCertFile] != have[RootKeyFile]:
		return nil, fmt.Errorf("ca: %s has only one of %s and %s; restore the other, or remove the directory to start a new CA",
			d.dir, RootCertFile, RootKeyFile)
	}
	root, rootKey, err := d.loadPair(RootCertFile, RootKeyFile)
	if err != nil {
		return nil, err
	}
	if err := d.checkSigningCert(root, RootCertFile); err != nil {
		return nil, err
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("ca: %s is not a self-signed root: %w", d.path(RootCertFile), err)
	}
	td, _ := certTrustDomain(root)
	s := &State{TrustDomain: td, Active: &Authority{Source: SourceGenerated, Root: root, RootKey: rootKey}}

	switch {
	case !have[IntermediateCertFile] && !have[IntermediateKeyFile]:
		return s, nil
	case have[IntermediateCertFile] != have[IntermediateKeyFile]:
		return nil, fmt.Errorf("ca: %s has only one of %s and %s; remove both to issue a new intermediate from the root",
			d.dir, IntermediateCertFile, IntermediateKeyFile)
	}
	inter, interKey, err := d.loadPair(IntermediateCertFile, IntermediateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w (remove %s and %s to issue a new intermediate from the root)", err, IntermediateCertFile, IntermediateKeyFile)
	}
	if err := d.checkSigningCert(inter, IntermediateCertFile); err != nil {
		return nil, err
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("ca: %s is not signed by %s: %w (remove %s and %s to issue a new intermediate from the root)",
			d.path(IntermediateCertFile), RootCertFile, err, IntermediateCertFile, IntermediateKeyFile)
	}
	if itd, _ := certTrustDomain(inter); itd != td {
		return nil, fmt.Errorf("ca: %s names trust domain %q, the root %q (remove %s and %s to issue a new intermediate from the root)",
			d.path(IntermediateCertFile), itd, td, IntermediateCertFile, IntermediateKeyFile)
	}
	s.Active.Signer, s.Active.SignerKey = inter, interKey
	return s, nil
}

// checkSigningCert checks what the CA relies on in a root or intermediate
// read from a PEM file: a CA certificate naming a trust domain.
func (d *dirStorage) checkSigningCert(cert *x509.Certificate, name string) error {
	p := d.path(name)
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("ca: %s is not a CA certificate (needs CA=true and keyCertSign)", p)
	}
	if _, err := certTrustDomain(cert); err != nil {
		return fmt.Errorf("ca: %s: %w", p, err)
	}
	return nil
}

// loadPair reads a certificate and its key and checks that they match.
func (d *dirStorage) loadPair(certName, keyName string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := d.path(certName), d.path(keyName)
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
	warnKeyMode(d.log, keyPath)
	b, err = os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	key, err := parseKeyPEM(b)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", keyPath, err)
	}
	if !keyMatches(cert, key) {
		return nil, nil, fmt.Errorf("ca: %s does not hold the key of %s", keyPath, certPath)
	}
	return cert, key, nil
}

// warnKeyMode logs a warning when a private key file is readable by
// others than its owner.
func warnKeyMode(log *slog.Logger, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("private key file is readable by others; chmod 600 it",
			logKeyFile, path, logKeyMode, fi.Mode().Perm().String())
	}
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
