package ca

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory written before StateFile existed is read as it is and gets
// a StateFile, with the same root and intermediate.
func TestOpenConvertsOldDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c := openCA(t, Options{Dir: dir})
	asOldDir(t, dir)
	again := openCA(t, Options{Dir: dir})
	if !again.activeRoot().Equal(c.activeRoot()) || !again.signer().Equal(c.signer()) {
		t.Fatal("converting the directory changed the root or the intermediate")
	}
	fi, err := os.Stat(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", StateFile, fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, BundleFile)); err != nil {
		t.Error(err)
	}
}

// The PEM files are copies of StateFile: Open writes them again when they
// are missing or differ.
func TestOpenRewritesCopies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c := openCA(t, Options{Dir: dir})
	want := map[string][]byte{}
	for _, name := range []string{RootCertFile, RootKeyFile, IntermediateCertFile, IntermediateKeyFile, BundleFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	os.WriteFile(filepath.Join(dir, RootCertFile), []byte("garbage"), 0o644)
	os.Remove(filepath.Join(dir, IntermediateKeyFile))
	again := openCA(t, Options{Dir: dir})
	if !again.activeRoot().Equal(c.activeRoot()) {
		t.Fatal("root changed")
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s not rewritten from %s (%v)", name, StateFile, err)
		}
	}
}

func TestOpenRefusesDamagedState(t *testing.T) {
	other := openCA(t, Options{})
	otherState, err := EncodeState(other.State())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, j map[string]any) []byte
		want   string
	}{
		{"not JSON", func(*testing.T, map[string]any) []byte { return []byte("{") }, "malformed CA state"},
		{"unknown field", func(t *testing.T, j map[string]any) []byte {
			j["extra"] = 1
			return marshal(t, j)
		}, "unknown field"},
		{"newer version", func(t *testing.T, j map[string]any) []byte {
			j["version"] = 99
			return marshal(t, j)
		}, "version 99 is not supported"},
		{"signer key of another CA", func(t *testing.T, j map[string]any) []byte {
			var o map[string]any
			json.Unmarshal(otherState, &o)
			j["active"].(map[string]any)["signerKey"] = o["active"].(map[string]any)["signerKey"]
			return marshal(t, j)
		}, "intermediate's key does not belong"},
		{"intermediate of another root", func(t *testing.T, j map[string]any) []byte {
			var o map[string]any
			json.Unmarshal(otherState, &o)
			j["active"].(map[string]any)["signer"] = o["active"].(map[string]any)["signer"]
			j["active"].(map[string]any)["signerKey"] = o["active"].(map[string]any)["signerKey"]
			return marshal(t, j)
		}, "is not signed by"},
		{"rotation without next root", func(t *testing.T, j map[string]any) []byte {
			j["rotation"] = map[string]any{"id": "r", "phase": "adding", "from": "a", "to": "b"}
			return marshal(t, j)
		}, "needs a next authority"},
		{"other trust domain", func(t *testing.T, j map[string]any) []byte {
			j["trustDomain"] = "other.example"
			return marshal(t, j)
		}, `names trust domain "example.org", not "other.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			openCA(t, Options{Dir: dir})
			path := filepath.Join(dir, StateFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var j map[string]any
			if err := json.Unmarshal(b, &j); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(path, tc.damage(t, j), 0o600)
			_, err = Open(Options{Dir: dir, TrustDomain: testTD})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not contain %q and the file", err, tc.want)
			}
		})
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Another control plane's change reaches a CA through Reload.
func TestReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a := openCA(t, Options{Dir: dir})
	b := openCA(t, Options{Dir: dir})
	if changed, err := b.Reload(t.Context()); err != nil || changed {
		t.Fatalf("Reload with nothing new: %v, %v", changed, err)
	}
	if _, err := a.StartRotation(t.Context(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	changed, err := b.Reload(t.Context())
	if err != nil || !changed {
		t.Fatalf("Reload after a rotation started: %v, %v", changed, err)
	}
	if got := len(b.Roots()); got != 2 {
		t.Errorf("bundle has %d roots after the rotation started, want 2", got)
	}
	if b.State().Generation != a.State().Generation {
		t.Errorf("generation %d, want %d", b.State().Generation, a.State().Generation)
	}
}

// FuzzDecodeState: a damaged or hostile state.json (or store value) is an
// error, never a panic.
func FuzzDecodeState(f *testing.F) {
	c, err := Open(Options{Dir: f.TempDir(), TrustDomain: testTD})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := c.StartRotation(f.Context(), RotateOptions{}); err != nil {
		f.Fatal(err)
	}
	b, err := EncodeState(c.State())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"active":{"source":"generated","root":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}}`))
	f.Add([]byte(`{"version":1,"rotation":{"phase":"removing"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeState(data)
		if err != nil {
			return
		}
		if s.Active == nil || len(s.Bundle()) == 0 {
			t.Fatal("decoded a state without an active root")
		}
		if _, err := EncodeState(s); err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
	})
}
