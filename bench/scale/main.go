// Command scale is the control plane scale benchmark: a `trellis control`
// serving many services to many proxies, each proxy a real ADS client over
// its own mTLS connection, in a process of its own.
//
//	go run ./bench/scale            # 1,000 services × 5 endpoints, 1,000 proxies, SotW then delta
//	go run ./bench/scale -quick     # 50 services, 50 proxies, a few seconds
//	go run ./hack/dev bench [flags] # the same as go run ./bench/scale
//
//	orchestrator (this process)
//	  │ go build ./cmd/trellis; trellis control --data-dir tmp --xds-address … --debug-address …
//	  │ apply the mesh (meshgen) and its endpoints (Workloads) ──HTTP API──► control plane
//	  │ start the loader: this binary again, TRELLIS_BENCH_LOADER={…}
//	  │                                   loader ══ N × ADS over mTLS ══► control plane
//	  │ per change: "expect" ──stdin──► loader; apply ──API──► control plane
//	  │             loader ──stdout──► "done": when each affected proxy applied and ACKed it
//	  │ samples /proc/<control plane>/status and stat, and /metrics
//	  ▼ a report, then one line of JSON with every figure and the goals
//
// The mesh (see layout in mesh.go): meshgen's services, mesh and ingress
// HTTPRoutes, Gateways and policies, plus `endpoints` Workload resources per
// service (with a mesh port; nothing listens), applied through the API.
// Each proxy is a client sidecar calling 10 services, every service called
// by 10 proxies: a change to one service concerns 1% of 1,000 proxies.
//
// Phases, for state-of-the-world clients and again (a fresh control plane)
// for delta clients:
//
//  0. join tokens: one per proxy (each has an identity of its own), made
//     through the API in bulk before the loader starts, timed;
//  1. start: every proxy gets a certificate from the control plane's CA
//     (CreateCertificate with a CSR and its join token, which the CA spends
//     in an etcd transaction), opens its own mTLS connection and ADS
//     stream (registering as a sidecar) and applies its complete config;
//  2. route changes, one at a time: the mesh HTTPRoute of one service gets
//     a new header match value (a unique marker); the time from the start
//     of the apply request until the last proxy calling that service has
//     applied a RouteConfiguration with the marker and sent its ACK;
//  3. endpoint changes, one at a time: a Workload of one service gets a new
//     address; the same timing, for the ClusterLoadAssignment;
//  4. endpoint churn: Workloads get new addresses at -churn-rate, round
//     robin over the services, -churn-batch changes to an apply (1: every
//     change its own `trellis apply`); each change is timed from when it
//     was due, so that an API that falls behind shows in the figures.
//
// For each phase: convergence (p50, p99, max), the control plane's CPU
// seconds (/proc/PID/stat) and push rounds (/metrics), bytes received per
// affected proxy per change (proto.Size of each response, as the control
// plane's proxy-status counts them); for the run: RSS (VmRSS sampled,
// VmHWM). Scoping: one proxy's config translated in this process as
// Trellis scopes it and unscoped (every service port of the mesh), in
// bytes and resources. -profile runs control.Run in this binary instead, writing a CPU
// and a heap profile per phase.
//
// Timestamps are wall-clock times of one machine, shared by the processes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func main() {
	if cfg := os.Getenv(loaderEnv); cfg != "" {
		os.Exit(loaderMain(cfg))
	}
	if cfg := os.Getenv(controlEnv); cfg != "" {
		os.Exit(controlMain(cfg))
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, opts, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	if opts.Check && !res.Goals.Pass() {
		os.Exit(1)
	}
}

// options configure a benchmark run.
type options struct {
	Layout layout
	// Modes are "sotw" and/or "delta".
	Modes         []string
	RouteChanges  int
	ChurnRate     float64
	ChurnDuration time.Duration
	// ChurnBatch is how many endpoint changes go into one apply.
	ChurnBatch int
	// Parallel proxies starting at once.
	Parallel int
	// Timeout for one change to reach every proxy.
	Timeout time.Duration
	// Trellis is a prebuilt trellis binary; empty builds one.
	Trellis string
	// Profile, when set, runs the control plane in a wrapper that writes a
	// CPU profile of each mode to Profile.<mode>.
	Profile string
	// Keep keeps the temporary directory (data, logs).
	Keep    bool
	Verbose bool
	// Check exits 1 when a goal is missed.
	Check bool
}

func defaultOptions() options {
	return options{
		Layout:       layout{Services: 1000, Endpoints: 5, Proxies: 1000, Upstreams: 10},
		Modes:        []string{"sotw", "delta"},
		RouteChanges: 20, ChurnRate: 100, ChurnDuration: 30 * time.Second, ChurnBatch: 1,
		Parallel: 50, Timeout: 30 * time.Second,
	}
}

