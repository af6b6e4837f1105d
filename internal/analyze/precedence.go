package analyze

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// attachment is one match of one rule of an HTTPRoute at one place.
type attachment struct {
	route *model.HTTPRoute
	rule  int
	match int // -1 for a rule without matches (everything)
	at    place
}

func (at attachment) m() model.HTTPMatch {
	if at.match < 0 {
		return model.HTTPMatch{PathType: model.PathPrefix, PathValue: "/"}
	}
	return at.route.Rules[at.rule].Matches[at.match]
}

func (at attachment) field() string {
	if at.match < 0 {
		return index("spec.rules", at.rule)
	}
	return fmt.Sprintf("spec.rules[%d].matches[%d]", at.rule, at.match)
}

func (at attachment) describe() string {
	return fmt.Sprintf("HTTPRoute %s %s", at.route.Key, at.field())
}

func (a *analyzer) recordAttachments(r *model.HTTPRoute, rule int, places [][]place) {
	seen := map[string]bool{}
	for _, ps := range places {
		for _, p := range ps {
			if seen[p.key] {
				continue
			}
			seen[p.key] = true
			if len(r.Rules[rule].Matches) == 0 {
				a.attachments = append(a.attachments, attachment{route: r, rule: rule, match: -1, at: p})
				continue
			}
			for m := range r.Rules[rule].Matches {
				a.attachments = append(a.attachments, attachment{route: r, rule: rule, match: m, at: p})
			}
		}
	}
}

// olderFirst orders attachments as the Gateway API breaks ties between
// routes: the oldest route first, then by namespace/name, then rule and
// match order.
func olderFirst(x, y attachment) int {
	return cmp.Or(
		cmp.Compare(x.route.Source.CreationUnix, y.route.Source.CreationUnix),
		x.route.Key.Compare(y.route.Key),
		cmp.Compare(x.rule, y.rule),
		cmp.Compare(x.match, y.match),
	)
}

// canonical is a match's identity: two matches with the same canonical
// form select exactly the same requests.
func canonical(m model.HTTPMatch) string {
	var b strings.Builder
	path := m.PathValue
	if m.PathType == model.PathPrefix {
		path = normalPrefix(path)
	}
	fmt.Fprintf(&b, "%s %q %q", m.PathType, path, m.Method)
	for _, list := range [][]model.ValueMatch{m.Headers, m.Query} {
		vs := slices.Clone(list)
		slices.SortFunc(vs, func(x, y model.ValueMatch) int {
			return cmp.Or(cmp.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name)), cmp.Compare(x.Type, y.Type), cmp.Compare(x.Value, y.Value))
		})
		b.WriteString(" |")
		for _, v := range vs {
			fmt.Fprintf(&b, " %s %q %q", v.Type, strings.ToLower(v.Name), v.Value)
		}
	}
	return b.String()
}

// normalPrefix writes a PathPrefix the way it matches: "/foo/" and "/foo"
// are the same prefix.
func normalPrefix(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	return strings.TrimSuffix(p, "/")
}

// parentPrefixes lists the path prefixes that contain p, nearest first:
// "/a/b" → "/a", "/".
func parentPrefixes(p string) []string {
	var out []string
	for p != "/" && p != "" {
		i := strings.LastIndexByte(p, '/')
		if i <= 0 {
			p = "/"
		} else {
			p = p[:i]
		}
		out = append(out, p)
	}
	return out
}

// precedence finds, at every place, the matches that another route's
// identical match shadows, and the cross-namespace matches that take part
// of another team's requests.
func (a *analyzer) precedence() {
	a.l4Precedence()
	byPlace := map[string][]attachment{}
	for _, at := range a.attachments {
		byPlace[at.at.key] = append(byPlace[at.at.key], at)
	}
	reported := map[string]bool{}
	report := func(code string, at attachment, format string, args ...any) {
		k := code + " " + at.route.Key.String() + " " + at.field()
		if reported[k] {
			return
		}
		reported[k] = true
		a.add(code, resource(at.route.Source), at.field(), format, args...)
	}
	keys := make([]string, 0, len(byPlace))
	for k := range byPlace {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		ats := byPlace[key]
		slices.SortFunc(ats, olderFirst)
		winners := map[string]attachment{}
		prefixes := map[string]attachment{} // first PathPrefix per normalized prefix
		for _, at := range ats {
			m := at.m()
			c := canonical(m)
			if w, ok := winners[c]; ok {
				where := at.at.describe
				if at.at.host != "" && at.at.host != "*" {
					where += " hostname " + at.at.host
				}
				switch {
				case w.route == at.route:
					report(CodeShadowedSelf, at, "matches the same requests as %s on %s, which comes first: this match never receives any",
						w.field(), where)
				case w.route.Namespace == at.route.Namespace:
					report(CodeShadowedSame, at, "matches the same requests as %s on %s; that route wins (%s) and this match never receives them",
						w.describe(), where, whyWins(w, at))
				default:
					report(CodeShadowedTeam, at, "matches the same requests as %s, owned by namespace %s, on %s; that route wins (%s) and this match never receives them",
						w.describe(), w.route.Namespace, where, whyWins(w, at))
				}
				continue
			}
			winners[c] = at
			if m.PathType == model.PathPrefix {
				if _, ok := prefixes[normalPrefix(m.PathValue)]; !ok {
					prefixes[normalPrefix(m.PathValue)] = at
				}
			}
		}
		// Overlaps: the nearest enclosing prefix of each path match, owned
		// by another namespace, loses the requests this match takes.
		for _, at := range ats {
			m := at.m()
			var path string
			var ancestors []string
			switch m.PathType {
			case model.PathPrefix:
				path = normalPrefix(m.PathValue)
				ancestors = parentPrefixes(path)
			case model.PathExact:
				path = m.PathValue
				ancestors = append([]string{normalPrefix(path)}, parentPrefixes(normalPrefix(path))...)
			default:
				continue
			}
			for _, anc := range ancestors {
				other, ok := prefixes[anc]
				if !ok || other.route == at.route {
					continue
				}
				if other.route.Namespace != at.route.Namespace {
					report(CodeOverlapTeam, at, "takes requests from %s (PathPrefix %s), owned by namespace %s, on %s: for example %s goes to this route, not to that one",
						other.describe(), anc, other.route.Namespace, at.at.describe, exampleRequest(at.at.host, path, m))
				}
				break
			}
		}
	}
}

