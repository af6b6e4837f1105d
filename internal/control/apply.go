package control

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/model"
	trellisresource "trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/store"
)

// Applies are judged one after another: each against everything stored
// before it. Judging means analyzing the whole config, so applies that
// arrive together are judged together (group commit):
//
//	apply ─► load (decode, validate: in the caller, in parallel)
//	      ─► queue ─► whoever holds applyMu takes the whole queue
//	                    └► waves of applies touching distinct resources
//	                         └► one analysis of the wave's combined change
//	                              ├ no new error, every new finding on a
//	                              │ resource of exactly one apply
//	                              │   └► each apply stored in its own transaction
//	                              └ otherwise: each apply judged alone, in order
//
// An apply is thus stored only if the config with it (and with the applies
// stored before it) has no error finding it did not have before, as when
// applies are judged one by one, and a request's transaction stays all or
// nothing.

// applyJob is one apply request on its way through the queue.
type applyJob struct {
	ctx  context.Context
	req  controlapi.ApplyRequest
	objs []*trellisresource.Object
	// keys are the store keys of objs; refs their analyzer resources.
	keys []string
	refs map[analyze.Resource]bool

	// Filled in by stage.
	writes []store.Write
	resp   *controlapi.ApplyResponse

	// The outcome: resp or errs, then done is closed.
	errs []string
	done chan struct{}
}

func (j *applyJob) finish(errs ...string) {
	if len(errs) > 0 {
		j.errs = append(errs, "nothing was applied")
		j.resp = nil
	}
	close(j.done)
}

// maxWave bounds how many applies are judged together.
const maxWave = 128

// apply validates every resource of the request and, only if all are
// valid and the change adds no error finding to the config, stores them
// in one transaction.
func (cp *controlPlane) apply(ctx context.Context, req controlapi.ApplyRequest) (*controlapi.ApplyResponse, []string) {
	cp.loading.Add(1)
	j, errs := loadApply(ctx, req)
	if len(errs) > 0 {
		cp.loading.Add(-1)
		return nil, append(errs, "nothing was applied")
	}
	cp.queueMu.Lock()
	cp.queue = append(cp.queue, j)
	cp.loading.Add(-1)
	cp.queueMu.Unlock()

	cp.applyMu.Lock()
	for {
		select {
		case <-j.done:
		default:
			cp.gather()
			cp.queueMu.Lock()
			batch := cp.queue
			cp.queue = nil
			cp.queueMu.Unlock()
			cp.applyQueued(batch)
			continue
		}
		break
	}
	cp.applyMu.Unlock()
	return j.resp, j.errs
}

// maxGather bounds how long the holder of applyMu waits for applies still
// being loaded before it takes the queue.
const maxGather = 10 * time.Millisecond

// gather waits, briefly, for applies still being loaded to join the
// queue: applies that arrive together, as when the callers of the last
// wave send their next ones, then form one wave rather than a wave of
// the first and another of the rest. An apply alone never waits.
func (cp *controlPlane) gather() {
	deadline := time.Now().Add(maxGather)
	for cp.loading.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
}

// loadApply decodes, defaults and validates a request: what depends on
// nothing stored.
func loadApply(ctx context.Context, req controlapi.ApplyRequest) (*applyJob, []string) {
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	var errs []string
	files := make([]trellisresource.File, len(req.Files))
	for i, f := range req.Files {
		files[i] = trellisresource.File{Name: f.Name, Data: []byte(f.Content)}
	}
	objs, findings := trellisresource.Load(files, ns)
	for _, f := range findings {
		errs = append(errs, f.String())
	}
	j := &applyJob{ctx: ctx, req: req, objs: objs, refs: map[analyze.Resource]bool{}, done: make(chan struct{})}
	seen := map[string]*trellisresource.Object{}
	for _, o := range objs {
		key := resourceKey(o.Kind, o.Namespace, o.Name)
		if prev, ok := seen[key]; ok {
			errs = append(errs, fmt.Sprintf("%s:%d: %s: also defined at %s:%d; each resource may appear once", o.File, o.Line, o.Ref(), prev.File, prev.Line))
		}
		seen[key] = o
		j.keys = append(j.keys, key)
		j.refs[analyze.Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}] = true
	}
	if len(errs) == 0 && len(objs) == 0 {
		errs = append(errs, "apply: no resources in the input")
	}
	return j, errs
}

