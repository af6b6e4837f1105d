package secrets

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"trellis.dev/trellis/internal/identity"
)

// Authorizer decides whether a verified peer identity may connect.
type Authorizer func(identity.ID) error

// MeshKeyExchanges are the TLS 1.3 key exchanges of mesh mTLS, in order
// of preference: X25519MLKEM768, the hybrid of X25519 and the
// post-quantum ML-KEM-768, so that traffic recorded today cannot be
// decrypted by a future quantum computer (harvest now, decrypt later); and
// X25519 alone for a peer without it. Go's client sends one X25519 key for
// both, so the fallback costs nothing extra. They are set explicitly, not
// left to Go's defaults, so that a Go release does not change what the mesh
// negotiates. docs/security.md has the measured cost.
func MeshKeyExchanges() []tls.CurveID {
	return []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
}

// ErrNoCertificate means the proxy has no certificate yet.
var ErrNoCertificate = errors.New("secrets: no certificate issued yet")

func (m *Manager) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.Certificate(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

func (m *Manager) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := m.Certificate(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

func (m *Manager) verifier(allow Authorizer) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		id, err := m.Verify(raw)
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		if allow != nil {
			if err := allow(id); err != nil {
				return err
			}
		}
		return nil
	}
}

// ServerConfig is the server side of mesh mTLS: TLS 1.3, a client
// certificate required and verified against the trust bundle, the peer's
// identity approved by allow, the key exchange one of MeshKeyExchanges.
func (m *Manager) ServerConfig(allow Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		MaxVersion:            tls.VersionTLS13,
		CurvePreferences:      MeshKeyExchanges(),
		GetCertificate:        m.getCertificate,
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: m.verifier(allow),
	}
}

// ClientConfig is the client side of mesh mTLS toward a peer that must
// pass allow, sending sni, with the key exchanges of MeshKeyExchanges.
func (m *Manager) ClientConfig(sni string, allow Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		MaxVersion:           tls.VersionTLS13,
		CurvePreferences:     MeshKeyExchanges(),
		ServerName:           sni,
		GetClientCertificate: m.getClientCertificate,
		// Go's hostname verification does not apply to SPIFFE IDs; the
		// chain and the identity are verified below instead.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: m.verifier(allow),
	}
}

// PeerID returns the verified identity of the peer of a completed
// handshake.
func PeerID(cs tls.ConnectionState) (identity.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return identity.ID{}, errors.New("no peer certificate")
	}
	return identity.FromCertificate(cs.PeerCertificates[0])
}

// AllowIDs authorizes exactly the given identities; with none, any identity
// of trustDomain.
func AllowIDs(trustDomain string, ids ...identity.ID) Authorizer {
	return func(id identity.ID) error {
		if len(ids) == 0 {
			if id.TrustDomain != trustDomain {
				return fmt.Errorf("peer %s is not in trust domain %q", id, trustDomain)
			}
			return nil
		}
		for _, ok := range ids {
			if ok == id {
				return nil
			}
		}
		return fmt.Errorf("peer %s is not an expected identity", id)
	}
}
