package proxy

import "strings"

// respFlags say why a request or connection did not get the upstream's
// answer, as Envoy's response flags do; access logs print them and a
// reason.
type respFlags uint32

const (
	flagNoHealthyUpstream respFlags = 1 << iota
	flagUpstreamConnectFailure
	flagUpstreamTimeout
	flagUpstreamReset
	flagNoRoute
	flagNoCluster
	flagDeniedRBAC
	flagRateLimited
	flagFaultInjected
	flagDelayInjected
	flagDownstreamTerminated
	flagOverflow
	flagInvalidRequest
)

// flagNames are Envoy's short names and a reason for each flag, in flag
// order.
var flagNames = [...]struct{ short, reason string }{
	{"UH", "no_healthy_upstream"},
	{"UF", "upstream_connect_failure"},
	{"UT", "upstream_timeout"},
	{"UC", "upstream_reset"},
	{"NR", "no_route"},
	{"NC", "no_cluster"},
	{"RBAC", "denied_by_policy"},
	{"RL", "rate_limited"},
	{"FI", "fault_injected_abort"},
	{"DI", "fault_injected_delay"},
	{"DC", "downstream_terminated"},
	{"UO", "upstream_overflow"},
	{"IR", "invalid_request"},
}

// String is the flags' short names separated by commas, "-" for none.
func (f respFlags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.short)
		}
	}
	return b.String()
}

// reason is the first flag's reason, "" for none. A delay is not a
// failure: it is the reason only when nothing else happened.
func (f respFlags) reason() string {
	for i, n := range flagNames {
		if f&(1<<i) != 0 && respFlags(1<<i) != flagDelayInjected {
			return n.reason
		}
	}
	if f&flagDelayInjected != 0 {
		return flagNames[9].reason
	}
	return ""
}
