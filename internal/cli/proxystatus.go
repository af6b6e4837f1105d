package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/controlapi"
)

// statusColumns are the xDS types in the order proxy-status shows them.
var statusColumns = []string{"CDS", "LDS", "EDS", "RDS", "SDS"}

func proxyStatusCommand(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "proxy-status [PROXY]",
		Short: "Show each proxy's config sync state per xDS type",
		Long: `Show every proxy connected to the control plane (or one) with, per xDS type,
the state of its config: SYNCED (acknowledged the latest), STALE (newer config
not yet acknowledged), NOT SENT (nothing of this type sent yet) or NACKED (the
proxy rejected the latest and serves the version it acknowledged before; the
proxy's message follows the table).`,
		Args: argsBetween(0, 1, "at most one proxy ID"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			all, err := client.Proxies(c.Context())
			if err != nil {
				return err
			}
			list := all
			if len(args) == 1 {
				list = nil
				for _, p := range all {
					if p.ID == args[0] {
						list = append(list, p)
					}
				}
				if len(list) == 0 {
					return fmt.Errorf("proxy %q is not known to the control plane; `trellis proxy-status` lists them", args[0])
				}
			}
			if output == "json" {
				return printJSON(g.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(g.stderr, "no proxies are connected to the control plane")
				return nil
			}
			return printProxyStatus(g, list)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func printProxyStatus(g *globals, list []controlapi.ProxyStatus) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "PROXY\tKIND\tWORKLOAD\tCONNECTED\tXDS\t"+strings.Join(statusColumns, "\t"))
	var notes []string
	for _, p := range list {
		byType := map[string]controlapi.TypeStatus{}
		for _, t := range p.Types {
			byType[t.Type] = t
			if t.State == "NACKED" {
				notes = append(notes, fmt.Sprintf("%s %s NACKED (serving version %s): %s", p.ID, t.Type, orDash(t.Acked), t.Nack))
			}
		}
		connected := "yes"
		if !p.Connected {
			connected = "no"
		}
		mode := "sotw"
		if p.Delta {
			mode = "delta"
		}
		cols := []string{p.ID, orDash(p.Kind), orDash(p.Workload), connected, mode}
		for _, typ := range statusColumns {
			cols = append(cols, orDash(byType[typ].State))
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		for _, problem := range p.Problems {
			notes = append(notes, p.ID+": not in effect: "+problem)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(g.stdout)
		for _, n := range notes {
			fmt.Fprintln(g.stdout, n)
		}
	}
	return nil
}
