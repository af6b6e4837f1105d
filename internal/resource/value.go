package resource

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits that keep hostile input cheap.
const (
	// maxErrors is how many errors one document reports before giving up.
	maxErrors = 20
	// maxWork bounds the nodes visited for one document, counting every
	// expansion of an alias, so that "billion laughs" documents fail fast.
	maxWork = 1 << 20
)

// decoder decodes one document's node tree into a typed object, strictly:
// fields are matched against the json tags of the Go types, and unknown or
// duplicate fields, values of the wrong kind and out-of-range numbers are
// errors with the field path and line.
type decoder struct {
	file string
	// Kind, namespace and name of the resource, for error messages.
	kind, namespace, name string

	errs    []*Error
	dropped int            // errors beyond maxErrors
	lines   map[string]int // field path → line
	work    *int           // shared by the documents of a List
	aborted bool
	// expanding holds the aliases being decoded, to refuse an anchor
	// that contains itself.
	expanding map[*yaml.Node]bool
}

func newDecoder(file string, work *int) *decoder {
	return &decoder{file: file, lines: make(map[string]int), work: work, expanding: make(map[*yaml.Node]bool)}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.dropped++
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{
		File: d.file, Line: line,
		Kind: d.kind, Namespace: d.namespace, Name: d.name,
		Field: path, Message: fmt.Sprintf(format, args...),
	})
}

// result returns the errors, with a last one counting those left out.
func (d *decoder) result() []*Error {
	errs := d.errs
	if d.dropped > 0 {
		errs = append(errs, &Error{File: d.file, Kind: d.kind, Namespace: d.namespace, Name: d.name,
			Message: fmt.Sprintf("%d more errors not shown", d.dropped)})
	}
	return errs
}

// step counts one unit of work and reports whether decoding may go on.
func (d *decoder) step(n *yaml.Node, path string) bool {
	if d.aborted {
		return false
	}
	*d.work++
	if *d.work > maxWork {
		d.aborted = true
		d.errorf(n, path, "document too large or too deeply aliased (more than %d values)", maxWork)
		return false
	}
	return true
}

