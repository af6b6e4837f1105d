package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/model"
	"trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/tlscheck"
	"trellis.dev/trellis/internal/usage"
)

func tlsCheckCommand(g *globals) *cobra.Command {
	var files []string
	var namespace, output string
	c := &cobra.Command{
		Use:   "tls-check [SERVICE] [-f FILE|DIR|- ...] [-n NAMESPACE] [-o table|json]",
		Short: "For each Service port: the mTLS mode its members enforce, the mode clients use, OK or CONFLICT",
		Long: `For each port of each Service (or of SERVICE, as NAME in the namespace of -n,
default "default", or as NAMESPACE/NAME), show the mTLS mode its members
enforce (SERVER), how client sidecars reach them under the port's
BackendPolicy tls.mode (CLIENT), and whether they agree (STATUS), with the
reason. Without SERVICE every namespace is checked, or only that of -n.

It reads the model the translator builds config from, so it says what the
data plane does: a sidecar accepts only mesh mTLS, so an MTLSPolicy's
PERMISSIVE or DISABLE is not in effect behind it ("STRICT (policy:
PERMISSIVE)"); a workload without a sidecar accepts only plaintext, so
STRICT cannot be enforced there (CONFLICT); members a BackendPolicy's
tls.mode leaves out of the clients' clusters are a CONFLICT.

Without -f it asks the control plane about the stored configuration with the
registered workloads; with -f it reads files (directories recursively, - for
standard input) and needs no control plane.

Exit code 0 when every port is OK, 1 when any is in CONFLICT (or on a
failure), 2 on a usage error.`,
		Args: argsBetween(0, 1, "at most one Service, as NAME or NAMESPACE/NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			ns, name, err := serviceArg(args, namespace, c.Flags().Changed("namespace"))
			if err != nil {
				return err
			}
			var ports []tlscheck.Port
			if len(files) == 0 {
				client, err := g.client()
				if err != nil {
					return err
				}
				if ports, err = client.TLSCheck(c.Context(), ns, name); err != nil {
					return err
				}
			} else {
				cfg, err := loadModel(g, c, files, namespace)
				if err != nil {
					return err
				}
				if ports, err = tlscheck.Check(cfg, model.NewIndex(cfg), ns, name); err != nil {
					return err
				}
			}
			if output == "json" {
				enc := jsonEncoder(g.stdout)
				if err := enc.Encode(struct {
					Ports []tlscheck.Port `json:"ports"`
				}{ports}); err != nil {
					return err
				}
			} else {
				printTLSCheck(g, ports)
			}
			if n := tlscheck.Conflicts(ports); n > 0 {
				return fmt.Errorf("tls-check: %d port(s) in CONFLICT", n)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (standard input); repeatable")
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace of SERVICE (and of resources in -f files that name none); without SERVICE, check only this namespace")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return c
}

// serviceArg turns the optional SERVICE argument and -n into the namespace
// and name to check: "" for all.
func serviceArg(args []string, namespace string, nsSet bool) (ns, name string, err error) {
	if len(args) == 0 {
		if nsSet {
			return namespace, "", nil
		}
		return "", "", nil
	}
	arg := args[0]
	if before, after, ok := strings.Cut(arg, "/"); ok {
		switch {
		case before == "" || after == "" || strings.Contains(after, "/"):
			return "", "", usage.Errorf("tls-check: SERVICE %q: want NAME or NAMESPACE/NAME", arg)
		case nsSet && before != namespace:
			return "", "", usage.Errorf("tls-check: SERVICE %q is in namespace %s, but -n says %s", arg, before, namespace)
		}
		return before, after, nil
	}
	return namespace, arg, nil
}

// loadModel reads the resources of files into the model, as `trellis
// analyze -f` does; errors in them stop it.
func loadModel(g *globals, c *cobra.Command, files []string, namespace string) (*model.Config, error) {
	var inputs []resource.File
	for _, f := range files {
		read, err := readInputs(f, c.InOrStdin())
		if err != nil {
			return nil, err
		}
		for _, r := range read {
			inputs = append(inputs, resource.File{Name: r.Name, Data: []byte(r.Content)})
		}
	}
	objs, findings := resource.Load(inputs, namespace)
	errs := 0
	for _, f := range findings {
		if f.Severity == analyze.Error {
			fmt.Fprintln(g.stderr, f.String())
			errs++
		}
	}
	if errs > 0 {
		return nil, fmt.Errorf("tls-check: %d error(s) in the files; `trellis analyze -f` explains them", errs)
	}
	cfg, err := resource.Model(objs)
	if err != nil {
		return nil, fmt.Errorf("tls-check: %w", err)
	}
	return cfg, nil
}

func printTLSCheck(g *globals, ports []tlscheck.Port) {
	if len(ports) == 0 {
		fmt.Fprintln(g.stderr, "no Service ports to check")
		return
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPORT\tSERVER mTLS\tCLIENT mTLS\tSTATUS\tREASON")
	for _, p := range ports {
		port := strconv.FormatUint(uint64(p.Port), 10)
		if p.Name != "" {
			port += "/" + p.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Service, port, p.Server, p.Client, p.Status, orDash(strings.Join(p.Reasons, "; ")))
	}
	tw.Flush()
}
