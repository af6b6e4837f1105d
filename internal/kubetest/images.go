package kubetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// ConformanceImagesCommand builds the commands that ConformanceImages maps
// images to.
const ConformanceImagesCommand = "go run ./hack/dev conformance-images"

// The images of the Gateway API conformance suite's manifests (v1.6.3),
// by repository: every tag maps to the same command.
const (
	// EchoBasicImage is the backends' echo server (base/manifests.yaml).
	EchoBasicImage = "registry.k8s.io/gateway-api/echo-basic"
	// EchoAdvancedImage is Istio's echo server, whose client the mesh
	// tests exec into (mesh/manifests.yaml).
	EchoAdvancedImage = "registry.k8s.io/gateway-api/echo-advanced"
	// CoreDNSImage is the DNS server behind the UDPRoute tests
	// (base/manifests.yaml).
	CoreDNSImage = "registry.k8s.io/coredns/coredns"
)

// Binary is an image whose entrypoint is the command at path: the
// container's command and args follow it (a container that sets command
// gives its words first).
func Binary(path string, env ...string) Image {
	return func(c *corev1.Container) ([]string, []string, bool) {
		return append([]string{path}, c.Args...), env, true
	}
}

// ConformanceImages returns the images of the Gateway API conformance
// suite, built by ConformanceImagesCommand (hack/dev, from the module
// hack/conformance-images):
//
//	echo-basic     the conformance module's echo-basic
//	echo-advanced  Istio's echo server, with Istio's echo client as
//	               `client` on the PATH of the container (and of /exec)
//	coredns        CoreDNS (v1.15.0: the manifests' v1.12.2 does not build
//	               beside Istio)
//
// It skips the test when they are not built, and fails it under CI, which
// builds them.
func ConformanceImages(t testing.TB) map[string]Image {
	t.Helper()
	dir, err := ConformanceImagesDir()
	if err == nil {
		for _, name := range []string{"echo-basic", "echo-advanced/server", "echo-advanced/client", "coredns"} {
			if _, err = os.Stat(filepath.Join(dir, name)); err != nil {
				break
			}
		}
	}
	if err != nil {
		msg := fmt.Sprintf("kubetest: conformance images: %v; build them with `%s` (a few minutes, once per version)", err, ConformanceImagesCommand)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	advanced := filepath.Join(dir, "echo-advanced")
	return map[string]Image{
		EchoBasicImage:    Binary(filepath.Join(dir, "echo-basic")),
		EchoAdvancedImage: Binary(filepath.Join(advanced, "server"), "PATH="+advanced+":"+os.Getenv("PATH")),
		CoreDNSImage:      Binary(filepath.Join(dir, "coredns")),
	}
}

// ConformanceImagesDir returns the directory of the conformance images:
// $TRELLIS_CONFORMANCE_IMAGES, or else trellis/conformance-images/KEY in
// the user's cache directory, where KEY is the start of the SHA-256 of
// hack/conformance-images' go.mod and go.sum, as hack/dev computes it.
func ConformanceImagesDir() (string, error) {
	if dir := os.Getenv("TRELLIS_CONFORMANCE_IMAGES"); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, "hack", "conformance-images", f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "trellis", "conformance-images", hex.EncodeToString(h.Sum(nil))[:12]), nil
}

// moduleRoot is the directory of the trellis module, above the test's
// working directory (its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module trellis.dev/trellis\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no trellis module above the working directory")
		}
		dir = parent
	}
}

// imageRepository is an image reference without its tag or digest.
func imageRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// ConformanceModuleDir returns the directory of the Gateway API
// conformance module at the version hack/conformance-images requires
// (v1.6.3), in the module cache, where ConformanceImagesCommand put it: its
// base/ and mesh/ manifests are the suite's. It skips the test when the
// module is not there, and fails it under CI.
func ConformanceModuleDir(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err == nil {
		cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api/conformance")
		cmd.Dir = filepath.Join(root, "hack", "conformance-images")
		var out []byte
		if out, err = cmd.Output(); err == nil {
			dir := strings.TrimSpace(string(out))
			if _, err = os.Stat(filepath.Join(dir, "base", "manifests.yaml")); err == nil {
				return dir
			}
		}
	}
	msg := fmt.Sprintf("kubetest: the conformance module: %v; download it with `%s`", err, ConformanceImagesCommand)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TrellisProxyImage returns an image that runs trellis-proxy, built from
// this module's cmd/trellis-proxy (with the release build tags; the go
// command's cache makes it quick after the first time) into a directory
// that the proxy's user may enter, removed when the test ends: the image of
// injected sidecars and of their init container (`trellis-proxy init`).
func TrellisProxyImage(t testing.TB) Image {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir, which only root may enter.
	dir, err := os.MkdirTemp("", "kubetest-trellis-proxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "trellis-proxy")
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", path, "./cmd/trellis-proxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubetest: go build ./cmd/trellis-proxy: %v: %s", err, out)
	}
	return Binary(path)
}
