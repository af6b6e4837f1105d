package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbidden are the packages the data plane must never link: they would
// grow its memory and startup for nothing (DESIGN §3), and the proxy must
// not depend on the control plane.
var forbidden = []string{
	"k8s.io/",
	"sigs.k8s.io/",
	"go.etcd.io/",
	"github.com/envoyproxy/go-control-plane/pkg/",
	"google.golang.org/grpc/xds",
	// The proxy writes its metrics itself (internal/proxy/stats): the
	// client library alone adds megabytes of idle memory.
	"github.com/prometheus/",
	"trellis.dev/trellis/internal/control",
	"trellis.dev/trellis/internal/xds",
	"trellis.dev/trellis/internal/translate",
	"trellis.dev/trellis/internal/store",
	"trellis.dev/trellis/internal/jointoken",
	"trellis.dev/trellis/internal/resource",
	"trellis.dev/trellis/internal/model",
	"trellis.dev/trellis/internal/cli",
	"trellis.dev/trellis/internal/demo",
	"trellis.dev/trellis/api/",
}

// forbiddenExact are forbidden packages whose subpackages are allowed:
// internal/ca is the control plane's CA, internal/ca/capb the API both
// sides speak.
var forbiddenExact = []string{"trellis.dev/trellis/internal/ca"}

func TestProxyDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list returned only %d packages; the test is not looking at the binary", len(deps))
	}
	for _, d := range deps {
		if slices.Contains(forbiddenExact, d) {
			t.Errorf("trellis-proxy links %s", d)
		}
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("trellis-proxy links %s (matches forbidden %q)", d, f)
				break
			}
		}
	}
}
