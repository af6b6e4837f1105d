package analyze

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// What the translator cannot express of an AccessPolicy, or expresses
// otherwise than it reads, when it can be known from the resources
// (TRL4011-TRL4015). The policy applies to the workloads
// model.Index.PolicySelects finds, as in the translator; on each workload
// its rules apply to every port the workload serves through a Service.

// chainPort is an app port a policy's workloads are reached on.
type chainPort struct {
	port uint32
	http bool
}

// accessTranslation checks every AccessPolicy against what its workloads'
// sidecars can enforce.
func (a *analyzer) accessTranslation() {
	for _, p := range a.c.AccessPolicies {
		res := resource(p.Source)
		selected := a.ix.PolicyWorkloads(p.Namespace, p.Targets)
		a.withoutSidecar(p, res, selected)
		ports := a.chainPorts(p, selected)
		for i, r := range p.Rules {
			rule := index("spec.rules", i)
			for j, f := range r.From {
				a.sourceMatches(res, index(rule+".from", j), f)
			}
			for j, t := range r.To {
				field := index(rule+".to", j)
				a.targetPorts(res, field, t, ports)
				a.httpOnlyOnTCP(p, res, field, t, ports)
				a.pathsAndMethods(res, field, t)
			}
		}
	}
}

// withoutSidecar reports selected workloads that have no sidecar to
// enforce the policy.
func (a *analyzer) withoutSidecar(p *model.AccessPolicy, res Resource, selected []*model.Workload) {
	var names []string
	for _, w := range selected {
		if w.MeshPort == 0 {
			names = append(names, w.Key.String())
		}
	}
	if len(names) == 0 {
		return
	}
	field := "spec.targetRefs"
	if len(p.Targets) == 0 {
		field = "spec"
	}
	const most = 3
	list := strings.Join(names[:min(len(names), most)], ", ")
	if len(names) > most {
		list += fmt.Sprintf(" and %d more", len(names)-most)
	}
	a.add(CodeAccessNoSidecar, res, field,
		"the policy selects %s, without a sidecar (no meshPort): nothing enforces it there, and requests reach them unchecked", list)
}

// chainPorts returns the app ports the policy's rules apply to, with
// their protocol: those of the selected workloads' Services, or when no
// workload is known, those of the targeted Services (all the namespace's
// without targets). A port known only by name is left out.
func (a *analyzer) chainPorts(p *model.AccessPolicy, selected []*model.Workload) []chainPort {
	var out []chainPort
	addPort := func(port uint32, proto model.Protocol) {
		cp := chainPort{port, proto.IsHTTP()}
		if !slices.Contains(out, cp) {
			out = append(out, cp)
		}
	}
	if len(selected) > 0 {
		for _, w := range selected {
			for _, s := range a.ix.MemberOf(w.Key) {
				for _, sp := range s.Ports {
					if port, ok := w.TargetPort(sp); ok {
						addPort(port, sp.Protocol)
					}
				}
			}
		}
		return out
	}
	for _, s := range a.c.Services {
		if s.Namespace != p.Namespace || !targetsService(p.Targets, s) {
			continue
		}
		for _, sp := range s.Ports {
			switch {
			case sp.TargetPort != 0:
				addPort(sp.TargetPort, sp.Protocol)
			case sp.TargetPortName == "":
				addPort(sp.Port, sp.Protocol)
			}
		}
	}
	return out
}

// targetPorts reports ports that no selected workload serves: the rule's
// target never matches them.
func (a *analyzer) targetPorts(res Resource, field string, t model.AccessTarget, ports []chainPort) {
	if len(ports) == 0 {
		return
	}
	var served []string
	for _, cp := range ports {
		served = append(served, fmt.Sprint(cp.port))
	}
	slices.Sort(served)
	for k, port := range t.Ports {
		if slices.ContainsFunc(ports, func(cp chainPort) bool { return cp.port == port }) {
			continue
		}
		a.add(CodeAccessPort, res, index(field+".ports", k),
			"port %d is not a port the policy's workloads serve (ports are the workloads' ports, a Service's targetPort: %s): this target never matches",
			port, strings.Join(served, ", "))
	}
}

