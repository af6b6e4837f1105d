// Package controlapi is the HTTP API of the control plane that the trellis
// CLI uses: applying, reading and deleting resources, reading proxy status,
// and making, listing and revoking join tokens. It holds the wire types and
// a client; the control plane serves the other side.
//
// The API listens on the control plane's debug port (15014), bound to
// loopback by default. It has no authentication of its own: whoever reaches
// it can change the mesh and make join tokens, so keep it on loopback or
// behind something that authenticates.
package controlapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"trellis.dev/trellis/internal/analyze"
)

// DefaultAddress is where the CLI looks for the control plane when neither
// --control-plane nor TRELLIS_CONTROL_PLANE says otherwise.
const DefaultAddress = "127.0.0.1:15014"

// EnvAddress names the environment variable with the control plane address.
const EnvAddress = "TRELLIS_CONTROL_PLANE"

// Paths of the API.
const (
	PathApply     = "/api/v1/apply"
	PathResources = "/api/v1/resources"
	PathProxies   = "/debug/proxies"
	PathFindings  = "/api/v1/findings"
	PathConfig    = "/debug/config_dump"
	PathReady     = "/ready"
)

// File is one input file of an apply.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// ApplyRequest applies every resource of every file in one transaction.
type ApplyRequest struct {
	Files []File `json:"files"`
	// Namespace is given to resources that name none.
	Namespace string `json:"namespace,omitempty"`
	// DryRun validates without storing.
	DryRun bool `json:"dryRun,omitempty"`
}

// ApplyResult is what happened to one resource.
type ApplyResult struct {
	// Ref is "Kind namespace/name".
	Ref string `json:"ref"`
	// Action is created, configured or unchanged.
	Action string `json:"action"`
}

// ApplyResponse lists the results in input order, and the warnings the
// change adds (errors refuse the apply).
type ApplyResponse struct {
	Results  []ApplyResult `json:"results"`
	Warnings []string      `json:"warnings,omitempty"`
}

// ErrorResponse is the body of every failed request.
type ErrorResponse struct {
	// Errors are complete messages, each naming file, line, resource and
	// field where they apply.
	Errors []string `json:"errors"`
}

// FindingsResponse is the analysis of the stored configuration.
type FindingsResponse struct {
	Findings []analyze.Finding `json:"findings"`
}

// Resource is a stored resource as the API returns it.
type Resource struct {
	Kind      string          `json:"kind"`
	Namespace string          `json:"namespace,omitempty"`
	Name      string          `json:"name"`
	Object    json.RawMessage `json:"object"`
}

// ProxyStatus is one proxy in proxy-status.
type ProxyStatus struct {
	ID        string `json:"id"`
	Kind      string `json:"kind,omitempty"`
	Workload  string `json:"workload,omitempty"`
	Identity  string `json:"identity,omitempty"`
	Address   string `json:"address,omitempty"`
	Version   string `json:"version,omitempty"`
	Connected bool   `json:"connected"`
	// Delta tells whether the proxy follows incremental (delta) xDS.
	Delta          bool         `json:"delta"`
	ConnectedAt    time.Time    `json:"connectedAt,omitzero"`
	DisconnectedAt time.Time    `json:"disconnectedAt,omitzero"`
	Types          []TypeStatus `json:"types"`
	// Problems are parts of the proxy's config that could not be built.
	Problems []string `json:"problems,omitempty"`
}

// TypeStatus is the sync state of one xDS type: SYNCED, STALE, NOT SENT or
// NACKED.
type TypeStatus struct {
	Type    string `json:"type"`
	TypeURL string `json:"typeUrl"`
	State   string `json:"state"`
	Current string `json:"current,omitempty"`
	Sent    string `json:"sent,omitempty"`
	Acked   string `json:"acked,omitempty"`
	Nack    string `json:"nack,omitempty"`
	// Responses and Bytes count what was sent of this type on the
	// proxy's current stream.
	Responses int   `json:"responses"`
	Bytes     int64 `json:"bytes"`
}