// deref follows an alias. done must be called when the caller is finished
// with the aliased node; ok is false for an anchor that contains itself.
func (d *decoder) deref(n *yaml.Node, path string) (_ *yaml.Node, done func(), ok bool) {
	if n.Kind != yaml.AliasNode {
		return n, func() {}, true
	}
	if n.Alias == nil || d.expanding[n] {
		d.errorf(n, path, "anchor %q refers to itself", n.Value)
		return nil, nil, false
	}
	d.expanding[n] = true
	target, done2, ok := d.deref(n.Alias, path)
	if !ok {
		delete(d.expanding, n)
		return nil, nil, false
	}
	return target, func() { done2(); delete(d.expanding, n) }, true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func keyPath(path, key string) string { return path + "[" + key + "]" }

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// value decodes n into v, which must be settable.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.step(n, path) {
		return
	}
	if _, ok := d.lines[path]; !ok && path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		target, done, ok := d.deref(n, path)
		if ok {
			d.value(target, v, path)
			done()
		}
		return
	}
	if !d.knownTag(n, path) {
		return
	}
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	if pt := reflect.PointerTo(t); pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		d.delegate(n, v, path)
		return
	}
	if isNull(n) {
		v.SetZero()
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.object(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.list(n, v, path)
	case reflect.String:
		if s, ok := d.str(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(n, path, "expected a boolean (true or false), got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.errorf(n, path, "expected a boolean (true or false), got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		if !i.signed && i.u > math.MaxInt64 || v.OverflowInt(i.int64()) {
			d.errorf(n, path, "%s is out of range for %s", n.Value, rangeOf(t))
			return
		}
		v.SetInt(i.int64())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		i, ok := d.integer(n, path)
		if !ok {
			return
		}
		if i.signed && i.i < 0 || v.OverflowUint(i.uint64()) {
			d.errorf(n, path, "%s is out of range for %s", n.Value, rangeOf(t))
			return
		}
		v.SetUint(i.uint64())
	case reflect.Float32, reflect.Float64:
		f, ok := d.float(n, path)
		if !ok {
			return
		}
		if v.OverflowFloat(f) {
			d.errorf(n, path, "%s is out of range for %s", n.Value, t.Kind())
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			d.errorf(n, path, "cannot decode into Go type %s", t)
			return
		}
		d.delegate(n, v, path)
	default:
		d.errorf(n, path, "cannot decode into Go type %s", t)
	}
}

// knownTag reports whether n has one of YAML's standard tags; custom tags
// (!foo) have no meaning in a resource.
func (d *decoder) knownTag(n *yaml.Node, path string) bool {
	tag := n.ShortTag()
	switch n.Kind {
	case yaml.MappingNode:
		if tag == "!!map" {
			return true
		}
	case yaml.SequenceNode:
		if tag == "!!seq" {
			return true
		}
	case yaml.ScalarNode:
		switch tag {
		case "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!binary":
			return true
		}
	}
	d.errorf(n, path, "unsupported YAML tag %s", n.Tag)
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// delegate converts the node tree to JSON and lets the type's own
// UnmarshalJSON (metav1.Time, intstr.IntOrString, ...) decode it.
func (d *decoder) delegate(n *yaml.Node, v reflect.Value, path string) {
	var buf bytes.Buffer
	if !d.toJSON(&buf, n, path) {
		return
	}
	ptr := v.Addr().Interface()
	err := json.Unmarshal(buf.Bytes(), ptr)
	if err == nil {
		// Keep the value as it will be stored: metav1.Time, for one,
		// drops fractions of a second and its zone when encoded.
		var b []byte
		if b, err = json.Marshal(ptr); err == nil {
			v.SetZero()
			err = json.Unmarshal(b, ptr)
		}
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if strings.Contains(msg, "cannot unmarshal") {
			msg = fmt.Sprintf("invalid value %s: %s", describe(n), msg)
		}
		d.errorf(n, path, "%s", msg)
	}
}

// toJSON writes the node tree as JSON.
func (d *decoder) toJSON(buf *bytes.Buffer, n *yaml.Node, path string) bool {
	if !d.step(n, path) {
		return false
	}
	n, done, ok := d.deref(n, path)
	if !ok {
		return false
	}
	defer done()
	if !d.knownTag(n, path) {
		return false
	}
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i, p := range d.pairs(n, path, true) {
			if i > 0 {
				buf.WriteByte(',')
			}
			if !utf8.ValidString(p.key.Value) {
				d.errorf(p.key, path, "key is not valid UTF-8")
				return false
			}
			k, _ := json.Marshal(p.key.Value)
			buf.Write(k)
			buf.WriteByte(':')
			if !d.toJSON(buf, p.val, joinPath(path, p.key.Value)) {
				return false
			}
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if !d.toJSON(buf, item, indexPath(path, i)) {
				return false
			}
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			buf.WriteString("null")
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				d.errorf(n, path, "invalid boolean %s", describe(n))
				return false
			}
			buf.WriteString(strconv.FormatBool(b))
		case "!!int":
			i, ok := d.integer(n, path)
			if !ok {
				return false
			}
			if i.signed {
				buf.WriteString(strconv.FormatInt(i.i, 10))
			} else {
				buf.WriteString(strconv.FormatUint(i.u, 10))
			}
		case "!!float":
			f, ok := d.float(n, path)
			if !ok {
				return false
			}
			buf.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		default:
			s, ok := d.str(n, path)
			if !ok {
				return false
			}
			b, _ := json.Marshal(s)
			buf.Write(b)
		}
	default:
		d.errorf(n, path, "unexpected YAML node")
		return false
	}
	return true
}

// object decodes a mapping into a struct. The root object (path "")
// ignores status, as kubectl does.
func (d *decoder) object(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := cachedFields(v.Type())
	for _, p := range d.pairs(n, path, true) {
		key := p.key.Value
		if path == "" && key == "status" {
			continue // written by controllers, not users
		}
		f, ok := fields.byName[key]
		if !ok {
			d.errorf(p.key, joinPath(path, key), "unknown field %q%s", key, suggest(key, fields.names))
			continue
		}
		fpath := joinPath(path, key)
		d.lines[fpath] = p.key.Line
		fv := fieldByIndex(v, f.index)
		d.value(p.val, fv, fpath)
		// encoding/json drops empty slices and maps of omitempty fields,
		// so decode them as nil: what is decoded equals what is stored.
		if f.omitEmpty && (fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0 {
			fv.SetZero()
		}
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errorf(n, path, "cannot decode into Go type %s", t)
		return
	}
	m := reflect.MakeMap(t)
	for _, p := range d.pairs(n, path, true) {
		key := p.key.Value
		if !utf8.ValidString(key) {
			d.errorf(p.key, path, "key is not valid UTF-8")
			continue
		}
		kpath := keyPath(path, key)
		d.lines[kpath] = p.key.Line
		ev := reflect.New(t.Elem()).Elem()
		d.value(p.val, ev, kpath)
		m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), ev)
	}
	v.Set(m)
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if t.Elem().Kind() == reflect.Uint8 {
		// []byte is base64 in JSON.
		s, ok := d.str(n, path)
		if !ok {
			return
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			d.errorf(n, path, "invalid base64: %v", err)
			return
		}
		v.SetBytes(b)
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), indexPath(path, i))
	}
	v.Set(s)
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a string, got %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp", "!!binary":
		// A plain 2024-01-02 is a timestamp in YAML but a string to
		// Kubernetes; !!binary stays base64 text, as in JSON.
	case "!!int", "!!float", "!!bool", "!!null":
		d.errorf(n, path, "expected a string, got %s (quote it: %q)", describe(n), n.Value)
		return "", false
	default:
		d.errorf(n, path, "unsupported tag %s", n.Tag)
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		d.errorf(n, path, "string is not valid UTF-8")
		return "", false
	}
	return n.Value, true
}

