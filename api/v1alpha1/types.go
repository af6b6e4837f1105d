package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Status is what the control plane reports on a Trellis resource: whether
// it is accepted and in effect, and the analyzer's findings about it. The
// control plane writes it through the status subresource; users do not.
type Status struct {
	// Conditions are the resource's conditions, at most one of each type:
	// Accepted (the resource is valid and in effect), ResolvedRefs (its
	// targets exist) and Analyzed (the analyzer's findings, by code, in the
	// message).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Workload is an endpoint outside Kubernetes: a VM or process, with or
// without a sidecar. Sidecars register their workload themselves; a
// Workload resource declares one that does not (or whose registration
// should be kept in config).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=wl,categories=trellis
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Service Account",type=string,JSONPath=`.spec.serviceAccount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec   WorkloadSpec `json:"spec"`
	Status Status       `json:"status,omitempty"`
}

// WorkloadList is a list of Workloads.
//
// +kubebuilder:object:root=true
type WorkloadList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workload `json:"items"`
}

// WorkloadSpec describes a workload's address and identity.
//
// +kubebuilder:validation:XValidation:rule="!has(self.meshPort) || !has(self.ports) || self.ports.all(p, p.port != self.meshPort)",message="the mesh port is also an application port (spec.ports); the sidecar needs its own port",fieldPath=`.meshPort`
type WorkloadSpec struct {
	// Address is the IP address other workloads reach it on.
	// +required
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address, e.g. 10.0.0.5 or fd00::5"
	Address string `json:"address"`
	// ServiceAccount is the identity the workload runs as. Defaults to
	// "default".
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must consist of lowercase letters, digits, '-' and '.', start and end with a letter or digit, and be at most 253 characters (an RFC 1123 subdomain)"
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Services names selector-less services the workload is a member of.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:XValidation:rule="!format.dns1035Label().validate(self).hasValue()",message="must consist of lowercase letters, digits and '-', start with a letter, end with a letter or digit, and be at most 63 characters (an RFC 1035 label)"
	Services []string `json:"services,omitempty"`
	// Ports are the workload's application ports, each port at most once
	// and each name at most once.
	// +optional
	// +listType=map
	// +listMapKey=port
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(p, !has(p.name) || self.exists_one(q, has(q.name) && q.name == p.name))",message="names must be unique"
	Ports []WorkloadPort `json:"ports,omitempty"`
	// MeshPort is the port its sidecar accepts mesh mTLS on; unset means the
	// workload has no sidecar and is reached in plaintext.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	MeshPort *int32 `json:"meshPort,omitempty"`
	// Locality is region/zone/subzone.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Locality string `json:"locality,omitempty"`
}

// WorkloadPort is a named application port.
type WorkloadPort struct {
	// Name is an IANA service name, as a Service port's targetPort may
	// name it.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]+(-[a-z0-9]+)*$') && self.matches('[a-z]')",message="must be at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)"
	Name string `json:"name,omitempty"`
	// Port is the port number.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// Protocol is HTTP, HTTP2, GRPC, TLS or TCP. Defaults to TCP.
	// +optional
	// +kubebuilder:default=TCP
	// +kubebuilder:validation:Enum=HTTP;HTTP2;GRPC;TLS;TCP
	Protocol string `json:"protocol,omitempty"`
}

// MTLSMode says what a server-side proxy accepts.
//
// +kubebuilder:validation:Enum=STRICT;PERMISSIVE;DISABLE
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
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=mtls,categories=trellis
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MTLSPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec   MTLSPolicySpec `json:"spec"`
	Status Status         `json:"status,omitempty"`
}

// MTLSPolicyList is a list of MTLSPolicies.
//
// +kubebuilder:object:root=true
type MTLSPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MTLSPolicy `json:"items"`
}

// MTLSPolicySpec is the mode, overridable per port.
type MTLSPolicySpec struct {
	// TargetRefs are Services in the policy's namespace; without any, the
	// policy applies to the whole namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule="self.kind == 'Service' && (self.group == '' || self.group == 'core')",message="an MTLSPolicy targets Services: set group \"\" and kind Service"
	TargetRefs []gwv1.LocalPolicyTargetReference `json:"targetRefs,omitempty"`
	// +required
	Mode MTLSMode `json:"mode"`
	// Ports override the mode for single ports, each at most once.
	// +optional
	// +listType=map
	// +listMapKey=port
	// +kubebuilder:validation:MaxItems=64
	Ports []PortMTLS `json:"ports,omitempty"`
}

// PortMTLS overrides the mode for one port.
type PortMTLS struct {
	// Port is the workload's port (a Service's targetPort).
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// +required
	Mode MTLSMode `json:"mode"`
}

// AccessAction is what an AccessPolicy does with matching requests.
//
// +kubebuilder:validation:Enum=ALLOW;DENY;AUDIT
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
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=ap,categories=trellis
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AccessPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec   AccessPolicySpec `json:"spec"`
	Status Status           `json:"status,omitempty"`
}

