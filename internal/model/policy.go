package model

import "time"

// ReferenceGrant allows references from other namespaces to objects in
// its own.
type ReferenceGrant struct {
	Key
	Source Source
	From   []GrantFrom
	To     []GrantTo
}

// GrantFrom names the kind and namespace of referrers a grant admits.
type GrantFrom struct {
	GroupKind
	Namespace string
}

// GrantTo names the kind (and optionally the name) of referents a grant
// exposes.
type GrantTo struct {
	GroupKind
	Name string
}

// Permits reports whether the grant allows an object of kind from in
// namespace fromNamespace to reference to (in the grant's namespace).
func (g *ReferenceGrant) Permits(from GroupKind, fromNamespace string, to Ref) bool {
	if to.Namespace != g.Namespace {
		return false
	}
	okFrom := false
	for _, f := range g.From {
		if f.GroupKind == from && f.Namespace == fromNamespace {
			okFrom = true
			break
		}
	}
	if !okFrom {
		return false
	}
	for _, t := range g.To {
		if t.GroupKind == to.GroupKind() && (t.Name == "" || t.Name == to.Name) {
			return true
		}
	}
	return false
}

// TargetRef names the object a policy attaches to, in the policy's
// namespace.
type TargetRef struct {
	GroupKind
	Name        string
	SectionName string
}

// MTLSMode is what a server-side proxy accepts.
type MTLSMode string

// mTLS modes.
const (
	MTLSStrict     MTLSMode = "STRICT"
	MTLSPermissive MTLSMode = "PERMISSIVE"
	MTLSDisable    MTLSMode = "DISABLE"
)

// MTLSPolicy sets the server-side mTLS mode of the workloads behind its
// targets, or of its whole namespace when it has none.
type MTLSPolicy struct {
	Key
	Source  Source
	Targets []TargetRef
	Mode    MTLSMode
	Ports   []PortMTLS
}

// PortMTLS overrides the mode on one workload port.
type PortMTLS struct {
	Port uint32
	Mode MTLSMode
}

// ModeFor returns the policy's mode for a port.
func (p *MTLSPolicy) ModeFor(port uint32) MTLSMode {
	for _, pm := range p.Ports {
		if pm.Port == port {
			return pm.Mode
		}
	}
	return p.Mode
}

// AccessAction is what an AccessPolicy does with requests its rules match.
type AccessAction string

// Access actions.
const (
	AccessAllow AccessAction = "ALLOW"
	AccessDeny  AccessAction = "DENY"
	AccessAudit AccessAction = "AUDIT"
)

// AccessPolicy allows, denies or audits requests to the workloads behind
// its targets (its namespace's, when it has none).
type AccessPolicy struct {
	Key
	Source  Source
	Targets []TargetRef
	Action  AccessAction
	Rules   []AccessRule
}

// AccessRule matches a request when every present part matches; a rule
// with no From and no To matches every request.
type AccessRule struct {
	From []AccessSource
	To   []AccessTarget
}

// AccessSource matches the caller: by SPIFFE ID (a trailing * matches any
// suffix) or by namespace.
type AccessSource struct {
	Identities []string
	Namespaces []string
}

// AccessTarget matches the request.
type AccessTarget struct {
	Ports   []uint32
	Paths   []string
	Methods []string
	Headers []ValueMatch
}

// BackendTLSMode is how clients reach a backend.
type BackendTLSMode string

// Backend TLS modes.
const (
	// BackendTLSMesh uses mesh mTLS to endpoints that have a sidecar and
	// plaintext to those that do not (the default).
	BackendTLSMesh BackendTLSMode = "Mesh"
	// BackendTLSRequireMesh refuses endpoints without mesh mTLS.
	BackendTLSRequireMesh BackendTLSMode = "RequireMesh"
	// BackendTLSDisable sends plaintext.
	BackendTLSDisable BackendTLSMode = "Disable"
)

// BackendPolicy is client-side traffic policy toward its target Services.
type BackendPolicy struct {
	Key
	Source           Source
	Targets          []TargetRef
	TLS              BackendTLSMode
	LoadBalancer     *LoadBalancer
	ConnectionLimits *ConnectionLimits
	OutlierDetection *OutlierDetection
	RetryBudget      *RetryBudget
	IdleTimeout      time.Duration
	RateLimit        *RateLimit
	Faults           *Faults
}

// LoadBalancer picks the algorithm: RoundRobin, LeastRequest or
// ConsistentHash (on HashHeader or HashCookie).
type LoadBalancer struct {
	Type       string
	HashHeader string
	HashCookie string
}

// ConnectionLimits caps connections and requests; zero keeps the proxy's
// default (Envoy's 1024).
type ConnectionLimits struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
}

// OutlierDetection ejects failing endpoints; zero fields take Envoy's
// defaults (5 consecutive errors, 10 s interval, 30 s base ejection time,
// 10 % of the endpoints at most).
type OutlierDetection struct {
	Consecutive5xx           uint32
	ConsecutiveConnectErrors uint32
	Interval                 time.Duration
	BaseEjectionTime         time.Duration
	MaxEjectionPercent       uint32
}

// RetryBudget bounds retries as a share of active requests; MinRetries
// zero keeps Envoy's default of 3.
type RetryBudget struct {
	Percent    uint32
	MinRetries uint32
}

// RateLimit is a local token bucket: Requests tokens every Per, holding at
// most Burst (at least Requests).
type RateLimit struct {
	Requests uint32
	Per      time.Duration
	Burst    uint32
}

// Faults are injected by the calling proxy: DelayPercent of the requests
// wait Delay before they are sent, AbortPercent are answered by the proxy
// with AbortHTTPStatus or, when it is zero, with gRPC status
// AbortGRPCStatus. A zero percent injects nothing.
type Faults struct {
	DelayPercent    uint32
	Delay           time.Duration
	AbortPercent    uint32
	AbortHTTPStatus uint32
	AbortGRPCStatus uint32
}
