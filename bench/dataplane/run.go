package main

import (
	"context"
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

// path is one way from fortio to the backend.
type path struct {
	Name string
	URL  string
	// procs are the proxies on the path, whose CPU is counted.
	procs []*benchproc.Proc
}

// measurement is one fortio run on one path.
type measurement = load.Measurement

// modes are the measurements made on every path.
var modes = []struct {
	Name  string
	Fixed bool // at options.Rate, else saturation
	One   bool // one connection, else options.Conns
}{
	{"fixed", true, false},
	{"saturation", false, false},
	{"one_conn", false, true},
}

// result is the JSON line.
type result struct {
	Bench       string                             `json:"bench"`
	Quick       bool                               `json:"quick"`
	Duration    string                             `json:"duration_each"`
	Rate        int                                `json:"rate"`
	Conns       int                                `json:"conns"`
	Paths       map[string]map[string]*measurement `json:"paths"`
	Ratios      map[string]map[string]float64      `json:"ratios_to_direct"`
	RSSIdleMB   map[string]float64                 `json:"rss_idle_mb"`
	RSSLoadedMB map[string]float64                 `json:"rss_after_mb"`
	// Fleet is the RSS of a capture sidecar that sees options.Services
	// Services (fleet.go).
	Fleet *fleetResult    `json:"fleet"`
	Goals map[string]bool `json:"goals"`
	// Metrics are the sidecars' /stats/prometheus after the load.
	Metrics map[string]string `json:"-"`
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) (*result, error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "dataplane: "+format+"\n", args...) }
	dir, err := os.MkdirTemp("", "trellis-dataplane-")
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
	stopBackend, err := load.Backend(net.JoinHostPort(serverIP, strconv.Itoa(backendHTTP)), net.JoinHostPort(serverIP, strconv.Itoa(backendTCP)))
	if err != nil {
		return nil, err
	}
	defer stopBackend()
	cp, err := controlPlane(ctx, dir, trellisBin)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	if o.Proxy != "" {
		proxyBin = o.Proxy
	}
	client, server, err := sidecars(dir, proxyBin, cp.XDS)
	if err != nil {
		return nil, err
	}
	defer server.Stop()
	defer client.Stop()
	hc, hs, err := haproxies(dir)
	if err != nil {
		return nil, err
	}
	defer hs.Stop()
	defer hc.Stop()

	paths := []path{
		{Name: "direct", URL: fmt.Sprintf("http://%s:%d/", serverIP, backendHTTP)},
		{Name: "trellis-l7", URL: fmt.Sprintf("http://%s:%d/", clientIP, localHTTP), procs: []*benchproc.Proc{client, server}},
		{Name: "haproxy-l7", URL: fmt.Sprintf("http://%s:%d/", hapClient, localHTTP), procs: []*benchproc.Proc{hc, hs}},
		{Name: "trellis-l4", URL: fmt.Sprintf("http://%s:%d/", clientIP, localTCP), procs: []*benchproc.Proc{client, server}},
		{Name: "haproxy-l4", URL: fmt.Sprintf("http://%s:%d/", hapClient, localTCP), procs: []*benchproc.Proc{hc, hs}},
	}
	for _, p := range paths {
		if err := benchproc.WaitFor(ctx, time.Minute, p.Name+" to answer", func() error {
			for _, pr := range append([]*benchproc.Proc{cp.Proc}, p.procs...) {
				if err := pr.Exited(); err != nil {
					return err
				}
			}
			resp, err := http.Get(p.URL)
			if err != nil {
				return err
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != 1024 {
				return fmt.Errorf("HTTP %d, %d bytes", resp.StatusCode, n)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	res := &result{Bench: "trellis-dataplane", Quick: o.Quick, Duration: o.Duration.String(), Rate: o.Rate, Conns: o.Conns,
		Paths: map[string]map[string]*measurement{}, Ratios: map[string]map[string]float64{},
		RSSIdleMB: map[string]float64{}, RSSLoadedMB: map[string]float64{}}
	time.Sleep(time.Second) // let the sidecars settle after their first requests
	for _, pr := range []*benchproc.Proc{client, server, hc, hs} {
		res.RSSIdleMB[pr.Name] = load.Round(benchproc.RSSMB(pr.Pid()), 1)
	}
	progress("sidecars idle: client %.1f MB, server %.1f MB RSS", res.RSSIdleMB["client-sidecar"], res.RSSIdleMB["server-sidecar"])
	if o.Profile != "" {
		meshproc.Save(clientIP+":15000/debug/pprof/heap?gc=1", o.Profile+".heap")
		meshproc.Save(clientIP+":15000/debug/pprof/heap?gc=1&debug=1", o.Profile+".heap.txt")
	}
	for _, m := range modes {
		if o.MemoryOnly {
			break
		}
		for _, p := range paths {
			qps, conns := 0, o.Conns
			if m.Fixed {
				qps = o.Rate
			}
			if m.One {
				conns = 1
			}
			var profiled func()
			if o.Profile != "" && p.Name == "trellis-l7" && m.Name == "saturation" {
				profiled = profile(o.Profile, o.Duration)
			}
			meas, err := measure(ctx, dir, p, qps, conns, o.Duration)
			if profiled != nil {
				profiled()
			}
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.Name, m.Name, err)
			}
			if res.Paths[p.Name] == nil {
				res.Paths[p.Name] = map[string]*measurement{}
			}
			res.Paths[p.Name][m.Name] = meas
			progress("%-10s %-10s p50 %.3f ms  p99 %.3f ms  %.0f req/s  cpu %.3f vCPU", p.Name, m.Name, meas.P50ms, meas.P99ms, meas.QPS, meas.CPU)
		}
	}
	for _, pr := range []*benchproc.Proc{client, server, hc, hs} {
		if !o.MemoryOnly {
			res.RSSLoadedMB[pr.Name] = load.Round(benchproc.RSSMB(pr.Pid()), 1)
		}
	}
	res.Metrics = map[string]string{}
	for name, ip := range map[string]string{"client-sidecar": clientIP, "server-sidecar": serverIP} {
		if resp, err := http.Get("http://" + ip + ":15020/stats/prometheus"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			res.Metrics[name] = string(b)
		}
	}
	fleetHeap := ""
	if o.Profile != "" {
		fleetHeap = o.Profile + ".fleet.heap"
	}
	progress("applying %d services and starting a capture sidecar that sees them", o.Services)
	if res.Fleet, err = measureFleet(ctx, dir, proxyBin, cp.XDS, cp.API, o.Services, fleetHeap); err != nil {
		return nil, fmt.Errorf("sidecar with %d services: %w", o.Services, err)
	}
	progress("capture sidecar with %d services: %.1f MB RSS", o.Services, res.Fleet.RSSMB)
	res.ratios()
	res.report(stdout)
	line, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(line))
	return res, nil
}

// measure runs fortio on a path and reads the proxies' CPU around it.
func measure(ctx context.Context, dir string, p path, qps, conns int, d time.Duration) (*measurement, error) {
	return load.Run(ctx, load.Spec{URL: p.URL, QPS: qps, Conns: conns, Duration: d, Procs: p.procs, Dir: dir})
}

// profile starts CPU profiles of both sidecars through their admin port,
// for d; the function returned waits for them to be written.
func profile(prefix string, d time.Duration) func() {
	client := meshproc.Profile(clientIP+":15000", prefix+".client", d)
	server := meshproc.Profile(serverIP+":15000", prefix+".server", d)
	return func() { client(); server() }
}
