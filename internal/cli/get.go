package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func getCommand(g *globals) *cobra.Command {
	var namespace, output string
	var all bool
	c := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List stored resources of a kind, or show one",
		Args:  argsBetween(1, 2, "a kind and optionally a name"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "yaml", "json"); err != nil {
				return err
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			ns := namespace
			if all {
				ns = ""
			} else if ns == "" {
				ns = "default"
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			list, err := client.List(c.Context(), args[0], ns, name)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				objs := make([]json.RawMessage, len(list))
				for i, r := range list {
					objs[i] = r.Object
				}
				enc := jsonEncoder(g.stdout)
				if name != "" && len(objs) == 1 {
					return enc.Encode(objs[0])
				}
				return enc.Encode(objs)
			case "yaml":
				for i, r := range list {
					b, err := yaml.JSONToYAML(r.Object)
					if err != nil {
						return err
					}
					if i > 0 {
						fmt.Fprintln(g.stdout, "---")
					}
					g.stdout.Write(b)
				}
				return nil
			}
			if len(list) == 0 {
				where := "namespace " + ns
				if ns == "" {
					where = "any namespace"
				}
				fmt.Fprintf(g.stderr, "no %s in %s\n", args[0], where)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			if list[0].Kind == "Gateway" {
				return writeGateways(tw, list)
			}
			fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tAGE")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Kind, orDash(r.Namespace), r.Name, age(r.Object))
			}
			return tw.Flush()
		},
	}
	f := c.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "namespace (default \"default\")")
	f.BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	f.StringVarP(&output, "output", "o", "table", "output format: table, yaml or json")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age formats the time since metadata.creationTimestamp.
func age(obj json.RawMessage) string {
	var m struct {
		Metadata struct {
			CreationTimestamp time.Time `json:"creationTimestamp"`
		} `json:"metadata"`
	}
	if json.Unmarshal(obj, &m) != nil || m.Metadata.CreationTimestamp.IsZero() {
		return "-"
	}
	d := time.Since(m.Metadata.CreationTimestamp).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
