package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/identity"
)

// run runs the benchmark in every mode and writes the report to w.
func run(ctx context.Context, o options, w io.Writer) (*result, error) {
	tmp, err := os.MkdirTemp("", "trellis-bench-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		progress("keeping %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	root, commit, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	bin := o.Trellis
	switch {
	case o.Profile != "":
		commit += " (profiling wrapper)"
	case bin != "":
		commit = bin
	default:
		start := time.Now()
		if bin, err = buildTrellis(ctx, root, tmp); err != nil {
			return nil, err
		}
		progress("built trellis %s in %.1fs", commit, time.Since(start).Seconds())
	}
	res := &result{Bench: "trellis-control-plane-scale", Layout: o.Layout, Modes: map[string]*modeResult{}, Commit: commit,
		Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())}
	for _, mode := range o.Modes {
		dir := filepath.Join(tmp, mode)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		m, err := runMode(ctx, o, mode, bin, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		res.Modes[mode] = m
	}
	if res.Scoping, err = o.Layout.scoping(); err != nil {
		return nil, err
	}
	res.judge(o.Modes)
	res.print(w, o.Modes)
	return res, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
}

// bench is one mode's run: a control plane, a loader, and what they
// share.
type bench struct {
	o      options
	mode   string
	cp     *controlProc
	api    *controlapi.Client
	loader *loaderProc
	nextID atomic.Int64
	// active are the services that have callers, the ones changes pick.
	active []int
}

func runMode(ctx context.Context, o options, mode, bin, dir string) (_ *modeResult, err error) {
	b := &bench{o: o, mode: mode}
	for s := range o.Layout.Services {
		if len(o.Layout.callers(s)) > 0 {
			b.active = append(b.active, s)
		}
	}
	if len(b.active) == 0 {
		return nil, fmt.Errorf("no service has a caller")
	}
	if b.cp, err = startControl(ctx, o, bin, dir); err != nil {
		return nil, err
	}
	defer func() {
		b.cp.stop()
		if err != nil {
			err = fmt.Errorf("%w\ncontrol plane log (%s):\n%s", err, b.cp.log, tail(b.cp.log, 15))
		}
	}()
	if b.api, err = controlapi.NewClient(b.cp.api); err != nil {
		return nil, err
	}
	sctx, stopSampling := context.WithCancel(ctx)
	smp := &sampler{pid: b.cp.pid()}
	var sampling sync.WaitGroup
	sampling.Go(func() { smp.run(sctx, 100*time.Millisecond) })
	defer sampling.Wait()
	defer stopSampling()

	m := &modeResult{Mode: mode}
	progress("%s: control plane up (pid %d, xDS %s, API %s)", mode, b.cp.pid(), b.cp.xds, b.cp.api)
	if err := b.setup(ctx, m); err != nil {
		return nil, err
	}

	// Start every proxy.
	if err := b.cp.profilePhase(ctx, "start"); err != nil {
		return nil, err
	}
	before, err := b.snapshot(ctx, false)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(dir, "tokens-"+mode+".json")
	if err := b.joinTokens(ctx, m, tokenFile); err != nil {
		return nil, err
	}
	startTimeout := 2*time.Minute + time.Duration(o.Layout.Proxies)*200*time.Millisecond
	b.loader, err = startLoader(loaderConfig{
		Layout: o.Layout, XDS: b.cp.xds, Bundle: filepath.Join(b.cp.dataDir, "ca", "root-cert.pem"),
		TrustDomain: identity.DefaultTrustDomain, Delta: mode == "delta", Parallel: o.Parallel, StartTimeout: startTimeout,
		TokenFile: tokenFile,
	}, dir)
	if err != nil {
		return nil, err
	}
	defer b.loader.stop()
	progress("%s: starting %d proxies, %d at a time", mode, o.Layout.Proxies, o.Parallel)
	ready, err := b.loader.waitReady(ctx, startTimeout+time.Minute)
	if err != nil {
		return nil, err
	}
	m.Setup.StartSeconds = ready.StartSeconds
	if err := b.settle(ctx); err != nil {
		return nil, err
	}
	after, err := b.snapshot(ctx, true)
	if err != nil {
		return nil, err
	}
	m.Setup.StartCPUSeconds = after.proc.CPU - before.proc.CPU
	m.Setup.StartRounds = after.metrics.Rounds - before.metrics.Rounds
	m.RSSIdleMB = mb(after.proc.RSSBytes)
	m.HeapIdleMB, m.HeapSysIdleMB = after.metrics.HeapAlloc/(1<<20), after.metrics.HeapSys/(1<<20)
	m.GoroutinesIdle = after.metrics.Goroutines
	m.ConfigBytesPerProxy = after.loader.ConfigBytes
	m.StartBytesPerProxy = float64(sum(after.loader.Bytes)) / float64(o.Layout.Proxies)
	progress("%s: %d proxies synced in %.1fs; control plane RSS %.0f MB", mode, o.Layout.Proxies, ready.StartSeconds, m.RSSIdleMB)

	if m.Route, err = b.oneAtATime(ctx, "route", o.RouteChanges, m); err != nil {
		return nil, err
	}
	if m.Endpoint, err = b.oneAtATime(ctx, "endpoint", o.RouteChanges, m); err != nil {
		return nil, err
	}
	if o.ChurnDuration > 0 {
		if err := b.settle(ctx); err != nil {
			return nil, err
		}
		if m.Churn, err = b.churn(ctx, m); err != nil {
			return nil, err
		}
	}

	end, err := b.snapshot(ctx, true)
	if err != nil {
		return nil, err
	}
	m.RSSEndMB = mb(end.proc.RSSBytes)
	m.RSSPeakMB = mb(max(end.proc.PeakBytes, smp.peak()))
	m.LoaderBytes = sum(end.loader.Bytes)
	m.LoaderCPUSeconds = end.loader.CPUSeconds
	proxies, err := b.api.Proxies(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range proxies {
		for _, t := range p.Types {
			m.ServerBytes += t.Bytes
		}
	}
	return m, nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// tokensPerRequest is how many join tokens one API request makes.
const tokensPerRequest = 5000

// joinTokens makes a single-use join token for every proxy through the API,
// as many to a request as it takes, timing it, and writes them to path
// (mode 0600) as a JSON array indexed by proxy.
func (b *bench) joinTokens(ctx context.Context, m *modeResult, path string) error {
	l := b.o.Layout
	start := time.Now()
	tokens := make([]string, 0, l.Proxies)
	for first := 0; first < l.Proxies; first += tokensPerRequest {
		var specs []controlapi.TokenSpec
		for p := first; p < min(first+tokensPerRequest, l.Proxies); p++ {
			specs = append(specs, controlapi.TokenSpec{Namespace: l.proxyNamespace(p), ServiceAccount: l.proxyName(p), TTLSeconds: 3600})
		}
		made, err := b.api.CreateTokens(ctx, specs)
		if err != nil {
			return fmt.Errorf("making join tokens: %w", err)
		}
		for _, t := range made {
			tokens = append(tokens, t.Token)
		}
	}
	m.Setup.TokensSeconds = time.Since(start).Seconds()
	raw, err := json.Marshal(tokens)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return err
	}
	progress("%s: made %d join tokens in %.2fs", b.mode, len(tokens), m.Setup.TokensSeconds)
	return nil
}

// setup applies the mesh and its endpoints.
func (b *bench) setup(ctx context.Context, m *modeResult) error {
	l := b.o.Layout
	mesh, n := l.meshYAML()
	start := time.Now()
	if err := b.applyBulk(ctx, "mesh.yaml", mesh); err != nil {
		return fmt.Errorf("applying the mesh: %w", err)
	}
	m.Setup.ApplyMeshSeconds = time.Since(start).Seconds()
	// The route changes rewrite meshgen's mesh routes: make sure they are
	// where this benchmark expects them.
	key := l.service(b.active[0])
	if _, err := b.api.List(ctx, "HTTPRoute", key.Namespace, meshRouteName(key.Name)); err != nil {
		return fmt.Errorf("meshgen made no mesh route %s/%s (has meshgen changed? update bench/scale/mesh.go): %w",
			key.Namespace, meshRouteName(key.Name), err)
	}
	wl, nw := l.workloadsYAML()
	progress("%s: applied %d resources in %.1fs; applying %d workloads", b.mode, n, m.Setup.ApplyMeshSeconds, nw)
	start = time.Now()
	if err := b.applyBulk(ctx, "workloads.yaml", wl); err != nil {
		return fmt.Errorf("applying the workloads: %w", err)
	}
	m.Setup.ApplyWorkloadsSecs = time.Since(start).Seconds()
	m.Setup.Resources = n + nw
	progress("%s: applied %d workloads in %.1fs", b.mode, nw, m.Setup.ApplyWorkloadsSecs)
	return nil
}

// bulkDocs is how many resources the setup applies at once: one apply of
// a whole 1,000-service mesh (5,000 resources, 3 MB) is refused by the
// store, its etcd transaction exceeding etcd's 2 MiB request limit.
const bulkDocs = 500

// applyBulk applies a large multi-document file in chunks, in order, so
// that what a resource refers to is stored before it or with it; with a
// longer timeout than the CLI's client has.
func (b *bench) applyBulk(ctx context.Context, name string, content []byte) error {
	docs := strings.Split(string(content), "\n---\n")
	for i := 0; i < len(docs); i += bulkDocs {
		chunk := strings.Join(docs[i:min(i+bulkDocs, len(docs))], "\n---\n")
		req := controlapi.ApplyRequest{Files: []controlapi.File{{Name: fmt.Sprintf("%s[%d:]", name, i), Content: chunk}}}
		if err := applyWithTimeout(ctx, b.cp.api, req, 10*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) apply(ctx context.Context, name, content string) error {
	_, err := b.api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: name, Content: content}}})
	return err
}

