package resource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Decode reads the resources in data: YAML with any number of documents
// separated by "---", or JSON. A document of kind List (or HTTPRouteList,
// ...) contributes its items; empty documents are skipped. file names
// the input in errors.
//
// Decoding is strict: unknown and duplicate fields, values of the wrong
// type and apiVersions that do not serve the kind are errors, each with
// its line and field path. A resource's status is ignored. Every error of
// a document is reported (up to 20), joined; the objects of the documents
// that decoded cleanly are returned along with the error. A YAML syntax
// error stops decoding at that document.
//
// A document larger than MaxDocumentBytes is an error and is not parsed,
// which bounds the memory decoding takes whatever the input.
func Decode(file string, data []byte) ([]*Object, error) {
	var objs []*Object
	var errs []error
	data, tooLarge := dropLargeDocuments(file, data)
	for _, e := range tooLarge {
		errs = append(errs, e)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := parse(dec, &doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, syntaxError(file, data, err))
			break
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if isNull(root) {
			continue // empty document, or only comments
		}
		work := 0
		o, e := decodeDocument(file, root, &work, 0)
		objs = append(objs, o...)
		for _, e := range e {
			errs = append(errs, e)
		}
	}
	return objs, errors.Join(errs...)
}

// MaxDocumentBytes is the largest document Decode parses: the Kubernetes
// API server's limit on a request, far above any real resource. Parsing
// takes about 40 bytes of memory per byte of YAML.
const MaxDocumentBytes = 3 << 20

// dropLargeDocuments returns data with every document larger than
// MaxDocumentBytes replaced by as many empty lines as it had, so that the
// lines of the other documents do not move, and an error for each.
// Documents are separated by "---" at the start of a line, which YAML
// forbids inside content.
func dropLargeDocuments(file string, data []byte) ([]byte, []*Error) {
	if len(data) <= MaxDocumentBytes {
		return data, nil
	}
	var out bytes.Buffer
	var errs []*Error
	start, line, startLine := 0, 1, 1
	flush := func(end int) {
		doc := data[start:end]
		if len(doc) <= MaxDocumentBytes {
			out.Write(doc)
		} else {
			errs = append(errs, &Error{File: file, Line: startLine, Message: fmt.Sprintf(
				"document of %.1f MiB is larger than the %d MiB limit (the Kubernetes API server's); split it into several documents",
				float64(len(doc))/(1<<20), MaxDocumentBytes>>20)})
			out.Write(bytes.Repeat([]byte{'\n'}, bytes.Count(doc, []byte{'\n'})))
		}
		start, startLine = end, line
	}
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if j >= 0 {
			next = i + j + 1
		}
		if rest := data[i:next]; i > start && bytes.HasPrefix(rest, []byte("---")) &&
			(len(rest) == 3 || rest[3] == ' ' || rest[3] == '\t' || rest[3] == '\n' || rest[3] == '\r') {
			flush(i)
		}
		i = next
		line++
	}
	flush(len(data))
	return out.Bytes(), errs
}

// parse reads the next document, turning a panic of the YAML parser into
// an error.
func parse(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(doc)
}

var (
	yamlLine      = regexp.MustCompile(`^yaml: line (\d+): `)
	unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// parserProblems are the problems yaml.v3's parser (as opposed to its
// scanner) reports; it gives their line counting from 0.
var parserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected node content",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
	"found duplicate %TAG directive",
}

// syntaxError turns a yaml.v3 parse error into an *Error with the line.
// yaml.v3 counts the lines of parser problems from 0 and leaves the line
// out when it is 0, so the line is recovered here.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	switch m := yamlLine.FindStringSubmatch(err.Error()); {
	case m != nil:
		line, _ = strconv.Atoi(m[1])
		msg = err.Error()[len(m[0]):]
		if slices.Contains(parserProblems, msg) {
			line++
		}
	case unknownAnchor.MatchString(err.Error()):
		name := unknownAnchor.FindStringSubmatch(err.Error())[1]
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			line = lineAt(data, i)
		}
	case strings.HasPrefix(msg, "exceeded max depth"):
	case isReaderProblem(msg):
		line = lineAt(data, badCharOffset(data))
	default:
		line = 1
	}
	return &Error{File: file, Line: line, Message: "invalid YAML: " + msg}
}

// isReaderProblem reports whether yaml.v3 failed reading characters
// (encoding errors, control characters), which it reports without line.
func isReaderProblem(msg string) bool {
	for _, p := range []string{"UTF-8", "UTF-16", "Unicode", "control characters", "surrogate", "input error"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// badCharOffset returns the offset of the first byte YAML does not
// accept: invalid UTF-8 or a control character other than tab and line
// breaks.
func badCharOffset(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1,
			r < 0x20 && r != '\t' && r != '\n' && r != '\r',
			r >= 0x7f && r < 0xa0 && r != 0x85,
			r == 0xfffe || r == 0xffff:
			return i
		}
		i += size
	}
	return -1
}

// lineAt returns the 1-based line of offset i in data, 0 if i < 0.
func lineAt(data []byte, i int) int {
	if i < 0 {
		return 0
	}
	return 1 + bytes.Count(data[:i], []byte("\n"))
}

// DecodeOne decodes a single resource of the given kind (any name
// LookupKind accepts) from data, typically the JSON Encode wrote to the
// store. The object has no File and Line.
func DecodeOne(kind string, data []byte) (*Object, error) {
	info, ok := LookupKind(kind)
	if !ok {
		return nil, fmt.Errorf("resource: unknown kind %q", kind)
	}
	objs, err := Decode("", data)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("resource: want one %s, got %d resources", info.Kind, len(objs))
	}
	o := objs[0]
	if o.Kind != info.Kind {
		return nil, fmt.Errorf("resource: want a %s, got %s", info.Kind, o.Ref())
	}
	o.Line = 0
	o.lines = nil
	return o, nil
}

