package analyze

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Severity is how bad a finding is.
type Severity string

// Severities, worst first.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case Error:
		return 2
	case Warning:
		return 1
	}
	return 0
}

// AtLeast reports whether s is as severe as t or more.
func (s Severity) AtLeast(t Severity) bool { return s.rank() >= t.rank() }

// ParseSeverity reads "error", "warning" or "info".
func ParseSeverity(s string) (Severity, error) {
	switch Severity(s) {
	case Error, Warning, Info:
		return Severity(s), nil
	}
	return "", fmt.Errorf("severity %q: want error, warning or info", s)
}

// Resource names the resource a finding is about.
type Resource struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String formats the resource as "Kind namespace/name".
func (r Resource) String() string {
	switch {
	case r.Name == "":
		return r.Kind
	case r.Namespace == "":
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Finding is one problem found in the configuration.
type Finding struct {
	Code     string   `json:"code"`
	Severity Severity `json:"severity"`
	Resource Resource `json:"resource"`
	// Field is the field path within the resource, e.g.
	// "spec.rules[0].matches[0].path"; empty for the whole resource.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	// File and Line locate the field when the resource was read from a
	// file.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

// String formats a finding on one line, file and line first when known:
//
//	routes.yaml:12: error TRL3001: HTTPRoute shop/cart: spec.rules[0].backendRefs[0]: ...
func (f Finding) String() string {
	var b strings.Builder
	if f.File != "" {
		b.WriteString(f.File)
		if f.Line > 0 {
			fmt.Fprintf(&b, ":%d", f.Line)
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%s %s: ", f.Severity, f.Code)
	if f.Resource.Kind != "" {
		b.WriteString(f.Resource.String() + ": ")
	}
	if f.Field != "" {
		b.WriteString(f.Field + ": ")
	}
	b.WriteString(f.Message)
	return b.String()
}

// Sort orders findings by resource, field, code and message: a stable
// order whatever the order of the input.
func Sort(fs []Finding) {
	slices.SortFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(a.Resource.Kind, b.Resource.Kind),
			cmp.Compare(a.Resource.Namespace, b.Resource.Namespace),
			cmp.Compare(a.Resource.Name, b.Resource.Name),
			cmp.Compare(a.Field, b.Field),
			cmp.Compare(a.Code, b.Code),
			cmp.Compare(a.Message, b.Message),
		)
	})
}

// Worst returns the highest severity among fs, or "" for none.
func Worst(fs []Finding) Severity {
	var w Severity
	for _, f := range fs {
		if w == "" || f.Severity.rank() > w.rank() {
			w = f.Severity
		}
	}
	return w
}
