package route

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout is the route timeout when RouteAction.timeout is unset, as
// in Envoy.
const DefaultTimeout = 15 * time.Second

// Table is a compiled RouteConfiguration. It is immutable and safe for
// concurrent use.
type Table struct {
	name string

	exact    map[string]*virtualHost
	suffixes []wildcards // longest first
	prefixes []wildcards // longest first
	star     *virtualHost

	vhostHeader      string // canonical header name; "" for the Host
	ignorePort       bool
	ignorePathParams bool

	clusters []string // every cluster a route sends or mirrors to, sorted
}

// Clusters returns every cluster the table's routes send or mirror
// requests to, sorted.
func (t *Table) Clusters() []string { return t.clusters }

// clusters lists the clusters a route sends or mirrors to.
func (r *Route) clusters() []string {
	var out []string
	if r.Cluster != "" {
		out = append(out, r.Cluster)
	}
	for _, wc := range r.WeightedClusters {
		out = append(out, wc.Name)
	}
	for _, m := range r.MirrorPolicies {
		out = append(out, m.Cluster)
	}
	return out
}

// wildcards holds the wildcard domains of one length, without the '*'.
type wildcards struct {
	n int
	m map[string]*virtualHost
}

type virtualHost struct {
	name   string
	routes []*Route
}

// Name is the RouteConfiguration's name.
func (t *Table) Name() string { return t.name }

// Route is a compiled route: what to do with a request that matched it. A
// Route belongs to its Table and must not be modified.
//
// Exactly one of the actions is set: Cluster or WeightedClusters (forward),
// Redirect, or DirectResponse.
type Route struct {
	Name        string // Route.name; may be empty
	VirtualHost string // name of the virtual host the route belongs to

	// Forwarding. The rewrite, timeout, retry and mirror fields are only
	// meaningful when forwarding.
	Cluster          string
	WeightedClusters []WeightedCluster
	// PrefixRewrite, RegexRewrite and PathRewrite: at most one is set.
	// RewritePath applies them.
	PrefixRewrite string
	RegexRewrite  *RegexRewrite
	PathRewrite   string // path_rewrite, a literal whole-path replacement
	// HostRewrite is host_rewrite_literal ("" keeps the Host); see
	// RewriteHost for weighted clusters.
	HostRewrite string
	// Timeout is the upstream request timeout: DefaultTimeout when unset in
	// the config; 0 means disabled (Envoy: "A value of 0 will disable the
	// route's timeout").
	Timeout time.Duration
	// RetryPolicy is the route's retry policy, else the virtual host's
	// (they are not merged, as in Envoy); nil for none.
	RetryPolicy *RetryPolicy
	// MirrorPolicies is the most specific non-empty list of the route,
	// virtual host and route configuration (they are not merged).
	MirrorPolicies []MirrorPolicy
	// HashPolicy computes the request's hash for RING_HASH clusters; see
	// Hash.
	HashPolicy []HashPolicy

	Redirect       *Redirect
	DirectResponse *DirectResponse

	// RequestHeaderMutations and ResponseHeaderMutations are the
	// request_headers_to_add/remove and response_headers_to_add/remove of the
	// route, its virtual host and the route configuration, one entry per
	// level that has any, in the order Envoy evaluates them: by default the
	// route first and the route configuration last, so that the least
	// specific level wins a conflict; reversed when
	// most_specific_header_mutations_wins is set. Use ApplyRequestHeaders
	// and ApplyResponseHeaders.
	RequestHeaderMutations  []HeaderMutation
	ResponseHeaderMutations []HeaderMutation

	match         routeMatch
	totalWeight   uint32
	cors          []namedCORS    // by filter name; see CORS
	filterConfigs map[string]any // by HTTP filter name (perfilter.go)
}

// WeightedCluster is one entry of weighted_clusters.
type WeightedCluster struct {
	Name   string
	Weight uint32
	// HostRewrite is the cluster's host_rewrite_literal.
	HostRewrite string
	// RequestHeaders and ResponseHeaders are the cluster's own mutations;
	// Envoy applies them before the route's (see ApplyRequestHeaders).
	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation

	end uint32 // cumulative weight up to and including this cluster
}