// maxListDepth bounds Lists nested in Lists.
const maxListDepth = 4

// decodeDocument decodes the resource (or List of resources) at root.
func decodeDocument(file string, root *yaml.Node, work *int, depth int) ([]*Object, []*Error) {
	d := newDecoder(file, work)
	root, done, ok := d.deref(root, "")
	if !ok {
		return nil, d.result()
	}
	defer done()
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "expected a resource (a mapping with apiVersion, kind, metadata and spec), got %s", describe(root))
		return nil, d.result()
	}

	// Read kind, apiVersion and the name first, to check them and to name
	// the resource in errors.
	head := explicitPairs(root)
	apiVersion, _ := scalar(head["apiVersion"].val)
	kind, kindOK := scalar(head["kind"].val)
	if meta, ok := head["metadata"]; ok && meta.val.Kind == yaml.MappingNode {
		m := explicitPairs(meta.val)
		d.name, _ = scalar(m["name"].val)
		d.namespace, _ = scalar(m["namespace"].val)
	}

	if kindOK && (kind == "List" || strings.HasSuffix(kind, "List") && isKind(strings.TrimSuffix(kind, "List"))) {
		return decodeList(d, root, head, depth)
	}

	var info KindInfo
	switch p, found := head["kind"]; {
	case !found || isNull(p.val) || kindOK && kind == "":
		d.errorf(root, "kind", "required; one of %s", strings.Join(kindNames(), ", "))
	case !kindOK:
		d.errorf(p.val, "kind", "expected a string, got %s", describe(p.val))
	default:
		var ok bool
		if info, ok = kindByName(kind); !ok {
			hint := ""
			if k, ok := LookupKind(kind); ok {
				hint = fmt.Sprintf("; did you mean %q?", k.Kind)
			} else {
				hint = suggest(kind, kindNames())
			}
			d.errorf(p.val, "kind", "unknown kind %q%s (supported: %s)", kind, hint, strings.Join(kindNames(), ", "))
		}
	}
	if info.Kind == "" {
		return nil, d.result()
	}
	d.kind = info.Kind
	if !info.Namespaced {
		d.namespace = ""
	}

	versions := info.APIVersions()
	switch p, found := head["apiVersion"]; {
	case !found || isNull(p.val) || apiVersion == "" && p.val.ShortTag() == "!!str":
		d.errorf(root, "apiVersion", "required; %s is %s", info.Kind, quoteList(versions))
	case apiVersion == "":
		d.errorf(p.val, "apiVersion", "expected a string, got %s", describe(p.val))
	case !containsString(versions, apiVersion):
		d.errorf(p.val, "apiVersion", "%s is not served at %q; use %s", info.Kind, apiVersion, quoteList(versions))
	}
	if len(d.errs) > 0 {
		return nil, d.result()
	}

	obj := info.New()
	d.value(root, reflect.ValueOf(obj).Elem(), "")
	if len(d.errs) > 0 {
		return nil, d.result()
	}
	meta := obj.(metav1.Object)
	o := &Object{
		Kind:       info.Kind,
		APIVersion: apiVersion,
		Name:       meta.GetName(),
		Obj:        obj,
		File:       file,
		Line:       root.Line,
		lines:      d.lines,
	}
	if info.Namespaced {
		o.Namespace = meta.GetNamespace()
	}
	return []*Object{o}, nil
}

// decodeList decodes the items of a List document.
func decodeList(d *decoder, root *yaml.Node, head map[string]pair, depth int) ([]*Object, []*Error) {
	d.name, d.namespace = "", ""
	for _, p := range d.pairs(root, "", true) {
		switch p.key.Value {
		case "apiVersion", "kind", "metadata", "items":
		default:
			d.errorf(p.key, p.key.Value, "unknown field %q; a List has apiVersion, kind, metadata and items", p.key.Value)
		}
	}
	if depth >= maxListDepth {
		d.errorf(root, "", "Lists nested too deeply")
	}
	items, ok := head["items"]
	if !ok || isNull(items.val) || len(d.errs) > 0 {
		return nil, d.result()
	}
	seq, done, ok := d.deref(items.val, "items")
	if !ok {
		return nil, d.result()
	}
	defer done()
	if seq.Kind != yaml.SequenceNode {
		d.errorf(seq, "items", "expected a list, got %s", describe(seq))
		return nil, d.result()
	}
	var objs []*Object
	var errs []*Error
	for i, item := range seq.Content {
		if !d.step(item, indexPath("items", i)) {
			return objs, append(errs, d.result()...)
		}
		o, e := decodeDocument(d.file, item, d.work, depth+1)
		objs = append(objs, o...)
		errs = append(errs, e...)
	}
	return objs, errs
}

// explicitPairs returns the entries of mapping n with scalar keys, the
// first of duplicates, not following aliases or merge keys: enough to read
// kind, apiVersion and the name before decoding.
func explicitPairs(n *yaml.Node) map[string]pair {
	m := make(map[string]pair)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if _, dup := m[k.Value]; !dup && k.Kind == yaml.ScalarNode {
			m[k.Value] = pair{k, n.Content[i+1]}
		}
	}
	return m
}

// scalar returns the value of a string node, following an alias; ok is
// false for anything else, including nil.
func scalar(n *yaml.Node) (string, bool) {
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", false
	}
	return n.Value, true
}

func isKind(kind string) bool {
	_, ok := kindByName(kind)
	return ok
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// quoteList formats ["a", "b"] as `"a" or "b"`.
func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, " or ")
}