// quickOptions is the smoke run the test suite does.
func quickOptions() options {
	o := defaultOptions()
	o.Layout = layout{Services: 50, Endpoints: 5, Proxies: 50, Upstreams: 10}
	o.RouteChanges = 4
	o.ChurnRate = 50
	o.ChurnDuration = 2 * time.Second
	o.ChurnBatch = 5
	o.Timeout = 15 * time.Second
	return o
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	var o options
	def := defaultOptions()
	quick := fs.Bool("quick", false, "a small smoke run: 50 services, 50 proxies, a few seconds per mode; other flags still apply")
	mode := fs.String("mode", "both", "ADS flavour of the proxies: sotw, delta or both")
	fs.IntVar(&o.Layout.Services, "services", def.Layout.Services, "services")
	fs.IntVar(&o.Layout.Endpoints, "endpoints", def.Layout.Endpoints, "endpoints (Workloads) per service")
	fs.IntVar(&o.Layout.Proxies, "proxies", def.Layout.Proxies, "simulated proxies")
	fs.IntVar(&o.Layout.Upstreams, "upstreams", def.Layout.Upstreams, "services each proxy calls")
	fs.IntVar(&o.RouteChanges, "route-changes", def.RouteChanges, "route changes, applied one at a time")
	fs.Float64Var(&o.ChurnRate, "churn-rate", def.ChurnRate, "endpoint changes per second")
	fs.DurationVar(&o.ChurnDuration, "churn", def.ChurnDuration, "duration of endpoint churn (0 skips it)")
	fs.IntVar(&o.ChurnBatch, "churn-batch", def.ChurnBatch, "endpoint changes per apply during churn (1: every change its own apply, as `trellis apply` of one Workload)")
	fs.IntVar(&o.Parallel, "parallel", def.Parallel, "proxies starting at once")
	fs.DurationVar(&o.Timeout, "timeout", def.Timeout, "time for one change to reach every affected proxy")
	fs.StringVar(&o.Trellis, "trellis", "", "prebuilt trellis binary (default: go build ./cmd/trellis into a temporary directory)")
	fs.StringVar(&o.Profile, "profile", "", "write a CPU profile of the control plane of each mode to FILE.<mode> (runs control.Run in a wrapper, not the trellis binary)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory with the control plane's data and logs")
	fs.BoolVar(&o.Verbose, "v", false, "progress on stderr")
	fs.BoolVar(&o.Check, "check", false, "exit 1 when a goal is missed")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		// The quick sizes, except where a flag says otherwise.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		q := quickOptions()
		pick := func(name string, dst *int, v int) {
			if !set[name] {
				*dst = v
			}
		}
		pick("services", &o.Layout.Services, q.Layout.Services)
		pick("endpoints", &o.Layout.Endpoints, q.Layout.Endpoints)
		pick("proxies", &o.Layout.Proxies, q.Layout.Proxies)
		pick("upstreams", &o.Layout.Upstreams, q.Layout.Upstreams)
		pick("route-changes", &o.RouteChanges, q.RouteChanges)
		if !set["churn-rate"] {
			o.ChurnRate = q.ChurnRate
		}
		if !set["churn"] {
			o.ChurnDuration = q.ChurnDuration
		}
		if !set["timeout"] {
			o.Timeout = q.Timeout
		}
		pick("churn-batch", &o.ChurnBatch, q.ChurnBatch)
	}
	switch *mode {
	case "both":
		o.Modes = []string{"sotw", "delta"}
	case "sotw", "delta":
		o.Modes = []string{*mode}
	default:
		return o, fmt.Errorf("-mode %q: want sotw, delta or both", *mode)
	}
	l := o.Layout
	if l.Services < 1 || l.Endpoints < 1 || l.Proxies < 1 || l.Upstreams < 1 || o.Parallel < 1 || o.ChurnRate <= 0 {
		return o, fmt.Errorf("-services, -endpoints, -proxies, -upstreams, -parallel and -churn-rate must be positive")
	}
	if l.Services*l.Endpoints >= 1<<23 || l.Proxies >= 1<<16 {
		return o, fmt.Errorf("at most 8M endpoints and 65535 proxies")
	}
	return o, nil
}

// loaderMain runs the loader process: config from the environment,
// commands on stdin, events on stdout, logs on stderr.
func loaderMain(raw string) int {
	var cfg loaderConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loader:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "loader")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runLoader(ctx, cfg, os.Stdin, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "loader:", err)
		_ = json.NewEncoder(os.Stdout).Encode(event{Event: "error", Error: err.Error()})
		return 1
	}
	return 0
}

func runtimeStats() (int, float64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), float64(ms.HeapAlloc) / (1 << 20)
}