// RegexRewrite is a regex_rewrite: every match of Pattern in the path
// (without the query) is replaced by Substitution, in which \1..\9 refer to
// capture groups and \\ is a backslash (RE2's syntax, as in Envoy).
type RegexRewrite struct {
	Pattern      *regexp.Regexp
	Substitution string

	template string // Substitution in Go's Expand syntax
}

// RetryPolicy is a compiled retry_policy. The data plane decides what it
// implements of it.
type RetryPolicy struct {
	// RetryOn is retry_on as configured; Conditions is it split, each one
	// known to Envoy's router (x-envoy-retry-on and x-envoy-retry-grpc-on).
	RetryOn    string
	Conditions []string
	// NumRetries defaults to 1, as in Envoy.
	NumRetries uint32
	// PerTryTimeout is 0 when unset: each try then has the route's Timeout.
	PerTryTimeout        time.Duration
	RetriableStatusCodes []uint32
	// BackOffBase and BackOffMax are the exponential back-off bounds; Envoy's
	// defaults (25 ms, 10 × base) are filled in.
	BackOffBase time.Duration
	BackOffMax  time.Duration
}

// Envoy's default retry back-off base interval.
const defaultBackOffBase = 25 * time.Millisecond

// MirrorPolicy is a compiled request_mirror_policies entry: mirror
// PerMillion of the requests to Cluster.
type MirrorPolicy struct {
	Cluster string
	// HostRewrite replaces the mirrored request's Host; otherwise Envoy
	// appends "-shadow" to it unless DisableShadowHostSuffix.
	HostRewrite             string
	DisableShadowHostSuffix bool
	// PerMillion is runtime_fraction.default_value in parts per million:
	// 1,000,000 (every request) when runtime_fraction is unset.
	PerMillion uint32
}

// Sampled reports whether a request is mirrored: rnd must return a
// uniformly random number in [0, n).
func (m *MirrorPolicy) Sampled(rnd func(n uint32) uint32) bool {
	switch {
	case m.PerMillion >= million:
		return true
	case m.PerMillion == 0:
		return false
	}
	return rnd(million) < m.PerMillion
}

// ShadowHost returns the Host (authority) of the mirrored copy of a
// request sent with host: HostRewrite if set, else host with "-shadow"
// appended to the host name, before any port ("a:80" becomes
// "a-shadow:80", found as Envoy's getPortStart does), as Envoy does, unless DisableShadowHostSuffix.
func (m *MirrorPolicy) ShadowHost(host string) string {
	switch {
	case m.HostRewrite != "":
		return m.HostRewrite
	case m.DisableShadowHostSuffix || host == "":
		return host
	}
	if i := portStart(host); i >= 0 {
		return host[:i] + "-shadow" + host[i:]
	}
	return host + "-shadow"
}

// Redirect is a compiled redirect action; RedirectLocation builds the
// Location.
type Redirect struct {
	// Code is 301 (the default), 302, 303, 307 or 308.
	Code int
	// Scheme replaces the request's scheme ("" keeps it).
	Scheme string
	// Host replaces the request's host, Port its port (0 keeps it).
	Host string
	Port uint32
	// At most one of Path (path_redirect), PrefixRewrite and RegexRewrite.
	Path          string
	PrefixRewrite string
	RegexRewrite  *RegexRewrite
	// StripQuery drops the request's query (not one given in Path).
	StripQuery bool

	pathHasQuery bool
}

// DirectResponse is a compiled direct_response action.
type DirectResponse struct {
	Status int
	Body   []byte // nil for no body
}

// HeaderMutation is one level's header changes: Remove first, then Add.
type HeaderMutation struct {
	Remove []string // canonical header names
	Add    []HeaderValue
}

// HeaderValue is one header to add, with its append_action.
type HeaderValue struct {
	Name   string // canonical header name
	Value  string // literal; "%%" in the config has become "%"
	Action AppendAction
}

// AppendAction is HeaderValueOption.append_action.
type AppendAction uint8

const (
	// AppendIfExistsOrAdd adds the value, keeping existing ones (default).
	AppendIfExistsOrAdd AppendAction = iota
	// AddIfAbsent adds the header only if it is not present.
	AddIfAbsent
	// OverwriteIfExistsOrAdd replaces any values.
	OverwriteIfExistsOrAdd
	// OverwriteIfExists replaces the values only if the header is present.
	OverwriteIfExists
)

