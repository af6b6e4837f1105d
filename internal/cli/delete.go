package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func deleteCommand(g *globals) *cobra.Command {
	var namespace string
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
			ref, err := client.Delete(c.Context(), args[0], ns, args[1])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(g.stdout, ref, "deleted")
			return err
		},
	}
	c.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	return c
}
