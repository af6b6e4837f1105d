// Package proxycli implements the trellis-proxy command: flags into a
// proxy.Options, then run. It is linked only into the data-plane binary.
package proxycli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
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
	// workloadAPISocket is --workload-api-socket; workloadAPISocketSet
	// tells whether it was given, as opposed to defaulted.
	workloadAPISocket             string
	workloadAPISocketSet          bool
	meshPortSet                   bool // --mesh-port was given: a gateway then serves it
	token, tokenFile, identityDir string
	certsDir                      string
	accessLog, statsAddress       string
	readinessAddress, appMetrics  string
	capture                       bool
	socketMark                    uint32
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

Its first certificate needs a join token for its identity (--token-file,
from 'trellis token create'); it renews the certificate with the certificate
itself. With --identity-dir, a restarted proxy goes on with the certificate
it has while that is valid.

A sidecar accepts mesh mTLS on --mesh-port and forwards to the app on
--app-address; the app calls the services named by --upstream through
plaintext listeners on --outbound-address, which the sidecar carries over
mTLS.

A sidecar serves the SPIFFE Workload API on --workload-api-socket, so that
SPIFFE-aware applications (go-spiffe, java-spiffe, ...; point them at it with
SPIFFE_ENDPOINT_SOCKET=unix://PATH) fetch the workload's X.509-SVID and trust
bundle. By default it is served at ` + DefaultWorkloadAPISocket + ` when
that directory exists: share it with the application (a volume mounted in
both containers, or a directory whose permissions admit the application's
user). Whoever can connect to the socket gets the workload's identity.`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(c *cobra.Command, args []string) error {
			if f.showVersion {
				_, err := fmt.Fprintln(stdout, version.String("trellis-proxy"))
				return err
			}
			f.workloadAPISocketSet = c.Flags().Changed("workload-api-socket")
			f.meshPortSet = c.Flags().Changed("mesh-port")
			opts, err := f.options(stderr)
			if err != nil {
				return err
			}
			switch f.accessLog {
			case "off":
			case "-":
				opts.AccessLog = stdout
			default:
				file, err := os.OpenFile(f.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				if err != nil {
					return fmt.Errorf("--access-log: %w", err)
				}
				defer file.Close()
				opts.AccessLog = file
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
	fl.Uint32Var(&f.meta.MeshPort, "mesh-port", 15008, "inbound mesh mTLS port; a gateway has one only when given (an egress gateway: mesh clients reach its HTTP and TCP ports over mTLS there, and AccessPolicies see their identity)")
	fl.StringSliceVar(&f.meta.Services, "service", nil, "service (without selector) this workload is a member of; repeatable")
	fl.StringArrayVar(&f.labels, "label", nil, "workload label KEY=VALUE; repeatable")
	fl.StringArrayVar(&f.ports, "port", nil, "application port [NAME:]PORT[/PROTOCOL] (PROTOCOL: HTTP, HTTP2, GRPC, TCP); repeatable")
	fl.StringArrayVar(&f.upstreams, "upstream", nil, "outbound listener SERVICE[.NAMESPACE]:PORT=LOCALPORT; repeatable")
	fl.StringVar(&f.meta.Locality, "locality", "", "region/zone/subzone")
	fl.StringVar(&f.meta.Network, "network", "", "network the workload's address belongs to: workloads of other networks reach it through its network's east-west gateway (default: the default network, or its namespace's trellis.dev/network label)")
	fl.BoolVar(&f.capture, "capture", false, "serve the transparent capture listeners (outbound 15001, inbound 15006) that the rules of 'trellis-proxy init' redirect the workload's traffic to")
	fl.Uint32Var(&f.meta.OutboundCapturePort, "outbound-capture-port", 15001, "outbound capture port, with --capture")
	fl.Uint32Var(&f.meta.InboundCapturePort, "inbound-capture-port", 15006, "inbound capture port, with --capture")
	fl.Uint32Var(&f.socketMark, "socket-mark", 0, "mark (SO_MARK) the proxy's upstream connections, for capture rules installed with 'init --proxy-mark'")
	fl.StringVar(&f.xdsProtocol, "xds-protocol", "delta", "xDS protocol: delta (incremental: only what changed is sent) or sotw (state of the world)")
	fl.StringVar(&f.workloadAPISocket, "workload-api-socket", DefaultWorkloadAPISocket, "UNIX socket the SPIFFE Workload API is served on; empty disables it. Without the flag a sidecar serves it at the default path if that directory exists")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the join token for this identity (from 'trellis token create'), sent on first contact only; read again on each attempt until a certificate is issued")
	fl.StringVar(&f.token, "token", "", "the join token itself (prefer --token-file: a command line is visible to other users)")
	fl.StringVar(&f.certsDir, "certs-dir", "", "with --gateway: directory of the listeners' certificates, DIR/NAMESPACE/NAME/tls.crt and tls.key for Secret NAMESPACE/NAME (a mounted TLS Secret's layout), reloaded when they change")
	fl.StringVar(&f.identityDir, "identity-dir", "", "directory to keep the key (0600) and certificate chain in, so that a restart goes on with a still-valid certificate instead of needing a new token")
	fl.StringVar(&f.accessLog, "access-log", "-", "access log: one JSON line per request and TCP connection, to PATH (appended), - (standard output) or off")
	fl.StringVar(&f.statsAddress, "stats-address", "", "metrics (/stats/prometheus) and kubelet probe forwarding (/app-health/PORT/PATH) address (default --address with port 15020); off disables it")
	fl.StringVar(&f.readinessAddress, "readiness-address", "", "readiness (/healthz/ready) address (default --address with port 15021); off disables it")
	fl.StringVar(&f.appMetrics, "app-metrics", "", "the app's own Prometheus metrics, served after the proxy's on the stats port: [PORT]/PATH on --app-address, or a URL")
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
	if f.token != "" && f.tokenFile != "" {
		return proxy.Options{}, usage.Errorf("--token and --token-file: give one of them")
	}
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
		if !f.meshPortSet {
			m.MeshPort = 0
		}
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
	socket, err := f.workloadAPIPath(m.Kind, DefaultWorkloadAPISocket, log)
	if err != nil {
		return proxy.Options{}, err
	}
	local := func(flag, v string, port int) (string, error) {
		switch v {
		case "off":
			return "", nil
		case "":
			return net.JoinHostPort(m.Address, strconv.Itoa(port)), nil
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return "", usage.Errorf("--%s %q: want HOST:PORT or off", flag, v)
		}
		return v, nil
	}
	statsAddr, err := local("stats-address", f.statsAddress, 15020)
	if err != nil {
		return proxy.Options{}, err
	}
	readyAddr, err := local("readiness-address", f.readinessAddress, 15021)
	if err != nil {
		return proxy.Options{}, err
	}
	appMetrics, err := appMetricsURL(f.appMetrics, m.AppAddress)
	if err != nil {
		return proxy.Options{}, err
	}
	if f.accessLog == "" {
		return proxy.Options{}, usage.Errorf("--access-log: want PATH, - or off")
	}
	return proxy.Options{
		StateOfTheWorld:   f.xdsProtocol == "sotw",
		ControlPlane:      f.controlPlane,
		TrustBundle:       bundle,
		TrustDomain:       f.trustDomain,
		NodeID:            id,
		Registration:      m,
		AdminAddress:      f.adminAddress,
		Logger:            log,
		WorkloadAPISocket: socket,
		Token:             strings.TrimSpace(f.token),
		TokenFile:         f.tokenFile,
		IdentityDir:       f.identityDir,
		GatewayCertsDir:   f.certsDir,
		StatsAddress:      statsAddr,
		ReadinessAddress:  readyAddr,
		AppMetricsURL:     appMetrics,
		SocketMark:        f.socketMark,
	}, nil
}

// DefaultWorkloadAPISocket is where a sidecar serves the SPIFFE Workload
// API unless told otherwise, if the directory exists.
const DefaultWorkloadAPISocket = "/var/run/trellis/workload-api/socket"

// workloadAPIPath decides where the Workload API is served. A path given
// with --workload-api-socket is used as it is, and its directory must
// exist (its permissions decide who gets the identity, so the proxy does
// not create it); an empty one disables the API. Without the flag a
// sidecar serves it at def if def's directory exists, and a gateway does
// not serve it.
func (f *flags) workloadAPIPath(kind, def string, log *slog.Logger) (string, error) {
	if f.workloadAPISocketSet {
		path := f.workloadAPISocket
		if path == "" {
			return "", nil
		}
		if !filepath.IsAbs(path) {
			return "", usage.Errorf("--workload-api-socket %q: want an absolute path", path)
		}
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return "", fmt.Errorf("--workload-api-socket: %w; create the directory, shared with the application, or pass --workload-api-socket= to serve no Workload API", err)
		}
		return path, nil
	}
	if kind != nodemeta.KindSidecar {
		return "", nil
	}
	if _, err := os.Stat(filepath.Dir(def)); err != nil {
		log.Info("not serving the SPIFFE Workload API: its directory does not exist; share it with the application to serve the API there, or set --workload-api-socket", "dir", filepath.Dir(def))
		return "", nil
	}
	return def, nil
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

// appMetricsURL reads --app-metrics: [PORT]/PATH on the app's address, or
// an http URL.
func appMetricsURL(v, appAddress string) (string, error) {
	if v == "" {
		return "", nil
	}
	if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return "", usage.Errorf("--app-metrics %q: not a URL", v)
		}
		return v, nil
	}
	port, path, ok := strings.Cut(v, "/")
	n, err := strconv.ParseUint(port, 10, 16)
	if !ok || err != nil || n == 0 {
		return "", usage.Errorf("--app-metrics %q: want PORT/PATH (e.g. 9090/metrics) or a URL", v)
	}
	if appAddress == "" {
		appAddress = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(appAddress, port) + "/" + path, nil
}
