// Package control is the Trellis control plane, `trellis control`: the
// config store, the workload registry, translation and the ADS server, the
// certificate authority, and the HTTP API the CLI uses.
//
//	trellis apply ──HTTP :15014──► api ──► store (etcd) ──watch──┐
//	trellis token ──HTTP :15014──► api ──► tokens/ (jointoken)  │
//	                                          ▲ spend           ▼
//	proxy ──CSR + token──► ca (gRPC :15012) ──┘          mesh state ──debounce──► translate ──► xds
//	proxy ══ADS (mTLS :15012)══► xds ──Connected──► registry ──lease──► store     │
//	      ◄═════════════════════════════════════════════════════════ snapshots ◄─┘
//
// Proxies register by connecting: the metadata of their xDS node describes
// their workload, checked against the SPIFFE identity of the client
// certificate they present. Registrations are stored under an etcd lease
// kept alive while the proxy's stream is up, so a control plane restart
// does not forget running workloads.
//
// Certificates: a proxy's first request carries a join token for its
// identity (`trellis token create`), spent in the store as the request is
// approved; renewals authenticate with the proxy's current certificate
// (ca.PeerOrToken).
//
// On Kubernetes (Options.Kube) the config comes from the API server
// instead of the store (package kubesource, kube.go): its informers feed
// the same mesh state the store's watch does, trellis apply is refused,
// and the control plane that leads writes status back.
//
// Several control planes serve one mesh when they share an external etcd
// cluster and a CA (sealed in the store, or in one directory): each
// watches the whole store and serves the proxies connected to it, and
// they follow the CA and its root rotations together (ca.go). While etcd
// is unavailable a control plane keeps serving the config it holds, and
// /ready says why it is not ready.
package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/inject"
	"trellis.dev/trellis/internal/kubesource"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/webhook"
	"trellis.dev/trellis/internal/xds"
)

// Default addresses.
const (
	DefaultXDSAddress = ":15012"
	// DefaultWebhookAddress serves the admission webhooks on Kubernetes.
	DefaultWebhookAddress = ":15017"
	DefaultDebugAddress   = "127.0.0.1:15014"
)

// Options configure the control plane.
type Options struct {
	// DataDir holds the embedded etcd and, unless CADir is set, the CA's
	// keys.
	DataDir string
	// CADir holds the CA's root and intermediate (default DataDir/ca). Every
	// control plane of one mesh must use the same CA: point them at one
	// directory, or keep the CA in the store (CAEncryptionKeyFile). With
	// the CA in the store, CADir receives copies of its certificates only.
	CADir string
	// CACert and CAKey are a root, or an intermediate with its chain up to
	// a root, and its key, for the CA to start with (ca.LoadSupplied);
	// empty generates a root.
	CACert, CAKey string
	// CAEncryptionKeyFile, when set, keeps the CA in the store, sealed
	// with the 256-bit key this file holds (package castore): control
	// planes sharing an external etcd then share the CA.
	CAEncryptionKeyFile string
	// WorkloadTTL is the lifetime of workload certificates (default 24 h;
	// see ca.Options).
	WorkloadTTL time.Duration
	// XDSAddress serves ADS and the CA over TLS (default :15012).
	XDSAddress string
	// XDSListener, when set, is the listener of ADS and the CA instead of
	// one on XDSAddress (tests make it in a network namespace).
	XDSListener net.Listener
	// ServerNames are DNS names and IPs, besides the listen address,
	// loopback and the host name, that the xDS port's certificate carries,
	// for clients that verify the control plane by the name they dial
	// (proxyless gRPC); trellis-proxy verifies its SPIFFE ID instead.
	ServerNames []string
	// DebugAddress serves the HTTP API, debug endpoints and metrics
	// (default 127.0.0.1:15014).
	DebugAddress string
	// EtcdEndpoints of an external etcd cluster; empty embeds one. Control
	// planes that share an etcd cluster (and a CA) serve one mesh: a proxy
	// may use any of them.
	EtcdEndpoints []string
	TrustDomain   string
	ClusterDomain string
	// RegistryOnly blocks capturing sidecars' connections to destinations
	// the mesh does not know (outbound traffic policy registry-only)
	// instead of passing them through (allow-any, the default); the label
	// trellis.dev/outbound-traffic-policy of a Namespace overrides it for
	// the namespace's sidecars.
	RegistryOnly bool
	// RegistrationGrace is how long a proxy's registration, and so its
	// endpoints, outlive its stream (default 10 s): long enough to
	// reconnect, to this control plane or another, without its endpoints
	// flapping.
	RegistrationGrace time.Duration
	// Debounce is how long config must be quiet before a push (default
	// 100 ms); pushes still happen at least every 10 debounce periods
	// during a stream of changes.
	Debounce time.Duration
	Logger   *slog.Logger
	// WebhookAddress serves the Kubernetes admission webhooks (sidecar
	// injection and validation, package webhook) over TLS with the
	// control plane's certificate; empty serves none.
	WebhookAddress string
	// Inject is what the injection webhook adds to pods.
	Inject inject.Options
	// Kube, when set, makes the Kubernetes API server it reaches the
	// source of config (package kubesource): resources are read from it,
	// not from the store, and status is written back to it by the control
	// plane that leads (KubeStatus). Registrations, join tokens and the CA
	// stay in the store.
	Kube *rest.Config
	// KubeStatus configures status write-back on Kubernetes; its View is
	// the control plane's own.
	KubeStatus kubesource.StatusOptions
	// Ready, when set, is called once the control plane serves, with the
	// addresses it listens on.
	Ready func(xdsAddr, debugAddr net.Addr)
}

