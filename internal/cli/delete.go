package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func deleteCommand(g *globals) *cobra.Command {
	var namespace string
	var force bool
	c := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a stored resource",
		Args:  argsBetween(2, 2, "a kind and a name"),
		RunE: func(c *cobra.Command, args []string) error {
			client, err := g.client()
			if err != nil {
				return err
			}
			ns := namespace
			if ns == "" {
				ns = "default"
			}
			resp, err := client.Delete(c.Context(), args[0], ns, args[1], force)
			if err != nil {
				return err
			}
			for _, w := range resp.Warnings {
				fmt.Fprintln(g.stderr, w)
			}
			_, err = fmt.Fprintln(g.stdout, resp.Ref, "deleted")
			return err
		},
	}
	c.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	c.Flags().BoolVar(&force, "force", false, "delete even if the deletion breaks other resources (their errors are printed)")
	return c
}
