// Command trellis is the Trellis control plane and every operator tool.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"trellis.dev/trellis/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage *cli.UsageError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, cli.ErrReported):
		os.Exit(1)
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "trellis:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "trellis:", err)
		os.Exit(1)
	}
}
