package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"trellis.dev/trellis/bench/internal/load"
)

// goalFactor is the share of haproxy's throughput the gateway is to reach.
const goalFactor = 0.8

// keyFigure is what the ratios of a scenario compare: p99 at a fixed rate,
// else the rate reached.
func keyFigure(s scenario, m *measurement) float64 {
	if s.LatencyKey() {
		return m.P99ms
	}
	return m.QPS
}

func keyName(s scenario) string {
	if s.LatencyKey() {
		return s.Name + "_p99"
	}
	return s.Name + "_qps"
}

// ratios compares each path's key figure with direct, haproxy and nginx,
// and checks the goals: throughput (every saturation and the handshakes)
// at least 0.8× haproxy's, p99 at the fixed rate no worse than nginx's.
func (r *result) ratios(ss []scenario) {
	for _, name := range pathNames {
		rt := map[string]float64{}
		for _, s := range ss {
			m := r.Paths[name][s.Name]
			if m == nil {
				continue
			}
			for _, other := range []string{"direct", "haproxy", "nginx"} {
				o := r.Paths[other][s.Name]
				if o == nil || other == name {
					continue
				}
				rt[keyName(s)+"_x_"+other] = load.Ratio(keyFigure(s, m), keyFigure(s, o))
				// CPU per request (or handshake), proxy against proxy.
				if name != "direct" && other != "direct" {
					rt[s.Name+"_cpu_per_1k_x_"+other] = load.Ratio(m.CPUPer1000, o.CPUPer1000)
				}
			}
		}
		r.Ratios[name] = rt
	}
	r.Goals = map[string]bool{}
	t, h, n := r.Paths["trellis"], r.Paths["haproxy"], r.Paths["nginx"]
	for _, s := range ss {
		if t[s.Name] == nil {
			continue
		}
		if s.LatencyKey() {
			if n[s.Name] != nil {
				r.Goals[s.Name+"_p99_le_nginx"] = t[s.Name].P99ms <= n[s.Name].P99ms
			}
		} else if h[s.Name] != nil {
			r.Goals[fmt.Sprintf("%s_qps_ge_%.1fx_haproxy", s.Name, goalFactor)] = t[s.Name].QPS >= goalFactor*h[s.Name].QPS
		}
	}
	// A saturation figure is the proxy's capacity only when the proxy
	// ran out of CPU; otherwise say what set it.
	for _, name := range pathNames[1:] {
		for _, s := range ss {
			m := r.Paths[name][s.Name]
			if m == nil || s.LatencyKey() || m.CPU >= 0.9*float64(r.Threads) {
				continue
			}
			var why string
			switch {
			case r.ProxyCPUs != "" && m.ProxyCPUsBusy >= 0.9:
				why = fmt.Sprintf("its CPUs were %.0f%% busy: other processes of this machine took the rest", 100*m.ProxyCPUsBusy)
			case m.LoadCPUsBusy >= 0.9:
				why = fmt.Sprintf("the load generator's and backend's CPUs were %.0f%% busy: they set the rate", 100*m.LoadCPUsBusy)
			default:
				why = "no CPU was saturated: the round trips of the connections set the rate"
			}
			r.Notes = append(r.Notes, fmt.Sprintf("%s %s: the proxy used %.2f of its %d CPU(s); %s", name, s.Name, m.CPU, r.Threads, why))
		}
	}
}

func (r *result) report(w io.Writer, ss []scenario) {
	pinned := "unpinned"
	if r.ProxyCPUs != "" {
		pinned = fmt.Sprintf("pinned to CPU %s, the load generator and backend to %s", r.ProxyCPUs, r.LoadCPUs)
	}
	fmt.Fprintf(w, "\nIngress benchmark: 1 KB HTTP/1.1 responses through one proxy; each proxy %s, %d thread(s) or worker(s); %s each.\n",
		pinned, r.Threads, r.Duration)
	fmt.Fprintf(w, "Ratios (×) compare p99 at the fixed rate (lower is better) and the rate reached otherwise (higher is better); handshakes are new TLS 1.3 connections, X25519, one request each.\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tpath\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\treq/s\terrors\tproxy vCPU\tvCPU/1k rps\tCPUs busy proxy/load\t×direct\t×haproxy\t×nginx\t")
	for _, s := range ss {
		for _, name := range pathNames {
			m := r.Paths[name][s.Name]
			if m == nil {
				continue
			}
			cpu, per := "-", "-"
			if name != "direct" {
				cpu, per = fmt.Sprintf("%.3f", m.CPU), fmt.Sprintf("%.3f", m.CPUPer1000)
			}
			x := func(other string) string {
				if other == name {
					return "1.00"
				}
				if v, ok := r.Ratios[name][keyName(s)+"_x_"+other]; ok {
					return fmt.Sprintf("%.2f", v)
				}
				return "-"
			}
			busy := fmt.Sprintf("%.0f%%/%.0f%%", 100*m.ProxyCPUsBusy, 100*m.LoadCPUsBusy)
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.0f\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Label, name,
				m.P50ms, m.P90ms, m.P99ms, m.P999ms, m.QPS, m.Errors, cpu, per, busy, x("direct"), x("haproxy"), x("nginx"))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nGoals (trellis against the others measured in this run):\n")
	for _, s := range ss {
		for _, g := range []string{s.Name + "_p99_le_nginx", fmt.Sprintf("%s_qps_ge_%.1fx_haproxy", s.Name, goalFactor)} {
			if met, ok := r.Goals[g]; ok {
				mark := "MISS"
				if met {
					mark = "PASS"
				}
				fmt.Fprintf(w, "  %-40s %s\n", g, mark)
			}
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "\nNotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	fmt.Fprintln(w)
}
