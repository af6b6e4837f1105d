package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// pathNormalization is what a connection manager does to a request's path
// before its HTTP filters and routing see it, as Envoy's
// normalize_path, merge_slashes and path_with_escaped_slashes_action do.
// Filters, routing and the upstream all see the normalized path, so that
// a policy on a path cannot be bypassed by writing the path another way.
type pathNormalization struct {
	// normalize removes dot segments and canonicalizes percent-encoding
	// (RFC 3986, as Chromium's URL library, which Envoy uses).
	normalize bool
	// mergeSlashes collapses runs of slashes.
	mergeSlashes bool
	// rejectEscapedSlashes answers 400 to a path holding %2F, %2f, %5C or
	// %5c; otherwise they are kept as they are.
	rejectEscapedSlashes bool
}

func compilePathNormalization(h *hcmv3.HttpConnectionManager) (pathNormalization, error) {
	pn := pathNormalization{normalize: h.GetNormalizePath().GetValue(), mergeSlashes: h.GetMergeSlashes()}
	switch a := h.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
		// Envoy's default is to keep them.
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		pn.rejectEscapedSlashes = true
	default:
		return pn, fmt.Errorf("path_with_escaped_slashes_action %s is not supported (KEEP_UNCHANGED and REJECT_REQUEST are)", a)
	}
	return pn, nil
}

// apply normalizes r's path in place: r.URL.Path, r.URL.RawPath and
// r.RequestURI. It returns false when the request must be refused with
// 400: a fragment in the request target (as Envoy does by default), an
// escaped slash when they are rejected, or a NUL.
func (pn pathNormalization) apply(r *http.Request) bool {
	target := r.RequestURI
	if strings.IndexByte(target, '#') >= 0 {
		return false
	}
	if !strings.HasPrefix(target, "/") || r.URL == nil {
		// "*" (OPTIONS) or a request without a path (CONNECT): nothing to
		// normalize. An absolute URI (a proxy request) has its path in
		// r.URL.
		if r.URL == nil || r.URL.Host == "" || r.URL.Path == "" {
			return true
		}
		target = r.URL.EscapedPath()
	} else {
		target, _, _ = strings.Cut(target, "?")
	}
	path := target
	if pn.rejectEscapedSlashes && hasEscapedSlash(path) {
		return false
	}
	if pn.normalize {
		var ok bool
		if path, ok = canonicalPath(path); !ok {
			return false
		}
	}
	if pn.mergeSlashes {
		path = mergeSlashes(path)
	}
	if path == target {
		return true
	}
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return false
	}
	r.URL.Path, r.URL.RawPath = unescaped, path
	if strings.HasPrefix(r.RequestURI, "/") {
		r.RequestURI = r.URL.RequestURI()
	}
	return true
}

// hasEscapedSlash reports whether p holds an escaped / or \.
func hasEscapedSlash(p string) bool {
	for i := 0; i+2 < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		switch p[i+1 : i+3] {
		case "2F", "2f", "5C", "5c":
			return true
		}
	}
	return false
}

// mergeSlashes collapses every run of slashes into one.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// Characters of a path, as Chromium's URL canonicalization (the version
// Envoy's normalize_path runs) classifies them.
const (
	pathPass     = iota // copied as is
	pathEscape          // percent-encoded in the output
	pathUnescape        // decoded when it arrives percent-encoded
	pathInvalid         // NUL: the path is refused
)

var pathChars = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == 0:
			t[c] = pathInvalid
		case c < 0x20 || c >= 0x7f:
			t[c] = pathEscape
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '~', c == '.':
			t[c] = pathUnescape
		case strings.IndexByte(" \"#%<>?`{|}^\\", byte(c)) >= 0:
			t[c] = pathEscape
		default:
			// ! $ & ' ( ) * + , / : ; = @ [ ]
			t[c] = pathPass
		}
	}
	return t
}()

// canonicalPath canonicalizes an absolute path as Envoy's normalize_path
// does (Chromium's CanonicalizePath): backslashes become slashes;
// percent-encoded letters, digits and "-._~" are decoded (so "%2e" is a
// dot); other escapes are kept as they are; characters not allowed in a
// path are percent-encoded; "." and ".." segments are removed (RFC 3986
// 5.2.4), never climbing above the root; a trailing "." or ".." leaves a
// trailing slash. It returns false for a NUL or a malformed escape (which
// Go's HTTP server refuses before this runs).
func canonicalPath(p string) (string, bool) {
	out := make([]byte, 0, len(p)+1)
	if p == "" || !isSlash(p[0]) {
		out = append(out, '/')
	}
	for i := 0; i < len(p); i++ {
		if n := dotAt(p, i); n > 0 {
			if len(out) == 0 || out[len(out)-1] != '/' {
				// A dot within a segment.
				out = append(out, '.')
				i += n - 1
				continue
			}
			switch kind, consumed := afterDot(p, i+n); kind {
			case dotCurrent:
				i += n + consumed - 1
			case dotParent:
				out = backToPreviousSlash(out)
				i += n + consumed - 1
			default:
				out = append(out, '.')
				i += n - 1
			}
			continue
		}
		c := p[i]
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			v, ok := unhex(p, i+1)
			if !ok {
				return "", false
			}
			switch pathChars[v] {
			case pathUnescape:
				out = append(out, v)
			case pathInvalid:
				return "", false
			default:
				out = append(out, p[i:i+3]...)
			}
			i += 2
		case pathChars[c] == pathInvalid:
			return "", false
		case pathChars[c] == pathEscape:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
		default:
			out = append(out, c)
		}
	}
	return string(out), true
}

const upperHex = "0123456789ABCDEF"

func isSlash(c byte) bool { return c == '/' || c == '\\' }

// dotAt returns the length of a dot at p[i]: 1 for ".", 3 for "%2e" or
// "%2E", 0 for anything else.
func dotAt(p string, i int) int {
	switch {
	case p[i] == '.':
		return 1
	case p[i] == '%' && i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'e' || p[i+2] == 'E'):
		return 3
	}
	return 0
}

type dotKind int

const (
	dotInName dotKind = iota
	dotCurrent
	dotParent
)

// afterDot classifies a dot that follows a slash by what comes after it
// (at p[i]) and returns how many more bytes the segment takes, its
// trailing slash included.
func afterDot(p string, i int) (dotKind, int) {
	if i == len(p) {
		return dotCurrent, 0
	}
	if isSlash(p[i]) {
		return dotCurrent, 1
	}
	if n := dotAt(p, i); n > 0 {
		switch j := i + n; {
		case j == len(p):
			return dotParent, n
		case isSlash(p[j]):
			return dotParent, n + 1
		}
	}
	return dotInName, 0
}

// backToPreviousSlash drops the last segment of out, which ends with a
// slash, keeping that segment's leading slash; at the root it does
// nothing.
func backToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for i > 0 && out[i] != '/' {
		i--
	}
	return out[:i+1]
}

func unhex(p string, i int) (byte, bool) {
	if i+1 >= len(p) {
		return 0, false
	}
	hi, ok1 := fromHex(p[i])
	lo, ok2 := fromHex(p[i+1])
	return hi<<4 | lo, ok1 && ok2
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// validMethod reports whether a method has no lower-case letter. Methods
// are case-sensitive, and Envoy's HTTP/1 codec refuses "get": accepting it
// would let a request pass a rule on GET, or escape one on DELETE, while
// an application that folds case serves it as the upper-case method.
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if 'a' <= m[i] && m[i] <= 'z' {
			return false
		}
	}
	return true
}
