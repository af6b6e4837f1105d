package controlapi

import (
	"context"
	"net/http"
	"net/url"

	"trellis.dev/trellis/internal/tlscheck"
)

// PathTLSCheck answers `trellis tls-check`: query parameters namespace
// (empty for all) and name (one Service; 404 if it does not exist).
const PathTLSCheck = "/api/v1/tls-check"

// TLSCheckResponse holds the verdicts on Service ports.
type TLSCheckResponse struct {
	Ports []tlscheck.Port `json:"ports"`
}

// TLSCheck checks the Service ports of namespace (all when empty), or of
// the Service namespace/name, against the stored configuration and the
// registered workloads.
func (c *Client) TLSCheck(ctx context.Context, namespace, name string) ([]tlscheck.Port, error) {
	q := url.Values{}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if name != "" {
		q.Set("name", name)
	}
	var out TLSCheckResponse
	if err := c.do(ctx, http.MethodGet, PathTLSCheck, q, nil, &out); err != nil {
		return nil, err
	}
	return out.Ports, nil
}