// whyWins explains Gateway API's tie-break between two routes with the
// same match.
func whyWins(w, lost attachment) string {
	if w.route.Source.CreationUnix < lost.route.Source.CreationUnix {
		return "it is older"
	}
	return "same age, and its namespace/name " + w.route.Key.String() + " sorts first"
}

// exampleRequest builds a request that a match takes.
func exampleRequest(host, path string, m model.HTTPMatch) string {
	method := m.Method
	if method == "" {
		method = "GET"
	}
	if m.PathType == model.PathPrefix {
		path = strings.TrimSuffix(path, "/") + "/example"
	}
	if host == "" || host == "*" {
		host = "<any host>"
	}
	host = strings.Replace(host, "*", "www", 1)
	req := method + " " + host + path
	var extra []string
	for _, h := range m.Headers {
		if h.Type == model.MatchExact {
			extra = append(extra, fmt.Sprintf("header %s: %s", h.Name, h.Value))
		}
	}
	for _, q := range m.Query {
		if q.Type == model.MatchExact {
			extra = append(extra, fmt.Sprintf("query %s=%s", q.Name, q.Value))
		}
	}
	if len(extra) > 0 {
		req += " with " + strings.Join(extra, ", ")
	}
	return req
}

// l4Attachment is a TLSRoute or TCPRoute at one place: a Gateway port
// and SNI hostname, a TCP listener, or a Service port.
type l4Attachment struct {
	rt route
	at place
}

// recordL4 records where an L4 route serves. TLSRoutes are served on
// Gateways only (sidecars report them), so only those places count.
func (a *analyzer) recordL4(rt route, places [][]place) {
	seen := map[string]bool{}
	for _, ps := range places {
		for _, p := range ps {
			if seen[p.key] || rt.kind == "TLSRoute" && !strings.HasPrefix(p.key, "gateway ") {
				continue
			}
			seen[p.key] = true
			a.l4 = append(a.l4, l4Attachment{rt: rt, at: p})
		}
	}
}

// l4Precedence reports the TLSRoutes and TCPRoutes that another route
// keeps from a place: nothing in a TCP connection (or, for TLS, beyond
// its SNI) tells two routes apart, so the oldest is in effect there, as
// the Gateway API breaks ties, and the translator serves only it.
func (a *analyzer) l4Precedence() {
	byPlace := map[string][]l4Attachment{}
	var keys []string
	for _, at := range a.l4 {
		k := at.rt.kind + " " + at.at.key
		if _, ok := byPlace[k]; !ok {
			keys = append(keys, k)
		}
		byPlace[k] = append(byPlace[k], at)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ats := byPlace[k]
		slices.SortFunc(ats, func(x, y l4Attachment) int {
			return cmp.Or(cmp.Compare(x.rt.r.Source.CreationUnix, y.rt.r.Source.CreationUnix), x.rt.r.Key.Compare(y.rt.r.Key))
		})
		w := ats[0]
		for _, lost := range ats[1:] {
			why := "it is older"
			if w.rt.r.Source.CreationUnix == lost.rt.r.Source.CreationUnix {
				why = "same age, and its namespace/name sorts first"
			}
			where := lost.at.describe
			if lost.at.host != "" {
				where += " hostname " + lost.at.host
			}
			a.add(CodeL4Taken, lost.rt.res, "spec.parentRefs", "%s %s already takes the connections of %s (%s); this route is not in effect there",
				w.rt.kind, w.rt.r.Key, where, why)
		}
	}
}
