package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/bench/internal/load"
	"trellis.dev/trellis/bench/internal/meshproc"
)

// path is one way from the load generator to the backend.
type path struct {
	Name string
	IP   string // where the load connects: the proxy's address, or the backend's
	// procs are the proxy's processes, whose CPU is counted.
	procs []*benchproc.Proc
}

// paths are measured in this order; direct is the baseline.
var pathNames = []string{"direct", "trellis", "haproxy", "nginx"}

// scenario is one measurement made on every path.
type scenario struct {
	Name string
	// Label says what it is in the table.
	Label string
	// QPS is the fixed rate, 0 for saturation.
	QPS   int
	Conns int
	TLS   bool // HTTPS, terminated by the proxy (the backend's own TLS port for direct)
	// Handshake: a new TLS connection for each request (the handshake
	// load, not fortio).
	Handshake bool
}

// LatencyKey says which figure the ratios compare: p99 at a fixed rate
// (lower is better), else requests (or handshakes) per second (higher is
// better).
func (s scenario) LatencyKey() bool { return s.QPS > 0 }

func scenarios(o options) []scenario {
	out := []scenario{
		{Name: "fixed", Label: fmt.Sprintf("http %d/s c%d", o.Rate, o.Conns), QPS: o.Rate, Conns: o.Conns},
		{Name: "saturation", Label: fmt.Sprintf("http max c%d", o.Conns), Conns: o.Conns},
	}
	if o.ManyConns > 0 {
		out = append(out, scenario{Name: "saturation_many", Label: fmt.Sprintf("http max c%d", o.ManyConns), Conns: o.ManyConns})
	}
	return append(out,
		scenario{Name: "https_saturation", Label: fmt.Sprintf("https max c%d", o.Conns), Conns: o.Conns, TLS: true},
		scenario{Name: "handshakes", Label: fmt.Sprintf("tls handshake c%d", o.Conns), Conns: o.Conns, TLS: true, Handshake: true},
	)
}

// measurement is one measurement of a scenario on a path, with how busy
// the CPUs were meanwhile, whatever ran on them: it tells a proxy that
// ran out of CPU from one starved by other processes, and both from a
// load generator that set the rate.
type measurement struct {
	*load.Measurement
	// ProxyCPUsBusy is the share of the proxies' CPUs that was busy, 0 to
	// 1; LoadCPUsBusy that of the load generator's and backend's (the
	// same CPUs when nothing is pinned).
	ProxyCPUsBusy float64 `json:"proxy_cpus_busy"`
	LoadCPUsBusy  float64 `json:"load_cpus_busy"`
}

