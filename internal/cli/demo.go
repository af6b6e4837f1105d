package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/usage"

	"trellis.dev/trellis/internal/demo"
	"trellis.dev/trellis/internal/demo/app"
)

func demoCommand(g *globals) *cobra.Command {
	var ip string
	var port int
	var dataDir string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a demo mesh on this machine: control plane, ingress gateway, three services with sidecars",
		Long: `Run a complete mesh on loopback addresses as separate processes: the control
plane with an embedded store, an ingress gateway, and a demo application of
three services (web calls catalog calls reviews, which runs in two versions),
each behind its own trellis-proxy sidecar with mTLS between every pair.

It prints the ingress URL on a line of its own ("ingress: http://..."), runs
until interrupted, then stops every process and removes its data.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			addr, err := netip.ParseAddr(ip)
			if err != nil {
				return usage.Errorf("--ip %q: %v", ip, err)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			proxy, err := findProxy(self)
			if err != nil {
				return err
			}
			return demo.Run(c.Context(), demo.Options{
				Trellis: self, Proxy: proxy, IP: addr, IngressPort: port, DataDir: dataDir,
				Stdout: g.stdout, Log: g.logger(),
			})
		},
	}
	f := c.Flags()
	f.StringVar(&ip, "ip", "127.0.0.1", "loopback IPv4 address of the control plane and ingress; workloads use the next addresses from +10")
	f.IntVar(&port, "ingress-port", demo.DefaultIngressPort, "port of the ingress gateway")
	f.StringVar(&dataDir, "data-dir", "", "keep the control plane's data and the logs here (default: a temporary directory, removed at exit)")
	c.AddCommand(demoAppCommand(g))
	return c
}

// findProxy locates trellis-proxy beside the trellis executable, else on
// PATH.
func findProxy(self string) (string, error) {
	beside := filepath.Join(filepath.Dir(self), "trellis-proxy")
	if info, err := os.Stat(beside); err == nil && !info.IsDir() {
		return beside, nil
	}
	if p, err := exec.LookPath("trellis-proxy"); err == nil {
		return p, nil
	}
	return "", errors.New("demo: trellis-proxy was found neither beside " + self + " nor on PATH; build it with `make build`")
}

// demoAppCommand runs one instance of the demo application; `trellis demo`
// starts it, users need not.
func demoAppCommand(g *globals) *cobra.Command {
	var opts app.Options
	c := &cobra.Command{
		Use:    "app",
		Short:  "Run one instance of the demo application (started by trellis demo)",
		Hidden: true,
		Args:   argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Logger = g.logger()
			if err := app.Run(c.Context(), opts); err != nil {
				return fmt.Errorf("demo app: %w", err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Service, "service", "", "service name")
	f.StringVar(&opts.Version, "version", "v1", "version")
	f.StringVar(&opts.Namespace, "namespace", "demo", "namespace")
	f.StringVar(&opts.Workload, "workload", "", "workload name")
	f.StringVar(&opts.Listen, "listen", "", "host:port to serve on")
	f.StringVar(&opts.Next, "next", "", "base URL of the next hop (its sidecar's outbound listener)")
	return c
}
