package rbac

import (
	"errors"
	"fmt"
	"slices"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// allowList names, per message type, every field this package implements.
// checkFields walks the set fields of a config and refuses any other, and
// any field unknown to the compiled-in protos: a field Envoy adds later is
// refused, never silently ignored. A message type without an entry allows
// no field.
var allowList = map[protoreflect.FullName]map[protoreflect.Name]bool{}

// allow registers the allowed fields of m's type; it panics on a name that
// is not a field of the type, so a typo fails every test at init.
func allow(m proto.Message, fields ...string) {
	md := m.ProtoReflect().Descriptor()
	set := make(map[protoreflect.Name]bool, len(fields))
	for _, f := range fields {
		if md.Fields().ByName(protoreflect.Name(f)) == nil {
			panic(fmt.Sprintf("rbac: allow-list: %s has no field %q", md.FullName(), f))
		}
		set[protoreflect.Name(f)] = true
	}
	allowList[md.FullName()] = set
}

func init() {
	allow(&rbacv3.RBAC{}, "action", "policies")
	allow(&rbacv3.Policy{}, "permissions", "principals")
	allow(&rbacv3.Permission{}, "any", "destination_port", "url_path", "header", "and_rules", "or_rules", "not_rule")
	allow(&rbacv3.Permission_Set{}, "rules")
	allow(&rbacv3.Principal{}, "any", "authenticated", "and_ids", "or_ids", "not_id")
	allow(&rbacv3.Principal_Set{}, "ids")
	allow(&rbacv3.Principal_Authenticated{}, "principal_name")
	allow(&matcherv3.StringMatcher{}, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
	allow(&matcherv3.RegexMatcher{}, "regex")
	allow(&matcherv3.PathMatcher{}, "path")
	allow(&routev3.HeaderMatcher{}, "name", "string_match", "present_match", "invert_match", "treat_missing_header_as_empty")
}

// checkFields reports every set field of m, recursively, that is not on
// the allow-list, with its path.
func checkFields(m protoreflect.Message, path string) error {
	if !m.IsValid() {
		return nil
	}
	allowed := allowList[m.Descriptor().FullName()]
	var fields []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	// Range has no defined order; sort so that errors are stable.
	slices.SortFunc(fields, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number() - b.Number()) })
	var errs []error
	for _, fd := range fields {
		name := path + "." + string(fd.Name())
		if !allowed[fd.Name()] {
			errs = append(errs, fmt.Errorf("%s: %w", name, ErrNotSupported))
			continue
		}
		if fd.Message() == nil {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				errs = append(errs, checkFields(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i)))
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			var keys []string
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k.String())
				return true
			})
			slices.Sort(keys)
			for _, k := range keys {
				mv := v.Map().Get(protoreflect.ValueOfString(k).MapKey())
				errs = append(errs, checkFields(mv.Message(), fmt.Sprintf("%s[%q]", name, k)))
			}
		default:
			errs = append(errs, checkFields(v.Message(), name))
		}
	}
	if len(m.GetUnknown()) > 0 {
		errs = append(errs, fmt.Errorf("%s: fields unknown to this proxy (newer API than the proxy's?): %w", path, ErrNotSupported))
	}
	return errors.Join(errs...)
}
