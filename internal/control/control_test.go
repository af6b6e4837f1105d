package control

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/resource"
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

func TestServerNames(t *testing.T) {
	dns, ips := serverNames(&net.TCPAddr{IP: net.ParseIP("127.5.5.1"), Port: 15012}, []string{"trellis.example.com", "10.0.0.7"})
	has := func(ip string) bool {
		for _, i := range ips {
			if i.Equal(net.ParseIP(ip)) {
				return true
			}
		}
		return false
	}
	if !has("127.5.5.1") || !has("10.0.0.7") || !has("127.0.0.1") {
		t.Errorf("IPs %v: want the listen address, the extra IP and loopback", ips)
	}
	if !slices.Contains(dns, "trellis.example.com") || !slices.Contains(dns, "localhost") {
		t.Errorf("DNS names %v", dns)
	}
}

// TestBackendPolicyChangeKeys: a BackendPolicy change concerns the proxies
// that depend on the Services it targets, not every proxy.
func TestBackendPolicyChangeKeys(t *testing.T) {
	objs, err := resource.Decode("p.yaml", []byte(`apiVersion: trellis.dev/v1alpha1
kind: BackendPolicy
metadata: {name: p, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: api}, {group: "", kind: Service, name: cart, sectionName: http}]
  loadBalancer: {type: LeastRequest}
`))
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{models: resource.NewModelCache()}
	got := cp.changeKeysLocked(objs[0])
	if want := []string{"svc/shop/api", "svc/shop/cart"}; !slices.Equal(got, want) {
		t.Errorf("changeKeys = %v, want %v", got, want)
	}
}
