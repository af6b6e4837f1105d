package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"trellis.dev/trellis/bench/internal/load"
)

// ratios compares every path with direct, and checks the goals on this
// machine:
//
//	added p99 at the fixed rate     at most 0.3 ms (trellis-l7)
//	p50 on one connection           at most 3× direct
//	throughput at saturation        at least half of direct (L7 with mTLS)
//	sidecar CPU                     at most 0.1 vCPU per 1,000 requests/s
//	p99 at the fixed rate           no worse than the haproxy pair
//	idle sidecar memory             at most 20 MB RSS
//	sidecar seeing 1,000 services   at most 40 MB RSS
func (r *result) ratios() {
	direct := r.Paths["direct"]
	for name, ms := range r.Paths {
		if name == "direct" {
			continue
		}
		rt := map[string]float64{}
		if d, m := direct["fixed"], ms["fixed"]; d != nil && m != nil {
			rt["fixed_p50"] = load.Ratio(m.P50ms, d.P50ms)
			rt["fixed_p99"] = load.Ratio(m.P99ms, d.P99ms)
			rt["fixed_added_p99_ms"] = load.Round(m.P99ms-d.P99ms, 3)
		}
		if d, m := direct["one_conn"], ms["one_conn"]; d != nil && m != nil {
			rt["one_conn_p50"] = load.Ratio(m.P50ms, d.P50ms)
		}
		if d, m := direct["saturation"], ms["saturation"]; d != nil && m != nil {
			rt["saturation_qps"] = load.Ratio(m.QPS, d.QPS)
		}
		r.Ratios[name] = rt
	}
	r.Goals = map[string]bool{
		"sidecar_idle_rss_le_20mb": r.RSSIdleMB["client-sidecar"] <= 20 && r.RSSIdleMB["server-sidecar"] <= 20,
	}
	t := r.Ratios["trellis-l7"]
	tl7, hl7 := r.Paths["trellis-l7"], r.Paths["haproxy-l7"]
	if tl7["fixed"] != nil && hl7["fixed"] != nil {
		r.Goals["added_p99_fixed_le_0.3ms"] = t["fixed_added_p99_ms"] <= 0.3
		r.Goals["one_conn_p50_le_3x"] = t["one_conn_p50"] <= 3
		r.Goals["saturation_qps_ge_half"] = t["saturation_qps"] >= 0.5
		r.Goals["cpu_le_0.1_vcpu_per_1000rps"] = tl7["fixed"].CPUPer1000 <= 0.1
		r.Goals["p99_fixed_le_haproxy"] = tl7["fixed"].P99ms <= hl7["fixed"].P99ms
	}
	if r.Fleet != nil && r.Fleet.Services >= 1000 {
		r.Goals["sidecar_1k_services_rss_le_40mb"] = r.Fleet.RSSMB <= 40
	}
}

func (r *result) report(w io.Writer) {
	fmt.Fprintf(w, "\nData plane benchmark: 1 KB HTTP/1.1 responses; fixed = %d req/s over %d connections, saturation = as fast as possible over %d, one_conn = as fast as possible over 1; %s each.\n\n",
		r.Rate, r.Conns, r.Conns, r.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Paths) == 0 {
		tw = tabwriter.NewWriter(io.Discard, 0, 0, 2, ' ', 0) // -memory: no load
	}
	fmt.Fprintln(tw, "path\tmode\tp50 ms\tp90 ms\tp99 ms\treq/s\terrors\tproxy vCPU\tvCPU/1k rps\tp50 ×direct\tp99 ×direct\t")
	for _, name := range []string{"direct", "trellis-l7", "haproxy-l7", "trellis-l4", "haproxy-l4"} {
		for _, m := range modes {
			ms := r.Paths[name][m.Name]
			if ms == nil {
				continue
			}
			d := r.Paths["direct"][m.Name]
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.3f\t%.3f\t%.0f\t%d\t%.3f\t%.3f\t%.2f\t%.2f\t\n", name, m.Name, ms.P50ms, ms.P90ms, ms.P99ms, ms.QPS, ms.Errors,
				ms.CPU, ms.CPUPer1000, load.Ratio(ms.P50ms, d.P50ms), load.Ratio(ms.P99ms, d.P99ms))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRSS idle (MB): ")
	for _, n := range []string{"client-sidecar", "server-sidecar", "haproxy-client", "haproxy-server"} {
		fmt.Fprintf(w, "%s %.1f  ", n, r.RSSIdleMB[n])
	}
	if len(r.Paths) > 0 {
		fmt.Fprintf(w, "\nRSS after the load (MB): ")
		for _, n := range []string{"client-sidecar", "server-sidecar", "haproxy-client", "haproxy-server"} {
			fmt.Fprintf(w, "%s %.1f  ", n, r.RSSLoadedMB[n])
		}
	}
	if f := r.Fleet; f != nil {
		fmt.Fprintf(w, "\nRSS of a capture sidecar seeing %d services (MB): %.1f  (clusters %d, endpoint sets %d, listeners %d, route configs %d; %d kB of xDS)",
			f.Services, f.RSSMB, f.Resources["CDS"], f.Resources["EDS"], f.Resources["LDS"], f.Resources["RDS"], f.Bytes/1000)
	}
	fmt.Fprintf(w, "\n\nGoals:\n")
	for _, g := range []string{"added_p99_fixed_le_0.3ms", "one_conn_p50_le_3x", "saturation_qps_ge_half", "cpu_le_0.1_vcpu_per_1000rps", "p99_fixed_le_haproxy", "sidecar_idle_rss_le_20mb", "sidecar_1k_services_rss_le_40mb"} {
		met, ok := r.Goals[g]
		if !ok {
			continue
		}
		mark := "MISSED"
		if met {
			mark = "met"
		}
		fmt.Fprintf(w, "  %-32s %s\n", g, mark)
	}
	fmt.Fprintln(w)
}