// applyQueued judges and stores queued applies, wave by wave. Callers
// hold applyMu.
func (cp *controlPlane) applyQueued(pending []*applyJob) {
	for len(pending) > 0 {
		var wave []*applyJob
		wave, pending = nextWave(pending)
		if len(wave) == 1 {
			cp.applyOne(wave[0])
			continue
		}
		cp.applyWave(wave)
	}
}

// nextWave takes from pending, in order, the applies that touch no
// resource an earlier pending apply touches, up to maxWave; a dry run
// forms a wave of its own.
func nextWave(pending []*applyJob) (wave, rest []*applyJob) {
	used := map[string]bool{}
	for _, j := range pending {
		switch {
		case j.req.DryRun && len(wave) == 0 && len(rest) == 0:
			wave = append(wave, j)
			rest = append(rest, pending[1:]...)
			return wave, rest
		case j.req.DryRun || len(wave) == maxWave || (len(wave) > 0 && wave[0].req.DryRun):
			rest = append(rest, j)
			continue
		}
		conflict := slices.ContainsFunc(j.keys, func(k string) bool { return used[k] })
		for _, k := range j.keys {
			used[k] = true
		}
		if conflict {
			rest = append(rest, j)
		} else {
			wave = append(wave, j)
		}
	}
	return wave, rest
}

// applyOne judges one apply alone and stores it if it passes.
func (cp *controlPlane) applyOne(j *applyJob) {
	start := time.Now()
	stored, err := cp.store.GetMany(j.ctx, j.keys)
	cp.metrics.applySteps.WithLabelValues("read").Observe(time.Since(start).Seconds())
	if err != nil {
		j.finish("apply: " + err.Error())
		return
	}
	cp.applyStaged(j, stored)
}

// applyStaged judges one apply alone, given what is stored under its
// keys, and stores it if it passes.
func (cp *controlPlane) applyStaged(j *applyJob, stored map[string]store.Item) {
	if errs := cp.stage(j, stored); len(errs) > 0 {
		j.finish(errs...)
		return
	}
	c := cp.analyzeChange(j.objs)
	c.writes = len(j.writes)
	var errs []string
	for _, f := range c.added {
		if f.Severity == analyze.Error {
			errs = append(errs, f.String())
		} else {
			j.resp.Warnings = append(j.resp.Warnings, f.String())
		}
	}
	if len(errs) > 0 {
		j.finish(errs...)
		return
	}
	if j.req.DryRun {
		j.finish()
		return
	}
	j.finish(cp.commit(j, c)...)
}

// applyWave judges applies that touch distinct resources together, and
// falls back to judging them one by one when their combined change adds
// an error or a finding that cannot be told apart as one apply's.
func (cp *controlPlane) applyWave(wave []*applyJob) {
	// What is stored under the wave's keys, read at once: the applies
	// touch distinct keys, so none changes what another reads.
	var keys []string
	for _, j := range wave {
		keys = append(keys, j.keys...)
	}
	start := time.Now()
	stored, err := cp.store.GetMany(context.Background(), keys)
	cp.metrics.applySteps.WithLabelValues("read").Observe(time.Since(start).Seconds())
	if err != nil {
		for _, j := range wave {
			j.finish("apply: " + err.Error())
		}
		return
	}
	staged := wave[:0:0]
	var objs []*trellisresource.Object
	for _, j := range wave {
		if errs := cp.stage(j, stored); len(errs) > 0 {
			j.finish(errs...)
			continue
		}
		staged = append(staged, j)
		objs = append(objs, j.objs...)
	}
	if len(staged) < 2 {
		for _, j := range staged {
			cp.applyStaged(j, stored)
		}
		return
	}
	c := cp.analyzeChange(objs)
	for _, j := range staged {
		c.writes += len(j.writes)
	}
	owner := make([]*applyJob, len(c.added))
	alone := false
	for i, f := range c.added {
		for _, j := range staged {
			if j.refs[f.Resource] {
				owner[i] = j
			}
		}
		if f.Severity == analyze.Error || owner[i] == nil {
			alone = true
			break
		}
	}
	if alone {
		cp.metrics.applyWaves.WithLabelValues("one by one").Inc()
		for _, j := range staged {
			// Each is judged after those before it were stored: read again.
			cp.applyOne(j)
		}
		return
	}
	cp.metrics.applyWaves.WithLabelValues("together").Inc()
	for i, f := range c.added {
		owner[i].resp.Warnings = append(owner[i].resp.Warnings, f.String())
	}
	cp.commitWave(staged, c)
}

