package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// maxCSRSize bounds the input of ParseCSR. A P-256 CSR is about 400 bytes
// in DER and 600 in PEM.
const maxCSRSize = 16 << 10

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// ParseCSR parses a PKCS#10 certificate signing request, PEM ("CERTIFICATE
// REQUEST") or DER. It checks only the encoding; Sign checks the content and
// the signature. Errors wrap ErrInvalidRequest.
func ParseCSR(pemOrDER []byte) (*x509.CertificateRequest, error) {
	if len(pemOrDER) > maxCSRSize {
		return nil, fmt.Errorf("%w: CSR is %d bytes, more than the %d allowed", ErrInvalidRequest, len(pemOrDER), maxCSRSize)
	}
	der := pemOrDER
	if trimmed := bytes.TrimSpace(pemOrDER); bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		block, rest := pem.Decode(trimmed)
		if block == nil {
			return nil, fmt.Errorf("%w: malformed PEM", ErrInvalidRequest)
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrInvalidRequest, block.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: data after the PEM block; send exactly one CSR", ErrInvalidRequest)
		}
		der = block.Bytes
	}
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: CSR is empty", ErrInvalidRequest)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not a PKCS#10 CSR in PEM or DER: %w", ErrInvalidRequest, err)
	}
	return csr, nil
}

// CheckCSR checks a CSR against the rules of Sign and returns the identity it
// asks for: a valid signature by an ECDSA P-256 key, and exactly one subject
// alternative name, a URI that is a workload SPIFFE ID in trustDomain.
// Everything else in the CSR (subject, other extensions) is ignored, never
// copied into a certificate. Errors wrap ErrInvalidRequest and say what to
// change.
func CheckCSR(csr *x509.CertificateRequest, trustDomain string) (identity.ID, error) {
	if csr == nil {
		return identity.ID{}, fmt.Errorf("%w: no CSR", ErrInvalidRequest)
	}
	if err := checkPublicKey(csr.PublicKey, csr.PublicKeyAlgorithm); err != nil {
		return identity.ID{}, err
	}
	switch csr.SignatureAlgorithm {
	case x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
	default:
		return identity.ID{}, fmt.Errorf("%w: CSR signature algorithm is %v; sign it with ECDSA-SHA256", ErrInvalidRequest, csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return identity.ID{}, fmt.Errorf("%w: CSR signature does not verify (%v); sign it with the key it carries", ErrInvalidRequest, err)
	}

	const want = "the only SAN must be the workload's SPIFFE ID as a URI"
	switch {
	case len(csr.DNSNames) > 0:
		return identity.ID{}, fmt.Errorf("%w: DNS SANs %q are not allowed; %s", ErrInvalidRequest, csr.DNSNames, want)
	case len(csr.IPAddresses) > 0:
		return identity.ID{}, fmt.Errorf("%w: IP SANs %v are not allowed; %s", ErrInvalidRequest, csr.IPAddresses, want)
	case len(csr.EmailAddresses) > 0:
		return identity.ID{}, fmt.Errorf("%w: email SANs %q are not allowed; %s", ErrInvalidRequest, csr.EmailAddresses, want)
	case len(csr.URIs) == 0:
		return identity.ID{}, fmt.Errorf("%w: no URI SAN; add the workload's SPIFFE ID (spiffe://%s/ns/<namespace>/sa/<service-account>)", ErrInvalidRequest, trustDomain)
	case len(csr.URIs) > 1:
		return identity.ID{}, fmt.Errorf("%w: %d URI SANs %q; %s", ErrInvalidRequest, len(csr.URIs), urlStrings(csr.URIs), want)
	}
	if err := checkRawSANs(csr); err != nil {
		return identity.ID{}, err
	}
	id, err := identity.Parse(csr.URIs[0].String())
	if err != nil {
		return identity.ID{}, fmt.Errorf("%w: URI SAN: %w", ErrInvalidRequest, err)
	}
	if id.TrustDomain != trustDomain {
		return identity.ID{}, fmt.Errorf("%w: identity %s is in trust domain %q; this CA issues only in %q", ErrInvalidRequest, id, id.TrustDomain, trustDomain)
	}
	return id, nil
}

func checkPublicKey(pub crypto.PublicKey, alg x509.PublicKeyAlgorithm) error {
	const want = "generate an ECDSA P-256 key"
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: key is ECDSA %s; %s", ErrInvalidRequest, k.Curve.Params().Name, want)
		}
		return nil
	case *rsa.PublicKey:
		return fmt.Errorf("%w: key is RSA %d-bit; %s", ErrInvalidRequest, k.Size()*8, want)
	case ed25519.PublicKey:
		return fmt.Errorf("%w: key is Ed25519; %s", ErrInvalidRequest, want)
	default:
		return fmt.Errorf("%w: key algorithm %v is not supported; %s", ErrInvalidRequest, alg, want)
	}
}

