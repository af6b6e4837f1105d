package castore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/store"
)

const td = "example.org"

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newKeyFile(t *testing.T) (string, []byte) {
	t.Helper()
	key := make([]byte, KeySize)
	rand.Read(key)
	path := filepath.Join(t.TempDir(), "ca-encryption.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func newStorage(t *testing.T, st *store.Store, keyFile string) *Storage {
	t.Helper()
	key, err := ReadKeyFile(keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(st, key, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A CA created in the store is found again by another control plane with
// the same key, and nothing secret is readable in the store.
func TestRoundTrip(t *testing.T) {
	st := openStore(t)
	keyFile, _ := newKeyFile(t)
	a, err := ca.Open(ca.Options{Storage: newStorage(t, st, keyFile), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Open(ca.Options{Storage: newStorage(t, st, keyFile), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.BundlePEM(), b.BundlePEM()) || !a.State().Active.Signer.Equal(b.State().Active.Signer) {
		t.Fatal("second control plane got another CA")
	}
	it, err := st.Get(context.Background(), Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"PRIVATE KEY", "CERTIFICATE", td} {
		if bytes.Contains(it.Value, []byte(secret)) {
			t.Errorf("the store's value shows %q in the clear", secret)
		}
	}

	// A rotation started through one is seen by the other.
	if _, err := a.StartRotation(context.Background(), ca.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if changed, err := b.Reload(context.Background()); err != nil || !changed {
		t.Fatalf("Reload: %v, %v", changed, err)
	}
	if len(b.Roots()) != 2 {
		t.Errorf("bundle has %d roots during the rotation, want 2", len(b.Roots()))
	}
}

func TestWrongKey(t *testing.T) {
	st := openStore(t)
	keyFile, _ := newKeyFile(t)
	if _, err := ca.Open(ca.Options{Storage: newStorage(t, st, keyFile), TrustDomain: td}); err != nil {
		t.Fatal(err)
	}
	otherFile, _ := newKeyFile(t)
	_, err := ca.Open(ca.Options{Storage: newStorage(t, st, otherFile), TrustDomain: td})
	if err == nil || !strings.Contains(err.Error(), "sealed with the key whose ID is") || !strings.Contains(err.Error(), otherFile) {
		t.Fatalf("Open with another key: %v, want an error naming the key file and the key IDs", err)
	}

	// Damaged ciphertext under the right key ID.
	it, _ := st.Get(context.Background(), Key)
	damaged := bytes.Replace(it.Value, []byte(`"ciphertext":"`), []byte(`"ciphertext":"AAAA`), 1)
	if ok, err := st.PutIf(context.Background(), Key, damaged, it.Revision); err != nil || !ok {
		t.Fatal(err)
	}
	_, err = ca.Open(ca.Options{Storage: newStorage(t, st, keyFile), TrustDomain: td})
	if err == nil || !strings.Contains(err.Error(), "damaged or tampered") {
		t.Fatalf("Open with damaged ciphertext: %v", err)
	}
}

// Control planes changing the CA at once: one rotation starts, the other
// is refused, nothing is lost.
func TestConcurrentUpdates(t *testing.T) {
	st := openStore(t)
	keyFile, _ := newKeyFile(t)
	cas := make([]*ca.CA, 4)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			c, err := ca.Open(ca.Options{Storage: newStorage(t, st, keyFile), TrustDomain: td})
			if err != nil {
				t.Error(err)
			}
			cas[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, c := range cas[1:] {
		if !c.State().Active.Root.Equal(cas[0].State().Active.Root) {
			t.Fatal("control planes opening an empty store at once got different roots")
		}
	}
	errs := make(chan error, len(cas))
	for _, c := range cas {
		wg.Go(func() {
			_, err := c.StartRotation(context.Background(), ca.RotateOptions{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	started := 0
	for err := range errs {
		switch {
		case err == nil:
			started++
		case !errors.Is(err, ca.ErrRotationRunning):
			t.Error(err)
		}
	}
	if started != 1 {
		t.Errorf("%d rotations started, want 1", started)
	}
}

func TestReadKeyFile(t *testing.T) {
	key := make([]byte, KeySize)
	rand.Read(key)
	key[0] = 0 // not printable
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o600)
		return p
	}
	for name, data := range map[string][]byte{
		"raw":    key,
		"base64": []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
		"hex":    []byte(hex.EncodeToString(key) + "\n"),
	} {
		got, err := ReadKeyFile(write(name, data), nil)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"short":    {[]byte("c2hvcnQ=\n"), "want 32 random bytes"},
		"password": {[]byte(strings.Repeat("p", KeySize)), "looks like a password"},
	} {
		if _, err := ReadKeyFile(write(name, tc.data), nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("missing file accepted")
	}
}
