package rbac

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The package is linked into trellis-proxy: it may import only the standard
// library, the Envoy generated protos and protobuf.
func TestImports(t *testing.T) {
	allowed := []string{"github.com/envoyproxy/go-control-plane/envoy/", "google.golang.org/protobuf/"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
	imports:
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); !strings.Contains(first, ".") {
				continue // standard library
			}
			for _, prefix := range allowed {
				if strings.HasPrefix(path, prefix) {
					continue imports
				}
			}
			t.Errorf("%s imports %s, which the data-plane binary must not link", name, path)
		}
	}
}
