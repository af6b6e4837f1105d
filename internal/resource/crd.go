package resource

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"

	"trellis.dev/trellis/internal/schema"
)

// The Gateway API and trellis.dev kinds are defaulted and validated by
// their CRDs, run by package schema as the kube-apiserver runs them:
//
//	Default:  typed ──unstructured──► map ──CRD defaults──► JSON ──DecodeOne──► typed
//	Validate: typed ──unstructured──► map ──drop unwritten zero values──► CRD defaults
//	               ──► unknown fields, OpenAPI schema, list keys, CEL rules ──► *Error (file, line, field)

// crdValidator returns the CRD validator of o's kind at o's apiVersion;
// ok is false for kinds without a CRD (Service).
func crdValidator(o *Object) (_ *schema.Validator, ok bool, err error) {
	info, found := kindByName(o.Kind)
	if !found || info.Group != gatewayGroup && info.Group != trellisGroup {
		return nil, false, nil
	}
	v, err := schema.For(cmp.Or(o.APIVersion, info.APIVersion()), info.Kind)
	if err != nil {
		return nil, true, err
	}
	return v, true, nil
}

// unstructured returns o as the apiserver sees it: a JSON object with
// int64 integers, apiVersion and kind set, and no status.
func unstructured(o *Object) (map[string]any, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o.Obj)
	if err != nil {
		return nil, fmt.Errorf("resource: converting %s: %w", o.Ref(), err)
	}
	delete(u, "status")
	if s, _ := u["kind"].(string); s == "" {
		u["kind"] = o.Kind
	}
	if s, _ := u["apiVersion"].(string); s == "" {
		info, _ := kindByName(o.Kind)
		u["apiVersion"] = cmp.Or(o.APIVersion, info.APIVersion())
	}
	return u, nil
}

// defaultCRD applies the CRD's defaults to o. The defaulted object goes
// back through the strict decoder, so that the typed object is exactly
// what the store reads back; an object the defaults leave as it is stays.
func defaultCRD(o *Object, v *schema.Validator) error {
	u, err := unstructured(o)
	if err != nil {
		return err
	}
	before := runtime.DeepCopyJSON(u)
	v.Default(u)
	delete(u, "status") // defaulted too, and ignored
	if reflect.DeepEqual(u, before) {
		return nil // nothing to default: spare decoding it again
	}
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("resource: encoding defaulted %s: %w", o.Ref(), err)
	}
	d, err := DecodeOne(o.Kind, b)
	if err != nil {
		return fmt.Errorf("resource: decoding defaulted %s: %w", o.Ref(), err)
	}
	o.Obj = d.Obj
	return nil
}

// crd checks the object against its CRD, as the apiserver would on create.
func (v *validator) crd(sv *schema.Validator) {
	u, err := unstructured(v.o)
	if err != nil {
		v.add("", "%v", err)
		return
	}
	if v.o.lines != nil {
		if spec, ok := u["spec"].(map[string]any); ok {
			dropUnwritten(spec, "spec", v.o.lines)
		}
	}
	sv.Default(u)
	delete(u, "status")
	errs := sv.Validate(u)
	// Report in document order; errors on one line keep the validator's
	// order (schema, then CEL rules).
	slices.SortStableFunc(errs, func(a, b schema.FieldError) int {
		if a.Field == "" || b.Field == "" {
			return strings.Compare(b.Field, a.Field) // whole-object notes last
		}
		return cmp.Compare(v.o.lineOf(a.Field), v.o.lineOf(b.Field))
	})
	for _, e := range errs {
		v.errs = append(v.errs, v.o.errorf(e.Field, e.Message))
	}
}

// dropUnwritten removes from m, the unstructured form of a typed object,
// the zero values (and objects left empty) of fields the document did not
// write: Go structs cannot tell a missing required field from a zero one,
// and the apiserver reports the first as required. lines holds the paths
// the document wrote; path is m's. Defaults removed here are restored by
// defaulting again.
func dropUnwritten(m map[string]any, path string, lines map[string]int) {
	for k, val := range m {
		p := joinPath(path, k)
		_, written := lines[p]
		if !written {
			_, written = lines[keyPath(path, k)] // a Go map's entry
		}
		switch val := val.(type) {
		case map[string]any:
			dropUnwritten(val, p, lines)
			if len(val) == 0 && !written {
				delete(m, k)
			}
		case []any:
			for i, item := range val {
				if im, ok := item.(map[string]any); ok {
					dropUnwritten(im, indexPath(p, i), lines)
				}
			}
		case string, bool, int64, float64:
			if !written && val == zeroOf(val) {
				delete(m, k)
			}
		}
	}
}

func zeroOf(v any) any {
	switch v.(type) {
	case string:
		return ""
	case bool:
		return false
	case int64:
		return int64(0)
	case float64:
		return float64(0)
	}
	return nil
}
