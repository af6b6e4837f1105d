// Package cli implements the trellis command: one file per subcommand, each
// a cobra command whose RunE returns an error. Only main turns errors into
// exit codes: a usage error exits 2, any other error 1.
package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"

	"strings"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/usage"
)

// globals are the flags every subcommand shares.
type globals struct {
	controlPlane string
	logLevel     string
	stdout       io.Writer
	stderr       io.Writer
}

func (g *globals) client() (*controlapi.Client, error) {
	return controlapi.NewClient(controlapi.Address(g.controlPlane))
}

func (g *globals) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

// Run executes the trellis command line args.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "trellis",
		Short:         "Trellis service mesh: control plane and operator tools",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&g.controlPlane, "control-plane", "",
		"control plane API address host:port (default $"+controlapi.EnvAddress+", else "+controlapi.DefaultAddress+")")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usage.Errorf("%w\nsee '%s --help'", err, c.CommandPath())
	})
	root.AddCommand(
		controlCommand(g),
		demoCommand(g),
		applyCommand(g),
		analyzeCommand(g),
		getCommand(g),
		deleteCommand(g),
		proxyStatusCommand(g),
		proxyConfigCommand(g),
		describeCommand(g),
		tlsCheckCommand(g),
		tokenCommand(g),
		caCommand(g),
		installCommand(g),
		injectCommand(g),
		versionCommand(g),
	)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	c, err := root.ExecuteContextC(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return usage.Errorf("%w\nsee '%s --help'", err, c.CommandPath())
	}
	return err
}

// argsBetween accepts lo to hi positional arguments, else a usage error.
func argsBetween(lo, hi int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usage.Errorf("%s: expects %s\nusage: %s", c.CommandPath(), what, c.UseLine())
		}
		return nil
	}
}

// output validates an -o value.
func checkOutput(o string, allowed ...string) error {
	for _, a := range allowed {
		if o == a {
			return nil
		}
	}
	return usage.Errorf("-o %s: must be one of %s", o, strings.Join(allowed, ", "))
}

// jsonEncoder writes the indented JSON of the -o json output.
func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error { return jsonEncoder(w).Encode(v) }
