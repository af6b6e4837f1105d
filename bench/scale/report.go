package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// result is everything one benchmark run measured; its JSON is the last
// line of the output.
type result struct {
	Bench   string `json:"bench"`
	Layout  layout `json:"layout"`
	Machine string `json:"machine"`
	// Commit is what the measured trellis was built from.
	Commit string `json:"commit"`
	// Modes by name: sotw, delta.
	Modes map[string]*modeResult `json:"modes"`
	// Scoping is one proxy's config with and without scoping.
	Scoping *scopingResult `json:"scoping,omitempty"`
	Goals   goals          `json:"goals"`
}

// dist summarizes durations, in seconds.
type dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func distOf(xs []float64) dist {
	if len(xs) == 0 {
		return dist{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	// Nearest rank.
	rank := func(p float64) float64 { return s[max(0, int(math.Ceil(p*float64(len(s))))-1)] }
	return dist{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1], Mean: sum / float64(len(s))}
}

func (d dist) String() string {
	if d.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (mean %s, n=%d)", ms(d.P50), ms(d.P99), ms(d.Max), ms(d.Mean), d.N)
}

func ms(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond).String()
}

type modeResult struct {
	Mode  string       `json:"mode"`
	Setup setupResult  `json:"setup"`
	Route *phaseResult `json:"route"`
	// Endpoint is single endpoint changes, one at a time.
	Endpoint *phaseResult `json:"endpoint"`
	Churn    *phaseResult `json:"churn,omitempty"`
	// ControlPlane memory, MB.
	RSSIdleMB float64 `json:"rssIdleMB"` // after every proxy synced, once pushes stopped
	RSSPeakMB float64 `json:"rssPeakMB"` // VmHWM at the end
	RSSEndMB  float64 `json:"rssEndMB"`
	// HeapIdleMB is the Go heap allocated (live and not yet collected) and
	// HeapSysMB what the heap holds from the OS, when idle; the rest of
	// the RSS is stacks, the embedded etcd's memory map and the runtime.
	HeapIdleMB     float64 `json:"heapAllocIdleMB"`
	HeapSysIdleMB  float64 `json:"heapSysIdleMB"`
	GoroutinesIdle float64 `json:"goroutinesIdle"`
	// Bytes of one proxy's complete config, and what it received to get it.
	ConfigBytesPerProxy float64 `json:"configBytesPerProxy"`
	StartBytesPerProxy  float64 `json:"startBytesPerProxy"`
	// ServerBytes and LoaderBytes are every byte sent over the whole run as
	// the control plane's proxy-status counts them and as the proxies
	// received them: they should agree.
	ServerBytes int64 `json:"serverBytes"`
	LoaderBytes int64 `json:"loaderBytes"`
	// LoaderCPUSeconds is the simulated proxies' CPU time over the run,
	// taken from the same two cores as the control plane's.
	LoaderCPUSeconds float64 `json:"loaderCpuSeconds"`
}

type setupResult struct {
	Resources          int     `json:"resources"`
	ApplyMeshSeconds   float64 `json:"applyMeshSeconds"`
	ApplyWorkloadsSecs float64 `json:"applyWorkloadsSeconds"`
	// TokensSeconds: a join token made for every proxy through the API
	// (one request per 5,000).
	TokensSeconds float64 `json:"tokensSeconds"`
	// StartSeconds: every proxy certified (spending its join token),
	// connected and fully configured, Parallel at a time.
	StartSeconds    float64 `json:"startSeconds"`
	StartCPUSeconds float64 `json:"startCpuSeconds"`
	StartRounds     float64 `json:"startRounds"`
}