// snap is the state of both processes at one moment.
type snap struct {
	at      time.Time
	proc    procStat
	metrics metrics
	loader  *loaderStats
}

func (b *bench) snapshot(ctx context.Context, withLoader bool) (snap, error) {
	s := snap{at: time.Now()}
	var err error
	if s.proc, err = readProc(b.cp.pid()); err != nil {
		return s, err
	}
	if s.metrics, err = scrapeMetrics(ctx, b.cp.api); err != nil {
		return s, err
	}
	if withLoader {
		if s.loader, err = b.loader.getStats(ctx); err != nil {
			return s, err
		}
	}
	return s, nil
}

// settle waits until no push round has run for a second (at most a
// minute): the previous phase's work is over.
func (b *bench) settle(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	last, err := scrapeMetrics(ctx, b.cp.api)
	if err != nil {
		return err
	}
	quietSince := time.Now()
	for time.Since(quietSince) < time.Second && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		cur, err := scrapeMetrics(ctx, b.cp.api)
		if err != nil {
			return err
		}
		if cur.Rounds != last.Rounds {
			quietSince = time.Now()
		}
		last = cur
	}
	return nil
}

// waitRound waits until the push round counter passes n: the round that
// carried a change is over, so that the next change starts from quiet.
func (b *bench) waitRound(ctx context.Context, n float64) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		m, err := scrapeMetrics(ctx, b.cp.api)
		if err != nil {
			return err
		}
		if m.Rounds > n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no push round in a minute after a change")
}