// PickWeighted returns the weighted cluster chosen by rnd, which must
// return a uniformly random number in [0, n); nil if the route has no
// weighted clusters. As in Envoy, clusters own consecutive ranges of the
// total weight in configuration order and a zero weight is never picked.
func (r *Route) PickWeighted(rnd func(n uint32) uint32) *WeightedCluster {
	if r.totalWeight == 0 {
		return nil
	}
	v := rnd(r.totalWeight)
	if v >= r.totalWeight {
		v %= r.totalWeight
	}
	for i := range r.WeightedClusters {
		if v < r.WeightedClusters[i].end {
			return &r.WeightedClusters[i]
		}
	}
	return &r.WeightedClusters[len(r.WeightedClusters)-1] // unreachable
}

// PickCluster returns the cluster to forward to: Cluster, or a weighted
// choice (see PickWeighted). "" for a redirect or direct response.
func (r *Route) PickCluster(rnd func(n uint32) uint32) string {
	if r.Cluster != "" {
		return r.Cluster
	}
	if wc := r.PickWeighted(rnd); wc != nil {
		return wc.Name
	}
	return ""
}

// RewriteHost returns the Host to send upstream, or "" to keep the
// request's: the picked weighted cluster's host_rewrite_literal, else the
// route's. (Compile refuses a route that sets both.)
func (r *Route) RewriteHost(picked *WeightedCluster) string {
	if picked != nil && picked.HostRewrite != "" {
		return picked.HostRewrite
	}
	return r.HostRewrite
}

// RewritePath returns the :path (path and optional "?query") to send
// upstream for a request whose :path is path and that matched r:
//   - prefix_rewrite replaces the matched prefix (for a path match the
//     whole path; for a safe_regex match the whole path without the
//     query) and keeps the rest, query included, so
//     prefix "/prefix/" + prefix_rewrite "/" maps "/prefix/etc" to "/etc",
//     while prefix "/prefix" maps "/prefix/etc" to "//etc";
//   - regex_rewrite substitutes every match in the path without the query
//     and keeps the query;
//   - path_rewrite replaces the path and keeps the query.
//
// Without a rewrite, or if path does not match the route, it returns path.
func (r *Route) RewritePath(path string) string {
	switch {
	case r.PrefixRewrite != "":
		return r.match.replacePrefix(path, r.PrefixRewrite)
	case r.RegexRewrite != nil:
		return r.RegexRewrite.apply(path)
	case r.PathRewrite != "":
		_, q := splitQuery(path)
		return r.PathRewrite + q
	}
	return path
}

func (rr *RegexRewrite) apply(path string) string {
	p, q := splitQuery(path)
	return rr.Pattern.ReplaceAllString(p, rr.template) + q
}

// splitQuery splits a :path before its '?' or '#'.
func splitQuery(path string) (p, rest string) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return path[:i], path[i:]
	}
	return path, ""
}

// ApplyRequestHeaders applies the route's request header mutations to h:
// first those of picked (the weighted cluster PickWeighted returned; nil if
// none), then RequestHeaderMutations in order, as Envoy does.
func (r *Route) ApplyRequestHeaders(h http.Header, picked *WeightedCluster) {
	if picked != nil {
		picked.RequestHeaders.Apply(h)
	}
	for i := range r.RequestHeaderMutations {
		r.RequestHeaderMutations[i].Apply(h)
	}
}

// ApplyResponseHeaders is ApplyRequestHeaders for the response headers.
func (r *Route) ApplyResponseHeaders(h http.Header, picked *WeightedCluster) {
	if picked != nil {
		picked.ResponseHeaders.Apply(h)
	}
	for i := range r.ResponseHeaderMutations {
		r.ResponseHeaderMutations[i].Apply(h)
	}
}