// commitWave stores the writes of applies judged together, several
// applies to a transaction (group commit: one write to the store's log
// for many applies), each apply whole in one transaction. An apply whose
// caller has gone is not stored.
func (cp *controlPlane) commitWave(jobs []*applyJob, c *change) {
	var batch []*applyJob
	ops := 0
	flush := func(last bool) {
		if len(batch) == 0 {
			return
		}
		var writes []store.Write
		for _, j := range batch {
			writes = append(writes, j.writes...)
		}
		var errs []string
		start := time.Now()
		_, err := cp.store.Apply(context.Background(), writes)
		cp.metrics.applySteps.WithLabelValues("commit").Observe(time.Since(start).Seconds())
		if err != nil {
			errs = []string{"apply: " + err.Error()}
		} else {
			// Only the last transaction leaves the config the analysis saw.
			var judged *change
			if last {
				judged = c
			}
			cp.madeVisible(writes, judged)
		}
		for _, j := range batch {
			j.finish(errs...)
		}
		batch, ops = nil, 0
	}
	for n, j := range jobs {
		if err := j.ctx.Err(); err != nil {
			j.finish("apply: " + err.Error())
			c = nil // the config the analysis saw will not be stored
			continue
		}
		if len(j.writes) == 0 {
			j.finish()
			continue
		}
		if ops > 0 && ops+len(j.writes) > store.TxnOps {
			flush(false)
		}
		batch = append(batch, j)
		ops += len(j.writes)
		if n == len(jobs)-1 {
			flush(true)
		}
	}
	flush(false)
}

// stage reads what is stored under the apply's keys and prepares its
// writes and results: creation time and generation are kept, and an
// object identical to the stored one is left unchanged.
func (cp *controlPlane) stage(j *applyJob, stored map[string]store.Item) []string {
	if err := j.ctx.Err(); err != nil {
		return []string{"apply: " + err.Error()}
	}
	now := time.Now().UTC()
	j.resp = &controlapi.ApplyResponse{}
	j.writes = nil
	for _, o := range j.objs {
		key := resourceKey(o.Kind, o.Namespace, o.Name)
		meta, ok := o.Obj.(metav1.Object)
		if !ok {
			return []string{fmt.Sprintf("%s: internal error: %T has no metadata", o.Ref(), o.Obj)}
		}
		action := "created"
		meta.SetCreationTimestamp(metav1.NewTime(now.Truncate(time.Second)))
		meta.SetGeneration(1)
		meta.SetResourceVersion("")
		if old, ok := stored[key]; ok {
			action = "configured"
			if prev, err := trellisresource.DecodeOne(o.Kind, old.Value); err == nil {
				if pm, ok := prev.Obj.(metav1.Object); ok {
					meta.SetCreationTimestamp(pm.GetCreationTimestamp())
					meta.SetGeneration(pm.GetGeneration())
				}
			}
			if value, err := trellisresource.Encode(o); err == nil && bytes.Equal(value, old.Value) {
				j.resp.Results = append(j.resp.Results, controlapi.ApplyResult{Ref: o.Ref(), Action: "unchanged"})
				continue
			}
			meta.SetGeneration(meta.GetGeneration() + 1)
		}
		value, err := trellisresource.Encode(o)
		if err != nil {
			return []string{fmt.Sprintf("%s: encoding: %v", o.Ref(), err)}
		}
		j.writes = append(j.writes, store.Write{Key: key, Value: value})
		j.resp.Results = append(j.resp.Results, controlapi.ApplyResult{Ref: o.Ref(), Action: action})
	}
	return nil
}

// commit stores an apply's writes in one transaction and makes them
// visible at once. When c is the analysis of exactly the config the
// commit leaves, its findings become those the next apply is judged
// against.
func (cp *controlPlane) commit(j *applyJob, c *change) []string {
	if len(j.writes) == 0 {
		return nil
	}
	start := time.Now()
	_, err := cp.store.Apply(j.ctx, j.writes)
	cp.metrics.applySteps.WithLabelValues("commit").Observe(time.Since(start).Seconds())
	if err != nil {
		return []string{"apply: " + err.Error()}
	}
	cp.madeVisible(j.writes, c)
	return nil
}

