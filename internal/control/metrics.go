package control

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the control plane's Prometheus metrics, on its own
// registry, served at /metrics on the debug port.
type metrics struct {
	registry      *prometheus.Registry
	pushes        *prometheus.CounterVec
	rounds        prometheus.Counter
	roundSeconds  prometheus.Histogram
	translateSecs prometheus.Histogram
	refreshes     *prometheus.CounterVec
	applies       *prometheus.CounterVec
	applyWaves    *prometheus.CounterVec
	applySteps    *prometheus.HistogramVec
}

func newMetrics(connected func() float64) *metrics {
	const ns, sub = "trellis", "control"
	m := &metrics{
		registry: prometheus.NewRegistry(),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "proxy_pushes_total",
			Help: "Configs built for one proxy, by result: changed (sent), unchanged (nothing to send), refused (inconsistent, not sent).",
		}, []string{"result"}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "push_rounds_total",
			Help: "Rounds of rebuilding every connected proxy's config after changes.",
		}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "push_round_seconds",
			Help:    "Time to rebuild and push every connected proxy's config.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		translateSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "translate_seconds",
			Help:    "Time to translate one proxy's config.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "endpoint_refreshes_total",
			Help: "Proxy configs whose changed dependencies were endpoints only, by outcome: refreshed (only those clusters' endpoints rebuilt), declined (more had changed: translated in full).",
		}, []string{"outcome"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "applies_total",
			Help: "trellis apply requests, by result: applied, refused.",
		}, []string{"result"}),
		applyWaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "apply_waves_total",
			Help: "Groups of concurrent applies judged with one analysis, by how they were stored: together, or one by one (their combined change added an error or a finding of no single apply).",
		}, []string{"how"}),
		applySteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "apply_step_seconds",
			Help:    "Time of each step of judging and storing a wave of applies: read (what is stored under their keys), analyze, commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"step"}),
	}
	m.registry.MustRegister(m.pushes, m.rounds, m.roundSeconds, m.translateSecs, m.refreshes, m.applies, m.applyWaves, m.applySteps,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "proxies_connected",
			Help: "Proxies with an open ADS stream to this control plane.",
		}, connected),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
