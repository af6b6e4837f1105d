// Command dataplane is the data plane benchmark: the same 1 KB HTTP/1.1
// request path measured, in one run, directly and through two proxy pairs
// doing mesh mTLS, with fortio as the load generator.
//
//	go run ./bench/dataplane            # 10 s per measurement
//	go run ./bench/dataplane -quick     # 1 s per measurement (the test's run)
//
//	fortio ──► direct:      backend (this process, 1 KB answers)
//	fortio ──► trellis-l7:  client sidecar ══mTLS══► server sidecar ──► backend
//	                        (configured over xDS by `trellis control`; one HTTPRoute)
//	fortio ──► haproxy-l7:  haproxy ══mTLS══► haproxy ──► backend (certs from the mesh CA)
//	fortio ──► trellis-l4, haproxy-l4: the same pairs as TCP proxies
//
// Every path is measured at a fixed 1,000 requests/s over 16 connections,
// at saturation over 16 connections, and at saturation over one
// connection. CPU is read from /proc for the proxy processes around each
// measurement; RSS of the idle sidecars before the load. It prints a
// table and, last, one JSON line with every figure, the ratios to direct
// and the goals.
//
// It installs nothing: fortio (go install fortio.org/fortio@v1.68.2) and
// haproxy (apt-get install haproxy) must be on PATH; it says so otherwise.
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
	// Rate of the fixed-rate measurements, requests per second.
	Rate int
	// Conns is the connections of the fixed-rate and saturation runs.
	Conns int
	Quick bool
	Keep  bool
	// Proxy is a prebuilt trellis-proxy to measure instead of this
	// checkout's (e.g. an older build, for a before/after comparison).
	Proxy string
	// Profile writes CPU profiles of the sidecars during the saturation
	// run of trellis-l7 to PROFILE.client and PROFILE.server, and heap
	// profiles to PROFILE.heap (idle client) and PROFILE.fleet.heap.
	Profile string
	// MemoryOnly skips the load: only the memory figures are measured.
	MemoryOnly bool
	// Services is the size of the mesh the capture sidecar of the memory
	// figure sees (fleet.go).
	Services int
}

func defaultOptions() options {
	return options{Duration: 10 * time.Second, Rate: 1000, Conns: 16, Services: 1000}
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
	flag.IntVar(&o.Rate, "rate", o.Rate, "requests per second of the fixed-rate measurements")
	flag.IntVar(&o.Conns, "c", o.Conns, "connections of the fixed-rate and saturation measurements")
	flag.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (configs, logs)")
	flag.StringVar(&o.Proxy, "proxy", "", "a prebuilt trellis-proxy binary to measure instead of building this checkout's")
	flag.BoolVar(&o.MemoryOnly, "memory", false, "measure only memory: the idle sidecars and the capture sidecar seeing -services services, no load")
	flag.IntVar(&o.Services, "services", o.Services, "services in the mesh of the capture sidecar whose memory is measured")
	flag.StringVar(&o.Profile, "profile", "", "write CPU profiles of the sidecars under saturation (trellis-l7) to PROFILE.client and PROFILE.server")
	flag.Parse()
	if *quick {
		o.Quick = true
		if o.Duration == defaultOptions().Duration {
			o.Duration = quickOptions().Duration
		}
	}
	if missing := missingTools(); len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintln(os.Stderr, "dataplane:", m)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dataplane:", err)
		os.Exit(1)
	}
}