// phaseResult is one phase of changes: route changes or endpoint churn.
type phaseResult struct {
	Changes int `json:"changes"`
	// Completed changes reached every affected proxy in time.
	Completed int `json:"completed"`
	TimedOut  int `json:"timedOut"`
	// Affected is the mean number of proxies a change concerns.
	Affected float64 `json:"affected"`
	// Convergence: from the apply request (route) or the time the change
	// was due (churn) until the last affected proxy sent its ACK.
	Convergence dist `json:"convergence"`
	// Apply is the API call alone.
	Apply dist `json:"apply"`
	// Churn only: the rate asked for and achieved, and the most changes
	// that were due but not yet accepted by the API (it not keeping up).
	Rate float64 `json:"rate,omitempty"`
	// Batch is how many changes went into one apply.
	Batch        int     `json:"batch,omitempty"`
	AchievedRate float64 `json:"achievedRate,omitempty"`
	// How the control plane judged and stored the phase's applies:
	// analyses (one per wave of applies judged together), store
	// transactions, and the mean time of each step.
	Analyses    float64 `json:"analyses,omitempty"`
	AnalyzeMean float64 `json:"analyzeSecondsMean,omitempty"`
	Commits     float64 `json:"commits,omitempty"`
	CommitMean  float64 `json:"commitSecondsMean,omitempty"`
	ReadMean    float64 `json:"readSecondsMean,omitempty"`
	MaxBacklog  int     `json:"maxBacklog,omitempty"`
	ApplyErrors int     `json:"applyErrors,omitempty"`
	// Dropped changes were still unsent when the API had had as long
	// again as the schedule to catch up.
	Dropped int `json:"dropped,omitempty"`
	// Control plane work over the phase.
	Seconds              float64 `json:"seconds"`
	CPUSeconds           float64 `json:"cpuSeconds"`
	PushRounds           float64 `json:"pushRounds"`
	CPUPerRound          float64 `json:"cpuSecondsPerRound"`
	CPUPerChange         float64 `json:"cpuSecondsPerChange"`
	RoundSecondsMean     float64 `json:"roundSecondsMean"`
	TranslationsPerRound float64 `json:"translationsPerRound"`
	// RefreshedPerRound of those translations only refreshed endpoints.
	RefreshedPerRound float64 `json:"refreshedPerRound"`
	ProxyPushes       float64 `json:"proxyPushes"` // configs that changed and were sent
	// Bytes the proxies received over the phase, by xDS type, per change
	// per affected proxy, and in all.
	Bytes                 map[string]int64 `json:"bytes"`
	BytesPerAffectedProxy float64          `json:"bytesPerAffectedProxyPerChange"`
	// FractionOfFullPush is BytesPerAffectedProxy over one proxy's
	// complete config.
	FractionOfFullPush float64 `json:"fractionOfFullPush"`
}

// goals are the targets of the issue, judged on this run.
type goals struct {
	RouteP99UnderOneSecond goal `json:"routeP99Under1s"`
	RSSUnderOneGB          goal `json:"rssUnder1GB"`
	// DeltaEndpointChangeUnderTenth: in delta mode one endpoint change
	// costs an affected proxy under a tenth of a full push.
	DeltaEndpointChangeUnderTenth goal `json:"deltaEndpointChangeUnderTenthOfFullPush"`
}

type goal struct {
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	// Pass is nil when the run did not measure it.
	Pass *bool `json:"pass"`
}

func (g goals) Pass() bool {
	for _, x := range []goal{g.RouteP99UnderOneSecond, g.RSSUnderOneGB, g.DeltaEndpointChangeUnderTenth} {
		if x.Pass != nil && !*x.Pass {
			return false
		}
	}
	return true
}

func judge(value, target float64, measured bool) goal {
	g := goal{Value: value, Target: target}
	if measured {
		ok := value < target
		g.Pass = &ok
	}
	return g
}

