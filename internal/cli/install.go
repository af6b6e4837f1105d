package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/usage"
)

func installCommand(g *globals) *cobra.Command {
	var (
		opts   install.Options
		output string
	)
	c := &cobra.Command{
		Use:   "install [--crds-only] [--namespace NAMESPACE] [--image IMAGE] [-o yaml|json]",
		Short: "Print the Kubernetes manifest of Trellis: CRDs, namespace, RBAC, control plane, webhooks",
		Long: `Print the manifest that installs Trellis on a Kubernetes cluster, to apply with

  trellis install | kubectl apply --server-side -f -

It holds the CRDs (the Gateway API standard channel and the trellis.dev kinds),
the namespace (--namespace), the control plane's ServiceAccount and RBAC, its
Service (15012 xDS and CA, 15014 debug and metrics, 15017 webhooks) and
Deployment (--image), and the validating and sidecar-injecting webhook
configurations, whose caBundle the control plane fills in.

--crds-only prints the CRDs alone, for clusters where someone else runs the
control plane, or to install the CRDs before anything that uses them.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			if errs := validation.IsDNS1123Label(opts.Namespace); len(errs) > 0 {
				return usage.Errorf("--namespace %q: %s", opts.Namespace, strings.Join(errs, "; "))
			}
			if strings.TrimSpace(opts.Image) == "" {
				return usage.Errorf("--image must name an image")
			}
			objs, err := install.Objects(opts)
			if err != nil {
				return err
			}
			return install.Write(g.stdout, objs, output)
		},
	}
	f := c.Flags()
	f.BoolVar(&opts.CRDsOnly, "crds-only", false, "print only the CRDs")
	f.StringVarP(&opts.Namespace, "namespace", "n", install.DefaultNamespace, "namespace of the control plane")
	f.StringVar(&opts.Image, "image", install.DefaultImage(), "control plane image")
	f.StringVarP(&output, "output", "o", "yaml", "output format: yaml (documents) or json (a List)")
	return c
}
