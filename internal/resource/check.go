package resource

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"trellis.dev/trellis/internal/analyze"
	"trellis.dev/trellis/internal/model"
)

// File is one input: a name for messages and its content.
type File struct {
	Name string
	Data []byte
}

// Load decodes, defaults and validates every resource of files, giving
// namespace to those that name none. What fails is reported as findings
// (TRL0001 decode, TRL0002 invalid value) and left out; the rest is
// returned.
//
// Objects are defaulted and validated in parallel, one worker per CPU; the
// result is in input order.
func Load(files []File, namespace string) ([]*Object, []analyze.Finding) {
	var decoded []*Object
	var findings []analyze.Finding
	for _, f := range files {
		objs, err := Decode(f.Name, f.Data)
		findings = append(findings, errorFindings(analyze.CodeDecode, err)...)
		decoded = append(decoded, objs...)
	}
	errs := make([]error, len(decoded))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(decoded)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(decoded) {
					return
				}
				Default(decoded[i], namespace)
				errs[i] = Validate(decoded[i])
			}
		})
	}
	wg.Wait()
	objs := decoded[:0:0]
	for i, o := range decoded {
		if errs[i] != nil {
			findings = append(findings, errorFindings(analyze.CodeInvalid, errs[i])...)
			continue
		}
		objs = append(objs, o)
	}
	return objs, findings
}

// Analyze converts objs into the model, lets amend add what does not come
// from resources (the workloads proxies registered), runs the analyzer, and
// locates each finding in the file its resource was read from. Conversion
// problems are findings too (TRL0003).
func Analyze(objs []*Object, amend func(*model.Config)) []analyze.Finding {
	return analyzeWith(objs, amend, nil)
}

func analyzeWith(objs []*Object, amend func(*model.Config), mc *ModelCache) []analyze.Finding {
	objs, findings := dedupe(objs)
	c, err := modelOf(objs, mc)
	findings = append(findings, errorFindings(analyze.CodeUnusable, err)...)
	if amend != nil {
		amend(c)
		c.Sort()
	}
	located := analyze.Analyze(c)
	byResource := make(map[analyze.Resource]*Object, len(objs))
	for _, o := range objs {
		r := analyze.Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
		if _, dup := byResource[r]; !dup {
			byResource[r] = o
		}
	}
	for i, f := range located {
		if o := byResource[f.Resource]; o != nil && o.File != "" {
			located[i].File = o.File
			located[i].Line = o.LineOf(f.Field)
		}
	}
	findings = append(findings, located...)
	analyze.Sort(findings)
	return findings
}

// dedupe reports resources defined more than once and keeps one of each,
// the same one whatever the order of the input: the one whose encoding
// sorts first.
func dedupe(objs []*Object) ([]*Object, []analyze.Finding) {
	type group struct {
		keep  *Object
		value []byte
		all   []*Object
	}
	groups := map[analyze.Resource]*group{}
	var order []analyze.Resource
	for _, o := range objs {
		r := analyze.Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
		g, ok := groups[r]
		if !ok {
			groups[r] = &group{keep: o, all: []*Object{o}}
			order = append(order, r)
			continue
		}
		// Encoding is what costs; only duplicates need it.
		if g.value == nil {
			g.value, _ = Encode(g.keep)
		}
		g.all = append(g.all, o)
		if value, _ := Encode(o); bytes.Compare(value, g.value) < 0 {
			g.keep, g.value = o, value
		}
	}
	var out []*Object
	var findings []analyze.Finding
	c, _ := analyze.Lookup(analyze.CodeUnusable)
	for _, r := range order {
		g := groups[r]
		out = append(out, g.keep)
		if len(g.all) == 1 {
			continue
		}
		var where []string
		for _, o := range g.all {
			where = append(where, fmt.Sprintf("%s:%d", o.File, o.Line))
		}
		slices.Sort(where)
		findings = append(findings, analyze.Finding{
			Code: c.ID, Severity: c.Severity, Resource: r, Field: "metadata.name",
			Message: fmt.Sprintf("defined %d times (%s); only one is used", len(g.all), strings.Join(where, ", ")),
			Hint:    c.Hint, File: g.all[0].File, Line: g.all[0].LineOf("metadata.name"),
		})
	}
	return out, findings
}

// errorFindings turns the *Error values joined in err into findings of
// code; other errors become findings without a resource.
func errorFindings(code string, err error) []analyze.Finding {
	if err == nil {
		return nil
	}
	c, _ := analyze.Lookup(code)
	var out []analyze.Finding
	for _, e := range flatten(err) {
		f := analyze.Finding{Code: code, Severity: c.Severity, Message: e.Error(), Hint: c.Hint}
		var re *Error
		if errors.As(e, &re) {
			f.Resource = analyze.Resource{Kind: re.Kind, Namespace: re.Namespace, Name: re.Name}
			f.Field, f.Message, f.File, f.Line = re.Field, re.Message, re.File, re.Line
		}
		out = append(out, f)
	}
	return out
}

// flatten lists the errors joined in err, recursively.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
