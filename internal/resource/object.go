package resource

import (
	"strconv"
	"strings"
)

// Object is one decoded resource.
type Object struct {
	Kind       string // canonical kind, e.g. "HTTPRoute"
	APIVersion string
	Namespace  string // empty for cluster-scoped kinds
	Name       string
	Obj        any    // typed pointer: *gwv1.HTTPRoute, *corev1.Service, *v1alpha1.Workload, ...
	File       string // where it was read ("" if not from a file)
	Line       int    // line of the document start (1-based); 0 if unknown

	// lines maps the field paths written in the document
	// ("spec.rules[0].matches") to their lines, so that errors found after
	// decoding still point at the line. Nil for objects not read from text
	// with positions (DecodeOne).
	lines map[string]int
}

// Ref names the object for messages: "HTTPRoute demo/web", or
// "GatewayClass trellis" for cluster-scoped kinds.
func (o *Object) Ref() string { return ref(o.Kind, o.Namespace, o.Name) }

func ref(kind, namespace, name string) string {
	switch {
	case name == "":
		return kind
	case namespace == "":
		return kind + " " + name
	default:
		return kind + " " + namespace + "/" + name
	}
}

// LineOf returns the line of the field at path, or of its closest written
// ancestor, or the document's line; 0 when the object was not read from
// text.
func (o *Object) LineOf(path string) int { return o.lineOf(path) }

// lineOf is LineOf.
func (o *Object) lineOf(path string) int {
	for path != "" {
		if l, ok := o.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return o.Line
}

// parentPath strips the last element of a field path:
// "a.b[0]" → "a.b" → "a" → "".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// errorf returns an *Error about field of o.
func (o *Object) errorf(field, msg string) *Error {
	return &Error{
		File: o.File, Line: o.lineOf(field),
		Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
		Field: field, Message: msg,
	}
}

// Error is a problem with one resource, located as precisely as known.
// Decode, Validate and Model return these, joined with errors.Join.
type Error struct {
	File string // "" when not read from a file
	Line int    // 1-based; 0 when unknown
	// Kind, Namespace and Name name the resource, as far as known.
	Kind, Namespace, Name string
	// Field is the field path, e.g. "spec.rules[0].backendRefs[0].port";
	// empty for problems with the whole document.
	Field   string
	Message string
}

// Error formats the error as
//
//	demo.yaml:12: HTTPRoute demo/web: spec.rules[0].backendRefs[0].port: required for a Service backend
//
// leaving out the parts that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Kind != "" {
		b.WriteString(ref(e.Kind, e.Namespace, e.Name) + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}
