package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is a reading of /proc/PID.
type procStat struct {
	RSSBytes  int64 // VmRSS
	PeakBytes int64 // VmHWM
	CPU       float64
}

func readProc(pid int) (procStat, error) {
	var s procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &s.RSSBytes
		case "VmHWM":
			dst = &s.PeakBytes
		default:
			continue
		}
		f := strings.Fields(value) // "123456 kB"
		if len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			*dst = n << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest) // field 3 onwards
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = float64(ut+st) / clockTicks
	return s, nil
}

// sampler follows a process's RSS.
type sampler struct {
	pid int

	mu      sync.Mutex
	maxRSS  int64
	samples int
}

// peak is the highest RSS sampled.
func (s *sampler) peak() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRSS
}

func (s *sampler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if st, err := readProc(s.pid); err == nil {
				s.mu.Lock()
				s.maxRSS = max(s.maxRSS, st.RSSBytes)
				s.samples++
				s.mu.Unlock()
			}
		}
	}
}

// metrics are the control plane's Prometheus counters the benchmark reads.
type metrics struct {
	Rounds          float64 // trellis_control_push_rounds_total
	RoundSecondsSum float64 // trellis_control_push_round_seconds_sum
	Changed         float64 // trellis_control_proxy_pushes_total{result="changed"}
	Unchanged       float64 // trellis_control_proxy_pushes_total{result="unchanged"}
	Translations    float64 // trellis_control_translate_seconds_count
	TranslateSum    float64 // trellis_control_translate_seconds_sum
	Refreshed       float64 // trellis_control_endpoint_refreshes_total{outcome="refreshed"}
	// Steps of judging and storing waves of applies: count and seconds.
	Analyses, AnalyzeSum, Commits, CommitSum, ReadSum float64
	Applies                                           float64 // trellis_control_applies_total{result="applied"}
	// The Go runtime's view of the process, to tell live heap from the
	// rest of the RSS.
	HeapAlloc  float64 // go_memstats_heap_alloc_bytes
	HeapSys    float64 // go_memstats_heap_sys_bytes
	Goroutines float64 // go_goroutines
}

func (m metrics) sub(o metrics) metrics {
	return metrics{Rounds: m.Rounds - o.Rounds, RoundSecondsSum: m.RoundSecondsSum - o.RoundSecondsSum,
		Changed: m.Changed - o.Changed, Unchanged: m.Unchanged - o.Unchanged,
		Translations: m.Translations - o.Translations, TranslateSum: m.TranslateSum - o.TranslateSum,
		Refreshed: m.Refreshed - o.Refreshed,
		Analyses:  m.Analyses - o.Analyses, AnalyzeSum: m.AnalyzeSum - o.AnalyzeSum,
		Commits: m.Commits - o.Commits, CommitSum: m.CommitSum - o.CommitSum, ReadSum: m.ReadSum - o.ReadSum,
		Applies: m.Applies - o.Applies}
}

func scrapeMetrics(ctx context.Context, api string) (metrics, error) {
	var m metrics
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metrics, error) {
	var m metrics
	targets := map[string]*float64{
		"trellis_control_push_rounds_total":                             &m.Rounds,
		"trellis_control_push_round_seconds_sum":                        &m.RoundSecondsSum,
		`trellis_control_proxy_pushes_total{result="changed"}`:          &m.Changed,
		`trellis_control_proxy_pushes_total{result="unchanged"}`:        &m.Unchanged,
		"trellis_control_translate_seconds_count":                       &m.Translations,
		"trellis_control_translate_seconds_sum":                         &m.TranslateSum,
		`trellis_control_applies_total{result="applied"}`:               &m.Applies,
		`trellis_control_endpoint_refreshes_total{outcome="refreshed"}`: &m.Refreshed,
		`trellis_control_apply_step_seconds_count{step="analyze"}`:      &m.Analyses,
		`trellis_control_apply_step_seconds_sum{step="analyze"}`:        &m.AnalyzeSum,
		`trellis_control_apply_step_seconds_count{step="commit"}`:       &m.Commits,
		`trellis_control_apply_step_seconds_sum{step="commit"}`:         &m.CommitSum,
		`trellis_control_apply_step_seconds_sum{step="read"}`:           &m.ReadSum,
		"go_memstats_heap_alloc_bytes":                                  &m.HeapAlloc,
		"go_memstats_heap_sys_bytes":                                    &m.HeapSys,
		"go_goroutines":                                                 &m.Goroutines,
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if dst, ok := targets[line[:i]]; ok {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				return m, fmt.Errorf("/metrics: %q: %w", line, err)
			}
			*dst = v
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found == 0 {
		return m, fmt.Errorf("/metrics: none of the control plane's push metrics (trellis_control_*) found")
	}
	return m, nil
}