// checkRawSANs rejects what crypto/x509 does not surface: SAN types other
// than DNS, IP, email and URI (otherName, directoryName, ...) and repeated
// SAN extensions. Only the single URI may remain.
func checkRawSANs(csr *x509.CertificateRequest) error {
	n := 0
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		if n++; n > 1 {
			return fmt.Errorf("%w: more than one subjectAltName extension; send one holding only the SPIFFE ID", ErrInvalidRequest)
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			return fmt.Errorf("%w: malformed subjectAltName extension", ErrInvalidRequest)
		}
		for _, name := range names {
			if name.Class != asn1.ClassContextSpecific || name.Tag != 6 {
				return fmt.Errorf("%w: SAN of type %s is not allowed; the only SAN must be the workload's SPIFFE ID as a URI", ErrInvalidRequest, sanType(name))
			}
		}
		if len(names) != 1 {
			return fmt.Errorf("%w: %d SANs; the only SAN must be the workload's SPIFFE ID as a URI", ErrInvalidRequest, len(names))
		}
	}
	return nil
}

func sanType(v asn1.RawValue) string {
	if v.Class == asn1.ClassContextSpecific {
		names := [...]string{"otherName", "rfc822Name", "dNSName", "x400Address", "directoryName", "ediPartyName", "uniformResourceIdentifier", "iPAddress", "registeredID"}
		if v.Tag >= 0 && v.Tag < len(names) {
			return names[v.Tag]
		}
	}
	return fmt.Sprintf("[class %d tag %d]", v.Class, v.Tag)
}

func urlStrings(us []*url.URL) []string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.String()
	}
	return s
}

// Sign issues a workload X509-SVID for the key in csr, after checking csr
// with CheckCSR and that it asks for exactly id. ttl zero means the CA's
// WorkloadTTL; a longer ttl is cut to it; less than MinWorkloadTTL is an
// error. The certificate never outlives the intermediate.
//
// It returns the chain leaf first, then the intermediate (and, for a
// supplied intermediate, the certificates up to the root, without it).
// Errors caused by the request wrap ErrInvalidRequest. Sign does not log;
// Server logs each issuance with the requesting node.
func (c *CA) Sign(csr *x509.CertificateRequest, id identity.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	asked, err := CheckCSR(csr, c.td)
	if err != nil {
		return nil, err
	}
	if asked != id {
		return nil, fmt.Errorf("%w: CSR asks for %s, not %s", ErrInvalidRequest, asked, id)
	}
	return c.signChecked(csr, id, ttl)
}

// signChecked is Sign for a csr that CheckCSR approved for id: it does not
// verify the CSR's signature again (an ECDSA verification costs about two
// signatures).
func (c *CA) signChecked(csr *x509.CertificateRequest, id identity.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	ttl, err := c.lifetime(ttl)
	if err != nil {
		return nil, err
	}
	return c.issue(csr.PublicKey, id, nil, nil, ttl)
}

