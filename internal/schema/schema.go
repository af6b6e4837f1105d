// Package schema defaults and validates Gateway API and trellis.dev
// resources as a kube-apiserver with their CRDs installed does, by running
// the apiserver's own CustomResourceDefinition code on the CRDs themselves.
//
// The CRDs are embedded: the Gateway API ones (standard channel, the
// sigs.k8s.io/gateway-api version in go.mod) from crds/gateway-api, where
// `go run ./hack/dev crds` copies them, and the trellis.dev ones from
// crds/trellis, where the same command has controller-gen generate them
// from the kubebuilder markers of api/v1alpha1. The first For of a kind
// parses its CRD, and the first For of a version compiles that version's
// schema, once:
//
//	crds/{gateway-api,trellis}/*.yaml ──For(apiVersion, kind)──► *Validator (one per served version)
//	  openAPIV3Schema (apiextensions/v1)
//	    ──convert──► internal JSONSchemaProps ──┬──► structural schema (defaults, pruning, list types)
//	                                            ├──► OpenAPI schema validator
//	                                            └──► CEL programs (x-kubernetes-validations)
//
// A Validator works on an object as unstructured JSON: map[string]any
// with int64 integers, as k8s.io/apimachinery/pkg/util/json or
// runtime.DefaultUnstructuredConverter make it.
//
//	obj ──Default──► the CRD's defaults applied, in place
//	    ──Validate──► fields the CRD does not know (experimental-channel fields)
//	                  OpenAPI schema: types, required, patterns, enums, ranges, list and string limits
//	                  list-type map and set keys unique
//	                  CEL rules (skipped, as by the apiserver, when a value is over a
//	                  length or item limit, which their cost bounds rely on)
//	              ──► []FieldError{Field: "spec.rules[0].matches[1].path.value", Message: "..."}
//
// Validators are safe for concurrent use. Nothing here judges a resource
// against others; that is the analyzer's business.
package schema

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

//go:embed crds/gateway-api/*.yaml crds/trellis/*.yaml
var crdFiles embed.FS

// The directories of the embedded CRDs.
const (
	crdDir        = "crds/gateway-api"
	trellisCRDDir = "crds/trellis"
)

// CRDs returns the embedded CRD files, gateway-api/*.yaml and
// trellis/*.yaml, as they are to be applied to a cluster.
func CRDs() fs.FS {
	sub, err := fs.Sub(crdFiles, "crds")
	if err != nil {
		panic(err) // the directory is embedded
	}
	return sub
}

// ErrUnknownKind is returned by For for a kind without an embedded CRD.
var ErrUnknownKind = errors.New("schema: no CRD for this kind")

// Kind is a kind with an embedded CRD.
type Kind struct{ Group, Kind string }

// Kinds returns the kinds with an embedded CRD, sorted by kind.
func Kinds() []Kind {
	idx := loadIndex()
	out := make([]Kind, 0, len(idx.crds))
	for _, c := range idx.crds {
		out = append(out, c.Kind)
	}
	slices.SortFunc(out, func(a, b Kind) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

// For returns the validator of kind at apiVersion ("group/version"),
// compiling it on first use. It returns ErrUnknownKind for a kind or
// version without an embedded CRD.
func For(apiVersion, kind string) (*Validator, error) {
	group, ver, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return nil, fmt.Errorf("%w: %s %s", ErrUnknownKind, apiVersion, kind)
	}
	c := loadIndex().byGroupKind[group+"/"+kind]
	if c == nil {
		return nil, fmt.Errorf("%w: %s %s", ErrUnknownKind, apiVersion, kind)
	}
	c.once.Do(c.parse)
	if c.err != nil {
		return nil, c.err
	}
	v := c.versions[ver]
	if v == nil {
		return nil, fmt.Errorf("%w: %s is not served at %s", ErrUnknownKind, kind, apiVersion)
	}
	v.once.Do(v.compile)
	return v.v, v.err
}

// index maps kinds to their CRD files; building it reads only the head of
// each file.
type index struct {
	crds        []*crd
	byGroupKind map[string]*crd // "group/Kind"
}

// crd is one embedded CRD, parsed on first use.
type crd struct {
	Kind
	file string

	once     sync.Once
	versions map[string]*version // served versions
	err      error
}

// version is one served version of a CRD, compiled on first use.
type version struct {
	apiVersion, kind string

	once   sync.Once
	schema *apiextensionsv1.JSONSchemaProps // until compiled
	v      *Validator
	err    error
}

var loadIndex = sync.OnceValue(func() *index {
	idx := &index{byGroupKind: make(map[string]*crd)}
	var files []string
	for _, dir := range []string{crdDir, trellisCRDDir} {
		entries, err := crdFiles.ReadDir(dir)
		if err != nil {
			panic(err) // the directory is embedded
		}
		for _, e := range entries {
			if path.Ext(e.Name()) == ".yaml" {
				files = append(files, path.Join(dir, e.Name()))
			}
		}
	}
	for _, file := range files {
		k, err := readKind(file)
		if err != nil {
			// Reported by For, and by the tests that compile every CRD.
			k = Kind{Kind: file}
		}
		c := &crd{Kind: k, file: file}
		if err != nil {
			c.once.Do(func() { c.err = err })
		}
		idx.crds = append(idx.crds, c)
		idx.byGroupKind[k.Group+"/"+k.Kind] = c
	}
	return idx
})

// crdHead is the part of a CRD the index needs.
type crdHead struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
	} `json:"spec"`
}

