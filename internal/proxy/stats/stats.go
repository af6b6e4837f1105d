// Package stats holds the data plane's metrics: counters and histograms
// updated with atomic operations on the request path, grouped in families
// with fixed label names, and written in the Prometheus text exposition
// format (version 0.0.4).
//
//	Registry ──Counter/Histogram(name, help, labels)──► family
//	family.With(label values) ──once per label set──► *Counter | *Histogram
//	request path: Counter.Add, Histogram.Observe (atomics, no allocation)
//	scrape: Registry.WriteText ──► # HELP, # TYPE, one line per series
//
// It does not link the Prometheus client library, whose registry and
// collectors would cost the proxy several megabytes of memory.
package stats

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry is a set of metric families, written in registration order.
type Registry struct {
	mu       sync.Mutex
	families []*family
}

type family struct {
	name, help, typ string
	labels          []string
	buckets         []float64 // histograms

	mu     sync.RWMutex
	series map[string]*series // by the label values joined with \xff
	order  []*series
}

type series struct {
	labels string // rendered: a="x",b="y"
	c      *Counter
	h      *Histogram
}

// CounterVec is a family of counters.
type CounterVec struct{ f *family }

// HistogramVec is a family of histograms.
type HistogramVec struct{ f *family }

// Counter creates a counter family.
func (r *Registry) Counter(name, help string, labels ...string) CounterVec {
	return CounterVec{r.add(&family{name: name, help: help, typ: "counter", labels: labels})}
}

// Histogram creates a histogram family with the given upper bounds,
// ascending (+Inf is implied).
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) HistogramVec {
	return HistogramVec{r.add(&family{name: name, help: help, typ: "histogram", labels: labels, buckets: buckets})}
}

func (r *Registry) add(f *family) *family {
	f.series = map[string]*series{}
	r.mu.Lock()
	r.families = append(r.families, f)
	r.mu.Unlock()
	return f
}

// With returns the counter of the label values, in the family's label
// order, creating it on first use. Callers on a hot path keep the result.
func (v CounterVec) With(values ...string) *Counter { return v.f.with(values).c }

// With returns the histogram of the label values, in the family's label
// order, creating it on first use.
func (v HistogramVec) With(values ...string) *Histogram { return v.f.with(values).h }

func (f *family) with(values []string) *series {
	if len(values) != len(f.labels) {
		panic("stats: " + f.name + ": " + strconv.Itoa(len(values)) + " label values for " + strconv.Itoa(len(f.labels)) + " labels")
	}
	key := strings.Join(values, "\xff")
	f.mu.RLock()
	s := f.series[key]
	f.mu.RUnlock()
	if s != nil {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s = f.series[key]; s != nil {
		return s
	}
	var b strings.Builder
	for i, l := range f.labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	s = &series{labels: b.String()}
	if f.typ == "counter" {
		s.c = &Counter{}
	} else {
		s.h = &Histogram{bounds: f.buckets, counts: make([]atomic.Uint64, len(f.buckets)+1)}
	}
	f.series[key] = s
	f.order = append(f.order, s)
	return s
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// Counter only goes up.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Value returns the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Histogram counts observations in buckets by upper bound.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// WriteText writes every family with at least one series in the text
// exposition format.
func (r *Registry) WriteText(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	r.mu.Lock()
	fams := slices.Clone(r.families)
	r.mu.Unlock()
	var buf []byte
	for _, f := range fams {
		f.mu.RLock()
		order := slices.Clone(f.order)
		f.mu.RUnlock()
		if len(order) == 0 {
			continue
		}
		buf = append(buf[:0], "# HELP "...)
		buf = append(buf, f.name...)
		buf = append(buf, ' ')
		buf = append(buf, f.help...)
		buf = append(buf, "\n# TYPE "...)
		buf = append(buf, f.name...)
		buf = append(buf, ' ')
		buf = append(buf, f.typ...)
		buf = append(buf, '\n')
		for _, s := range order {
			if s.c != nil {
				buf = appendSample(buf, f.name, s.labels, "", "", float64(s.c.Value()))
				continue
			}
			var cum uint64
			for i := range s.h.counts {
				cum += s.h.counts[i].Load()
				le := "+Inf"
				if i < len(s.h.bounds) {
					le = strconv.FormatFloat(s.h.bounds[i], 'g', -1, 64)
				}
				buf = appendSample(buf, f.name+"_bucket", s.labels, "le", le, float64(cum))
			}
			buf = appendSample(buf, f.name+"_sum", s.labels, "", "", math.Float64frombits(s.h.sum.Load()))
			buf = appendSample(buf, f.name+"_count", s.labels, "", "", float64(cum))
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func appendSample(b []byte, name, labels, extraName, extraValue string, v float64) []byte {
	b = append(b, name...)
	if labels != "" || extraName != "" {
		b = append(b, '{')
		b = append(b, labels...)
		if extraName != "" {
			if labels != "" {
				b = append(b, ',')
			}
			b = append(b, extraName...)
			b = append(b, `="`...)
			b = append(b, extraValue...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}
