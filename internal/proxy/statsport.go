package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The stats port (Istio's 15020) and the readiness port (15021):
//
//	GET /stats/prometheus        the proxy's metrics (trellis_*), then the
//	                             app's when Options.AppMetricsURL is set
//	GET /app-health/PORT/PATH    a plaintext probe forwarded to the app's
//	                             PORT on its address, GET /PATH
//	GET /app-tcp/PORT            200 when a TCP connection to the app's PORT
//	                             opens, else 503 (a tcpSocket probe)
//	GET /app-grpc/PORT[/SERVICE] 200 when the app's gRPC health service on
//	                             PORT answers SERVING for SERVICE (default
//	                             ""), else 503 (a grpc probe)
//	GET /healthz/ready (15021)   200 once the proxy is ready, else 503
//
// Probe forwarding lets kubelet's plaintext probes reach an app whose
// ports accept only mesh mTLS (STRICT): the injector (package inject)
// rewrites an httpGet probe on the app's port P and path X to this port
// and /app-health/P/X, a tcpSocket probe to /app-tcp/P and a grpc probe to
// /app-grpc/P/SERVICE, all httpGet probes that kubelet sends in plaintext.
// Only the workload's declared ports (--port) are probed, and only GET.

// appMetricsTimeout bounds the scrape of the app's own metrics.
const appMetricsTimeout = 5 * time.Second

// probeTimeout bounds a forwarded probe when kubelet set no deadline.
const probeTimeout = 10 * time.Second

func (p *Proxy) statsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/prometheus", p.handleMetrics)
	mux.HandleFunc("GET /metrics", p.handleMetrics)
	mux.HandleFunc("GET /app-health/{port}/{path...}", p.handleProbe)
	mux.HandleFunc("GET /app-tcp/{port}", p.handleTCPProbe)
	mux.HandleFunc("GET /app-grpc/{port}", p.handleGRPCProbe)
	mux.HandleFunc("GET /app-grpc/{port}/{service}", p.handleGRPCProbe)
	mux.HandleFunc("GET /healthz/ready", p.handleReady)
	return mux
}

func (p *Proxy) readinessHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", p.handleReady)
	return mux
}

func (p *Proxy) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := p.Ready(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

// handleMetrics writes the proxy's metrics, then the app's. An app that
// cannot be scraped leaves a comment saying why; the proxy's metrics are
// served regardless.
func (p *Proxy) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := p.tel.reg.WriteText(w); err != nil {
		return
	}
	fmt.Fprintf(w, "# HELP trellis_rbac_decisions_total Requests and connections denied or audited by access policies.\n# TYPE trellis_rbac_decisions_total counter\n")
	st := p.AccessStats()
	fmt.Fprintf(w, "trellis_rbac_decisions_total{decision=\"denied\"} %d\ntrellis_rbac_decisions_total{decision=\"audited\"} %d\n", st.Denied, st.Audited)
	if p.opts.AppMetricsURL == "" {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), appMetricsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.opts.AppMetricsURL, nil)
	if err != nil {
		fmt.Fprintf(w, "# app metrics: %v\n", err)
		return
	}
	// The app's metrics must be text: a protobuf exposition cannot be
	// appended to the proxy's.
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	resp, err := p.localClient().Do(req)
	if err != nil {
		fmt.Fprintf(w, "# app metrics from %s: %s\n", p.opts.AppMetricsURL, oneLine(err.Error()))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(w, "# app metrics from %s: HTTP %d\n", p.opts.AppMetricsURL, resp.StatusCode)
		return
	}
	_, _ = io.Copy(w, resp.Body)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// handleProbe forwards a kubelet probe to the app in plaintext, passing
// back the status and up to 64 KiB of the body.
func (p *Proxy) handleProbe(w http.ResponseWriter, r *http.Request) {
	addr, ok := p.probedPort(w, r, "app-health", "/app-health/PORT/PATH")
	if !ok {
		return
	}
	target := &url.URL{Scheme: "http", Host: addr, Path: "/" + r.PathValue("path"), RawQuery: r.URL.RawQuery}
	ctx, cancel := probeContext(r)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		http.Error(w, "app-health: "+err.Error(), http.StatusBadRequest)
		return
	}
	for k, vs := range r.Header {
		if k != "Connection" && k != "Keep-Alive" && k != "Te" && k != "Upgrade" {
			req.Header[k] = vs
		}
	}
	resp, err := p.localClient().Do(req)
	if err != nil {
		http.Error(w, "app-health: "+oneLine(err.Error()), http.StatusServiceUnavailable)
		return
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 64<<10))
}

// probedPort returns the app's address on the declared port a probe
// names, or answers the probe itself and returns false.
func (p *Proxy) probedPort(w http.ResponseWriter, r *http.Request, what, form string) (string, bool) {
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
	if err != nil || port == 0 {
		http.Error(w, what+": want "+form, http.StatusBadRequest)
		return "", false
	}
	declared := false
	for _, ap := range p.opts.Registration.Ports {
		if uint64(ap.Port) == port {
			declared = true
		}
	}
	if !declared {
		http.Error(w, fmt.Sprintf("%s: port %d is not a port of the workload (--port)", what, port), http.StatusNotFound)
		return "", false
	}
	host := p.opts.Registration.AppAddress
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.FormatUint(port, 10)), true
}

// probeContext bounds a probe by kubelet's deadline, or probeTimeout.
func probeContext(r *http.Request) (context.Context, context.CancelFunc) {
	if _, ok := r.Context().Deadline(); ok {
		return r.Context(), func() {}
	}
	return context.WithTimeout(r.Context(), probeTimeout)
}

// handleTCPProbe opens a TCP connection to the app's port and closes it.
func (p *Proxy) handleTCPProbe(w http.ResponseWriter, r *http.Request) {
	addr, ok := p.probedPort(w, r, "app-tcp", "/app-tcp/PORT")
	if !ok {
		return
	}
	ctx, cancel := probeContext(r)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		http.Error(w, "app-tcp: "+oneLine(err.Error()), http.StatusServiceUnavailable)
		return
	}
	conn.Close()
	io.WriteString(w, "connected\n")
}

// handleGRPCProbe asks the app's gRPC health service (grpc.health.v1) on
// its port whether the service is SERVING, as kubelet's grpc probe does.
func (p *Proxy) handleGRPCProbe(w http.ResponseWriter, r *http.Request) {
	addr, ok := p.probedPort(w, r, "app-grpc", "/app-grpc/PORT[/SERVICE]")
	if !ok {
		return
	}
	ctx, cancel := probeContext(r)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		http.Error(w, "app-grpc: "+oneLine(err.Error()), http.StatusServiceUnavailable)
		return
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: r.PathValue("service")})
	if err != nil {
		http.Error(w, "app-grpc: "+oneLine(err.Error()), http.StatusServiceUnavailable)
		return
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		http.Error(w, "app-grpc: "+s.String(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "SERVING\n")
}

// localClient reaches the app on its own address, never through a proxy
// from the environment, and without following redirects (kubelet judges
// a redirect's status itself).
func (p *Proxy) localClient() *http.Client {
	return localHTTPClient
}

var localHTTPClient = &http.Client{
	Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// serveLocal serves h on addr until the proxy shuts down.
func (p *Proxy) serveLocal(what, addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: %s port: %w", what, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	p.goRun(func() { _ = srv.Serve(ln) })
	return srv, nil
}