// AccessPolicyList is a list of AccessPolicies.
//
// +kubebuilder:object:root=true
type AccessPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AccessPolicy `json:"items"`
}

// AccessPolicySpec holds the action and the rules that select requests.
type AccessPolicySpec struct {
	// TargetRefs select the workloads the policy applies to: the members
	// of Services in the policy's namespace (a Gateway may be named, but
	// does not enforce policies yet); without any, the whole namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	TargetRefs []gwv1.LocalPolicyTargetReference `json:"targetRefs,omitempty"`
	// +required
	Action AccessAction `json:"action"`
	// Rules select requests; a request matching any rule gets the action.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Rules []AccessRule `json:"rules,omitempty"`
}

// AccessRule matches a request when every present field matches.
type AccessRule struct {
	// From matches the caller: any one entry must match.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	From []AccessSource `json:"from,omitempty"`
	// To matches the request: any one entry must match.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	To []AccessTarget `json:"to,omitempty"`
}

// AccessSource matches the caller, by the certificate it presented in the
// mTLS handshake; when both fields are given, both must match.
type AccessSource struct {
	// Identities are SPIFFE IDs; a trailing * matches any suffix.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:XValidation:rule="self == '*' || self.startsWith('spiffe://')",message="must be a SPIFFE ID (spiffe://trust-domain/ns/NAMESPACE/sa/ACCOUNT), optionally ending in *"
	Identities []string `json:"identities,omitempty"`
	// Namespaces match the namespace in the caller's SPIFFE ID.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:XValidation:rule="!format.dns1123Label().validate(self).hasValue()",message="must consist of lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters (an RFC 1123 label)"
	Namespaces []string `json:"namespaces,omitempty"`
}

// AccessTarget matches the request; every field given must match.
type AccessTarget struct {
	// Ports are the workload's ports (a Service's targetPort).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	Ports []int32 `json:"ports,omitempty"`
	// Paths match the normalized path: "/api/*" a prefix, "*.png" a
	// suffix, "*" any path, anything else exactly (with or without a
	// trailing slash). Case-sensitive.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:XValidation:rule="self.startsWith('/') || self.startsWith('*')",message="must start with \"/\" (or \"*\" for a suffix match)"
	Paths []string `json:"paths,omitempty"`
	// Methods match the method exactly.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`
	Methods []string `json:"methods,omitempty"`
	// Headers must all match. Paths, methods and headers exist only in
	// HTTP: see docs/resources.md for TCP ports.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Headers []gwv1.HTTPHeaderMatch `json:"headers,omitempty"`
}

// BackendPolicy is client-side traffic policy toward its target Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=bp,categories=trellis
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackendPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec   BackendPolicySpec `json:"spec"`
	Status Status            `json:"status,omitempty"`
}

// BackendPolicyList is a list of BackendPolicies.
//
// +kubebuilder:object:root=true
type BackendPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackendPolicy `json:"items"`
}

// BackendPolicySpec configures how proxies call the targets.
type BackendPolicySpec struct {
	// TargetRefs name Services in the policy's namespace; a sectionName
	// narrows a target to the Service port of that name.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:XValidation:rule="self.kind == 'Service' && (self.group == '' || self.group == 'core')",message="a BackendPolicy targets Services: set group \"\" and kind Service"
	// +kubebuilder:validation:items:XValidation:rule="!has(self.sectionName) || (size(self.sectionName) <= 15 && self.sectionName.matches('^[a-z0-9]+(-[a-z0-9]+)*$') && self.sectionName.matches('[a-z]'))",message="sectionName must name a Service port: at most 15 lowercase letters, digits and single '-', with at least one letter, not starting or ending with '-' (an IANA service name)",fieldPath=`.sectionName`
	TargetRefs []gwv1.LocalPolicyTargetReferenceWithSectionName `json:"targetRefs"`
	// TLS says how clients reach the targets: Mesh (mesh mTLS to endpoints
	// with a sidecar, plaintext to others; the default), RequireMesh (refuse
	// endpoints without mesh mTLS) or Disable (plaintext).
	// +optional
	TLS *BackendTLS `json:"tls,omitempty"`
	// +optional
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty"`
	// +optional
	ConnectionLimits *ConnectionLimits `json:"connectionLimits,omitempty"`
	// +optional
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// +optional
	RetryBudget *RetryBudget `json:"retryBudget,omitempty"`
	// +optional
	IdleTimeout *gwv1.Duration `json:"idleTimeout,omitempty"`
	// +optional
	RateLimit *LocalRateLimit `json:"rateLimit,omitempty"`
	// Faults injects delays and aborts into a share of the HTTP and gRPC
	// requests toward the targets, to test how callers cope.
	// +optional
	Faults *Faults `json:"faults,omitempty"`
}

// BackendTLS is how clients reach a backend.
type BackendTLS struct {
	// Mode is Mesh, RequireMesh or Disable.
	// +required
	// +kubebuilder:validation:Enum=Mesh;RequireMesh;Disable
	Mode string `json:"mode"`
}

