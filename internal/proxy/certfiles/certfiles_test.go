package certfiles

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testcert"
)

// pair makes a self-signed certificate for host with a key of kind
// ("ecdsa" or "rsa"), PEM encoded.
func pair(t *testing.T, host, kind string, serial int64) (crtPEM, keyPEM []byte) {
	p := testcert.Make(t, testcert.Options{Hosts: []string{host}, Serial: serial, RSA: kind == "rsa", Valid: time.Hour})
	return p.CertPEM, p.KeyPEM
}

func write(t *testing.T, dir string, k Key, crt, key []byte) {
	t.Helper()
	d := filepath.Join(dir, k.Namespace, k.Name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if crt != nil {
		if err := os.WriteFile(filepath.Join(d, CertFile), crt, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if key != nil {
		if err := os.WriteFile(filepath.Join(d, KeyFile), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// serialOf returns the serial number of a looked-up certificate, failing
// t on a lookup error.
func serialOf(t *testing.T) func(*tls.Certificate, error) int64 {
	return func(c *tls.Certificate, err error) int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.Int64()
	}
}

// TestRotation: a secret is loaded on first use; changed files are loaded
// by the next poll; files that cannot be loaded leave the last good
// certificate serving, and the status says why.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	k := Key{"infra", "web-cert"}
	crt, key := pair(t, "web.example.com", "ecdsa", 1)
	write(t, dir, k, crt, key)
	s := New(dir, time.Hour, nil)
	serial := serialOf(t)
	if got := serial(s.Get(k)); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	crt2, key2 := pair(t, "web.example.com", "ecdsa", 2)
	write(t, dir, k, crt2, key2)
	s.Poll()
	if got := serial(s.Get(k)); got != 2 {
		t.Fatalf("after rotation: serial %d, want 2", got)
	}

	// A key that does not match the chain: the old pair keeps serving.
	_, key3 := pair(t, "web.example.com", "ecdsa", 3)
	write(t, dir, k, nil, key3)
	s.Poll()
	if got := serial(s.Get(k)); got != 2 {
		t.Fatalf("after a bad key: serial %d, want 2 (the last good one)", got)
	}
	st := s.Statuses()
	if len(st) != 1 || !st[0].Serving || st[0].Error == "" || st[0].Secret != "infra/web-cert" {
		t.Fatalf("status %+v: want serving with an error", st)
	}

	// The matching chain arrives: loaded.
	crt3 := func() []byte {
		// Re-sign a certificate for key3.
		block, _ := pem.Decode(key3)
		k3, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return testcert.Make(t, testcert.Options{Hosts: []string{"web.example.com"}, Serial: 3, Key: k3.(*ecdsa.PrivateKey)}).CertPEM
	}()
	write(t, dir, k, crt3, nil)
	s.Poll()
	if got := serial(s.Get(k)); got != 3 {
		t.Fatalf("after the matching chain: serial %d, want 3", got)
	}
	if st := s.Statuses(); st[0].Error != "" {
		t.Fatalf("status %+v: want no error", st)
	}
}

// TestMissing: a secret without files, or a store without a directory,
// fails lookups with an error that says what is missing.
func TestMissing(t *testing.T) {
	s := New(t.TempDir(), time.Hour, nil)
	_, err := s.Get(Key{"infra", "nope"})
	if err == nil || !strings.Contains(err.Error(), "infra/nope") {
		t.Fatalf("missing files: %v", err)
	}
	if st := s.Statuses(); len(st) != 1 || st[0].Serving {
		t.Fatalf("status %+v", st)
	}
	_, err = New("", time.Hour, nil).Get(Key{"infra", "web"})
	if err != ErrNoDir {
		t.Fatalf("no directory: %v", err)
	}
}

// TestChoose: of several certificates, each client gets one it supports.
func TestChoose(t *testing.T) {
	dir := t.TempDir()
	rsaKey, ecKey := Key{"infra", "rsa"}, Key{"infra", "ecdsa"}
	crt, key := pair(t, "web.example.com", "rsa", 10)
	write(t, dir, rsaKey, crt, key)
	crt, key = pair(t, "web.example.com", "ecdsa", 20)
	write(t, dir, ecKey, crt, key)
	s := New(dir, time.Hour, nil)
	serial := serialOf(t)
	keys := []Key{rsaKey, ecKey}
	ecdsaOnly := &tls.ClientHelloInfo{
		ServerName: "web.example.com", SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
	}
	if got := serial(s.Choose(ecdsaOnly, keys)); got != 20 {
		t.Errorf("an ECDSA-only client got serial %d, want 20", got)
	}
	rsaOnly := &tls.ClientHelloInfo{
		ServerName: "web.example.com", SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes: []tls.SignatureScheme{tls.PSSWithSHA256},
	}
	if got := serial(s.Choose(rsaOnly, keys)); got != 10 {
		t.Errorf("an RSA-only client got serial %d, want 10", got)
	}
	// A missing secret among them does not matter while another serves.
	if got := serial(s.Choose(ecdsaOnly, append([]Key{{"infra", "gone"}}, keys...))); got != 20 {
		t.Errorf("with a missing secret first: serial %d, want 20", got)
	}
}
