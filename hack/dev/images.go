package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// conformanceImagesModule is the separate module that requires the Gateway
// API conformance module and Istio, so that the root go.mod stays clean.
const conformanceImagesModule = "hack/conformance-images"

// conformanceImages builds the commands that play the container images of
// the Gateway API conformance suite for internal/kubetest
// (kubetest.ConformanceImages), unless they are there already:
//
//	DIR/echo-basic                 sigs.k8s.io/gateway-api/conformance/echo-basic
//	DIR/echo-advanced/server       istio.io/istio/pkg/test/echo/cmd/server
//	DIR/echo-advanced/client       istio.io/istio/pkg/test/echo/cmd/client
//	DIR/coredns                    github.com/coredns/coredns
//
// DIR is $TRELLIS_CONFORMANCE_IMAGES, or else the user's cache directory
// under trellis/conformance-images/KEY, where KEY is the start of the
// SHA-256 of hack/conformance-images' go.mod and go.sum (the versions):
// internal/kubetest computes the same (images.go).
func conformanceImages() error {
	dir := os.Getenv("TRELLIS_CONFORMANCE_IMAGES")
	if dir == "" {
		h := sha256.New()
		for _, f := range []string{"go.mod", "go.sum"} {
			b, err := os.ReadFile(filepath.Join(conformanceImagesModule, f))
			if err != nil {
				return err
			}
			h.Write(b)
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		dir = filepath.Join(cache, "trellis", "conformance-images", hex.EncodeToString(h.Sum(nil))[:12])
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	commands := map[string]string{
		"echo-basic":           "sigs.k8s.io/gateway-api/conformance/echo-basic",
		"echo-advanced/server": "istio.io/istio/pkg/test/echo/cmd/server",
		"echo-advanced/client": "istio.io/istio/pkg/test/echo/cmd/client",
		"coredns":              "github.com/coredns/coredns",
	}
	missing := false
	for name := range commands {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			missing = true
		}
	}
	if !missing {
		fmt.Fprintf(os.Stderr, "conformance images are in %s already\n", dir)
		return nil
	}
	// Build beside the final directory and rename, so that an interrupted
	// build leaves nothing that looks complete.
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	for _, name := range []string{"echo-basic", "echo-advanced/server"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tmp, name)), 0o755); err != nil {
			return err
		}
	}
	for _, name := range []string{"echo-basic", "echo-advanced/server", "echo-advanced/client", "coredns"} {
		start := time.Now()
		// Static binaries, as in the images.
		if err := runEnv([]string{"CGO_ENABLED=0"}, "go", "build", "-C", conformanceImagesModule, "-trimpath", "-ldflags", "-s -w",
			"-o", filepath.Join(tmp, name), commands[name]); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "built %s in %s\n", name, time.Since(start).Round(time.Second))
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "built the conformance images into %s\n", dir)
	return nil
}

// runEnv runs a command with env added to the environment and the output
// passed through.
func runEnv(env []string, name string, args ...string) error {
	fmt.Fprintf(os.Stderr, "+ %s %s %s\n", strings.Join(env, " "), name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