// readKind reads the group and kind of a CRD file. controller-gen writes
// spec.versions, nearly all of the file, last; the head before it is
// enough.
func readKind(file string) (Kind, error) {
	b, err := crdFiles.ReadFile(file)
	if err != nil {
		return Kind{}, err
	}
	if i := bytes.Index(b, []byte("\n  versions:\n")); i >= 0 {
		b = b[:i+1]
	}
	var h crdHead
	if err := yaml.Unmarshal(b, &h); err != nil {
		return Kind{}, fmt.Errorf("schema: %s: %w", file, err)
	}
	k := Kind{Group: h.Spec.Group, Kind: h.Spec.Names.Kind}
	if k.Group == "" || k.Kind == "" {
		return Kind{}, fmt.Errorf("schema: %s: not a CRD with a group and kind", file)
	}
	return k, nil
}

// parse reads the CRD and its served versions.
func (c *crd) parse() {
	b, err := crdFiles.ReadFile(c.file)
	if err != nil {
		c.err = err
		return
	}
	var def apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(b, &def); err != nil {
		c.err = fmt.Errorf("schema: %s: %w", c.file, err)
		return
	}
	c.versions = make(map[string]*version)
	for _, ver := range def.Spec.Versions {
		if !ver.Served {
			continue
		}
		if ver.Schema == nil || ver.Schema.OpenAPIV3Schema == nil {
			c.err = fmt.Errorf("schema: %s: version %s has no schema", c.file, ver.Name)
			return
		}
		c.versions[ver.Name] = &version{apiVersion: def.Spec.Group + "/" + ver.Name, kind: def.Spec.Names.Kind, schema: ver.Schema.OpenAPIV3Schema}
	}
}

func (v *version) compile() {
	v.v, v.err = newValidator(v.apiVersion, v.kind, v.schema)
	if v.err != nil {
		v.err = fmt.Errorf("schema: %s %s: %w", v.apiVersion, v.kind, v.err)
	}
	v.schema = nil
}

// Validator defaults and validates objects of one kind and version.
type Validator struct {
	apiVersion, kind string
	structural       *structuralschema.Structural
	openAPI          apiservervalidation.SchemaValidator
	cel              *cel.Validator // nil without rules
}

// newValidator compiles one version's schema as the apiserver does when it
// starts serving a CRD (apiextensions-apiserver customresource_handler.go).
func newValidator(apiVersion, kind string, s *apiextensionsv1.JSONSchemaProps) (*Validator, error) {
	internal := new(apiextensions.JSONSchemaProps)
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(s, internal, nil); err != nil {
		return nil, fmt.Errorf("converting the schema: %w", err)
	}
	ss, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, fmt.Errorf("not a structural schema: %w", err)
	}
	if err := structuraldefaulting.PruneDefaults(ss); err != nil {
		return nil, fmt.Errorf("pruning defaults: %w", err)
	}
	openAPI, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, fmt.Errorf("OpenAPI validator: %w", err)
	}
	v := &Validator{
		apiVersion: apiVersion,
		kind:       kind,
		structural: ss,
		openAPI:    openAPI,
		cel:        cel.NewValidator(ss, true, celconfig.PerCallLimit),
	}
	return v, nil
}

// APIVersion returns the validator's apiVersion, "group/version".
func (v *Validator) APIVersion() string { return v.apiVersion }

// Kind returns the validator's kind.
func (v *Validator) Kind() string { return v.kind }

// Default applies the CRD's defaults to obj in place, as the apiserver
// does when it decodes a request: absent fields with a default get it
// (recursively, so a defaulted object gets its own fields' defaults), and
// nulls where the schema allows none are replaced by the default or
// removed. Default is idempotent.
func (v *Validator) Default(obj map[string]any) {
	structuraldefaulting.Default(obj, v.structural)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, v.structural)
}

