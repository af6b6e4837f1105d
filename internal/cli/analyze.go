package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/usage"
)

func analyzeCommand(g *globals) *cobra.Command {
	var files []string
	var output, failOn, namespace string
	c := &cobra.Command{
		Use:   "analyze [-f FILE|DIR|- ...]",
		Short: "Find what would break in a configuration: files offline, or the stored one",
		Long: `Analyze resources from files, directories (recursively) or standard input as
a whole: decode errors, invalid fields, listeners that cannot share a port,
routes that shadow another team's, references to nothing, policies that lock
clients out, ports whose protocol nobody declared. Every finding has a stable
code (docs/analyzer.md), a severity, the resource, the field, a message and a
fix hint. With -f it needs no control plane; without -f it asks the control
plane to analyze the stored configuration with the registered workloads.

Exit code 0 when nothing at or above --fail-on is found, 1 when something
is, 2 on a usage error.`,
		Args: argsBetween(0, 0, "no arguments; name files with -f"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			threshold, err := analyze.ParseSeverity(failOn)
			if err != nil {
				return usage.Errorf("--fail-on: %v", err)
			}
			var findings []analyze.Finding
			if len(files) == 0 {
				client, err := g.client()
				if err != nil {
					return err
				}
				if findings, err = client.Findings(c.Context()); err != nil {
					return err
				}
			} else {
				var inputs []resource.File
				for _, f := range files {
					read, err := readInputs(f, c.InOrStdin())
					if err != nil {
						return err
					}
					for _, r := range read {
						inputs = append(inputs, resource.File{Name: r.Name, Data: []byte(r.Content)})
					}
				}
				objs, loaded := resource.Load(inputs, namespace)
				findings = append(loaded, resource.Analyze(objs, nil)...)
				analyze.Sort(findings)
			}
			if output == "json" {
				enc := jsonEncoder(g.stdout)
				out := struct {
					Findings []analyze.Finding `json:"findings"`
				}{Findings: findings}
				if out.Findings == nil {
					out.Findings = []analyze.Finding{}
				}
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printFindings(g, findings)
			}
			failing := 0
			for _, f := range findings {
				if f.Severity.AtLeast(threshold) {
					failing++
				}
			}
			if failing > 0 {
				return fmt.Errorf("analyze: %d finding(s) at or above %s", failing, threshold)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (standard input); repeatable")
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace for resources that name none")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	f.StringVar(&failOn, "fail-on", "error", "exit 1 when a finding is at least this severe: error, warning or info")
	return c
}

// printFindings prints findings for people, with a summary line.
func printFindings(g *globals, findings []analyze.Finding) {
	counts := map[analyze.Severity]int{}
	for _, f := range findings {
		counts[f.Severity]++
		fmt.Fprintln(g.stdout, f.String())
		if f.Hint != "" {
			fmt.Fprintln(g.stdout, "    hint:", f.Hint)
		}
	}
	if len(findings) == 0 {
		fmt.Fprintln(g.stdout, "no findings")
		return
	}
	fmt.Fprintf(g.stdout, "%d error(s), %d warning(s), %d info\n", counts[analyze.Error], counts[analyze.Warning], counts[analyze.Info])
}
