package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
)

// path is one way from fortio to the backend.
type path struct {
	Name string
	URL  string
	// procs are the proxies on the path, whose CPU is counted.
	procs []*benchproc.Proc
}

// measurement is one fortio run on one path.
type measurement struct {
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	QPS    float64 `json:"qps"`
	Errors int64   `json:"errors"`
	// CPU is the proxies' CPU in vCPU (CPU seconds per second) and per
	// 1,000 requests/s.
	CPU        float64 `json:"cpu_vcpu"`
	CPUPer1000 float64 `json:"cpu_vcpu_per_1000rps"`
}

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
	trellisBin, proxyBin, err := build(ctx, root, dir)
	if err != nil {
		return nil, err
	}
	stopBackend, err := backend(ctx)
	if err != nil {
		return nil, err
	}
	defer stopBackend()
	cp, xds, api, err := controlPlane(ctx, dir, trellisBin)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	if o.Proxy != "" {
		proxyBin = o.Proxy
	}
	client, server, err := sidecars(dir, proxyBin, xds)
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
		if err := waitFor(ctx, time.Minute, p.Name+" to answer", func() error {
			for _, pr := range append([]*benchproc.Proc{cp}, p.procs...) {
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
		res.RSSIdleMB[pr.Name] = round(benchproc.RSSMB(pr.Pid()), 1)
	}
	progress("sidecars idle: client %.1f MB, server %.1f MB RSS", res.RSSIdleMB["client-sidecar"], res.RSSIdleMB["server-sidecar"])
	if o.Profile != "" {
		save(clientIP+":15000/debug/pprof/heap?gc=1", o.Profile+".heap")
		save(clientIP+":15000/debug/pprof/heap?gc=1&debug=1", o.Profile+".heap.txt")
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
			res.RSSLoadedMB[pr.Name] = round(benchproc.RSSMB(pr.Pid()), 1)
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
	if res.Fleet, err = measureFleet(ctx, dir, proxyBin, xds, api, o.Services, fleetHeap); err != nil {
		return nil, fmt.Errorf("sidecar with %d services: %w", o.Services, err)
	}
	progress("capture sidecar with %d services: %.1f MB RSS", o.Services, res.Fleet.RSSMB)
	res.ratios()
	res.report(stdout)
	line, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(line))
	return res, nil
}

// fortioJSON is the part of fortio's -json output used here.
type fortioJSON struct {
	ActualQPS         float64
	DurationHistogram struct {
		Count       int64
		Percentiles []struct{ Percentile, Value float64 }
	}
	RetCodes map[string]int64
}

// measure runs fortio on a path and reads the proxies' CPU around it.
func measure(ctx context.Context, dir string, p path, qps, conns int, d time.Duration) (*measurement, error) {
	out := filepath.Join(dir, "fortio.json")
	args := []string{"load", "-quiet", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(conns), "-t", d.String(),
		"-r", "0.00001", "-p", "50,90,99", "-json", out, p.URL}
	cpu0 := make([]float64, len(p.procs))
	for i, pr := range p.procs {
		cpu0[i], _ = benchproc.CPUSeconds(pr.Pid())
	}
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, fortioBin(), args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("fortio %v: %w\n%s", args, err, b)
	}
	elapsed := time.Since(t0).Seconds()
	var cpu float64
	for i, pr := range p.procs {
		c, _ := benchproc.CPUSeconds(pr.Pid())
		cpu += c - cpu0[i]
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var f fortioJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("fortio's JSON: %w", err)
	}
	m := &measurement{QPS: round(f.ActualQPS, 1), Errors: f.DurationHistogram.Count - f.RetCodes["200"]}
	for _, pc := range f.DurationHistogram.Percentiles {
		v := round(pc.Value*1000, 3)
		switch pc.Percentile {
		case 50:
			m.P50ms = v
		case 90:
			m.P90ms = v
		case 99:
			m.P99ms = v
		}
	}
	// fortio's run time: its -t, from which the process's start-up is
	// excluded as well as can be.
	if elapsed > 0 {
		m.CPU = round(cpu/max(d.Seconds(), elapsed-0.05), 3)
	}
	if m.QPS > 0 {
		m.CPUPer1000 = round(m.CPU/(m.QPS/1000), 3)
	}
	return m, nil
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// profile starts CPU profiles of both sidecars through their admin port,
// for d; the function returned waits for them to be written.
func profile(prefix string, d time.Duration) func() {
	done := make(chan struct{}, 2)
	for _, s := range []struct{ name, ip string }{{"client", clientIP}, {"server", serverIP}} {
		go func() {
			defer func() { done <- struct{}{} }()
			resp, err := http.Get(fmt.Sprintf("http://%s:15000/debug/pprof/profile?seconds=%d", s.ip, max(1, int(d.Seconds()))))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(prefix + "." + s.name)
			if err != nil {
				return
			}
			defer f.Close()
			io.Copy(f, resp.Body)
		}()
	}
	return func() { <-done; <-done }
}
