package resource

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Encode returns the canonical JSON of o for storage: the typed object as
// encoding/json writes it, with top-level keys sorted and status left out.
// DecodeOne(o.Kind, b) reads it back. Encoding is deterministic: two
// objects that decode the same encode to the same bytes.
func Encode(o *Object) ([]byte, error) {
	if o == nil || o.Obj == nil {
		return nil, errors.New("resource: encode: no object")
	}
	b, err := json.Marshal(o.Obj)
	if err != nil {
		return nil, fmt.Errorf("resource: encode %s: %w", o.Ref(), err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("resource: encode %s: %w", o.Ref(), err)
	}
	delete(top, "status")
	// Objects built in code may leave TypeMeta empty.
	if s, _ := json.Marshal(o.Kind); string(top["kind"]) == `""` || top["kind"] == nil {
		top["kind"] = s
	}
	if string(top["apiVersion"]) == `""` || top["apiVersion"] == nil {
		v := o.APIVersion
		if v == "" {
			if k, ok := kindByName(o.Kind); ok {
				v = k.APIVersion()
			}
		}
		top["apiVersion"], _ = json.Marshal(v)
	}
	return json.Marshal(top)
}
