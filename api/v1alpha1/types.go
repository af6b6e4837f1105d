package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Workload is an endpoint outside Kubernetes: a VM or process, with or
// without a sidecar. Sidecars register their workload themselves; a
// Workload resource declares one that does not (or whose registration
// should be kept in config).
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              WorkloadSpec `json:"spec"`
}

// WorkloadSpec describes a workload's address and identity.
type WorkloadSpec struct {
	// Address is the IP address other workloads reach it on.
	Address string `json:"address"`
	// ServiceAccount is the identity the workload runs as. Defaults to
	// "default".
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Services names selector-less services the workload is a member of.
	Services []string `json:"services,omitempty"`
	// Ports are the workload's application ports.
	Ports []WorkloadPort `json:"ports,omitempty"`
	// MeshPort is the port its sidecar accepts mesh mTLS on; unset means the
	// workload has no sidecar and is reached in plaintext.
	MeshPort *int32 `json:"meshPort,omitempty"`
	// Locality is region/zone/subzone.
	Locality string `json:"locality,omitempty"`
}

// WorkloadPort is a named application port.
type WorkloadPort struct {
	Name string `json:"name,omitempty"`
	Port int32  `json:"port"`
	// Protocol is HTTP, HTTP2, GRPC, TLS or TCP. Defaults to TCP.
	Protocol string `json:"protocol,omitempty"`
}

// MTLSMode says what a server-side proxy accepts.
type MTLSMode string

// mTLS modes.
const (
	// MTLSStrict accepts only mesh mTLS.
	MTLSStrict MTLSMode = "STRICT"
	// MTLSPermissive accepts mesh mTLS and plaintext on the same port.
	MTLSPermissive MTLSMode = "PERMISSIVE"
	// MTLSDisable accepts only plaintext.
	MTLSDisable MTLSMode = "DISABLE"
)

// MTLSPolicy sets the server-side mTLS mode of the workloads behind its
// targets (Services, or a namespace when targetRefs is empty).
type MTLSPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              MTLSPolicySpec `json:"spec"`
}

// MTLSPolicySpec is the mode, overridable per port.
type MTLSPolicySpec struct {
	TargetRefs []gwv1.LocalPolicyTargetReference `json:"targetRefs,omitempty"`
	Mode       MTLSMode                          `json:"mode"`
	Ports      []PortMTLS                        `json:"ports,omitempty"`
}

// PortMTLS overrides the mode for one port.
type PortMTLS struct {
	Port int32    `json:"port"`
	Mode MTLSMode `json:"mode"`
}

// AccessAction is what an AccessPolicy does with matching requests.
type AccessAction string

// Access actions.
const (
	AccessAllow AccessAction = "ALLOW"
	AccessDeny  AccessAction = "DENY"
	AccessAudit AccessAction = "AUDIT"
)

// AccessPolicy allows, denies or audits requests to its targets by the
// caller's identity and the request's properties. The sidecars of the
// selected workloads enforce it: AUDIT rules are logged, DENY rules refuse
// what they match, and when any ALLOW policy selects a workload, only what
// an ALLOW rule matches passes (an ALLOW policy without rules denies
// everything). See docs/resources.md.
type AccessPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AccessPolicySpec `json:"spec"`
}

// AccessPolicySpec holds the action and the rules that select requests.
type AccessPolicySpec struct {
	TargetRefs []gwv1.LocalPolicyTargetReference `json:"targetRefs,omitempty"`
	Action     AccessAction                      `json:"action"`
	Rules      []AccessRule                      `json:"rules,omitempty"`
}

// AccessRule matches a request when every present field matches.
type AccessRule struct {
	From []AccessSource `json:"from,omitempty"`
	To   []AccessTarget `json:"to,omitempty"`
}

// AccessSource matches the caller, by the certificate it presented in the
// mTLS handshake; when both fields are given, both must match.
type AccessSource struct {
	// Identities are SPIFFE IDs; a trailing * matches any suffix.
	Identities []string `json:"identities,omitempty"`
	// Namespaces match the namespace in the caller's SPIFFE ID.
	Namespaces []string `json:"namespaces,omitempty"`
}