// integer is a YAML integer, signed or not.
type integer struct {
	signed bool
	i      int64
	u      uint64
}

func (i integer) int64() int64 {
	if i.signed {
		return i.i
	}
	return int64(i.u)
}

func (i integer) uint64() uint64 {
	if i.signed {
		return uint64(i.i)
	}
	return i.u
}

func (d *decoder) integer(n *yaml.Node, path string) (integer, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
			if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				hint = " (remove the quotes)"
			}
		}
		d.errorf(n, path, "expected an integer, got %s%s", describe(n), hint)
		return integer{}, false
	}
	var x any
	if err := n.Decode(&x); err != nil {
		d.errorf(n, path, "invalid integer %s", describe(n))
		return integer{}, false
	}
	switch x := x.(type) {
	case int:
		return integer{signed: true, i: int64(x)}, true
	case int64:
		return integer{signed: true, i: x}, true
	case uint64:
		return integer{u: x}, true
	}
	d.errorf(n, path, "integer %s is out of range", n.Value)
	return integer{}, false
}

func (d *decoder) float(n *yaml.Node, path string) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
		d.errorf(n, path, "expected a number, got %s", describe(n))
		return 0, false
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		d.errorf(n, path, "invalid number %s", describe(n))
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.errorf(n, path, "expected a finite number, got %s", n.Value)
		return 0, false
	}
	return f, true
}

// pair is one key and value of a mapping.
type pair struct{ key, val *yaml.Node }

