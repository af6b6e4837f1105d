// Command ca is the certificate authority benchmark: how fast the control
// plane signs, how long 1,000 proxies take to obtain their first
// certificates at once, and what a new mTLS connection between proxies
// costs against bare Go TLS 1.3.
//
//	go run ./bench/ca                 # 1,000 proxies
//	go run ./bench/ca -quick          # 50 proxies, fewer rounds (the test's run)
//	go run ./bench/ca -proxies 5000
//
//	signing (in this process): ca.CA.Sign of one parsed P-256 CSR on every
//	  core for a fixed count, against as many bare ecdsa.SignASN1 calls with
//	  the CA's intermediate key (BenchmarkSign in internal/ca, timed here)
//
//	certification:
//	  go build ./cmd/trellis; trellis control --data-dir tmp ...
//	  N join tokens ──HTTP API (CreateTokens)──► control plane
//	  N goroutines at once, each a proxy's first contact, as trellis-proxy
//	  makes it: secrets.Manager.Renew (new P-256 key, CSR) ── a new TLS
//	  connection, the control plane verified by its SPIFFE ID, no client
//	  certificate ──► CertificateService.CreateCertificate with the token
//	  ──► the chain installed and verified against the returned bundle
//	  wall time until all N are certified, each request's latency, the
//	  control plane's CPU seconds (/proc/PID/stat)
//
//	handshakes (in this process, loopback TCP, one connection at a time):
//	  bare Go TLS 1.3 (RequireAndVerifyClientCert, RootCAs/ClientCAs pool)
//	  against the proxies' mesh configs (secrets.Manager ServerConfig and
//	  ClientConfig, SPIFFE ID authorization), with the same keys and
//	  certificates, for X25519MLKEM768 and X25519; rounds alternate the
//	  four so that a noisy machine affects them alike; the median round
//
// It prints a report and, last, one JSON line with every figure, the
// ratios and the goals. The client side of the certification runs in this
// process, on the same cores as the control plane: the figure is that of
// one machine doing both.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// options configure a run.
type options struct {
	// Proxies certified at once.
	Proxies int
	// Signatures timed in the signing measurement (and as many bare ones).
	Signatures int
	// Rounds of handshake measurements, Handshakes per configuration in a
	// round.
	Rounds, Handshakes int
	Quick              bool
	Keep               bool
}

func defaultOptions() options {
	return options{Proxies: 1000, Signatures: 20000, Rounds: 10, Handshakes: 200}
}

func quickOptions() options {
	return options{Proxies: 50, Signatures: 1000, Rounds: 2, Handshakes: 20, Quick: true}
}

func main() {
	o := defaultOptions()
	quick := flag.Bool("quick", false, "50 proxies, fewer signatures and handshakes: a smoke run")
	proxies := flag.Int("proxies", 0, "proxies certified at once (default 1000, 50 with -quick)")
	rounds := flag.Int("rounds", 0, "rounds of handshake measurements (default 10, 2 with -quick)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (control plane data and log)")
	flag.Parse()
	if *quick {
		keep := o.Keep
		o = quickOptions()
		o.Keep = keep
	}
	if *proxies > 0 {
		o.Proxies = *proxies
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ca:", err)
		os.Exit(1)
	}
}