// Apply applies one level of mutations as Envoy's header parser does:
// removals first; then each addition's condition (AddIfAbsent,
// OverwriteIfExists) is decided on the headers as they are before any of this
// level's additions; then the overwrites are set; then the appends added.
func (m *HeaderMutation) Apply(h http.Header) {
	for _, k := range m.Remove {
		delete(h, k)
	}
	if len(m.Add) == 0 {
		return
	}
	const (
		skip = iota
		overwrite
		appendValue
	)
	var buf [16]uint8
	do := buf[:0]
	if len(m.Add) > len(buf) {
		do = make([]uint8, 0, len(m.Add))
	}
	for _, a := range m.Add {
		_, present := h[a.Name]
		d := uint8(skip)
		switch a.Action {
		case AppendIfExistsOrAdd:
			d = appendValue
		case AddIfAbsent:
			if !present {
				d = appendValue
			}
		case OverwriteIfExistsOrAdd:
			d = overwrite
		case OverwriteIfExists:
			if present {
				d = overwrite
			}
		}
		do = append(do, d)
	}
	for i, a := range m.Add {
		if do[i] == overwrite {
			h[a.Name] = []string{a.Value}
		}
	}
	for i, a := range m.Add {
		if do[i] == appendValue {
			h[a.Name] = append(h[a.Name], a.Value)
		}
	}
}

// RedirectLocation returns the Location of the redirect for req, or "" if
// the route is not a redirect. It follows Envoy:
//   - the scheme is Redirect.Scheme, else the request's (req.URL.Scheme if
//     set, else "https" over TLS and "http" otherwise);
//   - the host is Redirect.Host (the request's port is then dropped), else the
//     request's Host, whose port is dropped when Redirect.Port is set or
//     when the scheme changes away from the request's and the port is that
//     scheme's default (http://h:80 → https://h);
//   - Redirect.Port is appended unless it is the default of the scheme;
//   - the path is Path (with the request's query unless Path has one),
//     or the request's path rewritten by PrefixRewrite or RegexRewrite, or
//     the request's path; StripQuery drops the query except one given in
//     Path.
func (r *Route) RedirectLocation(req *http.Request) string {
	rd := r.Redirect
	if rd == nil {
		return ""
	}
	reqScheme := requestScheme(req)
	scheme := reqScheme
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	port := ""
	if rd.Port != 0 && !(scheme == "http" && rd.Port == 80) && !(scheme == "https" && rd.Port == 443) {
		port = ":" + strconv.FormatUint(uint64(rd.Port), 10)
	}
	host := rd.Host
	if host == "" {
		host = redirectHost(requestHost(req), scheme, reqScheme, rd.Port != 0)
	}

	path := requestPath(req)
	switch {
	case rd.Path != "":
		if rd.pathHasQuery {
			path = rd.Path
		} else if i := strings.IndexByte(path, '?'); i >= 0 {
			path = rd.Path + path[i:]
		} else {
			path = rd.Path
		}
	case rd.PrefixRewrite != "":
		path = r.match.replacePrefix(path, rd.PrefixRewrite)
	case rd.RegexRewrite != nil:
		path = rd.RegexRewrite.apply(path)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if rd.StripQuery && !rd.pathHasQuery {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
	}
	return scheme + "://" + host + port + path
}

// redirectHost is Envoy's processRequestHost: the request's host with its
// port removed when a new port is set, or when the scheme changes and the
// port is the default one of the request's scheme.
func redirectHost(host, newScheme, reqScheme string, newPort bool) string {
	if host == "" {
		return host
	}
	end := -1
	if host[0] == '[' {
		if i := strings.LastIndex(host, "]:"); i >= 0 {
			end = i + 1
		}
	} else {
		end = strings.LastIndexByte(host, ':')
	}
	if end < 0 {
		return host
	}
	reqPort := host[end:]
	remove := newPort
	if newScheme != reqScheme {
		remove = remove || reqScheme == "https" && reqPort == ":443" || reqScheme == "http" && reqPort == ":80"
	}
	if remove {
		return host[:end]
	}
	return host
}

func requestScheme(req *http.Request) string {
	if req.URL != nil && req.URL.Scheme != "" {
		return strings.ToLower(req.URL.Scheme)
	}
	if req.TLS != nil {
		return "https"
	}
	return "http"
}

func requestHost(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	if req.URL != nil {
		return req.URL.Host
	}
	return ""
}

// requestPath is the request's :path: the escaped path and the raw query.
func requestPath(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	p := req.URL.EscapedPath()
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		p += "?" + req.URL.RawQuery
	}
	return p
}