// FieldError is one problem with an object.
type FieldError struct {
	// Field is the path of the field, as in "spec.rules[0].matches[1].path.value";
	// "" for the whole object.
	Field string
	// Message says what is wrong, e.g. "required" or
	// `invalid value "api": must be an absolute path and start with '/' ...`.
	Message string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// celSkipped is reported when the CEL rules were not evaluated.
const celSkipped = "the CEL validation rules were not checked because a list or string is over its limit; correct the errors above to check them"

// Validate checks obj, which should have been defaulted, against the
// CRD: the fields it knows (the others are reported, as by the apiserver's
// strict field validation, and removed from obj), its OpenAPI schema, the
// uniqueness of list-type map keys and set items, and its CEL rules. It
// accepts exactly the objects the apiserver accepts, and reports every
// problem the apiserver reports, with two differences:
//
//   - The apiserver evaluates no CEL rule once the OpenAPI schema reports a
//     missing required field, an unsupported enum value or a value over a
//     length or item limit. Here the rules are skipped (and a last
//     FieldError says so) only for the limits, on which the rules' cost
//     bounds rely; otherwise they run, so that every problem is reported
//     at once, leaving out the rule evaluation errors ("no such key") that
//     the missing or unsupported values cause.
//   - A CEL rule that a list's entries be unique by their key ("Listener
//     name must be unique") is not reported when the list-type map check
//     already named the duplicate entry.
//
// Errors are sorted by field path (schema errors before CEL errors on the
// same field), without duplicates; nil means valid.
func (v *Validator) Validate(obj map[string]any) []FieldError {
	var errs field.ErrorList
	unknown := structuralpruning.PruneWithOptions(obj, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range unknown {
		errs = append(errs, &field.Error{Type: errorTypeUnknown, Field: p})
	}
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, v.openAPI)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	var celErrs field.ErrorList
	skipped := false
	if v.cel != nil {
		if overLimit(errs) {
			skipped = true
		} else {
			celErrs, _ = v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
			celErrs = slices.DeleteFunc(celErrs, func(e *field.Error) bool {
				return invalidated(errs) && strings.Contains(e.Detail, " evaluating rule: ") || reportedDuplicate(e, errs)
			})
		}
	}
	if len(errs) == 0 && len(celErrs) == 0 && !skipped {
		return nil
	}
	out := make([]FieldError, 0, len(errs)+len(celErrs)+1)
	for _, e := range slices.Concat(errs, celErrs) {
		fe := FieldError{Field: e.Field, Message: message(e, v.apiVersion)}
		if e.Field == "<nil>" {
			fe.Field = ""
		}
		if !slices.Contains(out, fe) {
			out = append(out, fe)
		}
	}
	slices.SortStableFunc(out, func(a, b FieldError) int { return comparePaths(a.Field, b.Field) })
	if skipped {
		out = append(out, FieldError{Message: celSkipped})
	}
	return out
}

// errorTypeUnknown marks a field the schema does not have.
const errorTypeUnknown field.ErrorType = "FieldValueUnknown"

// overLimit reports whether errs hold an error for a value over a length
// or item limit (or of the wrong type), on which the CEL rules' cost
// estimates rely; the apiserver skips the rules then, and so does Validate.
func overLimit(errs field.ErrorList) bool {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true
		}
	}
	return false
}

// invalidated reports whether errs hold a missing required field or an
// unsupported value, which CEL rules may fail to evaluate on.
func invalidated(errs field.ErrorList) bool {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeRequired, field.ErrorTypeNotSupported:
			return true
		}
	}
	return false
}

// reportedDuplicate reports whether e, a CEL error, is a rule that the
// entries of a list be unique by its key field, whose duplicate errs
// already name (listtype's "duplicate entry with name ...").
func reportedDuplicate(e *field.Error, errs field.ErrorList) bool {
	if !strings.Contains(e.Detail, "unique") {
		return false
	}
	for _, d := range errs {
		if d.Type != field.ErrorTypeDuplicate || !strings.HasPrefix(d.Field, e.Field+"[") {
			continue
		}
		keys, _ := d.BadValue.(map[string]any)
		for k := range keys {
			if regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(k) + `\b`).MatchString(e.Detail) {
				return true
			}
		}
	}
	return false
}

// comparePaths orders field paths element by element, list indices by
// number: "spec.rules[2]" < "spec.rules[10]" < "spec.rules[10].name". The
// empty path, the whole object, sorts first.
func comparePaths(a, b string) int {
	for a != "" && b != "" {
		var ea, eb string
		ea, a = nextElement(a)
		eb, b = nextElement(b)
		if ea == eb {
			continue
		}
		ia, okA := listIndex(ea)
		ib, okB := listIndex(eb)
		if okA && okB {
			return cmp.Compare(ia, ib)
		}
		return strings.Compare(ea, eb)
	}
	return cmp.Compare(len(a), len(b))
}

