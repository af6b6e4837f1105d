package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
)

// Goals of issue 5.
const (
	goalSignaturesPerSecond = 5000
	goalCertifySeconds      = 2.0 // for 1,000 proxies
	goalHandshakeRatio      = 1.5
)

// result is everything one run measured; its JSON is the last line of the
// output.
type result struct {
	Bench      string            `json:"bench"`
	Machine    string            `json:"machine"`
	Commit     string            `json:"commit"`
	Quick      bool              `json:"quick"`
	Signing    *signingResult    `json:"signing"`
	Certify    *certifyResult    `json:"certify"`
	Handshakes []handshakeResult `json:"handshakes"`
	Goals      []goal            `json:"goals"`
}

type goal struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal"`
	Pass  bool    `json:"pass"`
}

// dist summarizes durations, in seconds.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func distOf(xs []float64) dist {
	if len(xs) == 0 {
		return dist{}
	}
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return dist{N: len(s), P50: at(0.5), P99: at(0.99), Max: s[len(s)-1]}
}

// run measures signing, certification and handshakes, writes the report
// and the JSON line to out and progress to progress.
func run(ctx context.Context, o options, out, progress io.Writer) (*result, error) {
	root, err := benchproc.ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "trellis-bench-ca-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		fmt.Fprintln(progress, "keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	res := &result{Bench: "ca", Machine: machine(), Commit: commit(root), Quick: o.Quick}

	fmt.Fprintf(progress, "signing %d certificates in this process...\n", o.Signatures)
	if res.Signing, err = signing(dir, o.Signatures); err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	fmt.Fprintf(progress, "handshakes: %d rounds of %d per configuration...\n", o.Rounds, o.Handshakes)
	if res.Handshakes, err = handshakes(dir, o.Rounds, o.Handshakes); err != nil {
		return nil, fmt.Errorf("handshakes: %w", err)
	}
	fmt.Fprintln(progress, "building and starting trellis control...")
	c, err := startControl(ctx, root, dir)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	fmt.Fprintf(progress, "certifying %d proxies at once...\n", o.Proxies)
	if res.Certify, err = certify(ctx, c, o.Proxies); err != nil {
		return nil, fmt.Errorf("certification: %w", err)
	}
	if err := c.Exited(); err != nil {
		return nil, err
	}
	res.Goals = goals(res)
	report(out, res)
	return res, nil
}

func goals(r *result) []goal {
	g := []goal{{
		Name: "signatures per second (CA.Sign, all cores)", Value: r.Signing.PerSecond,
		Goal: fmt.Sprintf(">= %d", goalSignaturesPerSecond), Pass: r.Signing.PerSecond >= goalSignaturesPerSecond,
	}}
	// The certification goal is for 1,000 proxies: scale the time of
	// another count linearly.
	scaled := r.Certify.Seconds * 1000 / float64(r.Certify.Proxies)
	g = append(g, goal{
		Name: "seconds to certify 1,000 proxies at once", Value: scaled,
		Goal: fmt.Sprintf("< %.1f", goalCertifySeconds), Pass: scaled < goalCertifySeconds,
	})
	for _, h := range r.Handshakes {
		g = append(g, goal{
			Name: "mesh mTLS handshake / bare Go TLS 1.3, " + h.Curve, Value: h.Ratio,
			Goal: fmt.Sprintf("<= %.1f", goalHandshakeRatio), Pass: h.Ratio <= goalHandshakeRatio,
		})
	}
	return g
}

func report(w io.Writer, r *result) {
	s := r.Signing
	fmt.Fprintf(w, "machine: %s; commit %s\n\n", r.Machine, r.Commit)
	fmt.Fprintf(w, "signing (%d signatures on %d workers, in process)\n", s.Signatures, s.Workers)
	fmt.Fprintf(w, "  CA.Sign            %8.0f signatures/s\n", s.PerSecond)
	fmt.Fprintf(w, "  bare ecdsa.Sign    %8.0f signatures/s (%.0f µs CPU each)\n", s.BarePerSecond, s.BareMicros)
	fmt.Fprintf(w, "  bare / CA          %8.2f×\n\n", s.Ratio)
	cr := r.Certify
	fmt.Fprintf(w, "certification (%d proxies at once, each a new connection and a join token)\n", cr.Proxies)
	fmt.Fprintf(w, "  join tokens        %8.2f s (one API request)\n", cr.TokensSeconds)
	fmt.Fprintf(w, "  all certified in   %8.2f s (%.0f certificates/s)\n", cr.Seconds, cr.PerSecond)
	fmt.Fprintf(w, "  latency            p50 %.0f ms, p99 %.0f ms, max %.0f ms\n", cr.Latency.P50*1e3, cr.Latency.P99*1e3, cr.Latency.Max*1e3)
	fmt.Fprintf(w, "  CPU                control plane %.2f s, proxies (this process) %.2f s\n\n", cr.ControlCPUSeconds, cr.ClientCPUSeconds)
	fmt.Fprintln(w, "new mTLS connection (loopback, both ways verified, median round)")
	for _, h := range r.Handshakes {
		fmt.Fprintf(w, "  %-16s bare %6.0f µs   trellis %6.0f µs   ratio %.2f×\n", h.Curve, h.BareMicros, h.TrellisMicros, h.Ratio)
	}
	fmt.Fprintln(w, "\ngoals")
	for _, g := range r.Goals {
		verdict := "FAIL"
		if g.Pass {
			verdict = "pass"
		}
		fmt.Fprintf(w, "  %-4s %-55s %10.2f  (%s)\n", verdict, g.Name, g.Value, g.Goal)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintln(w, string(b))
}

func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format(time.RFC3339))
}

func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, _ := exec.Command("git", "-C", root, "status", "--porcelain").Output(); len(st) > 0 {
		c += "+dirty"
	}
	return c
}
