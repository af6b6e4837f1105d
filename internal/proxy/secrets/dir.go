package secrets

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Files of an identity directory (UseDir).
const (
	KeyFile   = "key.pem"
	ChainFile = "cert-chain.pem"
)

// UseDir keeps the proxy's identity in dir (created with mode 0700): every
// certificate installed from now on is written there, its key to KeyFile
// (PKCS#8 PEM, mode 0600) and its chain to ChainFile (PEM, leaf first,
// mode 0644), each atomically. If dir already holds a key and a chain for
// this proxy's identity that verify against the trust bundle and have not
// expired, UseDir installs them and reports true: a restarted proxy needs
// no new join token. A directory without them, or with ones that cannot be
// used (another identity, expired, not matching), is not an error: UseDir
// logs why and reports false, and the proxy asks for a new certificate.
func (m *Manager) UseDir(dir string) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("secrets: identity directory: %w", err)
	}
	m.mu.Lock()
	m.dir = dir
	m.mu.Unlock()
	key, chain, err := readIdentity(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err == nil {
		err = m.installRestored(key, chain)
	}
	if err != nil {
		m.log.Warn("not using the certificate in the identity directory; asking for a new one", "dir", dir, "err", err)
		return false, nil
	}
	return true, nil
}

// installRestored installs a key and chain read from disk after the checks
// of install and a check of their expiry.
func (m *Manager) installRestored(key *ecdsa.PrivateKey, chain [][]byte) error {
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return err
	}
	if !time.Now().Before(leaf.NotAfter) {
		return fmt.Errorf("the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return fmt.Errorf("%s does not hold the key of %s", KeyFile, ChainFile)
	}
	return m.install(key, chain)
}

// readIdentity reads the key and chain of dir; fs.ErrNotExist if neither
// is there.
func readIdentity(dir string) (*ecdsa.PrivateKey, [][]byte, error) {
	keyPEM, keyErr := os.ReadFile(filepath.Join(dir, KeyFile))
	chainPEM, chainErr := os.ReadFile(filepath.Join(dir, ChainFile))
	switch {
	case errors.Is(keyErr, fs.ErrNotExist) && errors.Is(chainErr, fs.ErrNotExist):
		return nil, nil, fs.ErrNotExist
	case keyErr != nil:
		return nil, nil, keyErr
	case chainErr != nil:
		return nil, nil, chainErr
	}
	block, rest := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, fmt.Errorf("%s holds no single PEM PRIVATE KEY", KeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s does not hold an ECDSA key", KeyFile)
	}
	certs, err := ParseBundle(chainPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ChainFile, err)
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return key, chain, nil
}

// persist writes the current key and chain to the identity directory, if
// there is one. Writes are serialized and always write what is current, so
// the files never go back to an older certificate.
func (m *Manager) persist() {
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	m.mu.RLock()
	dir, key, cert := m.dir, m.key, m.cert
	m.mu.RUnlock()
	if dir == "" || cert == nil {
		return
	}
	if err := writeIdentity(dir, key, cert.Certificate); err != nil {
		m.log.Error("could not write the certificate to the identity directory; a restart will need a new join token", "dir", dir, "err", err)
	}
}

func writeIdentity(dir string, key *ecdsa.PrivateKey, chain [][]byte) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	var certs bytes.Buffer
	for _, c := range chain {
		_ = pem.Encode(&certs, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	// The key first: a crash between the two writes leaves a key that
	// matches no chain, which UseDir recognizes and ignores.
	if err := writeFileAtomic(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ChainFile), certs.Bytes(), 0o644)
}

// writeFileAtomic writes a temporary file in the same directory, syncs it
// and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