// oneAtATime applies n changes of one kind, route or endpoint, one at a
// time, and times each until every proxy calling the service ACKed it.
// Each waits for the push round that carried the previous one to end, so
// that a change meets a quiet control plane.
func (b *bench) oneAtATime(ctx context.Context, kind string, n int, m *modeResult) (*phaseResult, error) {
	l := b.o.Layout
	progress("%s: %d %s changes, one at a time", b.mode, n, kind)
	if err := b.cp.profilePhase(ctx, kind); err != nil {
		return nil, err
	}
	before, err := b.snapshot(ctx, true)
	if err != nil {
		return nil, err
	}
	var conv, apply []float64
	p := &phaseResult{Changes: n}
	affected := 0
	for r := range n {
		// Spread the changes over the services.
		s := b.active[(r*7919)%len(b.active)]
		id := int(b.nextID.Add(1))
		var value, name, content string
		switch kind {
		case "route":
			value = fmt.Sprintf("bench-%s-route-%06d", b.mode, id)
			name, content = "route.yaml", l.meshRouteYAML(s, value)
		case "endpoint":
			value = churnAddress(id)
			name, content = "workload.yaml", l.workloadYAML(s, r%l.Endpoints, value)
		}
		metricsBefore, err := scrapeMetrics(ctx, b.cp.api)
		if err != nil {
			return nil, err
		}
		done, aff, err := b.loader.expect(ctx, command{ID: id, Kind: kind, Service: s, Value: value, Timeout: b.o.Timeout})
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := b.apply(ctx, name, content); err != nil {
			return nil, fmt.Errorf("%s change %d: %w", kind, r, err)
		}
		apply = append(apply, time.Since(t0).Seconds())
		e, err := b.loader.wait(ctx, id, done, b.o.Timeout)
		if err != nil {
			return nil, err
		}
		affected += aff
		if e.Acked < e.Affected {
			p.TimedOut++
			progress("%s: %s change %d reached %d of %d proxies in %s", b.mode, kind, r, e.Acked, e.Affected, b.o.Timeout)
		} else {
			p.Completed++
			conv = append(conv, float64(slices.Max(e.Acks)-t0.UnixNano())/1e9)
		}
		if err := b.waitRound(ctx, metricsBefore.Rounds); err != nil {
			return nil, err
		}
	}
	after, err := b.snapshot(ctx, true)
	if err != nil {
		return nil, err
	}
	p.Convergence, p.Apply = distOf(conv), distOf(apply)
	p.Affected = float64(affected) / float64(max(1, n))
	b.account(p, before, after, affected, m.ConfigBytesPerProxy)
	progress("%s: %s convergence %s", b.mode, kind, p.Convergence)
	return p, nil
}

