package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/internal/controlapi"
)

// control is a running `trellis control`.
type control struct {
	*benchproc.Proc
	xds    string // the xDS and CA address
	bundle string // the trust bundle the proxies start with
	api    *controlapi.Client
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
	xp, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	ap, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	c := &control{xds: "127.0.0.1:" + strconv.Itoa(xp), bundle: filepath.Join(dir, "data", "ca", "root-cert.pem")}
	api := "127.0.0.1:" + strconv.Itoa(ap)
	c.Proc, err = benchproc.Start(dir, "control", bin, "control", "--data-dir", filepath.Join(dir, "data"), "--xds-address", c.xds, "--debug-address", api)
	if err != nil {
		return nil, err
	}
	if c.api, err = controlapi.NewClient(api); err != nil {
		c.Stop()
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if err := c.Exited(); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.api.Ready(rctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("waiting for the control plane: %w", err)
		}
		select {
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return c, nil
}
