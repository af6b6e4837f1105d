package route

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Match returns the route for r, or nil if none matches (the caller answers
// 404 "no route").
//
// The virtual host is chosen by the request's Host (r.Host, else r.URL.Host;
// or the configured vhost_header), lower-cased, in Envoy's order: exact
// domain, longest suffix wildcard, longest prefix wildcard, then "*". The
// host is matched as sent, port included, unless
// ignore_port_in_host_matching is set: then without the port.
//
// Within the virtual host the first route in order whose match accepts the
// request wins. Path matching uses r.URL.EscapedPath() (the path as sent,
// as Envoy's :path), never the query, which query_parameters match from
// r.URL.RawQuery. A request without a path (CONNECT) matches no route.
//
// Match does not allocate for the common case: a lower-case Host, and
// prefix, path or path_separated_prefix matches with single-valued headers.
func (t *Table) Match(r *http.Request) *Route {
	vh := t.selectVirtualHost(t.host(r))
	if vh == nil || r.URL == nil {
		return nil
	}
	path := r.URL.EscapedPath()
	if path == "" {
		return nil
	}
	if t.ignorePathParams {
		if i := strings.IndexByte(path, ';'); i >= 0 {
			path = path[:i]
		}
	}
	for _, rt := range vh.routes {
		if rt.match.matches(r, path) {
			return rt
		}
	}
	return nil
}

func (t *Table) host(r *http.Request) string {
	if t.vhostHeader != "" {
		if v := r.Header[t.vhostHeader]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return requestHost(r)
}

// selectVirtualHost returns the virtual host for host (as sent, any case),
// or nil. As in Envoy, a port in the Host is part of what is matched unless
// ignore_port_in_host_matching is set.
func (t *Table) selectVirtualHost(host string) *virtualHost {
	host = lowerASCII(host)
	if i := portStart(host); t.ignorePort && i >= 0 {
		host = host[:i]
	}
	if vh := t.lookup(host); vh != nil {
		return vh
	}
	return t.star
}

// lookup finds host (lower case) among the exact, then suffix wildcard, then
// prefix wildcard domains, longest wildcard first. A wildcard never matches
// the empty string: "*.foo.com" does not match ".foo.com".
func (t *Table) lookup(host string) *virtualHost {
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if w.n < len(host) {
			if vh, ok := w.m[host[len(host)-w.n:]]; ok {
				return vh
			}
		}
	}
	for _, w := range t.prefixes {
		if w.n < len(host) {
			if vh, ok := w.m[host[:w.n]]; ok {
				return vh
			}
		}
	}
	return nil
}

// portStart is Envoy's HeaderUtility::getPortStart: the index of the ':'
// before the port, or -1. An IPv6 literal must be in brackets.
func portStart(host string) int {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return -1
	}
	if j := strings.LastIndexByte(host, ']'); j < 0 || j < i {
		return i
	}
	return -1
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

type routeMatch struct {
	kind    pathKind
	value   string         // prefix, path or path_separated_prefix
	fold    bool           // case_sensitive: false (not for regex)
	re      *regexp.Regexp // anchored: the whole path must match
	headers []headerMatcher
	query   []queryMatcher

	ignoreParams bool // ignore_path_parameters_in_path_matching
}

// matches reports whether r, whose path (without query, per the table's
// path parameter setting) is path, matches.
func (m *routeMatch) matches(r *http.Request, path string) bool {
	if !m.matchPath(path) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].matches(r) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := r.URL.RawQuery
		for i := range m.query {
			if !m.query[i].matches(q) {
				return false
			}
		}
	}
	return true
}

func (m *routeMatch) matchPath(p string) bool {
	switch m.kind {
	case pathPrefix:
		return hasPrefix(p, m.value, m.fold)
	case pathExact:
		return len(p) == len(m.value) && hasPrefix(p, m.value, m.fold)
	case pathSeparatedPrefix:
		return hasPrefix(p, m.value, m.fold) && (len(p) == len(m.value) || p[len(m.value)] == '/')
	case pathRegex:
		return m.re.MatchString(p)
	}
	return false
}

// matchedLen returns how much of p (a path without query) the path match
// covers, as Envoy's prefix_rewrite replaces it: the prefix or path value,
// or the whole of p for a regex match. ok is false if p does not match.
func (m *routeMatch) matchedLen(p string) (n int, ok bool) {
	check := p
	if m.ignoreParams {
		if i := strings.IndexByte(check, ';'); i >= 0 {
			check = check[:i]
		}
	}
	if !m.matchPath(check) {
		return 0, false
	}
	if m.kind == pathRegex {
		return len(p), true
	}
	return len(m.value), true
}