// lifetime applies the rules of Sign to a requested lifetime.
func (c *CA) lifetime(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl == 0:
		return c.ttl, nil
	case ttl < MinWorkloadTTL:
		return 0, fmt.Errorf("%w: requested lifetime %v is shorter than the minimum %v", ErrInvalidRequest, ttl, MinWorkloadTTL)
	case ttl > c.ttl:
		return c.ttl, nil
	}
	return ttl, nil
}

// ServerCertificate issues a certificate for the control plane's own TLS
// listener, with a key generated here: id as its SPIFFE ID (proxies check
// that), plus dnsNames and ips for clients that verify by name. It lives
// WorkloadTTL; ServerCertificateFunc renews it.
func (c *CA) ServerCertificate(id identity.ID, dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	if err := id.Validate(); err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: identity %s: %w", ErrInvalidRequest, id, err)
	}
	if id.TrustDomain != c.td {
		return tls.Certificate{}, fmt.Errorf("%w: identity %s is not in trust domain %q", ErrInvalidRequest, id, c.td)
	}
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := c.issue(key.Public(), id, dnsNames, ips, c.ttl)
	if err != nil {
		return tls.Certificate{}, err
	}
	c.log.Info("issued server certificate",
		logKeyIdentity, id.String(), logKeySerial, serialHex(chain[0]), logKeyExpiry, chain[0].NotAfter)
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		raw[i] = c.Raw
	}
	return tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: chain[0]}, nil
}

// ServerCertificateFunc returns a tls.Config.GetCertificate function that
// serves a ServerCertificate and replaces it at half its life, or as soon
// as another intermediate signs (a root rotation). If a renewal fails
// while the current certificate is still valid, it keeps serving the
// current one and logs the error.
func (c *CA) ServerCertificateFunc(id identity.ID, dnsNames []string, ips []net.IP) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	var (
		mu      sync.Mutex
		cur     *tls.Certificate
		renewAt time.Time
	)
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		now := c.now()
		if cur != nil && now.Before(renewAt) && c.signedByActive(cur) {
			return cur, nil
		}
		cert, err := c.ServerCertificate(id, dnsNames, ips)
		if err != nil {
			if cur != nil && now.Before(cur.Leaf.NotAfter) {
				c.log.Error("could not renew the server certificate; keeping the current one",
					logKeyIdentity, id.String(), logKeyExpiry, cur.Leaf.NotAfter, logKeyError, err)
				return cur, nil
			}
			return nil, err
		}
		cur = &cert
		// Half of the life it has from now: NotBefore is backdated.
		renewAt = now.Add(cert.Leaf.NotAfter.Sub(now) / 2)
		return cur, nil
	}
}

// signedByActive reports whether cert was issued by the active
// intermediate.
func (c *CA) signedByActive(cert *tls.Certificate) bool {
	a := c.view().state.Active
	return len(cert.Certificate) > 1 && a.Signer != nil && bytes.Equal(cert.Certificate[1], a.Signer.Raw)
}

// issue signs a leaf SVID for pub with the active intermediate and returns
// the leaf followed by the intermediate's chain up to (not including) the
// root.
func (c *CA) issue(pub crypto.PublicKey, id identity.ID, dnsNames []string, ips []net.IP, ttl time.Duration) ([]*x509.Certificate, error) {
	now := c.now()
	a, err := c.issuer(now)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-ClockSkew)
	notAfter := now.Add(ttl)
	if end := a.notAfter(); notAfter.After(end) {
		notAfter = end
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The subject stays empty: the identity is the URI SAN.
		// crypto/x509 then marks the SAN extension critical, as the
		// SPIFFE standard requires of a certificate without a subject.
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Signer, pub, a.SignerKey)
	if err != nil {
		return nil, fmt.Errorf("ca: sign certificate for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse issued certificate: %w", err)
	}
	return append([]*x509.Certificate{leaf}, a.signerChain()...), nil
}