// churn changes endpoint addresses at a fixed rate, ChurnBatch changes
// to an apply (one by default), round robin over the services, and times
// each change from when it was due until every proxy calling its service
// has the new address.
func (b *bench) churn(ctx context.Context, m *modeResult) (*phaseResult, error) {
	l := b.o.Layout
	n := int(b.o.ChurnRate * b.o.ChurnDuration.Seconds())
	batch := max(1, b.o.ChurnBatch)
	if n > len(b.active)*l.Endpoints {
		progress("%s: %d endpoint changes revisit workloads: a change may be overtaken by the next one of its workload", b.mode, n)
	}
	progress("%s: endpoint churn, %.0f changes/s for %s, %d to an apply", b.mode, b.o.ChurnRate, b.o.ChurnDuration, batch)
	if err := b.cp.profilePhase(ctx, "churn"); err != nil {
		return nil, err
	}
	before, err := b.snapshot(ctx, true)
	if err != nil {
		return nil, err
	}
	p := &phaseResult{Changes: n, Rate: b.o.ChurnRate, Batch: batch}
	interval := time.Duration(float64(time.Second) / b.o.ChurnRate)
	start := time.Now().Add(50 * time.Millisecond)
	due := func(i int) time.Time { return start.Add(time.Duration(i) * interval) }
	// A control plane that cannot keep up gets as long again as the
	// schedule (at least 30 s) to catch up; changes not sent by then are
	// dropped and counted.
	cutoff := start.Add(b.o.ChurnDuration + max(30*time.Second, b.o.ChurnDuration))

	var (
		mu          sync.Mutex
		conv, apply []float64
		affected    int
		applied     int
		lastApplied time.Time
		next        atomic.Int64
		firstErr    error
		wg          sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		firstErr = cmpErr(firstErr, err)
		mu.Unlock()
	}
	type change struct {
		at   time.Time
		id   int
		aff  int
		done <-chan event
	}
	// Enough workers that a slow apply does not hold the schedule back
	// by itself; the control plane serializes applies anyway.
	batches := (n + batch - 1) / batch
	for range min(64, batches) {
		wg.Go(func() {
			for {
				j := int(next.Add(1)) - 1
				if j >= batches || ctx.Err() != nil {
					return
				}
				first, end := j*batch, min(n, (j+1)*batch)
				// A batch is applied when its last change is due.
				if d := time.Until(due(end - 1)); d > 0 {
					time.Sleep(d)
				}
				if time.Now().After(cutoff) {
					mu.Lock()
					p.Dropped += end - first
					mu.Unlock()
					continue
				}
				var docs []string
				var changes []change
				for i := first; i < end; i++ {
					s := b.active[i%len(b.active)]
					k := (i / len(b.active)) % l.Endpoints
					id := int(b.nextID.Add(1))
					address := churnAddress(id)
					done, aff, err := b.loader.expect(ctx, command{ID: id, Kind: "endpoint", Service: s, Value: address, Timeout: b.o.Timeout + time.Until(cutoff)})
					if err != nil {
						fail(err)
						return
					}
					docs = append(docs, l.workloadYAML(s, k, address))
					changes = append(changes, change{at: due(i), id: id, aff: aff, done: done})
				}
				a0 := time.Now()
				applyErr := b.apply(ctx, "workloads.yaml", strings.Join(docs, "---\n"))
				a1 := time.Now()
				mu.Lock()
				// The backlog: changes due by now that the API has not
				// accepted yet.
				applied += len(changes)
				p.MaxBacklog = max(p.MaxBacklog, min(n, int(a1.Sub(start)/interval)+1)-applied)
				if applyErr != nil {
					p.ApplyErrors += len(changes)
					if p.ApplyErrors == len(changes) {
						progress("%s: endpoint changes %d-%d: %v", b.mode, first, end-1, applyErr)
					}
				} else {
					apply = append(apply, a1.Sub(a0).Seconds())
					lastApplied = later(lastApplied, a1)
				}
				mu.Unlock()
				for _, c := range changes {
					e, err := b.loader.wait(ctx, c.id, c.done, b.o.Timeout+time.Until(cutoff))
					mu.Lock()
					switch {
					case err != nil:
						firstErr = cmpErr(firstErr, err)
					case applyErr != nil:
					case e.Acked < e.Affected:
						p.TimedOut++
						affected += c.aff
					default:
						p.Completed++
						affected += c.aff
						conv = append(conv, float64(slices.Max(e.Acks)-c.at.UnixNano())/1e9)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if !lastApplied.IsZero() {
		p.AchievedRate = float64(applied-p.ApplyErrors) / lastApplied.Sub(start).Seconds()
	}
	if err := b.settle(ctx); err != nil {
		return nil, err
	}
	after, err := b.snapshot(ctx, true)
	if err != nil {
		return nil, err
	}
	p.Convergence, p.Apply = distOf(conv), distOf(apply)
	p.Affected = float64(affected) / float64(max(1, p.Completed+p.TimedOut))
	b.account(p, before, after, affected, m.ConfigBytesPerProxy)
	progress("%s: churn convergence %s; %.1f changes/s accepted, most waiting %d", b.mode, p.Convergence, p.AchievedRate, p.MaxBacklog)
	return p, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// account fills in the control plane's work and the bytes of a phase.
func (b *bench) account(p *phaseResult, before, after snap, affected int, configBytes float64) {
	d := after.metrics.sub(before.metrics)
	p.Seconds = after.at.Sub(before.at).Seconds()
	p.CPUSeconds = after.proc.CPU - before.proc.CPU
	p.PushRounds = d.Rounds
	if d.Rounds > 0 {
		p.CPUPerRound = p.CPUSeconds / d.Rounds
		p.RoundSecondsMean = d.RoundSecondsSum / d.Rounds
		p.TranslationsPerRound = d.Translations / d.Rounds
		p.RefreshedPerRound = d.Refreshed / d.Rounds
	}
	p.Analyses, p.Commits = d.Analyses, d.Commits
	if d.Analyses > 0 {
		p.AnalyzeMean = d.AnalyzeSum / d.Analyses
		p.ReadMean = d.ReadSum / d.Analyses
	}
	if d.Commits > 0 {
		p.CommitMean = d.CommitSum / d.Commits
	}
	p.CPUPerChange = p.CPUSeconds / float64(max(1, p.Completed+p.TimedOut))
	p.ProxyPushes = d.Changed
	p.Bytes = map[string]int64{}
	var total int64
	for t, v := range after.loader.Bytes {
		if dv := v - before.loader.Bytes[t]; dv != 0 {
			p.Bytes[t] = dv
			total += dv
		}
	}
	if affected > 0 {
		p.BytesPerAffectedProxy = float64(total) / float64(affected)
	}
	if configBytes > 0 {
		p.FractionOfFullPush = p.BytesPerAffectedProxy / configBytes
	}
}
