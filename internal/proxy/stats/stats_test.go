package stats

import (
	"strings"
	"testing"
)

func TestWriteText(t *testing.T) {
	var r Registry
	c := r.Counter("t_requests_total", "Requests.", "code", "path")
	c.With("200", `/a"b`).Add(3)
	c.With("200", `/a"b`).Inc()
	r.Counter("t_unused_total", "Never used.")
	h := r.Histogram("t_duration_milliseconds", "Durations.", []float64{1, 10}, "code")
	hs := h.With("503")
	hs.Observe(0.5)
	hs.Observe(5)
	hs.Observe(50)
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP t_requests_total Requests.
# TYPE t_requests_total counter
t_requests_total{code="200",path="/a\"b"} 4
# HELP t_duration_milliseconds Durations.
# TYPE t_duration_milliseconds histogram
t_duration_milliseconds_bucket{code="503",le="1"} 1
t_duration_milliseconds_bucket{code="503",le="10"} 2
t_duration_milliseconds_bucket{code="503",le="+Inf"} 3
t_duration_milliseconds_sum{code="503"} 55.5
t_duration_milliseconds_count{code="503"} 3
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestObserveAllocates(t *testing.T) {
	var r Registry
	h := r.Histogram("h", "h", []float64{1, 2, 5}).With()
	c := r.Counter("c", "c").With()
	if n := testing.AllocsPerRun(100, func() { h.Observe(3); c.Inc() }); n != 0 {
		t.Errorf("%v allocations per observation", n)
	}
}
