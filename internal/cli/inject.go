package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/usage"
)

func injectCommand(g *globals) *cobra.Command {
	var (
		files []string
		opts  inject.Options
	)
	c := &cobra.Command{
		Use:   "inject -f FILE [-f FILE...] [--image IMAGE] [--control-plane HOST:PORT] [--capture-mode iptables|nftables]",
		Short: "Add the sidecar to the pods of Kubernetes manifests, as the injection webhook does",
		Long: `Print the manifests with the Trellis sidecar added to every pod: Pods and the
pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and
CronJobs; other documents are printed unchanged. The change is the one the
injection webhook makes, for clusters that cannot run webhooks:

  trellis inject -f deploy.yaml | kubectl apply -f -

Pods labelled trellis.dev/inject=disabled, pods on the host's network and
pods already injected are left as they are. What was done with each document
is reported on standard error.`,
		Args: argsBetween(0, 0, "no arguments; name files with -f"),
		RunE: func(c *cobra.Command, args []string) error {
			if len(files) == 0 {
				return usage.Errorf("name a manifest with -f FILE (- for standard input)")
			}
			for _, name := range files {
				inputs, err := readInputs(name, c.InOrStdin())
				if err != nil {
					return err
				}
				for _, in := range inputs {
					out, results, err := inject.File(in.Name, []byte(in.Content), opts)
					if err != nil {
						return err
					}
					for _, r := range results {
						switch {
						case r.Injected:
							fmt.Fprintf(g.stderr, "%s: injected %s\n", in.Name, r.Object)
						case r.Skipped != "":
							fmt.Fprintf(g.stderr, "%s: left %s as it is: %s\n", in.Name, r.Object, r.Skipped)
						}
					}
					if _, err := g.stdout.Write(out); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - (standard input); repeatable")
	f.StringVar(&opts.Image, "image", inject.DefaultProxyImage(), "image of the sidecar and its init container")
	f.StringVar(&opts.ControlPlane, "control-plane", inject.DefaultControlPlane, "the control plane's xDS and CA address, HOST:PORT")
	f.StringVar(&opts.CaptureMode, "capture-mode", "iptables", "capture rules: iptables or nftables")
	return c
}