// ProxyConfig is the config of one xDS type of one proxy: what the control
// plane last sent and what the proxy acknowledged.
type ProxyConfig struct {
	Proxy   string          `json:"proxy"`
	Type    string          `json:"type"`
	TypeURL string          `json:"typeUrl"`
	State   string          `json:"state"`
	Sent    VersionedConfig `json:"sent"`
	Acked   VersionedConfig `json:"acked"`
}

// VersionedConfig is a version and its resources, each in protojson.
type VersionedConfig struct {
	Version   string            `json:"version,omitempty"`
	Resources []json.RawMessage `json:"resources"`
}

// Client talks to the control plane's API.
type Client struct {
	base *url.URL
	http *http.Client
}

// Address resolves the control plane address: the flag if set, else the
// environment, else the default.
func Address(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvAddress); env != "" {
		return env
	}
	return DefaultAddress
}

// NewClient returns a client of the control plane at addr (host:port or a
// URL).
func NewClient(addr string) (*Client, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("control plane address %q: %w", addr, err)
	}
	return &Client{base: u, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Error is a failed API call.
type Error struct {
	Status   int
	Messages []string
}

func (e *Error) Error() string {
	return strings.Join(e.Messages, "\n")
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := *c.base
	u.Path = path
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("cannot reach the control plane at %s: %w (is `trellis control` or `trellis demo` running? set --control-plane or %s)", c.base.Host, op.Err, EnvAddress)
		}
		return fmt.Errorf("control plane at %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control plane at %s: reading response: %w", c.base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		var er ErrorResponse
		if json.Unmarshal(data, &er) == nil && len(er.Errors) > 0 {
			return &Error{Status: resp.StatusCode, Messages: er.Errors}
		}
		return &Error{Status: resp.StatusCode, Messages: []string{fmt.Sprintf("control plane answered %s: %s", resp.Status, bytes.TrimSpace(data))}}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("control plane at %s: decoding response: %w", c.base.Host, err)
	}
	return nil
}

// Apply sends an apply request.
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (*ApplyResponse, error) {
	var out ApplyResponse
	if err := c.do(ctx, http.MethodPost, PathApply, nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns resources of kind; namespace "" means all namespaces, name
// "" all names.
func (c *Client) List(ctx context.Context, kind, namespace, name string) ([]Resource, error) {
	q := url.Values{"kind": {kind}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if name != "" {
		q.Set("name", name)
	}
	var out []Resource
	if err := c.do(ctx, http.MethodGet, PathResources, q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteResponse names what was deleted.
type DeleteResponse struct {
	// Ref is "Kind namespace/name", or "Kind name" for cluster-scoped kinds.
	Ref string `json:"ref"`
	// Warnings are the findings the deletion added (with force, also its
	// errors).
	Warnings []string `json:"warnings,omitempty"`
}

// Delete removes one resource. The deletion is judged like an apply: if it
// adds an error finding (a route left without its backend), nothing is
// deleted, unless force is set.
func (c *Client) Delete(ctx context.Context, kind, namespace, name string, force bool) (*DeleteResponse, error) {
	q := url.Values{"kind": {kind}, "namespace": {namespace}, "name": {name}}
	if force {
		q.Set("force", "true")
	}
	var out DeleteResponse
	if err := c.do(ctx, http.MethodDelete, PathResources, q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Findings analyzes the stored configuration.
func (c *Client) Findings(ctx context.Context) ([]analyze.Finding, error) {
	var out FindingsResponse
	if err := c.do(ctx, http.MethodGet, PathFindings, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Findings, nil
}

// Proxies returns the status of every proxy the control plane knows.
func (c *Client) Proxies(ctx context.Context) ([]ProxyStatus, error) {
	var out []ProxyStatus
	if err := c.do(ctx, http.MethodGet, PathProxies, nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ProxyConfig returns a proxy's config for typ (CDS, EDS, LDS, RDS or
// SDS; "" for all).
func (c *Client) ProxyConfig(ctx context.Context, proxy, typ string) ([]ProxyConfig, error) {
	q := url.Values{"proxy": {proxy}}
	if typ != "" {
		q.Set("type", typ)
	}
	var out []ProxyConfig
	if err := c.do(ctx, http.MethodGet, PathConfig, q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Ready reports whether the control plane answers and is ready.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, PathReady, nil, nil, nil)
}
