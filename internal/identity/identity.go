// Package identity names workloads the SPIFFE way:
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
//
// Both binaries use it: the control plane to issue and check identities, the
// proxy to verify its peers. It has no dependencies beyond the standard
// library.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain used when none is configured.
const DefaultTrustDomain = "cluster.local"

// ControlPlaneNamespace and ControlPlaneServiceAccount name the identity the
// control plane serves xDS and the CA with.
const (
	ControlPlaneNamespace      = "trellis-system"
	ControlPlaneServiceAccount = "trellis-control"
)

// ID is a workload identity.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// ControlPlane returns the control plane's identity in trustDomain.
func ControlPlane(trustDomain string) ID {
	return ID{TrustDomain: trustDomain, Namespace: ControlPlaneNamespace, ServiceAccount: ControlPlaneServiceAccount}
}

// String returns the SPIFFE ID, spiffe://td/ns/N/sa/S.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the SPIFFE ID as a URL, the form certificates carry.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate reports whether every part of the identity is usable in a SPIFFE
// ID: a lowercase trust domain and path segments of SPIFFE's allowed
// characters.
func (id ID) Validate() error {
	if err := validTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := validSegment("namespace", id.Namespace); err != nil {
		return err
	}
	return validSegment("service account", id.ServiceAccount)
}

// Parse parses a SPIFFE ID of the form spiffe://td/ns/N/sa/S.
func Parse(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return ID{}, fmt.Errorf("identity: %q is not a spiffe:// ID", s)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, fmt.Errorf("identity: %q has no path", s)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return ID{}, fmt.Errorf("identity: %q is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	id := ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("identity: %q: %w", s, err)
	}
	return id, nil
}

// FromCertificate returns the identity in a certificate's single URI SAN.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if len(cert.URIs) != 1 {
		return ID{}, fmt.Errorf("identity: certificate has %d URI SANs, want exactly 1", len(cert.URIs))
	}
	return Parse(cert.URIs[0].String())
}

func validTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q is not allowed (lowercase letters, digits, '.', '-', '_')", td, c)
		}
	}
	return nil
}

func validSegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%s %q is not allowed", what, s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%s %q: character %q is not allowed (letters, digits, '.', '-', '_')", what, s, c)
		}
	}
	return nil
}