// madeVisible makes writes just stored visible at once (read your writes: the
// next apply is judged with them, even before the store's watch delivers
// them). When c is the analysis of exactly the config they leave, its
// findings become those the next apply is judged against.
func (cp *controlPlane) madeVisible(writes []store.Write, c *change) {
	cp.mu.Lock()
	for _, w := range writes {
		cp.applyItemLocked(store.Event{Item: store.Item{Key: w.Key, Value: w.Value}})
	}
	if c != nil && cp.objectsGen == c.gen[0]+uint64(c.writes) && cp.regsGen == c.gen[1] {
		// Nothing but the judged change happened since the analysis.
		cp.before, cp.beforeGen = c.after, [2]uint64{cp.objectsGen, cp.regsGen}
	}
	cp.mu.Unlock()
	cp.trigger()
}

// change is what analyzeChange found.
type change struct {
	// added are the findings the change adds to the current config's.
	added []analyze.Finding
	// after is the analysis of the changed config; gen the generations of
	// the config it was judged against.
	after *analysis
	gen   [2]uint64
	// writes is how many stored objects the judged change writes.
	writes int
}

// analysis is the findings of a config, by key (findingKey): all of them,
// and those of the analyzer's checks that read no workload (PartRest),
// which a change of workloads alone leaves as they were.
type analysis struct {
	all, rest map[string]bool
}

// analyzeStored analyzes stored with amend. When rest is not nil it holds
// the findings of analyze.PartRest, which are not sought again. It
// returns the analysis and the findings it sought.
func analyzeStored(stored *trellisresource.Stored, amend func(*model.Config), rest map[string]bool) (*analysis, []analyze.Finding) {
	a := &analysis{all: map[string]bool{}, rest: rest}
	var found []analyze.Finding
	if rest == nil {
		a.rest = map[string]bool{}
		found = stored.AnalyzeParts(amend, analyze.PartRest)
		for _, f := range found {
			a.rest[findingKey(f)] = true
		}
	}
	maps.Copy(a.all, a.rest)
	// Conversion errors go with PartWorkloads, sought every time.
	w := stored.AnalyzeParts(amend, analyze.PartWorkloads)
	for _, f := range w {
		a.all[findingKey(f)] = true
	}
	return a, append(found, w...)
}

// analyzeChange returns the findings that storing objs and deleting the
// resources removed would add to those of the current config (stored
// resources and registered workloads).
//
// The findings of the current config are kept until it changes: applies
// follow one another far more often than the config they are judged
// against changes otherwise. A change of Workloads alone runs only the
// analyzer's checks that read workloads. Callers hold applyMu.
func (cp *controlPlane) analyzeChange(objs []*trellisresource.Object, removed ...analyze.Resource) *change {
	start := time.Now()
	defer func() { cp.metrics.applySteps.WithLabelValues("analyze").Observe(time.Since(start).Seconds()) }()
	current, amend, gen := cp.analysisInput()
	if cp.before == nil || cp.beforeGen != gen {
		cp.before, _ = analyzeStored(current, amend, nil)
		cp.beforeGen = gen
	}
	next := current.With(objs, removed)
	var rest map[string]bool
	if workloadsOnly(objs, removed) {
		rest = cp.before.rest
	}
	after, found := analyzeStored(next, amend, rest)
	c := &change{after: after, gen: gen}
	seen := map[string]bool{}
	for _, f := range found {
		k := findingKey(f)
		if !cp.before.all[k] && !seen[k] {
			seen[k] = true
			c.added = append(c.added, f)
		}
	}
	analyze.Sort(c.added)
	return c
}

// workloadsOnly reports whether a change touches Workloads alone.
func workloadsOnly(objs []*trellisresource.Object, removed []analyze.Resource) bool {
	for _, o := range objs {
		if o.Kind != "Workload" {
			return false
		}
	}
	for _, r := range removed {
		if r.Kind != "Workload" {
			return false
		}
	}
	return true
}

// findingKey identifies a finding independently of where it was read.
func findingKey(f analyze.Finding) string {
	return f.Code + "\x00" + f.Resource.String() + "\x00" + f.Field + "\x00" + f.Message
}
