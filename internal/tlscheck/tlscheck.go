// Package tlscheck answers `trellis tls-check`: for each port of a
// Service, the mTLS mode its members enforce, how client sidecars reach
// them, and whether the two agree.
//
//	model.Config ──► BackendPoliciesFor ─► tls.mode of the port (client side)
//	                 ReachMember ─────────► mTLS | plaintext | left out, per member
//	                 MemberAccepts ───────► STRICT | PERMISSIVE | DISABLE, per member (server side)
//	                 MTLSPoliciesFor ─────► what the MTLSPolicies ask, per member port
//	             ──► Port{Server, Client, Status OK|CONFLICT, Reasons}
//
// It calls the functions the translator builds each proxy's config with,
// so it reports what the data plane does, including where an MTLSPolicy
// asks for something it does not do: a sidecar without inbound capture
// accepts only mesh mTLS (PERMISSIVE and DISABLE are not in effect behind
// it; with capture its policy's mode is), and a workload without a sidecar
// can enforce nothing (STRICT is not in effect there).
// The clients are sidecars and gateways; proxyless gRPC clients reach only
// members without a sidecar.
package tlscheck

import (
	"fmt"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/model"
)

// Status is the verdict on a port or a member.
type Status string

// Verdicts.
const (
	// OK: every member is reached, in a mode it accepts, and no
	// MTLSPolicy's STRICT is left unenforced.
	OK Status = "OK"
	// Conflict: some member is left out of the clients' clusters, or is
	// reached in plaintext although an MTLSPolicy asks for STRICT.
	Conflict Status = "CONFLICT"
)

// Port is the verdict on one port of a Service.
type Port struct {
	Service model.Key `json:"service"`
	Port    uint32    `json:"port"`
	Name    string    `json:"name,omitempty"`
	// Server summarizes what the members enforce: STRICT or DISABLE, with
	// "(no sidecar)" and "(policy: MODE)" where an MTLSPolicy asks for
	// something else; distinct values are joined by ", ".
	Server string `json:"server"`
	// Client is the tls.mode of the port's BackendPolicy (Mesh when none)
	// and how the members are reached: "Mesh: mTLS, plaintext".
	Client        string               `json:"client"`
	ClientMode    model.BackendTLSMode `json:"clientMode"`
	BackendPolicy string               `json:"backendPolicy,omitempty"`
	Status        Status               `json:"status"`
	Reasons       []string             `json:"reasons,omitempty"`
	Members       []Member             `json:"members"`
}

// Member is the verdict on one member workload behind a port.
type Member struct {
	Workload model.Key `json:"workload"`
	// TargetPort is the member's port the Service port sends to.
	TargetPort uint32 `json:"targetPort"`
	Sidecar    bool   `json:"sidecar"`
	// Server is what the member enforces (model.MemberAccepts).
	Server model.MTLSMode `json:"server"`
	// Policies are the MTLSPolicies that apply to the member's port, the
	// most specific first, with the mode each asks for.
	Policies []Policy `json:"policies,omitempty"`
	// Client is how client sidecars reach it (model.ReachMember).
	Client model.MemberTLS `json:"client"`
	Status Status          `json:"status"`
	Reason string          `json:"reason,omitempty"`
}

// Policy is an MTLSPolicy and the mode it sets on a member's port.
type Policy struct {
	Name model.Key      `json:"name"`
	Mode model.MTLSMode `json:"mode"`
}

// NoServiceError is the error for a Service that does not exist.
type NoServiceError struct{ Service model.Key }

func (e *NoServiceError) Error() string {
	return "tls-check: Service " + e.Service.String() + " does not exist"
}

// Check returns the verdicts on the ports of the Services of c in
// namespace (every namespace when empty), or, when name is set, of the
// Service namespace/name only. ix must be built from c.
func Check(c *model.Config, ix *model.Index, namespace, name string) ([]Port, error) {
	var services []*model.Service
	if name != "" {
		k := model.Key{Namespace: namespace, Name: name}
		s := ix.Service(k)
		if s == nil {
			return nil, &NoServiceError{Service: k}
		}
		services = []*model.Service{s}
	} else {
		for _, s := range c.Services {
			if namespace == "" || s.Namespace == namespace {
				services = append(services, s)
			}
		}
	}
	out := []Port{}
	for _, s := range services {
		for _, sp := range s.Ports {
			out = append(out, checkPort(c, ix, s, sp))
		}
	}
	return out, nil
}

// Conflicts counts the ports in conflict.
func Conflicts(ports []Port) int {
	n := 0
	for _, p := range ports {
		if p.Status == Conflict {
			n++
		}
	}
	return n
}

// maxReasons bounds the reasons a port lists; its members list them all.
const maxReasons = 3

