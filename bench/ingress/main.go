// Command ingress is the ingress benchmark: HTTP through one Trellis
// gateway (trellis-proxy --gateway), haproxy and nginx, configured
// equally on this machine, and straight to the backend as the baseline,
// measured in one run.
//
//	go run ./bench/ingress            # 10 s per measurement
//	go run ./bench/ingress -quick     # 1 s per measurement (the test's run)
//
//	fortio ──► direct:   backend (this process, 1 KB answers; TLS on its own port)
//	fortio ──► trellis:  gateway infra/edge (Gateway + HTTPRoute over xDS) ──► backend
//	fortio ──► haproxy:  haproxy (same route) ──► backend
//	fortio ──► nginx:    nginx (same route) ──► backend
//
// The backend is a Workload without a sidecar, so the gateway speaks
// plaintext HTTP/1.1 to it, as haproxy and nginx do: each proxy does the
// same work. Each proxy runs pinned to the same CPUs (taskset) with as
// many threads or worker processes as CPUs; the load generator and the
// backend run on the other CPUs. Scenarios: a fixed 1,000 requests/s
// over 16 connections (latency percentiles), plain HTTP at saturation
// over 16 and 64 connections, HTTPS (terminated by the proxy) at
// saturation over 16 kept-alive connections, and TLS handshakes: a new
// TLS 1.3 connection (X25519, ECDSA P-256 certificate, no resumption) for
// every request. CPU is read from /proc for each proxy's processes. It
// prints a table, the goals as PASS or MISS, and, last, one JSON line
// with every figure and the ratios.
//
// It installs nothing: fortio (go install fortio.org/fortio@v1.68.2),
// haproxy and nginx (apt-get install haproxy nginx) and taskset
// (util-linux) must be there; it says so otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options configure a run.
type options struct {
	// Duration of each measurement.
	Duration time.Duration
	// Rate of the fixed-rate measurement, requests per second.
	Rate int
	// Conns is the connections of the fixed-rate and saturation runs;
	// ManyConns those of the second saturation run.
	Conns, ManyConns int
	// CPUs is the taskset list of CPUs the proxies run on, each with as
	// many threads or workers as CPUs; "all" pins nothing. Empty is the
	// last CPU when there are two or more.
	CPUs  string
	Quick bool
	Keep  bool
	// Proxy is a prebuilt trellis-proxy to measure instead of this
	// checkout's.
	Proxy string
	// Profile writes CPU profiles of the gateway during the plain
	// saturation run (PROFILE.http) and the handshakes (PROFILE.tls).
	Profile string
}

func defaultOptions() options {
	return options{Duration: 10 * time.Second, Rate: 1000, Conns: 16, ManyConns: 64}
}

func quickOptions() options {
	o := defaultOptions()
	o.Duration, o.Quick = time.Second, true
	return o
}

func main() {
	o := defaultOptions()
	quick := flag.Bool("quick", false, "1 s per measurement: a smoke run")
	flag.DurationVar(&o.Duration, "duration", o.Duration, "duration of each measurement")
	flag.IntVar(&o.Rate, "rate", o.Rate, "requests per second of the fixed-rate measurement")
	flag.IntVar(&o.Conns, "c", o.Conns, "connections of the fixed-rate, saturation, HTTPS and handshake measurements")
	flag.IntVar(&o.ManyConns, "c2", o.ManyConns, "connections of the second saturation measurement; 0 skips it")
	flag.StringVar(&o.CPUs, "cpus", "", "CPUs the proxies are pinned to (taskset list, e.g. 1 or 2-3), the load generator and backend get the others; all: no pinning (default: the last CPU)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (configs, logs)")
	flag.StringVar(&o.Proxy, "proxy", "", "a prebuilt trellis-proxy binary to measure instead of building this checkout's")
	flag.StringVar(&o.Profile, "profile", "", "write CPU profiles of the gateway at plain saturation (PROFILE.http) and during the handshakes (PROFILE.tls)")
	flag.Parse()
	if *quick {
		o.Quick = true
		if o.Duration == defaultOptions().Duration {
			o.Duration = quickOptions().Duration
		}
	}
	if missing := missingTools(); len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintln(os.Stderr, "ingress:", m)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}
