package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/ca"
)

// TestCheckSharedRoot: a control plane whose CA directory holds another
// root than the one it loaded (two control planes created a CA in one
// shared directory at once) refuses to start.
func TestCheckSharedRoot(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	authority, err := ca.Open(ca.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSharedRoot(dir, authority); err != nil {
		t.Fatalf("same root: %v", err)
	}
	if _, err := ca.Open(ca.Options{Dir: other}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(other, ca.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ca.RootCertFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkSharedRoot(dir, authority); err == nil || !strings.Contains(err.Error(), "start again") {
		t.Errorf("another root in the directory: %v", err)
	}
}
