package cli

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/install"
	"trellis.dev/trellis/internal/translate"
	"trellis.dev/trellis/internal/usage"
)

// defaultDataDir is where `trellis control` keeps its store and CA keys
// when --data-dir is not given.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "trellis")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "trellis")
	}
	return "trellis-data"
}

func controlCommand(g *globals) *cobra.Command {
	opts := control.Options{}
	var kubeconfig, leaseNamespace, outboundPolicy string
	var deployGateways bool
	c := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane: config store, registry, xDS server and CA",
		Long: `Run the control plane. It keeps the config in an embedded etcd in --data-dir
(or in an external etcd with --etcd-endpoints), issues SPIFFE certificates to
proxies, and serves them their config over ADS on --xds-address (TLS). The CLI
talks to its API on --debug-address.

The CA generates its root, unless --ca-cert and --ca-key supply one (or an
intermediate with its chain up to a root). Its keys live in --ca-dir, or,
with --ca-encryption-key-file, in the store, sealed with that key.

On Kubernetes (in a pod, or with --kubeconfig) it reads Services, Pods,
EndpointSlices, Namespaces, the Gateway API and trellis.dev resources from
the API server instead, refuses trellis apply, and writes status back from
the replica that holds the Lease in --lease-namespace. Registrations, join
tokens and the CA stay in --data-dir.

For high availability, run several control planes with the same
--etcd-endpoints and the same CA (--ca-encryption-key-file, or one shared
--ca-dir), and give proxies all their addresses.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Logger = g.logger()
			registryOnly, err := translate.ParseOutboundTrafficPolicy(outboundPolicy)
			if err != nil {
				return usage.Errorf("--outbound-traffic-policy: %v", err)
			}
			opts.RegistryOnly = registryOnly
			kube, err := kubeConfig(kubeconfig)
			if err != nil {
				return err
			}
			opts.Kube = kube
			opts.KubeStatus.LeaseNamespace = leaseNamespace
			opts.KubeStatus.Gateways.Disabled = !deployGateways
			if kube != nil {
				// Pods and the API server reach the control plane by its
				// Service's name: the certificate carries it, and
				// injected sidecars are given it.
				svc := install.Name + "." + leaseNamespace + ".svc"
				opts.ServerNames = append(opts.ServerNames, svc, svc+"."+opts.ClusterDomain)
				if opts.Inject.ControlPlane == "" {
					_, port, _ := net.SplitHostPort(opts.XDSAddress)
					opts.Inject.ControlPlane = net.JoinHostPort(svc, port)
				}
				if !c.Flags().Changed("webhook-address") {
					opts.WebhookAddress = control.DefaultWebhookAddress
				}
			}
			return control.Run(c.Context(), opts)
		},
	}
	f := c.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "read config from the Kubernetes API server this kubeconfig reaches (in a pod, the in-cluster config is used without it), and write status back")
	f.StringVar(&leaseNamespace, "lease-namespace", cmp.Or(os.Getenv("POD_NAMESPACE"), "trellis-system"), "on Kubernetes, namespace of the Lease that elects the control plane writing status")
	f.BoolVar(&deployGateways, "deploy-gateways", true, "on Kubernetes, keep a Deployment, Service and ServiceAccount per Gateway of a class with controllerName trellis.dev/gateway (false: run the gateways yourself)")
	f.StringVar(&opts.DataDir, "data-dir", defaultDataDir(), "directory of the embedded store and the CA keys")
	f.StringVar(&opts.CADir, "ca-dir", "", "directory of the CA's root and intermediate (default DATA_DIR/ca); control planes of one mesh share it; with --ca-encryption-key-file, it receives copies of the certificates only")
	f.StringVar(&opts.CACert, "ca-cert", "", "PEM file of the CA to start with: a root, or an intermediate followed by its chain up to the root (root last); default: generate a root")
	f.StringVar(&opts.CAKey, "ca-key", "", "PEM file of the key of --ca-cert's first certificate (ECDSA P-256)")
	f.StringVar(&opts.CAEncryptionKeyFile, "ca-encryption-key-file", "", "keep the CA's keys in the store, sealed (AES-256-GCM) with the 256-bit key in this file (base64, hex or raw); control planes sharing an external etcd then share the CA")
	f.DurationVar(&opts.WorkloadTTL, "workload-cert-ttl", 24*time.Hour, "lifetime of workload certificates; proxies renew them at half life (1m to 168h)")
	f.StringVar(&opts.XDSAddress, "xds-address", control.DefaultXDSAddress, "address of the xDS and CA port (TLS)")
	f.StringSliceVar(&opts.ServerNames, "server-names", nil, "extra DNS names and IPs for the xDS port's certificate, for clients that verify the control plane by the name they dial (proxyless gRPC)")
	f.StringVar(&opts.DebugAddress, "debug-address", control.DefaultDebugAddress, "address of the API, debug and metrics port")
	f.StringVar(&opts.WebhookAddress, "webhook-address", "", "address of the admission webhooks (sidecar injection, validation) over TLS; on Kubernetes "+control.DefaultWebhookAddress+" unless set, elsewhere none")
	f.StringVar(&opts.Inject.Image, "proxy-image", inject.DefaultProxyImage(), "sidecar image the injection webhook adds to pods")
	f.StringVar(&opts.Inject.ControlPlane, "inject-control-plane", "", "control plane address injected sidecars are given (default: this control plane's Service, trellis-control.NAMESPACE.svc, and the xDS port)")
	f.StringVar(&opts.Inject.CaptureMode, "inject-capture-mode", "iptables", "capture rules of injected pods: iptables or nftables")
	f.StringVar(&opts.TrustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain of the mesh")
	f.StringVar(&opts.ClusterDomain, "cluster-domain", "cluster.local", "DNS suffix of service names (name.namespace.svc.<domain>)")
	f.StringSliceVar(&opts.EtcdEndpoints, "etcd-endpoints", nil, "external etcd cluster, comma-separated client URLs; control planes sharing it (and --ca-dir) serve one mesh; empty embeds a single-node etcd")
	f.StringVar(&outboundPolicy, "outbound-traffic-policy", translate.AllowAny, "what capturing sidecars do with connections to destinations the mesh does not know: allow-any (pass them through) or registry-only (refuse them, through BlackHoleCluster); the Namespace label "+translate.OutboundTrafficPolicyLabel+" overrides it")
	f.DurationVar(&opts.RegistrationGrace, "registration-grace", 10*time.Second, "how long a disconnected proxy's workload stays registered, so that it can reconnect without its endpoints flapping")
	return c
}

// kubeConfig is the configuration that reaches the API server: the
// kubeconfig file given, else the in-cluster one in a pod, else none (the
// control plane then keeps config in its store).
func kubeConfig(path string) (*rest.Config, error) {
	switch {
	case path != "":
		c, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return c, nil
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config (KUBERNETES_SERVICE_HOST is set): %w", err)
		}
		return c, nil
	}
	return nil, nil
}
