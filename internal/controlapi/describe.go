package controlapi

import (
	"context"
	"net/http"
	"net/url"

	"trellis.dev/trellis/internal/analyze"
)

// PathDescribe explains what applies to one workload (GET, query
// namespace and name).
const PathDescribe = "/api/v1/describe"

// Description is what applies to a workload, and why: trellis describe.
type Description struct {
	// Workload is NAMESPACE/NAME.
	Workload       string `json:"workload"`
	Address        string `json:"address"`
	ServiceAccount string `json:"serviceAccount"`
	Identity       string `json:"identity"`
	// Source is where the workload comes from: a Workload resource, a
	// Pod, a proxy's registration.
	Source string `json:"source"`
	// Sidecar tells whether a Trellis proxy fronts it (it has a mesh port).
	Sidecar bool `json:"sidecar"`
	// Services it is a member of.
	Services []Applied `json:"services"`
	// Ports are its ports with the mTLS mode each accepts.
	Ports []PortMode `json:"ports"`
	// AccessPolicies judge the requests it receives.
	AccessPolicies []Applied `json:"accessPolicies"`
	// Routes shape or send traffic to its Services: mesh routes whose
	// parent is one of them (GAMMA), and routes whose backends are.
	Routes []Applied `json:"routes"`
	// BackendPolicies are applied by its Services' callers.
	BackendPolicies []Applied `json:"backendPolicies"`
	// Findings are the analyzer's about the workload and what applies.
	Findings []analyze.Finding `json:"findings"`
}

// Applied is a resource that applies, and why.
type Applied struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Why       string `json:"why"`
}

// PortMode is the mTLS mode a workload's port accepts, and why.
type PortMode struct {
	Port uint32 `json:"port"`
	Name string `json:"name,omitempty"`
	// Mode is STRICT, PERMISSIVE or DISABLE.
	Mode string `json:"mode"`
	Why  string `json:"why"`
}

// Describe returns what applies to workload namespace/name.
func (c *Client) Describe(ctx context.Context, namespace, name string) (*Description, error) {
	var out Description
	if err := c.do(ctx, http.MethodGet, PathDescribe, url.Values{"namespace": {namespace}, "name": {name}}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