// LoadBalancer picks the algorithm.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'ConsistentHash' || !has(self.hashHeader) && !has(self.hashCookie)",message="hashHeader and hashCookie need type ConsistentHash"
type LoadBalancer struct {
	// Type is RoundRobin, LeastRequest or ConsistentHash.
	// +required
	// +kubebuilder:validation:Enum=RoundRobin;LeastRequest;ConsistentHash
	Type string `json:"type"`
	// HashHeader and HashCookie name the consistent hash key.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`
	HashHeader string `json:"hashHeader,omitempty"`
	// HashCookie names the cookie ConsistentHash hashes.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	HashCookie string `json:"hashCookie,omitempty"`
}

// ConnectionLimits caps connections and requests per proxy and backend.
type ConnectionLimits struct {
	// MaxConnections caps the connections to the targets' endpoints from
	// one proxy. Default 1024.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxConnections *int32 `json:"maxConnections,omitempty"`
	// MaxPendingRequests caps the requests waiting for a connection; more
	// are refused with 503. Default 1024.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxPendingRequests *int32 `json:"maxPendingRequests,omitempty"`
	// MaxRequests caps the HTTP requests in flight; more are refused with
	// 503. Default 1024.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxRequests *int32 `json:"maxRequests,omitempty"`
}

// OutlierDetection ejects failing endpoints.
type OutlierDetection struct {
	// Consecutive5xx is how many 5xx responses in a row eject an endpoint.
	// Default 5.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Consecutive5xx *int32 `json:"consecutive5xx,omitempty"`
	// ConsecutiveConnectErrors is how many connection errors in a row
	// eject an endpoint. Default 5.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ConsecutiveConnectError *int32 `json:"consecutiveConnectErrors,omitempty"`
	// Interval is how often ejections are reviewed. Default 10s.
	// +optional
	Interval *gwv1.Duration `json:"interval,omitempty"`
	// BaseEjectionTime is how long a first ejection lasts. Default 30s.
	// +optional
	BaseEjectionTime *gwv1.Duration `json:"baseEjectionTime,omitempty"`
	// MaxEjectionPercent caps the share of endpoints ejected at once,
	// 0-100. Default 10.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxEjectionPercent *int32 `json:"maxEjectionPercent,omitempty"`
}

// RetryBudget bounds retries as a share of active requests.
type RetryBudget struct {
	// Percent is the share of the requests in flight that retries in
	// flight may reach, 0-100.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
	// MinRetries is how many retries may be in flight whatever the
	// traffic. Default 3.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinRetries int32 `json:"minRetriesConcurrency,omitempty"`
}

// Faults are injected by each calling proxy, before the request is sent.
//
// +kubebuilder:validation:XValidation:rule="has(self.delay) || has(self.abort)",message="set delay, abort or both"
type Faults struct {
	// +optional
	Delay *FaultDelay `json:"delay,omitempty"`
	// +optional
	Abort *FaultAbort `json:"abort,omitempty"`
}

// FaultDelay holds Percent of the requests (0-100) for Duration before
// they are sent.
type FaultDelay struct {
	// Percent is the share of requests to delay, 0-100.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
	// Duration is how long to hold them.
	// +required
	Duration gwv1.Duration `json:"duration"`
}

// FaultAbort answers Percent of the requests (0-100) from the proxy, with
// HTTP status HTTPStatus (200-599) or, for gRPC, GRPCStatus (0-16); one of
// the two is required.
//
// +kubebuilder:validation:XValidation:rule="has(self.httpStatus) || has(self.grpcStatus)",message="set httpStatus (200-599) or grpcStatus (0-16)"
// +kubebuilder:validation:XValidation:rule="!(has(self.httpStatus) && has(self.grpcStatus))",message="set httpStatus or grpcStatus, not both"
type FaultAbort struct {
	// Percent is the share of requests to abort, 0-100.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
	// HTTPStatus is the HTTP status (200-599) to answer with.
	// +optional
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	HTTPStatus *int32 `json:"httpStatus,omitempty"`
	// GRPCStatus is the gRPC status (0-16) to answer with.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16
	GRPCStatus *int32 `json:"grpcStatus,omitempty"`
}

// LocalRateLimit is a token bucket per proxy.
type LocalRateLimit struct {
	// Requests is how many tokens the bucket gains every Per.
	// +required
	// +kubebuilder:validation:Minimum=1
	Requests int32 `json:"requests"`
	// Per is the refill interval, at least 50ms, the shortest the proxies'
	// token bucket supports.
	// +required
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]{1,5}(h|m|s|ms)){1,4}$') || duration(self) >= duration('50ms')",message="shorter than 50ms, the shortest refill interval of the proxies' token bucket"
	Per gwv1.Duration `json:"per"`
	// Burst is the bucket's size; at least Requests.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Burst *int32 `json:"burst,omitempty"`
}
