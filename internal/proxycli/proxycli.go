// Package proxycli implements the trellis-proxy command: flags into a
// proxy.Options, then run. It is linked only into the data-plane binary.
package proxycli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"trellis.dev/trellis/internal/capture"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/usage"
	"trellis.dev/trellis/internal/version"
)

type flags struct {
	controlPlane, caBundle, trustDomain string
	nodeID, adminAddress, logLevel      string
	gateway                             string
	meta                                nodemeta.Metadata
	labels, ports, upstreams            []string
	showVersion                         bool
	xdsProtocol                         string
	capture                             bool
	socketMark                          uint32
}

// Run executes the trellis-proxy command line args.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f flags
	c := &cobra.Command{
		Use:   "trellis-proxy",
		Short: "The Trellis data plane: a sidecar, or a gateway with --gateway",
		Long: `trellis-proxy fronts one workload as its sidecar, or serves one Gateway
resource with --gateway NAMESPACE/NAME. It registers with the control plane,
obtains its SPIFFE certificate, and follows its config over ADS.

A sidecar accepts mesh mTLS on --mesh-port and forwards to the app on
--app-address; the app calls the services named by --upstream through
plaintext listeners on --outbound-address, which the sidecar carries over
mTLS.`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(c *cobra.Command, args []string) error {
			if f.showVersion {
				_, err := fmt.Fprintln(stdout, version.String("trellis-proxy"))
				return err
			}
			opts, err := f.options(stderr)
			if err != nil {
				return err
			}
			p, err := proxy.New(opts)
			if err != nil {
				return err
			}
			return p.Run(c.Context())
		},
	}
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usage.Errorf("%w\nsee 'trellis-proxy --help'", err)
	})
	c.AddCommand(initCommand(stdout, capture.ExecRunner))
	fl := c.Flags()
	fl.StringVar(&f.controlPlane, "control-plane", "127.0.0.1:15012", "control plane xDS and CA address HOST:PORT; several, comma-separated, are tried in order and the proxy moves to the next when one goes away")
	fl.StringVar(&f.caBundle, "ca-bundle", "", "PEM file with the mesh's root certificate(s), to verify the control plane")
	fl.StringVar(&f.trustDomain, "trust-domain", identity.DefaultTrustDomain, "SPIFFE trust domain")
	fl.StringVar(&f.nodeID, "id", "", "proxy ID, unique per instance (default NAME.NAMESPACE)")
	fl.StringVar(&f.adminAddress, "admin-address", "127.0.0.1:15000", "admin endpoint address (config dump, readiness); empty disables it")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&f.gateway, "gateway", "", "serve the Gateway NAMESPACE/NAME instead of acting as a sidecar")
	fl.StringVar(&f.meta.Name, "name", "", "workload name (default: the hostname; for a gateway its name)")
	fl.StringVar(&f.meta.Namespace, "namespace", "default", "namespace of the workload")
	fl.StringVar(&f.meta.ServiceAccount, "service-account", "default", "service account: the identity's last segment")
	fl.StringVar(&f.meta.Address, "address", "127.0.0.1", "IP address other workloads reach this one on")
	fl.StringVar(&f.meta.AppAddress, "app-address", "127.0.0.1", "address of the application's ports")
	fl.StringVar(&f.meta.OutboundAddress, "outbound-address", "127.0.0.1", "address of the outbound listeners")
	fl.Uint32Var(&f.meta.MeshPort, "mesh-port", 15008, "inbound mesh mTLS port")
	fl.StringSliceVar(&f.meta.Services, "service", nil, "service (without selector) this workload is a member of; repeatable")
	fl.StringArrayVar(&f.labels, "label", nil, "workload label KEY=VALUE; repeatable")
	fl.StringArrayVar(&f.ports, "port", nil, "application port [NAME:]PORT[/PROTOCOL] (PROTOCOL: HTTP, HTTP2, GRPC, TCP); repeatable")
	fl.StringArrayVar(&f.upstreams, "upstream", nil, "outbound listener SERVICE[.NAMESPACE]:PORT=LOCALPORT; repeatable")
	fl.StringVar(&f.meta.Locality, "locality", "", "region/zone/subzone")
	fl.BoolVar(&f.capture, "capture", false, "serve the transparent capture listeners (outbound 15001, inbound 15006) that the rules of 'trellis-proxy init' redirect the workload's traffic to")
	fl.Uint32Var(&f.meta.OutboundCapturePort, "outbound-capture-port", 15001, "outbound capture port, with --capture")
	fl.Uint32Var(&f.meta.InboundCapturePort, "inbound-capture-port", 15006, "inbound capture port, with --capture")
	fl.Uint32Var(&f.socketMark, "socket-mark", 0, "mark (SO_MARK) the proxy's upstream connections, for capture rules installed with 'init --proxy-mark'")
	fl.StringVar(&f.xdsProtocol, "xds-protocol", "delta", "xDS protocol: delta (incremental: only what changed is sent) or sotw (state of the world)")
	fl.BoolVar(&f.showVersion, "version", false, "print the version and exit")
	c.SetArgs(args)
	c.SetOut(stdout)
	c.SetErr(stderr)
	return c.ExecuteContext(ctx)
}

