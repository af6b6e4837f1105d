package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/usage"
)

func describeCommand(g *globals) *cobra.Command {
	var namespace, output string
	c := &cobra.Command{
		Use:   "describe workload NAME",
		Short: "Show which Services, routes and policies apply to a workload, and why",
		Long: `Show what applies to a workload (a Workload resource, a Pod on Kubernetes, or
a proxy's registration), and why: the Services it is a member of, the mTLS
mode each of its ports accepts and the MTLSPolicy that sets it, the
AccessPolicies that judge its requests, the routes that send traffic to its
Services or shape the mesh's calls to them (GAMMA), the BackendPolicies its
Services' callers apply, and the analyzer's findings about all of these.
The control plane decides with the functions it builds the proxies' config
with.`,
		Args: argsBetween(2, 2, "workload and a name"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			if k := strings.ToLower(args[0]); k != "workload" && k != "workloads" {
				return usage.Errorf("describe %q: only workloads are described (trellis describe workload NAME)", args[0])
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			d, err := client.Describe(c.Context(), namespace, args[1])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.stdout, d)
			}
			return printDescription(g, d)
		},
	}
	f := c.Flags()
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace of the workload")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

func printDescription(g *globals, d *controlapi.Description) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	sidecar := "no"
	if d.Sidecar {
		sidecar = "yes"
	}
	fmt.Fprintf(tw, "Workload:\t%s\nAddress:\t%s\nIdentity:\t%s\nSource:\t%s\nSidecar:\t%s\n", d.Workload, d.Address, d.Identity, d.Source, sidecar)
	section := func(title string, list []controlapi.Applied) {
		fmt.Fprintf(tw, "%s:\n", title)
		if len(list) == 0 {
			fmt.Fprintln(tw, "  (none)")
		}
		for _, a := range list {
			fmt.Fprintf(tw, "  %s %s/%s\t%s\n", a.Kind, a.Namespace, a.Name, a.Why)
		}
	}
	section("Services", d.Services)
	fmt.Fprintln(tw, "Ports:")
	if len(d.Ports) == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	for _, p := range d.Ports {
		name := ""
		if p.Name != "" {
			name = " (" + p.Name + ")"
		}
		fmt.Fprintf(tw, "  %d%s\t%s: %s\n", p.Port, name, p.Mode, p.Why)
	}
	section("Access policies", d.AccessPolicies)
	section("Routes", d.Routes)
	section("Backend policies", d.BackendPolicies)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "Findings:")
	if len(d.Findings) == 0 {
		fmt.Fprintln(g.stdout, "  (none)")
	}
	for _, f := range d.Findings {
		fmt.Fprintf(g.stdout, "  %s\n", f.String())
	}
	return nil
}
