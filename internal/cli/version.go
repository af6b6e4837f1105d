package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/version"
)

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(g.stdout, version.String("trellis"))
			return err
		},
	}
}