func (r *result) judge(modes []string) {
	worstP99, peak := 0.0, 0.0
	routes := false
	for _, m := range r.Modes {
		if m.Route != nil && m.Route.Convergence.N > 0 {
			routes = true
			p99 := m.Route.Convergence.P99
			if m.Route.TimedOut > 0 {
				p99 = math.Inf(1)
			}
			worstP99 = max(worstP99, p99)
		}
		peak = max(peak, m.RSSPeakMB)
	}
	if math.IsInf(worstP99, 1) {
		worstP99 = -1 // JSON has no infinity; a timeout fails the goal
	}
	r.Goals.RouteP99UnderOneSecond = judge(worstP99, 1, routes)
	if worstP99 < 0 {
		f := false
		r.Goals.RouteP99UnderOneSecond.Pass = &f
	}
	r.Goals.RSSUnderOneGB = judge(peak, 1024, len(r.Modes) > 0)
	if d := r.Modes["delta"]; d != nil && d.Endpoint != nil && d.Endpoint.Completed > 0 {
		r.Goals.DeltaEndpointChangeUnderTenth = judge(d.Endpoint.FractionOfFullPush, 0.1, true)
	}
}

func kb(b float64) string {
	switch {
	case b >= 10<<20:
		return fmt.Sprintf("%.1f MB", b/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.1f kB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func (r *result) print(w io.Writer, modes []string) {
	l := r.Layout
	fmt.Fprintf(w, "\nTrellis control plane scale benchmark (%s; trellis %s)\n", r.Machine, r.Commit)
	fmt.Fprintf(w, "%d services × %d endpoints, %d proxies calling %d services each (a change concerns %.1f%% of proxies)\n",
		l.Services, l.Endpoints, l.Proxies, l.upstreamsPerProxy(), 100*float64(l.upstreamsPerProxy())/float64(max(1, l.Services)))
	for _, name := range modes {
		m := r.Modes[name]
		if m == nil {
			continue
		}
		fmt.Fprintf(w, "\n== %s ==\n", strings.ToUpper(name))
		s := m.Setup
		fmt.Fprintf(w, "setup          %d resources applied in %.1fs (mesh) + %.1fs (workloads)\n", s.Resources, s.ApplyMeshSeconds, s.ApplyWorkloadsSecs)
		fmt.Fprintf(w, "join tokens    %d made through the API in %.2fs\n", l.Proxies, s.TokensSeconds)
		fmt.Fprintf(w, "start          %d proxies certified with their tokens, connected, configured in %.1fs; control plane %.1f CPU s, %.0f push rounds\n",
			l.Proxies, s.StartSeconds, s.StartCPUSeconds, s.StartRounds)
		fmt.Fprintf(w, "config         %s per proxy (received %s to get it)\n", kb(m.ConfigBytesPerProxy), kb(m.StartBytesPerProxy))
		printPhase(w, "route change", m.Route)
		printPhase(w, "endpoint", m.Endpoint)
		printPhase(w, "endpoint churn", m.Churn)
		fmt.Fprintf(w, "memory         control plane RSS %.0f MB idle, %.0f MB peak, %.0f MB at the end; idle: Go heap %.0f MB allocated of %.0f MB held, %.0f goroutines\n",
			m.RSSIdleMB, m.RSSPeakMB, m.RSSEndMB, m.HeapIdleMB, m.HeapSysIdleMB, m.GoroutinesIdle)
		fmt.Fprintf(w, "bytes check    control plane counted %s sent, proxies %s received; loader used %.1f CPU s\n",
			kb(float64(m.ServerBytes)), kb(float64(m.LoaderBytes)), m.LoaderCPUSeconds)
	}
	if sc := r.Scoping; sc != nil {
		fmt.Fprintf(w, "\n== SCOPING ==\n")
		fmt.Fprintf(w, "one proxy      scoped %s in %d resources (translated in %s); unscoped, every service port of the mesh: %s in %d resources (%s): %.0f× more\n",
			kb(float64(sc.ScopedBytes)), sc.ScopedResources, ms(sc.ScopedTranslateSeconds),
			kb(float64(sc.UnscopedBytes)), sc.UnscopedResources, ms(sc.UnscopedTranslateSeconds), sc.Ratio)
	}
	if s, d := r.Modes["sotw"], r.Modes["delta"]; s != nil && d != nil {
		fmt.Fprintf(w, "\n== delta versus state of the world, bytes per affected proxy per change ==\n")
		if s.Route != nil && d.Route != nil {
			fmt.Fprintf(w, "route change   sotw %s, delta %s (%.1f×)\n", kb(s.Route.BytesPerAffectedProxy), kb(d.Route.BytesPerAffectedProxy),
				s.Route.BytesPerAffectedProxy/math.Max(1, d.Route.BytesPerAffectedProxy))
		}
		if s.Endpoint != nil && d.Endpoint != nil {
			fmt.Fprintf(w, "endpoint       sotw %s, delta %s (%.1f×)\n", kb(s.Endpoint.BytesPerAffectedProxy), kb(d.Endpoint.BytesPerAffectedProxy),
				s.Endpoint.BytesPerAffectedProxy/math.Max(1, d.Endpoint.BytesPerAffectedProxy))
		}
		if s.Churn != nil && d.Churn != nil {
			fmt.Fprintf(w, "churn          sotw %s, delta %s (%.1f×); a push round batches the changes of up to a second\n",
				kb(s.Churn.BytesPerAffectedProxy), kb(d.Churn.BytesPerAffectedProxy),
				s.Churn.BytesPerAffectedProxy/math.Max(1, d.Churn.BytesPerAffectedProxy))
		}
	}
	fmt.Fprintf(w, "\n== goals ==\n")
	show := func(name string, g goal, unit string) {
		verdict := "not measured"
		if g.Pass != nil {
			verdict = map[bool]string{true: "PASS", false: "FAIL"}[*g.Pass]
		}
		v := fmt.Sprintf("%.4g%s", g.Value, unit)
		if g.Value < 0 {
			v = "timed out"
		}
		fmt.Fprintf(w, "%-52s %-10s (target < %g%s)  %s\n", name, v, g.Target, unit, verdict)
	}
	show("route change convergence p99", r.Goals.RouteP99UnderOneSecond, " s")
	show("control plane peak RSS", r.Goals.RSSUnderOneGB, " MB")
	show("delta endpoint change / full push per proxy", r.Goals.DeltaEndpointChangeUnderTenth, "")
	fmt.Fprintln(w)
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}

func printPhase(w io.Writer, name string, p *phaseResult) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "%-14s %d changes, %.1f proxies concerned by each; %d reached every one, %d timed out\n", name, p.Changes, p.Affected, p.Completed, p.TimedOut)
	if p.Rate > 0 {
		fmt.Fprintf(w, "               %.0f changes/s asked, %d to an apply; %.1f/s accepted by the API; most changes due and not yet accepted %d; dropped (API too far behind) %d; apply errors %d\n",
			p.Rate, p.Batch, p.AchievedRate, p.MaxBacklog, p.Dropped, p.ApplyErrors)
		fmt.Fprintf(w, "  judging      %.0f analyses (waves of applies) of %s mean; %.0f store transactions of %s mean; reads of %s mean\n",
			p.Analyses, ms(p.AnalyzeMean), p.Commits, ms(p.CommitMean), ms(p.ReadMean))
	}
	fmt.Fprintf(w, "  convergence  %s\n", p.Convergence)
	fmt.Fprintf(w, "  apply call   %s\n", p.Apply)
	fmt.Fprintf(w, "  control      %.1f CPU s over %.1fs; %.0f push rounds of %s mean, %.2f CPU s per round, %.3f CPU s per change; %.0f translations per round (%.0f endpoint refreshes), %.0f configs sent\n",
		p.CPUSeconds, p.Seconds, p.PushRounds, ms(p.RoundSecondsMean), p.CPUPerRound, p.CPUPerChange, p.TranslationsPerRound, p.RefreshedPerRound, p.ProxyPushes)
	fmt.Fprintf(w, "  bytes        %s per affected proxy per change (%.3f of a full push); by type %v\n",
		kb(p.BytesPerAffectedProxy), p.FractionOfFullPush, p.Bytes)
}
