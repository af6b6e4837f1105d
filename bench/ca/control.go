package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"

	"trellis.dev/trellis/bench/internal/meshproc"
)

// control is a running `trellis control`, and the trust bundle the
// proxies start with.
type control struct {
	*meshproc.Control
	bundle string
}

// startControl builds trellis from the module at root and starts
// `trellis control` with its data (embedded etcd, the CA) under dir.
func startControl(ctx context.Context, root, dir string) (*control, error) {
	bin := filepath.Join(dir, "trellis")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/trellis")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/trellis: %w\n%s", err, out)
	}
	c, err := meshproc.StartControl(ctx, dir, bin)
	if err != nil {
		return nil, err
	}
	return &control{Control: c, bundle: meshproc.CABundle(dir)}, nil
}
