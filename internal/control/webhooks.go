package control

import (
	"context"
	"errors"
	"strings"

	"trellis.dev/trellis/internal/analyze"
	trellisresource "trellis.dev/trellis/internal/resource"
	"trellis.dev/trellis/internal/webhook"
)

// reviewAdmission is the validating webhook's judgment of an object the
// API server is about to store: the same as `trellis apply`'s, by the same
// analyzer over the object and the mesh's current state. Errors deny it;
// warnings come back to the client (kubectl prints them). A deletion is
// never denied: what it breaks comes back as warnings.
func (cp *controlPlane) reviewAdmission(ctx context.Context, r webhook.Request) ([]string, error) {
	var objs []*trellisresource.Object
	var removed []analyze.Resource
	if r.Operation == "DELETE" {
		removed = []analyze.Resource{{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}}
	} else {
		var findings []analyze.Finding
		objs, findings = trellisresource.Load([]trellisresource.File{{Name: "admission", Data: r.Object}}, r.Namespace)
		if msgs := messages(findings, true); len(msgs) > 0 {
			return nil, errors.New(strings.Join(msgs, "\n"))
		}
	}
	cp.applyMu.Lock()
	c := cp.analyzeChange(objs, removed...)
	cp.applyMu.Unlock()
	warnings := messages(c.added, false)
	if r.Operation == "DELETE" {
		return append(warnings, messages(c.added, true)...), nil
	}
	if errs := messages(c.added, true); len(errs) > 0 {
		return warnings, errors.New(strings.Join(errs, "\n"))
	}
	return warnings, nil
}

// messages are the findings of severity error (errs) or the others.
func messages(findings []analyze.Finding, errs bool) []string {
	var out []string
	for _, f := range findings {
		if (f.Severity == analyze.Error) == errs {
			out = append(out, f.String())
		}
	}
	return out
}
