package controlapi

import (
	"context"
	"net/http"
	"time"
)

// Paths of the CA API.
const (
	PathCA       = "/api/v1/ca"
	PathCARotate = "/api/v1/ca/rotate"
	PathCABundle = "/api/v1/ca/bundle"
)

// Actions of a RotateRequest.
const (
	RotateStart = "start"
	RotateStep  = "step"
	RotateAbort = "abort"
)

// RotateRequest starts, advances or aborts a root rotation.
type RotateRequest struct {
	// Action is RotateStart, RotateStep (advance a manual rotation by one
	// phase, starting it if none runs) or RotateAbort.
	Action string `json:"action"`
	// Manual makes a started rotation wait for a step after each phase.
	Manual bool `json:"manual,omitempty"`
	// CACert and CAKey are absolute paths, on the control plane's host,
	// of a root or intermediate to rotate to (as trellis control
	// --ca-cert, --ca-key); empty generates a new root.
	CACert string `json:"caCert,omitempty"`
	CAKey  string `json:"caKey,omitempty"`
	// Generate allows generating a new root when the active one was
	// supplied.
	Generate bool `json:"generate,omitempty"`
}

// CAStatus is the state of the mesh's CA: its roots, the intermediate
// that signs, the rotation in progress, and where the proxies stand.
type CAStatus struct {
	TrustDomain string `json:"trustDomain"`
	// Storage says where the CA's keys are kept.
	Storage string `json:"storage"`
	// Generation counts the changes to the CA's state.
	Generation   uint64          `json:"generation"`
	Roots        []CARoot        `json:"roots"`
	Intermediate CACertificate   `json:"intermediate"`
	Rotation     *CARotation     `json:"rotation,omitempty"`
	LastRotation *CALastRotation `json:"lastRotation,omitempty"`
	Proxies      CAProxies       `json:"proxies"`
	// ControlPlanes are those serving the mesh with this CA, and the
	// generation of its state each uses.
	ControlPlanes []CAControlPlane `json:"controlPlanes"`
	// Message says what a rotate request did or why it did nothing.
	Message string `json:"message,omitempty"`
}

// CARoot is a root the CA holds.
type CARoot struct {
	// Fingerprint is the hex SHA-256 of the certificate.
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	// State is "active" (workload certificates chain to it), "new" (a
	// rotation is adding it) or "old" (a rotation is replacing it).
	State string `json:"state"`
	// InBundle tells whether proxies trust it.
	InBundle bool `json:"inBundle"`
	// Source is generated, root (supplied) or intermediate (an
	// intermediate was supplied under this root).
	Source string `json:"source"`
}

// CACertificate is the intermediate that signs workload certificates.
type CACertificate struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	NotAfter    time.Time `json:"notAfter"`
	// Root is the fingerprint of the root it chains to.
	Root string `json:"root"`
	// Renewable is false for a supplied intermediate.
	Renewable bool `json:"renewable"`
}

// CARotation is a root rotation in progress.
type CARotation struct {
	ID string `json:"id"`
	// Phase is adding (1), reissuing (2) or removing (3).
	Phase       string `json:"phase"`
	PhaseNumber int    `json:"phaseNumber"`
	Description string `json:"description"`
	// Manual rotations advance only on a step (trellis ca rotate --step).
	Manual bool `json:"manual"`
	// Aborted rotations run back to the root they started from.
	Aborted bool `json:"aborted"`
	// From and To are the fingerprints of the root being replaced and of
	// its replacement.
	From       string    `json:"from"`
	To         string    `json:"to"`
	StartedAt  time.Time `json:"startedAt"`
	PhaseSince time.Time `json:"phaseSince"`
	// Done of Total registered proxies completed the phase; Waiting
	// names the others and why.
	Total   int      `json:"total"`
	Done    int      `json:"done"`
	Waiting []string `json:"waiting,omitempty"`
	// Lagging are the control planes that do not use the latest state
	// yet; the phase waits for them too.
	Lagging []string `json:"lagging,omitempty"`
	// Complete tells whether the phase is done: an automatic rotation
	// advances, a manual one waits for a step.
	Complete bool `json:"complete"`
}

// CALastRotation is how the last rotation ended.
type CALastRotation struct {
	ID        string    `json:"id"`
	Outcome   string    `json:"outcome"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	StartedAt time.Time `json:"startedAt"`
	EndedAt   time.Time `json:"endedAt"`
}

// CAProxies counts the registered proxies by what they trust and hold.
type CAProxies struct {
	Registered int `json:"registered"`
	// Reported proxies are those a control plane reported on.
	Reported int `json:"reported"`
	// TakingBundle get the trust bundle over SDS (not proxyless gRPC);
	// BundleCurrent of them acknowledged exactly the current bundle.
	TakingBundle  int `json:"takingBundle"`
	BundleCurrent int `json:"bundleCurrent"`
	// OnActiveRoot hold a certificate of the active root, OnOtherRoot of
	// another, CertUnknown one the control planes cannot place.
	OnActiveRoot int `json:"onActiveRoot"`
	OnOtherRoot  int `json:"onOtherRoot"`
	CertUnknown  int `json:"certUnknown"`
}

// CAControlPlane is one control plane using the CA.
type CAControlPlane struct {
	ID         string `json:"id"`
	Generation uint64 `json:"generation"`
	Current    bool   `json:"current"`
}

// CAStatus returns the CA's status.
func (c *Client) CAStatus(ctx context.Context) (*CAStatus, error) {
	var out CAStatus
	if err := c.do(ctx, http.MethodGet, PathCA, nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rotate sends a rotation request and returns the CA's status after it.
func (c *Client) Rotate(ctx context.Context, req RotateRequest) (*CAStatus, error) {
	var out CAStatus
	if err := c.do(ctx, http.MethodPost, PathCARotate, nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CABundle is the trust bundle: the PEM roots proxies trust, the active
// root first.
type CABundle struct {
	PEM string `json:"pem"`
}

// CABundle returns the trust bundle.
func (c *Client) CABundle(ctx context.Context) (string, error) {
	var out CABundle
	if err := c.do(ctx, http.MethodGet, PathCABundle, nil, nil, &out); err != nil {
		return "", err
	}
	return out.PEM, nil
}