// result is the JSON line.
type result struct {
	Bench    string `json:"bench"`
	Quick    bool   `json:"quick"`
	Duration string `json:"duration_each"`
	Rate     int    `json:"rate"`
	Conns    int    `json:"conns"`
	// ProxyCPUs is the CPUs the proxies are pinned to ("" for none),
	// LoadCPUs the load generator's and the backend's; Threads is each
	// proxy's threads (GOMAXPROCS, nbthread) or worker processes.
	ProxyCPUs string `json:"proxy_cpus"`
	LoadCPUs  string `json:"load_cpus"`
	Threads   int    `json:"threads"`
	// Paths holds every measurement by path and scenario.
	Paths map[string]map[string]*measurement `json:"paths"`
	// Ratios compare each path's key figure (p99 at the fixed rate,
	// req/s otherwise) with direct, haproxy and nginx:
	// SCENARIO_p99_x_OTHER or SCENARIO_qps_x_OTHER.
	Ratios map[string]map[string]float64 `json:"ratios"`
	Goals  map[string]bool               `json:"goals"`
	// Notes are what the reader should know about this run's figures.
	Notes []string `json:"notes,omitempty"`
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) (*result, error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "ingress: "+format+"\n", args...) }
	dir, err := os.MkdirTemp("", "trellis-ingress-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		progress("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	root, err := benchproc.ModuleRoot()
	if err != nil {
		return nil, err
	}
	progress("building trellis and trellis-proxy")
	trellisBin, proxyBin, err := meshproc.Build(ctx, root, dir)
	if err != nil {
		return nil, err
	}
	if o.Proxy != "" {
		proxyBin = o.Proxy
	}
	c, err := makeCerts(dir)
	if err != nil {
		return nil, err
	}
	pin, loadCPUs, err := planCPUs(o.CPUs)
	if err != nil {
		return nil, err
	}
	// From here on this process (the backend, the handshake load) and its
	// children (fortio, the control plane) stay off the proxies' CPUs.
	if loadCPUs != "" {
		restore, err := pinSelf(loadCPUs)
		if err != nil {
			return nil, err
		}
		defer restore()
	}
	stopBackend, err := load.Backend(net.JoinHostPort(backendIP, strconv.Itoa(httpPort)))
	if err != nil {
		return nil, err
	}
	defer stopBackend()
	tln, err := net.Listen("tcp", net.JoinHostPort(backendIP, strconv.Itoa(httpsPort)))
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	defer load.Serve(tls.NewListener(tln, &tls.Config{
		Certificates: []tls.Certificate{c.pair}, MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"},
	}))()

	cp, err := meshproc.StartControl(ctx, dir, trellisBin)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	if err := cp.Apply(ctx, "ingress.yaml", mesh); err != nil {
		return nil, fmt.Errorf("applying the gateway and its route: %w", err)
	}
	if err := cp.Tokens(ctx, "infra", "edge"); err != nil {
		return nil, fmt.Errorf("making a join token: %w", err)
	}
	progress("proxies on CPUs %q with %d thread(s) each; load generator and backend on %q", pin.CPUs, pin.Threads, loadCPUs)
	gw, err := gateway(dir, proxyBin, cp.XDS, c, pin)
	if err != nil {
		return nil, err
	}
	defer gw.Stop()
	hp, err := startHaproxy(dir, c, pin)
	if err != nil {
		return nil, err
	}
	defer hp.Stop()
	ng, err := startNginx(dir, c, pin)
	if err != nil {
		return nil, err
	}
	defer ng.Stop()

	paths := []path{
		{Name: "direct", IP: backendIP},
		{Name: "trellis", IP: gatewayIP, procs: []*benchproc.Proc{gw}},
		{Name: "haproxy", IP: haproxyIP, procs: []*benchproc.Proc{hp}},
		{Name: "nginx", IP: nginxIP, procs: []*benchproc.Proc{ng}},
	}
	for _, p := range paths {
		if err := benchproc.WaitFor(ctx, time.Minute, p.Name+" to answer", func() error {
			for _, pr := range append([]*benchproc.Proc{cp.Proc}, p.procs...) {
				if err := pr.Exited(); err != nil {
					return err
				}
			}
			return check(p, c)
		}); err != nil {
			return nil, err
		}
	}
	res := &result{Bench: "trellis-ingress", Quick: o.Quick, Duration: o.Duration.String(), Rate: o.Rate, Conns: o.Conns,
		ProxyCPUs: pin.CPUs, LoadCPUs: loadCPUs, Threads: pin.Threads,
		Paths: map[string]map[string]*measurement{}, Ratios: map[string]map[string]float64{}}
	proxySet, loadSet := cpusOf(), cpusOf()
	if pin.CPUs != "" {
		proxySet, _ = parseCPUs(pin.CPUs)
		loadSet, _ = parseCPUs(loadCPUs)
	}
	for _, s := range scenarios(o) {
		for _, p := range paths {
			var profiled func()
			if o.Profile != "" && p.Name == "trellis" && (s.Name == "saturation" || s.Name == "handshakes") {
				suffix := map[string]string{"saturation": ".http", "handshakes": ".tls"}[s.Name]
				profiled = meshproc.Profile(gatewayIP+":15000", o.Profile+suffix, o.Duration)
			}
			t0 := benchproc.ReadCPUTimes()
			lm, err := measure(ctx, dir, p, s, c, o.Duration)
			t1 := benchproc.ReadCPUTimes()
			if profiled != nil {
				profiled()
			}
			if err != nil && (lm == nil || lm.QPS == 0) {
				return nil, fmt.Errorf("%s %s: %w", p.Name, s.Name, err)
			}
			if err != nil {
				progress("%s %s: %v", p.Name, s.Name, err)
			}
			m := &measurement{Measurement: lm,
				ProxyCPUsBusy: load.Round(t1.Busy(t0, proxySet), 2), LoadCPUsBusy: load.Round(t1.Busy(t0, loadSet), 2)}
			if res.Paths[p.Name] == nil {
				res.Paths[p.Name] = map[string]*measurement{}
			}
			res.Paths[p.Name][s.Name] = m
			progress("%-8s %-16s p50 %.3f ms  p99 %.3f ms  %.0f/s  errors %d  cpu %.3f vCPU", p.Name, s.Name, m.P50ms, m.P99ms, m.QPS, m.Errors, m.CPU)
		}
	}
	res.ratios(scenarios(o))
	res.report(stdout, scenarios(o))
	line, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(line))
	return res, nil
}

// url is the address the load asks for on p: host, resolved to p's
// address (fortio -resolve), so that Host and SNI are the route's.
func url(s scenario) string {
	if s.TLS {
		return fmt.Sprintf("https://%s:%d%s", host, httpsPort, reqPath)
	}
	return fmt.Sprintf("http://%s:%d%s", host, httpPort, reqPath)
}

// measure makes one measurement of s on p.
func measure(ctx context.Context, dir string, p path, s scenario, c *certs, d time.Duration) (*load.Measurement, error) {
	if s.Handshake {
		return handshakes(ctx, net.JoinHostPort(p.IP, strconv.Itoa(httpsPort)), c, s.Conns, d, p.procs)
	}
	spec := load.Spec{URL: url(s), QPS: s.QPS, Conns: s.Conns, Duration: d, Percentiles: []float64{50, 90, 99, 99.9},
		Args: []string{"-resolve", p.IP}, Procs: p.procs, Dir: dir}
	if s.TLS {
		// fortio's Go TLS client would offer X25519MLKEM768 first, which
		// only the gateway (Go) accepts; the handshakes of the kept-alive
		// connections then are X25519 everywhere, as in the handshake run.
		spec.Args = append(spec.Args, "-cacert", c.CA)
		spec.Env = []string{"GODEBUG=tlsmlkem=0"}
	}
	return load.Run(ctx, spec)
}

// check asks p for the route over HTTP and HTTPS and expects the 1 KB
// answer, and expects 404 for another host over HTTP from a proxy.
func check(p path, c *certs) error {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(p.IP, port))
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: dial, TLSClientConfig: handshakeConfig(c), DisableKeepAlives: true,
	}}
	get := func(u, hostHeader string) (int, int64, error) {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			return 0, 0, err
		}
		if hostHeader != "" {
			req.Host = hostHeader
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, n, err
	}
	for _, s := range []scenario{{}, {TLS: true}} {
		code, n, err := get(url(s), "")
		if err != nil {
			return err
		}
		if code != 200 || n != load.BodySize {
			return fmt.Errorf("%s: HTTP %d, %d bytes", url(s), code, n)
		}
	}
	if p.Name == "direct" {
		return nil
	}
	if code, _, err := get(url(scenario{}), "other.example.com"); err != nil || code != 404 {
		return fmt.Errorf("another host: HTTP %d (%v), want 404: the route is not the same", code, err)
	}
	return nil
}