// httpOnlyOnTCP reports targets with paths, methods or headers that apply
// to a TCP port, where a connection carries none of them.
func (a *analyzer) httpOnlyOnTCP(p *model.AccessPolicy, res Resource, field string, t model.AccessTarget, ports []chainPort) {
	if !t.HTTPOnly() {
		return
	}
	for _, cp := range ports {
		if cp.http || len(t.Ports) > 0 && !slices.Contains(t.Ports, cp.port) {
			continue
		}
		switch p.Action {
		case model.AccessAllow:
			a.add(CodeAccessTCP, res, field,
				"port %d is TCP, where connections carry no path, method or header: this target never allows a connection there", cp.port)
		case model.AccessDeny:
			a.add(CodeAccessTCP, res, field,
				"port %d is TCP, where connections carry no path, method or header: there the target applies without them, and the rule denies every connection of its sources", cp.port)
		default:
			a.add(CodeAccessTCP, res, field,
				"port %d is TCP, where connections carry no path, method or header: there the target applies without them, and the rule audits every connection of its sources", cp.port)
		}
		return
	}
}

// sourceMatches reports identities that can never match a caller.
func (a *analyzer) sourceMatches(res Resource, field string, f model.AccessSource) {
	for k, id := range f.Identities {
		if i := strings.IndexByte(id, '*'); i >= 0 && i != len(id)-1 {
			a.add(CodeAccessNever, res, index(field+".identities", k),
				"%q has a * that is not at its end: only a trailing * is a wildcard, and no SPIFFE ID contains a *", id)
		}
	}
	if len(f.Identities) == 0 || len(f.Namespaces) == 0 {
		return
	}
	// Both given: the caller needs one of each. An identity that names its
	// namespace in full must be in one of the namespaces.
	for _, id := range f.Identities {
		ns, ok := identityNamespace(strings.TrimSuffix(id, "*"))
		if !ok || slices.Contains(f.Namespaces, ns) {
			return
		}
	}
	a.add(CodeAccessNever, res, field,
		"a caller must match one of the identities and one of the namespaces, and none of the identities is in %s: the source never matches",
		strings.Join(f.Namespaces, ", "))
}

// identityNamespace returns the namespace a SPIFFE ID (or a prefix of
// one) names in full: ".../ns/NS/sa/...".
func identityNamespace(id string) (string, bool) {
	_, rest, ok := strings.Cut(id, "/ns/")
	if !ok {
		return "", false
	}
	ns, _, ok := strings.Cut(rest, "/sa/")
	return ns, ok && !strings.Contains(ns, "/")
}

// pathsAndMethods reports paths and methods no request can have once the
// proxy has normalized its path.
func (a *analyzer) pathsAndMethods(res Resource, field string, t model.AccessTarget) {
	for k, path := range t.Paths {
		if why := neverMatchingPath(path); why != "" {
			a.add(CodeAccessNever, res, index(field+".paths", k), "path %q %s", path, why)
		}
	}
	for k, m := range t.Methods {
		if strings.ToUpper(m) != m {
			a.add(CodeAccessNever, res, index(field+".methods", k),
				"method %q is not upper case: methods are case-sensitive, and %q never matches %s", m, m, strings.ToUpper(m))
		}
	}
}

// neverMatchingPath says why a path pattern can never match a normalized
// request path, or returns "".
func neverMatchingPath(pattern string) string {
	_, lit := model.ParseAccessPath(pattern)
	switch {
	case strings.Contains(lit, "*"):
		return "has a * in the middle: only a leading or trailing * is a wildcard, this one is a literal character"
	case strings.ContainsAny(lit, "?#"):
		return "holds a ? or #: the query is not part of the path, and fragments are refused"
	case strings.Contains(lit, ";"):
		return "holds path parameters (;): requests with them are refused where rules match paths"
	case strings.Contains(lit, "\\"):
		return "holds a backslash: the proxy reads it as a slash"
	case strings.Contains(lit, "//"):
		return "holds //: the proxy merges slashes"
	case hasDotSegment(lit):
		return "holds a . or .. segment: the proxy resolves them"
	}
	for i := 0; i+2 < len(lit); i++ {
		if lit[i] != '%' {
			continue
		}
		switch esc := strings.ToUpper(lit[i+1 : i+3]); {
		case esc == "2F" || esc == "5C":
			return "holds an escaped slash: requests with one are refused"
		case unreservedEscape(esc):
			return fmt.Sprintf("holds %%%s, an escaped letter, digit or -._~: the proxy decodes it", lit[i+1:i+3])
		}
	}
	return ""
}

func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// unreservedEscape reports whether hex (upper case) encodes a letter, a
// digit or one of -._~.
func unreservedEscape(hex string) bool {
	n, err := strconv.ParseUint(hex, 16, 8)
	if err != nil {
		return false
	}
	c := byte(n)
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0
}