// pairs returns the entries of mapping n with merge keys (<<) expanded:
// explicit keys win over merged ones, earlier merged mappings over later
// ones. Duplicate explicit keys and keys that are not scalars are reported
// when report is set, and left out.
func (d *decoder) pairs(n *yaml.Node, path string, report bool) []pair {
	var out, merged []pair
	first := make(map[string]int)
	errorf := func(n *yaml.Node, path, format string, args ...any) {
		if report {
			d.errorf(n, path, format, args...)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode {
			target, done, ok := d.deref(k, path)
			if !ok {
				continue
			}
			done()
			k = target
		}
		if k.Kind != yaml.ScalarNode {
			errorf(k, path, "mapping keys must be strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergePairs(val, path, report)...)
			continue
		}
		if line, dup := first[k.Value]; dup {
			errorf(k, joinPath(path, k.Value), "duplicate field %q (first at line %d)", k.Value, line)
			continue
		}
		first[k.Value] = k.Line
		out = append(out, pair{k, val})
	}
	for _, p := range merged {
		if _, dup := first[p.key.Value]; !dup {
			first[p.key.Value] = p.key.Line
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergePairs(n *yaml.Node, path string, report bool) []pair {
	if !d.step(n, path) {
		return nil
	}
	n, done, ok := d.deref(n, path)
	if !ok {
		return nil
	}
	defer done()
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path, report)
	case yaml.SequenceNode:
		var out []pair
		seen := make(map[string]bool)
		for _, item := range n.Content {
			for _, p := range d.mergePairs(item, path, report) {
				if !seen[p.key.Value] {
					seen[p.key.Value] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	if report {
		d.errorf(n, path, "merge key (<<) needs a mapping or a list of mappings, got %s", describe(n))
	}
	return nil
}

// describe names a node's kind and value for messages: `string "abc"`,
// `integer 8080`, `a list`.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil && n.Alias.Kind != yaml.AliasNode {
			return describe(n.Alias)
		}
		return "an alias"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "boolean " + v
		case "!!int":
			return "integer " + v
		case "!!float":
			return "number " + v
		case "!!timestamp":
			return "timestamp " + v
		}
		return "string " + strconv.Quote(v)
	}
	return "an empty node"
}

func rangeOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int8:
		return "int8 (-128 to 127)"
	case reflect.Int16:
		return "int16 (-32768 to 32767)"
	case reflect.Int32:
		return "int32 (-2147483648 to 2147483647)"
	case reflect.Uint8:
		return "uint8 (0 to 255)"
	case reflect.Uint16:
		return "uint16 (0 to 65535)"
	case reflect.Uint32:
		return "uint32 (0 to 4294967295)"
	}
	return t.Kind().String()
}

// suggest returns `; did you mean "x"?` for the known name closest to
// name, or "" when none is close.
func suggest(name string, known []string) string {
	best, bestDist := "", 0
	lname := strings.ToLower(name)
	for _, k := range known {
		dist := editDistance(lname, strings.ToLower(k))
		if best == "" || dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best == "" || bestDist > max(1, min(len(name), len(best))/3) {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance is the optimal string alignment distance between a and b
// (Levenshtein with transpositions), in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// field is a struct field as encoding/json sees it.
type field struct {
	name      string
	index     []int
	omitEmpty bool
}

type structFields struct {
	byName map[string]*field
	names  []string // sorted
}

var fieldCache sync.Map // reflect.Type → *structFields

func cachedFields(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f, _ := fieldCache.LoadOrStore(t, typeFields(t))
	return f.(*structFields)
}

// typeFields lists the JSON fields of struct type t following
// encoding/json: embedded structs without a JSON name (json:",inline")
// are flattened, shallower fields win, and among fields at the same depth
// a tagged one wins; other conflicts hide the name.
func typeFields(t reflect.Type) *structFields {
	type candidate struct {
		f      field
		depth  int
		tagged bool
	}
	var all []candidate
	var walk func(t reflect.Type, index []int, depth int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, index []int, depth int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		defer delete(visited, t)
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(slices.Clone(index), i)
			if sf.Anonymous && name == "" {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, idx, depth+1, visited)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			tagged := name != ""
			if name == "" {
				name = sf.Name
			}
			omit := false
			for o := range strings.SplitSeq(opts, ",") {
				if o == "omitempty" {
					omit = true
				}
			}
			all = append(all, candidate{field{name, idx, omit}, depth, tagged})
		}
	}
	walk(t, nil, 0, make(map[reflect.Type]bool))

	byName := make(map[string][]candidate)
	for _, c := range all {
		byName[c.f.name] = append(byName[c.f.name], c)
	}
	sf := &structFields{byName: make(map[string]*field)}
	for name, cs := range byName {
		minDepth := slices.MinFunc(cs, func(a, b candidate) int { return a.depth - b.depth }).depth
		var top []candidate
		for _, c := range cs {
			if c.depth == minDepth {
				top = append(top, c)
			}
		}
		if len(top) > 1 {
			top = slices.DeleteFunc(top, func(c candidate) bool { return !c.tagged })
		}
		if len(top) != 1 {
			continue
		}
		f := top[0].f
		sf.byName[name] = &f
		sf.names = append(sf.names, name)
	}
	slices.Sort(sf.names)
	return sf
}

// fieldByIndex is v.FieldByIndex, allocating nil embedded pointers.
func fieldByIndex(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}