// AccessTarget matches the request; every field given must match.
type AccessTarget struct {
	// Ports are the workload's ports (a Service's targetPort).
	Ports []int32 `json:"ports,omitempty"`
	// Paths match the normalized path: "/api/*" a prefix, "*.png" a
	// suffix, "*" any path, anything else exactly (with or without a
	// trailing slash). Case-sensitive.
	Paths []string `json:"paths,omitempty"`
	// Methods match the method exactly.
	Methods []string `json:"methods,omitempty"`
	// Headers must all match. Paths, methods and headers exist only in
	// HTTP: see docs/resources.md for TCP ports.
	Headers []gwv1.HTTPHeaderMatch `json:"headers,omitempty"`
}

// BackendPolicy is client-side traffic policy toward its target Services.
type BackendPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BackendPolicySpec `json:"spec"`
}

// BackendPolicySpec configures how proxies call the targets.
type BackendPolicySpec struct {
	// TargetRefs name Services in the policy's namespace; a sectionName
	// narrows a target to the Service port of that name.
	TargetRefs []gwv1.LocalPolicyTargetReferenceWithSectionName `json:"targetRefs"`
	// TLS says how clients reach the targets: Mesh (mesh mTLS to endpoints
	// with a sidecar, plaintext to others; the default), RequireMesh (refuse
	// endpoints without mesh mTLS) or Disable (plaintext).
	TLS              *BackendTLS       `json:"tls,omitempty"`
	LoadBalancer     *LoadBalancer     `json:"loadBalancer,omitempty"`
	ConnectionLimits *ConnectionLimits `json:"connectionLimits,omitempty"`
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	RetryBudget      *RetryBudget      `json:"retryBudget,omitempty"`
	IdleTimeout      *gwv1.Duration    `json:"idleTimeout,omitempty"`
	RateLimit        *LocalRateLimit   `json:"rateLimit,omitempty"`
	// Faults injects delays and aborts into a share of the HTTP and gRPC
	// requests toward the targets, to test how callers cope.
	Faults *Faults `json:"faults,omitempty"`
}

// BackendTLS is how clients reach a backend.
type BackendTLS struct {
	Mode string `json:"mode"`
}

// LoadBalancer picks the algorithm.
type LoadBalancer struct {
	// Type is RoundRobin, LeastRequest or ConsistentHash.
	Type string `json:"type"`
	// HashHeader and HashCookie name the consistent hash key.
	HashHeader string `json:"hashHeader,omitempty"`
	HashCookie string `json:"hashCookie,omitempty"`
}

// ConnectionLimits caps connections and requests per proxy and backend.
type ConnectionLimits struct {
	MaxConnections     *int32 `json:"maxConnections,omitempty"`
	MaxPendingRequests *int32 `json:"maxPendingRequests,omitempty"`
	MaxRequests        *int32 `json:"maxRequests,omitempty"`
}

// OutlierDetection ejects failing endpoints.
type OutlierDetection struct {
	Consecutive5xx          *int32         `json:"consecutive5xx,omitempty"`
	ConsecutiveConnectError *int32         `json:"consecutiveConnectErrors,omitempty"`
	Interval                *gwv1.Duration `json:"interval,omitempty"`
	BaseEjectionTime        *gwv1.Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent      *int32         `json:"maxEjectionPercent,omitempty"`
}

// RetryBudget bounds retries as a share of active requests.
type RetryBudget struct {
	Percent    int32 `json:"percent"`
	MinRetries int32 `json:"minRetriesConcurrency,omitempty"`
}

// Faults are injected by each calling proxy, before the request is sent.
type Faults struct {
	Delay *FaultDelay `json:"delay,omitempty"`
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay holds Percent of the requests (0-100) for Duration before
// they are sent.
type FaultDelay struct {
	Percent  int32         `json:"percent"`
	Duration gwv1.Duration `json:"duration"`
}

// FaultAbort answers Percent of the requests (0-100) from the proxy, with
// HTTP status HTTPStatus (200-599) or, for gRPC, GRPCStatus (0-16); one of
// the two is required.
type FaultAbort struct {
	Percent    int32  `json:"percent"`
	HTTPStatus *int32 `json:"httpStatus,omitempty"`
	GRPCStatus *int32 `json:"grpcStatus,omitempty"`
}

// LocalRateLimit is a token bucket per proxy.
type LocalRateLimit struct {
	Requests int32         `json:"requests"`
	Per      gwv1.Duration `json:"per"`
	Burst    *int32        `json:"burst,omitempty"`
}
