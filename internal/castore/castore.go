// Package castore keeps the certificate authority's state (a ca.Storage)
// in the etcd store, sealed with AES-256-GCM under a key read from a
// file, so that control planes sharing an external etcd cluster share one
// CA without sharing a directory.
//
//	ca.State ─EncodeState─► JSON ─seal (AES-256-GCM, key file)─► envelope ─PutIf─► etcd: ca/state
//
// Every change is a compare-and-swap on the key's revision: control
// planes changing the CA at once (a rotation step, a renewed
// intermediate) never lose each other's change. The envelope names the
// encryption key by an ID derived from it, so that a control plane
// started with another key file says so instead of failing to decrypt.
//
// Changing the encryption key is not supported: every control plane of
// the mesh must keep using the key file the CA was sealed with.
package castore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/store"
)

// Key is the store key of the sealed CA state.
const Key = "ca/state"

// KeySize is the size of the encryption key: AES-256.
const KeySize = 32

// format names the envelope's layout.
const format = "trellis-sealed-v1"

// additionalData binds a sealed value to its use: it cannot be moved to
// another key of the store and decrypt there.
var additionalData = []byte("trellis.dev " + Key)

// envelope is what the store holds.
type envelope struct {
	Format     string `json:"format"`
	Cipher     string `json:"cipher"`
	KeyID      string `json:"keyId"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// Storage is a ca.Storage in the store.
type Storage struct {
	st      *store.Store
	aead    cipher.AEAD
	keyID   string
	keyFile string
}

var _ ca.Storage = (*Storage)(nil)

// New returns a Storage in st sealed with key (KeySize bytes, from
// ReadKeyFile); keyFile names it in messages.
func New(st *store.Store, key []byte, keyFile string) (*Storage, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("castore: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("castore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("castore: %w", err)
	}
	return &Storage{st: st, aead: aead, keyID: KeyID(key), keyFile: keyFile}, nil
}

// KeyID names an encryption key without revealing it: the first 8 bytes,
// in hex, of a SHA-256 of it.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("trellis ca encryption key id\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

// String names the storage in messages.
func (s *Storage) String() string { return "the store (" + Key + ", sealed with " + s.keyFile + ")" }

// Load returns the unsealed state, or nil when the store holds none.
func (s *Storage) Load(ctx context.Context) ([]byte, error) {
	it, err := s.st.Get(ctx, Key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("castore: %w", err)
	}
	return s.open(it.Value)
}

// Update changes the state with a compare-and-swap, calling fn again when
// another control plane changed it in between.
func (s *Storage) Update(ctx context.Context, fn func([]byte) ([]byte, error)) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		var cur []byte
		var rev int64
		it, err := s.st.Get(ctx, Key)
		switch {
		case err == nil:
			if cur, err = s.open(it.Value); err != nil {
				return nil, err
			}
			rev = it.Revision
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("castore: %w", err)
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		if next == nil {
			return cur, nil
		}
		sealed, err := s.seal(next)
		if err != nil {
			return nil, err
		}
		ok, err := s.st.PutIf(ctx, Key, sealed, rev)
		if err != nil {
			return nil, fmt.Errorf("castore: %w", err)
		}
		if ok {
			return next, nil
		}
		if attempt >= 20 {
			return nil, errors.New("castore: the CA state kept changing under this control plane; try again")
		}
	}
}

func (s *Storage) seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("castore: %w", err)
	}
	return json.Marshal(envelope{
		Format: format, Cipher: "AES-256-GCM", KeyID: s.keyID,
		Nonce: nonce, Ciphertext: s.aead.Seal(nil, nonce, plain, additionalData),
	})
}

func (s *Storage) open(sealed []byte) ([]byte, error) {
	var env envelope
	if err := json.Unmarshal(sealed, &env); err != nil || env.Format != format {
		return nil, fmt.Errorf("castore: the store's %s is not a sealed CA state (%s)", Key, format)
	}
	if env.KeyID != s.keyID {
		return nil, fmt.Errorf("castore: the CA in the store is sealed with the key whose ID is %s, but %s holds the key %s; start with the key file the other control planes use",
			env.KeyID, s.keyFile, s.keyID)
	}
	if len(env.Nonce) != s.aead.NonceSize() {
		return nil, fmt.Errorf("castore: the store's %s is damaged (nonce of %d bytes)", Key, len(env.Nonce))
	}
	plain, err := s.aead.Open(nil, env.Nonce, env.Ciphertext, additionalData)
	if err != nil {
		return nil, fmt.Errorf("castore: the store's %s does not decrypt with the key in %s although the key IDs match: it was damaged or tampered with", Key, s.keyFile)
	}
	return plain, nil
}

// ReadKeyFile reads an encryption key: KeySize random bytes, or their
// base64 or hex encoding on one line. It refuses a key of printable
// characters (a password is not a key) and warns, through log, when the
// file is readable by others than its owner.
func ReadKeyFile(path string, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("castore: encryption key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && log != nil {
		log.Warn("encryption key file is readable by others; chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	const how = "create one with `openssl rand -base64 32 > FILE` (or `head -c 32 /dev/urandom > FILE`)"
	text := bytes.TrimSpace(b)
	if k, err := base64.StdEncoding.DecodeString(string(text)); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := hex.DecodeString(string(text)); err == nil && len(k) == KeySize {
		return k, nil
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("castore: encryption key %s: want %d random bytes, or their base64 or hex encoding; %s", path, KeySize, how)
	}
	printable := true
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			printable = false
			break
		}
	}
	if printable {
		return nil, fmt.Errorf("castore: encryption key %s is %d printable characters, which looks like a password, not a random key; %s", path, KeySize, how)
	}
	return b, nil
}
