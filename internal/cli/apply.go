package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/usage"

	"trellis.dev/trellis/internal/controlapi"
)

func applyCommand(g *globals) *cobra.Command {
	var files []string
	var namespace, output string
	var dryRun bool
	c := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Validate resources and store them, all or nothing",
		Long: `Apply resources from YAML or JSON files, directories (recursively: *.yaml,
*.yml, *.json) or standard input (-). Every resource is validated first; if
any is invalid, the errors name the file, line, resource and field, and
nothing is stored.`,
		Args: argsBetween(0, 0, "no arguments; name files with -f"),
		RunE: func(c *cobra.Command, args []string) error {
			if len(files) == 0 {
				return usage.Errorf("apply: no input; name files with -f FILE, a directory, or - for standard input")
			}
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			req := controlapi.ApplyRequest{Namespace: namespace, DryRun: dryRun}
			for _, f := range files {
				read, err := readInputs(f, c.InOrStdin())
				if err != nil {
					return err
				}
				req.Files = append(req.Files, read...)
			}
			client, err := g.client()
			if err != nil {
				return err
			}
			resp, err := client.Apply(c.Context(), req)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.stdout, resp)
			}
			suffix := ""
			if dryRun {
				suffix = " (dry run)"
			}
			for _, r := range resp.Results {
				fmt.Fprintf(g.stdout, "%s %s%s\n", r.Ref, r.Action, suffix)
			}
			for _, w := range resp.Warnings {
				fmt.Fprintln(g.stderr, w)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (standard input); repeatable")
	f.StringVarP(&namespace, "namespace", "n", "", "namespace for resources that name none (default \"default\")")
	f.BoolVar(&dryRun, "dry-run", false, "validate only; store nothing")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

// readInputs reads a file, every YAML/JSON file below a directory, or
// standard input.
func readInputs(name string, stdin io.Reader) ([]controlapi.File, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return []controlapi.File{{Name: "<stdin>", Content: string(b)}}, nil
	}
	info, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		return []controlapi.File{{Name: name, Content: string(b)}}, nil
	}
	var out []controlapi.File
	err = filepath.WalkDir(name, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(path))) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out = append(out, controlapi.File{Name: path, Content: string(b)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New(name + ": no .yaml, .yml or .json files in this directory")
	}
	return out, nil
}
