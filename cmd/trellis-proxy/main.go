// Command trellis-proxy is the Trellis data plane: the sidecar, and
// gateways with --gateway. It never links Kubernetes, etcd, the Gateway API
// types or the control plane (see deps_test.go).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"trellis.dev/trellis/internal/proxycli"
	"trellis.dev/trellis/internal/usage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := proxycli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
		os.Exit(0)
	case usage.Is(err):
		fmt.Fprintln(os.Stderr, "trellis-proxy:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "trellis-proxy:", err)
		os.Exit(1)
	}
}
