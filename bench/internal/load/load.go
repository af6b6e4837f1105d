// Package load is what the benchmarks under bench/ share to put HTTP load
// on a path and read what came out: fortio (found on PATH or where go
// install puts it) run for one measurement, its JSON read into a
// Measurement with the CPU the path's proxies spent meanwhile (from
// /proc), the backend that answers the load with 1 KB, and the rounding
// and ratios of the reports.
//
//	load.Run(ctx, load.Spec{URL, QPS, Conns, Duration, Procs})
//	  ──► fortio load -json ──► Measurement{percentiles, req/s, errors, vCPU}
package load

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
)

// FortioInstall is how to install the load generator the benchmarks use.
const FortioInstall = "go install fortio.org/fortio@v1.68.2"

// Fortio finds fortio on PATH or where go install puts it; "" if it is
// in neither.
func Fortio() string {
	if p, err := exec.LookPath("fortio"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "fortio")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return ""
}

// Spec is one fortio run.
type Spec struct {
	URL string
	// QPS is the fixed rate in requests per second; 0 is as fast as
	// possible (saturation).
	QPS      int
	Conns    int
	Duration time.Duration
	// Percentiles are the latency percentiles measured; nil is 50, 90
	// and 99.
	Percentiles []float64
	// Args are more fortio flags, before the URL (-H, -resolve, -cacert,
	// -keepalive=false, ...).
	Args []string
	// Env is added to fortio's environment (GODEBUG for its TLS client).
	Env []string
	// Procs are the proxies on the path, whose CPU (with their child
	// processes') is counted.
	Procs []*benchproc.Proc
	// Dir is where fortio writes its JSON.
	Dir string
}

// Measurement is one fortio run on one path.
type Measurement struct {
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms,omitempty"`
	QPS    float64 `json:"qps"`
	Errors int64   `json:"errors"`
	// CPU is the proxies' CPU in vCPU (CPU seconds per second) and per
	// 1,000 requests/s.
	CPU        float64 `json:"cpu_vcpu"`
	CPUPer1000 float64 `json:"cpu_vcpu_per_1000rps"`
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

// Run runs fortio as s says and reads the proxies' CPU around it. A
// request that did not get a 200 counts as an error.
func Run(ctx context.Context, s Spec) (*Measurement, error) {
	out := filepath.Join(s.Dir, "fortio.json")
	ps := "50,90,99"
	if len(s.Percentiles) > 0 {
		var parts []string
		for _, p := range s.Percentiles {
			parts = append(parts, strconv.FormatFloat(p, 'f', -1, 64))
		}
		ps = strings.Join(parts, ",")
	}
	args := []string{"load", "-quiet", "-qps", strconv.Itoa(s.QPS), "-c", strconv.Itoa(s.Conns), "-t", s.Duration.String(),
		"-r", "0.00001", "-p", ps, "-json", out}
	args = append(append(args, s.Args...), s.URL)
	meter := StartCPU(s.Procs...)
	cmd := exec.CommandContext(ctx, Fortio(), args...)
	if len(s.Env) > 0 {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("fortio %v: %w\n%s", args, err, b)
	}
	cpu, elapsed := meter.Stop()
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var f fortioJSON
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("fortio's JSON: %w", err)
	}
	m := &Measurement{QPS: Round(f.ActualQPS, 1), Errors: f.DurationHistogram.Count - f.RetCodes["200"]}
	for _, pc := range f.DurationHistogram.Percentiles {
		v := Round(pc.Value*1000, 3)
		switch pc.Percentile {
		case 50:
			m.P50ms = v
		case 90:
			m.P90ms = v
		case 99:
			m.P99ms = v
		case 99.9:
			m.P999ms = v
		}
	}
	// fortio's run time: its -t, from which the process's start-up is
	// excluded as well as can be.
	if elapsed > 0 {
		m.CPU = Round(cpu/max(s.Duration.Seconds(), elapsed-0.05), 3)
	}
	if m.QPS > 0 {
		m.CPUPer1000 = Round(m.CPU/(m.QPS/1000), 3)
	}
	return m, nil
}

// CPUMeter counts the CPU time processes spend from StartCPU to Stop.
type CPUMeter struct {
	procs []*benchproc.Proc
	cpu0  []float64
	t0    time.Time
}

// StartCPU reads the processes' CPU time (each with its children's) now.
func StartCPU(procs ...*benchproc.Proc) *CPUMeter {
	m := &CPUMeter{procs: procs, cpu0: make([]float64, len(procs))}
	for i, pr := range procs {
		m.cpu0[i], _ = benchproc.TreeCPUSeconds(pr.Pid())
	}
	m.t0 = time.Now()
	return m
}

// Stop returns the CPU seconds spent since StartCPU, all processes
// together, and the seconds elapsed.
func (m *CPUMeter) Stop() (cpu, elapsed float64) {
	elapsed = time.Since(m.t0).Seconds()
	for i, pr := range m.procs {
		c, _ := benchproc.TreeCPUSeconds(pr.Pid())
		cpu += c - m.cpu0[i]
	}
	return cpu, elapsed
}

// Round rounds v to digits decimals.
func Round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// Ratio is a/b to two decimals, 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return Round(a/b, 2)
}
