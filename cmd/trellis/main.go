// Command trellis is the Trellis control plane and every operator tool.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"trellis.dev/trellis/internal/cli"
	"trellis.dev/trellis/internal/usage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
		os.Exit(0)
	case usage.Is(err):
		fmt.Fprintln(os.Stderr, "trellis:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "trellis:", err)
		os.Exit(1)
	}
}