// nextElement splits the first element off a field path: "spec", "[0]".
func nextElement(p string) (elem, rest string) {
	p = strings.TrimPrefix(p, ".")
	if strings.HasPrefix(p, "[") {
		if i := strings.IndexByte(p, ']'); i >= 0 {
			return p[:i+1], p[i+1:]
		}
		return p, ""
	}
	if i := strings.IndexAny(p, ".["); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// listIndex returns the number of a list index element, "[12]".
func listIndex(elem string) (int, bool) {
	if !strings.HasPrefix(elem, "[") || !strings.HasSuffix(elem, "]") {
		return 0, false
	}
	n, err := strconv.Atoi(elem[1 : len(elem)-1])
	return n, err == nil
}

// message turns a field.Error on an object of apiVersion into a message
// that stands without the field path: the CRD's own text (its CEL message, or the OpenAPI
// validator's "should match '^...$'") with the offending value where it is
// a scalar.
func message(e *field.Error, apiVersion string) string {
	detail := stripPath(e.Detail, e.Field)
	switch e.Type {
	case errorTypeUnknown:
		name := e.Field[strings.LastIndexAny(e.Field, ".")+1:]
		if strings.HasPrefix(apiVersion, "gateway.networking.k8s.io/") {
			return fmt.Sprintf("unknown field %q (not in the Gateway API standard channel)", name)
		}
		return fmt.Sprintf("unknown field %q", name)
	case field.ErrorTypeRequired:
		if detail == "" {
			return "required"
		}
		return detail
	case field.ErrorTypeNotSupported:
		if detail == "" {
			return "unsupported value " + value(e.BadValue)
		}
		return "unsupported value " + value(e.BadValue) + "; " + detail
	case field.ErrorTypeTooLong:
		return "too long: " + strings.Replace(detail, " bytes", " characters", 1)
	case field.ErrorTypeTooMany:
		if n, ok := e.BadValue.(int); ok {
			return fmt.Sprintf("too many items (%d): %s", n, detail)
		}
		return "too many items: " + detail
	case field.ErrorTypeDuplicate:
		if m, ok := e.BadValue.(map[string]any); ok {
			return "duplicate entry" + keys(m)
		}
		return "duplicate value " + value(e.BadValue)
	case field.ErrorTypeForbidden:
		if detail == "" {
			return "forbidden"
		}
		return detail
	case field.ErrorTypeInternal:
		return "internal error: " + detail
	}
	// Invalid and TypeInvalid. A well-known pattern is explained.
	if p, ok := strings.CutPrefix(detail, "should match '"); ok {
		if hint, ok := patternHints[strings.TrimSuffix(p, "'")]; ok {
			detail = hint
		}
	}
	// An item count ("should have at least 1 items") is no value to show.
	if strings.HasPrefix(detail, "should have at") {
		return detail
	}
	if s, ok := scalar(e.BadValue); ok && e.Field != "<nil>" {
		return "invalid value " + s + ": " + detail
	}
	return detail
}

// patternHints explain the patterns of the Gateway API's shared types,
// which the trellis.dev kinds use too, better than the patterns do.
var patternHints = map[string]string{
	// Duration
	`^([0-9]{1,5}(h|m|s|ms)){1,4}$`: "must be a duration of up to four number-unit pairs with units h, m, s, ms, e.g. 1h30m or 500ms",
	// HeaderName, HTTPHeaderName
	"^[A-Za-z0-9!#$%&'*+\\-.^_\\x60|~]+$": "must be an HTTP token: letters, digits and !#$%&'*+-.^_`|~",
}

// stripPath removes the field path the OpenAPI validator puts in its
// messages ("spec.port in body should be greater than or equal to 1").
func stripPath(detail, fieldPath string) string {
	if rest, ok := strings.CutPrefix(detail, fieldPath+" in body "); ok {
		return rest
	}
	if rest, ok := strings.CutPrefix(detail, fieldPath+" "); ok && fieldPath != "" {
		return rest
	}
	return detail
}

// scalar formats a string, number or boolean as in YAML, quoting strings;
// ok is false for anything else.
func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v), true
	case bool, int, int32, int64, float64:
		return fmt.Sprint(v), true
	}
	return "", false
}

func value(v any) string {
	if s, ok := scalar(v); ok {
		return s
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(bytes.TrimSpace(b))
}

// keys formats the key fields of a list-type map entry: ` with name "http"`.
func keys(m map[string]any) string {
	if len(m) == 0 {
		return " without key"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + " " + value(m[k])
	}
	return " with " + strings.Join(parts, ", ")
}