func (f *flags) options(stderr io.Writer) (proxy.Options, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return proxy.Options{}, usage.Errorf("--log-level %q: %v", f.logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	m := f.meta
	m.Kind = nodemeta.KindSidecar
	m.Version = version.Version
	if !f.capture {
		m.OutboundCapturePort, m.InboundCapturePort = 0, 0
	}
	if f.gateway != "" {
		ns, name, ok := strings.Cut(f.gateway, "/")
		if !ok || ns == "" || name == "" {
			return proxy.Options{}, usage.Errorf("--gateway %q: want NAMESPACE/NAME", f.gateway)
		}
		m.Kind = nodemeta.KindGateway
		m.Gateway = f.gateway
		if m.Name == "" {
			m.Name = name
		}
		m.MeshPort = 0
		m.OutboundCapturePort, m.InboundCapturePort = 0, 0
	}
	if m.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return proxy.Options{}, usage.Errorf("--name is required: %v", err)
		}
		m.Name = h
	}
	for _, l := range f.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return proxy.Options{}, usage.Errorf("--label %q: want KEY=VALUE", l)
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[k] = v
	}
	for _, s := range f.ports {
		p, err := parsePort(s)
		if err != nil {
			return proxy.Options{}, usage.Errorf("--port %q: %v", s, err)
		}
		m.Ports = append(m.Ports, p)
	}
	for _, s := range f.upstreams {
		u, err := parseUpstream(s)
		if err != nil {
			return proxy.Options{}, usage.Errorf("--upstream %q: %v", s, err)
		}
		m.Upstreams = append(m.Upstreams, u)
	}
	if err := m.Validate(); err != nil {
		return proxy.Options{}, usage.Wrap(err)
	}
	if _, err := proxy.ParseControlPlanes(f.controlPlane); err != nil {
		return proxy.Options{}, usage.Errorf("--control-plane: %v", err)
	}
	if f.caBundle == "" {
		return proxy.Options{}, usage.Errorf("--ca-bundle is required: the PEM root certificate(s) of the mesh (the control plane writes ca/root-cert.pem in its data directory)")
	}
	pemBytes, err := os.ReadFile(f.caBundle)
	if err != nil {
		return proxy.Options{}, fmt.Errorf("--ca-bundle: %w", err)
	}
	bundle, err := secrets.ParseBundle(pemBytes)
	if err != nil {
		return proxy.Options{}, fmt.Errorf("--ca-bundle %s: %w", f.caBundle, err)
	}
	id := f.nodeID
	if id == "" {
		id = m.Name + "." + m.Namespace
	}
	if f.xdsProtocol != "delta" && f.xdsProtocol != "sotw" {
		return proxy.Options{}, usage.Errorf("--xds-protocol %q: want delta or sotw", f.xdsProtocol)
	}
	return proxy.Options{
		StateOfTheWorld: f.xdsProtocol == "sotw",
		SocketMark:      f.socketMark,
		ControlPlane:    f.controlPlane,
		TrustBundle:     bundle,
		TrustDomain:     f.trustDomain,
		NodeID:          id,
		Registration:    m,
		AdminAddress:    f.adminAddress,
		Logger:          log,
	}, nil
}

// parsePort reads [NAME:]PORT[/PROTOCOL].
func parsePort(s string) (nodemeta.Port, error) {
	var p nodemeta.Port
	rest := s
	if name, after, ok := strings.Cut(rest, ":"); ok {
		p.Name, rest = name, after
	}
	num, proto, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return p, errors.New("the port must be a number from 1 to 65535")
	}
	p.Port = uint32(n)
	p.Protocol = strings.ToUpper(proto)
	switch p.Protocol {
	case "", "HTTP", "HTTP2", "GRPC", "TCP", "TLS":
	default:
		return p, fmt.Errorf("protocol %q is not one of HTTP, HTTP2, GRPC, TCP, TLS", proto)
	}
	if p.Protocol == "" {
		p.Protocol = "TCP"
		if strings.HasPrefix(p.Name, "http") {
			p.Protocol = "HTTP"
		}
	}
	return p, nil
}

// parseUpstream reads SERVICE[.NAMESPACE]:PORT=LOCALPORT.
func parseUpstream(s string) (nodemeta.Upstream, error) {
	var u nodemeta.Upstream
	target, local, ok := strings.Cut(s, "=")
	if !ok {
		return u, errors.New("want SERVICE[.NAMESPACE]:PORT=LOCALPORT")
	}
	svc, port, ok := strings.Cut(target, ":")
	if !ok {
		return u, errors.New("want SERVICE[.NAMESPACE]:PORT=LOCALPORT")
	}
	u.Service, u.Namespace, _ = strings.Cut(svc, ".")
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return u, errors.New("the service port must be a number from 1 to 65535")
	}
	l, err := strconv.ParseUint(local, 10, 16)
	if err != nil || l == 0 {
		return u, errors.New("the local port must be a number from 1 to 65535")
	}
	u.Port, u.LocalPort = uint32(p), uint32(l)
	return u, nil
}