func checkPort(c *model.Config, ix *model.Index, s *model.Service, sp model.ServicePort) Port {
	p := Port{Service: s.Key, Port: sp.Port, Name: sp.Name, ClientMode: model.BackendTLSMesh, Status: OK, Members: []Member{}}
	if refs := model.BackendPoliciesFor(ix.BackendPoliciesTargeting(s.Key), s, sp); len(refs) > 0 {
		p.ClientMode = refs[0].Policy.TLS
		p.BackendPolicy = refs[0].Policy.Key.String()
	}
	var servers, clients, reasons []string
	reached := 0
	for _, w := range ix.Members(s.Key) {
		target, ok := w.TargetPort(sp)
		if !ok {
			// Neither side serves it: the translator skips the member (and
			// reports the missing port on its own proxy).
			reasons = append(reasons, fmt.Sprintf("workload %s has no port named %q: it is not an endpoint of this port", w.Key, sp.TargetPortName))
			continue
		}
		m := checkMember(c, ix, w, target, p.ClientMode, p.BackendPolicy)
		p.Members = append(p.Members, m)
		servers = appendNew(servers, serverLabel(m))
		clients = appendNew(clients, string(m.Client))
		if m.Client != model.MemberLeftOut {
			reached++
		}
		if m.Status == Conflict {
			p.Status = Conflict
		}
		if m.Reason != "" {
			reasons = append(reasons, m.Reason)
		}
	}
	switch {
	case len(p.Members) == 0:
		servers, clients = []string{"-"}, []string{"-"}
		reasons = append(reasons, "no member workload: nothing serves this port")
	case reached == 0:
		reasons = append(reasons, "no member is reached: every call fails")
	case reached < len(p.Members):
		reasons = append(reasons, fmt.Sprintf("calls go to the %d member(s) reached", reached))
	}
	p.Server = strings.Join(servers, ", ")
	p.Client = string(p.ClientMode) + ": " + strings.Join(clients, ", ")
	if len(reasons) > maxReasons {
		reasons = append(reasons[:maxReasons-1], fmt.Sprintf("and %d more (see -o json)", len(reasons)-maxReasons+1))
	}
	p.Reasons = reasons
	return p
}

// checkMember judges one member reached on its port target by clients
// whose BackendPolicy (bp, empty if none) has TLS mode mode.
func checkMember(c *model.Config, ix *model.Index, w *model.Workload, target uint32, mode model.BackendTLSMode, bp string) Member {
	m := Member{
		Workload:   w.Key,
		TargetPort: target,
		Sidecar:    w.HasSidecar(),
		Server:     model.MemberAccepts(c, ix, w, target),
		Status:     OK,
	}
	for _, pm := range model.MTLSPoliciesFor(c, ix, w, target) {
		m.Policies = append(m.Policies, Policy{Name: pm.Policy.Key, Mode: pm.Mode})
	}
	reach, why := model.ReachMember(mode, w)
	m.Client = reach
	unmet := m.unmetPolicy()
	switch {
	case reach == model.MemberLeftOut:
		m.Status = Conflict
		m.Reason = fmt.Sprintf("BackendPolicy %s: %s; clients leave it out", bp, why)
		if unmet != nil && m.Sidecar {
			m.Reason += fmt.Sprintf(" (MTLSPolicy %s asks for %s, which its sidecar does not enforce without inbound capture, trellis-proxy --capture)", unmet.Name, unmet.Mode)
		}
	case unmet != nil && unmet.Mode == model.MTLSStrict:
		m.Status = Conflict
		m.Reason = fmt.Sprintf("MTLSPolicy %s asks for STRICT on port %d, but workload %s has no sidecar to enforce it: clients reach it in plaintext", unmet.Name, target, w.Key)
	case unmet != nil && m.Sidecar:
		m.Reason = fmt.Sprintf("MTLSPolicy %s asks for %s on port %d, which a sidecar enforces only with inbound capture (trellis-proxy --capture): workload %s accepts only mesh mTLS, which clients use", unmet.Name, unmet.Mode, target, w.Key)
	}
	return m
}

// unmetPolicy returns the most specific MTLSPolicy of the member's port
// (one targeting its Service before one for its namespace) if it asks for
// another mode than the member enforces, else nil.
func (m *Member) unmetPolicy() *Policy {
	if len(m.Policies) == 0 || m.Policies[0].Mode == m.Server {
		return nil
	}
	return &m.Policies[0]
}

// serverLabel says what a member enforces and, if its MTLSPolicy asks for
// something else, what.
func serverLabel(m Member) string {
	var notes []string
	if !m.Sidecar {
		notes = append(notes, "no sidecar")
	}
	if pol := m.unmetPolicy(); pol != nil {
		notes = append(notes, "policy: "+string(pol.Mode))
	}
	if len(notes) == 0 {
		return string(m.Server)
	}
	return string(m.Server) + " (" + strings.Join(notes, "; ") + ")"
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