func (o *Options) defaults() {
	if o.XDSAddress == "" {
		o.XDSAddress = DefaultXDSAddress
	}
	if o.DebugAddress == "" {
		o.DebugAddress = DefaultDebugAddress
	}
	if o.TrustDomain == "" {
		o.TrustDomain = identity.DefaultTrustDomain
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.RegistrationGrace == 0 {
		o.RegistrationGrace = 10 * time.Second
	}
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run serves the control plane until ctx is done.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	log := opts.Logger
	if opts.DataDir == "" {
		return errors.New("control: no data directory (--data-dir)")
	}
	// Bind first: a second control plane on the same ports fails at once,
	// before it touches the data directory.
	xl := opts.XDSListener
	if xl == nil {
		var err error
		if xl, err = net.Listen("tcp", opts.XDSAddress); err != nil {
			return fmt.Errorf("control: xDS port: %w (is another control plane or `trellis demo` running?)", err)
		}
	}
	defer xl.Close()
	dl, err := net.Listen("tcp", opts.DebugAddress)
	if err != nil {
		return fmt.Errorf("control: debug/API port: %w (is another control plane or `trellis demo` running?)", err)
	}
	defer dl.Close()

	var wl net.Listener
	if opts.WebhookAddress != "" {
		if wl, err = net.Listen("tcp", opts.WebhookAddress); err != nil {
			return fmt.Errorf("control: webhook port: %w", err)
		}
		defer wl.Close()
	}

	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	caDir := opts.CADir
	if caDir == "" {
		caDir = filepath.Join(opts.DataDir, "ca")
	}
	// A CA in a directory is opened first, as before; a CA in the store
	// needs the store.
	var authority *ca.CA
	if opts.CAEncryptionKeyFile == "" {
		if authority, err = openCA(opts, caDir, nil, log); err != nil {
			return err
		}
		if err := checkSharedRoot(caDir, authority); err != nil {
			return err
		}
	}
	st, err := store.Open(ctx, store.Options{DataDir: opts.DataDir, Endpoints: opts.EtcdEndpoints, Logger: log})
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	defer st.Close()
	if authority == nil {
		if authority, err = openCA(opts, caDir, st, log); err != nil {
			return err
		}
	}

	// The control plane's own goroutines stop when Run decides, not when
	// ctx does: proxies' streams must end only after stopping() so that
	// their registrations are kept for the next control plane.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	cp := newControlPlane(runCtx, opts, st, authority)
	certDir := ""
	if opts.CAEncryptionKeyFile != "" {
		certDir = caDir
	}
	cp.trust = newCATrust(runCtx, cp, controlPlaneID(xl.Addr()), certDir)
	rev, err := cp.load(runCtx)
	if err != nil {
		return err
	}

	dnsNames, ips := serverNames(xl.Addr(), opts.ServerNames)
	tlsConf := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: authority.ServerCertificateFunc(identity.ControlPlane(opts.TrustDomain), dnsNames, ips),
		// The CA service accepts callers without a certificate (first
		// contact); ADS requires one and checks its identity.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  authority.RootPool(),
	}
	// Client certificates are verified against the current trust bundle,
	// which a root rotation changes.
	tlsConf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := tlsConf.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = authority.RootPool()
		return c, nil
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A proxy sends little (requests and ACKs): an 8 KiB read buffer
		// rather than 32 KiB per connection, and write buffers returned to a
		// shared pool after each flush, keep a thousand idle streams from
		// holding tens of megabytes.
		grpc.ReadBufferSize(8<<10),
		grpc.SharedWriteBuffer(true),
	)
	cp.xds.Register(gs)
	caServer := ca.NewServer(authority, cp.authenticator(), log)
	caServer.OnIssue(cp.issued)
	caServer.Register(gs)

	hs := &http.Server{Handler: cp.handler(), ReadHeaderTimeout: 10 * time.Second}

	var src *kubesource.Source
	var kcs kubernetes.Interface
	if opts.Kube != nil {
		if kcs, err = kubernetes.NewForConfig(opts.Kube); err != nil {
			return fmt.Errorf("control: %w", err)
		}
		if src, err = kubesource.New(kubesource.Options{Config: opts.Kube, Sink: cp, Logger: log}); err != nil {
			return fmt.Errorf("control: %w", err)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 12)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && runCtx.Err() == nil {
				errs <- fmt.Errorf("control: %s: %w", name, err)
			}
		}()
	}
	run("xDS server", func() error { return gs.Serve(xl) })
	run("API server", func() error {
		if err := hs.Serve(dl); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	var ws *http.Server
	if wl != nil {
		// The API server verifies the webhook by the name or address it
		// calls (the Service's DNS name, in ServerNames), against the mesh's
		// roots as the configuration's caBundle.
		dns, ipAddrs := serverNames(wl.Addr(), opts.ServerNames)
		wconf := &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: authority.ServerCertificateFunc(identity.ControlPlane(opts.TrustDomain), dns, ipAddrs)}
		ws = &http.Server{Handler: webhook.Handler(webhook.Options{Inject: opts.Inject, Review: cp.reviewAdmission}),
			TLSConfig: wconf, ReadHeaderTimeout: 10 * time.Second}
		run("webhook server", func() error {
			if err := ws.ServeTLS(wl, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	run("store watch", func() error { return cp.watch(runCtx, rev) })
	run("push loop", func() error { cp.pushLoop(runCtx); return nil })
	run("CA", func() error { return cp.trust.run(runCtx) })

	var runErr error
	if src != nil {
		// Ready only with the whole cluster read: proxies must not get a
		// config built from part of it.
		run("Kubernetes source", func() error { return src.Start(runCtx) })
		if err := src.WaitForSync(ctx); err != nil {
			if ctx.Err() == nil {
				runErr = fmt.Errorf("control: %w", err)
			}
		} else {
			status := opts.KubeStatus
			status.View = cp
			status.Gateways.Inject, status.Gateways.TrustDomain, status.Gateways.TrustBundle = opts.Inject, opts.TrustDomain, cp.ca.BundlePEM
			run("status writer", func() error { return src.RunStatus(runCtx, status) })
			run("trust publisher", func() error { return cp.publishTrust(runCtx, kcs) })
		}
	}

	if runErr == nil && ctx.Err() == nil {
		log.Info("control plane serving", "xds", xl.Addr().String(), "api", dl.Addr().String(),
			"trustDomain", opts.TrustDomain, "dataDir", opts.DataDir, "caDir", caDir, "kubernetes", src != nil)
		cp.setReady()
		if opts.Ready != nil {
			opts.Ready(xl.Addr(), dl.Addr())
		}
		select {
		case <-ctx.Done():
		case runErr = <-errs:
		}
	}
	log.Info("control plane stopping")
	cp.stopping()
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdown.Done():
		gs.Stop()
	}
	_ = hs.Shutdown(shutdown)
	if ws != nil {
		_ = ws.Shutdown(shutdown)
	}
	wg.Wait()
	cp.wait()
	return runErr
}

// controlPlaneID names this control plane in what it reports to the
// others: its host name and xDS address, the same after a restart.
func controlPlaneID(xds net.Addr) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return host + "/" + xds.String()
}

// checkSharedRoot makes sure that the root the CA loaded or created is the
// one in its directory: two control planes that created a CA in one
// shared directory at the same moment would otherwise each run a root
// the other does not trust.
func checkSharedRoot(dir string, authority *ca.CA) error {
	b, err := os.ReadFile(filepath.Join(dir, ca.RootCertFile))
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	block, _ := pem.Decode(b)
	if roots := authority.Roots(); block == nil || len(roots) == 0 || !bytes.Equal(block.Bytes, roots[0].Raw) {
		return fmt.Errorf("control: %s changed while this control plane opened it (another control plane created a CA there at the same time?); start again to use the CA it holds", filepath.Join(dir, ca.RootCertFile))
	}
	return nil
}

// serverNames are the DNS names and IPs the control plane's certificate
// carries besides its SPIFFE ID, for clients that verify by name.
// Clients that verify by name (proxyless gRPC checks the host of its
// bootstrap's server_uri) need the address they dial: the listen IP when
// it is specific, loopback, the host name, and the extra names given.
func serverNames(addr net.Addr, extra []string) ([]string, []net.IP) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !ta.IP.Equal(ips[0]) && !ta.IP.Equal(ips[1]) {
		ips = append(ips, ta.IP)
	}
	dns := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		dns = append(dns, h)
	}
	for _, name := range extra {
		if ip := net.ParseIP(name); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, name)
		}
	}
	return dns, ips
}

var _ xds.Hooks = (*controlPlane)(nil)