// replacePrefix implements prefix_rewrite on a :path (with query).
func (m *routeMatch) replacePrefix(path, rewrite string) string {
	p, _ := splitQuery(path)
	n, ok := m.matchedLen(p)
	if !ok {
		return path
	}
	return rewrite + path[n:]
}

type pseudoHeader uint8

const (
	notPseudo pseudoHeader = iota
	pseudoMethod
	pseudoAuthority
	pseudoPath
	pseudoScheme
)

type headerKind uint8

const (
	headerPresent headerKind = iota
	headerString
	headerRange
)

// headerMatcher is a compiled HeaderMatcher.
type headerMatcher struct {
	name           string // canonical header name (when not pseudo)
	pseudo         pseudoHeader
	kind           headerKind
	present        bool // present_match value (true when no specifier)
	str            stringMatcher
	start, end     int64 // range_match [start, end)
	invert         bool
	missingAsEmpty bool
}

// matches follows Envoy's HeaderUtility: a missing header matches only a
// present_match (false, or true with invert_match) unless
// treat_missing_header_as_empty; otherwise the value is matched and the
// result inverted by invert_match.
func (hm *headerMatcher) matches(r *http.Request) bool {
	v, ok := hm.value(r)
	if !ok && !hm.missingAsEmpty {
		return hm.kind == headerPresent && hm.present == hm.invert
	}
	var res bool
	switch hm.kind {
	case headerPresent:
		res = hm.present
	case headerString:
		res = hm.str.matches(v)
	case headerRange:
		n, err := strconv.ParseInt(v, 10, 64)
		res = err == nil && n >= hm.start && n < hm.end
	}
	return res != hm.invert
}

// value returns the header's value, several values joined with "," as
// Envoy does, and whether it is present.
func (hm *headerMatcher) value(r *http.Request) (string, bool) {
	switch hm.pseudo {
	case pseudoMethod:
		if r.Method == "" {
			return http.MethodGet, true
		}
		return r.Method, true
	case pseudoAuthority:
		h := requestHost(r)
		return h, h != ""
	case pseudoPath:
		p := requestPath(r)
		return p, p != ""
	case pseudoScheme:
		return requestScheme(r), true
	}
	vs := r.Header[hm.name]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// queryMatcher is a compiled QueryParameterMatcher: the first value of the
// parameter (raw, not URL-decoded, as in Envoy) must exist and, if str is
// set, match.
type queryMatcher struct {
	name string
	str  *stringMatcher
}

func (qm *queryMatcher) matches(query string) bool {
	v, ok := firstQueryValue(query, qm.name)
	if !ok {
		return false
	}
	return qm.str == nil || qm.str.matches(v)
}

// firstQueryValue returns the value of the first "name" or "name=value"
// element of the &-separated query.
func firstQueryValue(query, name string) (string, bool) {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

type stringKind uint8

const (
	stringExact stringKind = iota
	stringPrefix
	stringSuffix
	stringContains
	stringRegex
)

// stringMatcher is a compiled StringMatcher; ignore_case folds ASCII only,
// as Envoy does.
type stringMatcher struct {
	kind  stringKind
	value string
	fold  bool
	re    *regexp.Regexp // anchored
}

func (sm *stringMatcher) matches(s string) bool {
	switch sm.kind {
	case stringExact:
		return len(s) == len(sm.value) && hasPrefix(s, sm.value, sm.fold)
	case stringPrefix:
		return hasPrefix(s, sm.value, sm.fold)
	case stringSuffix:
		return len(s) >= len(sm.value) && hasPrefix(s[len(s)-len(sm.value):], sm.value, sm.fold)
	case stringContains:
		if !sm.fold {
			return strings.Contains(s, sm.value)
		}
		for i := 0; i+len(sm.value) <= len(s); i++ {
			if hasPrefix(s[i:], sm.value, true) {
				return true
			}
		}
		return false
	case stringRegex:
		return sm.re.MatchString(s)
	}
	return false
}

// hasPrefix reports whether s starts with prefix, ignoring ASCII case if
// fold.
func hasPrefix(s, prefix string, fold bool) bool {
	if len(s) < len(prefix) {
		return false
	}
	if !fold {
		return s[:len(prefix)] == prefix
	}
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if a == b {
			continue
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases ASCII letters, returning s itself (no allocation)
// when it has none.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
