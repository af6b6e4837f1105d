package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Source says where an Authority's keys come from.
type Source string

// Sources of an Authority.
const (
	// SourceGenerated: Trellis generated the root and issues the
	// intermediate.
	SourceGenerated Source = "generated"
	// SourceRoot: an operator supplied the root (--ca-cert, --ca-key);
	// Trellis issues the intermediate under it.
	SourceRoot Source = "root"
	// SourceIntermediate: an operator supplied an intermediate with its
	// chain to a root; Trellis signs with it as is and holds no root key.
	SourceIntermediate Source = "intermediate"
)

// Authority is one root and the intermediate that signs workload
// certificates under it. An Authority is never modified once built:
// changes make a new one.
type Authority struct {
	Source Source
	Root   *x509.Certificate
	// RootKey is nil when the root was not supplied with its key
	// (SourceIntermediate): the intermediate cannot be renewed then.
	RootKey *ecdsa.PrivateKey
	// Chain holds the certificates between Signer and Root, the signer's
	// issuer first; empty unless a supplied intermediate came with them.
	Chain []*x509.Certificate
	// Signer is the intermediate that signs workload certificates. It may
	// be nil in a State read from an old CA directory that holds only a
	// root; Open issues one then.
	Signer    *x509.Certificate
	SignerKey *ecdsa.PrivateKey
}

// renewable reports whether a new intermediate can be issued from the
// root.
func (a *Authority) renewable() bool { return a.RootKey != nil }

// signerChain is the signer and the certificates up to (not including) the
// root: what follows a leaf in the chains the CA issues.
func (a *Authority) signerChain() []*x509.Certificate {
	return append([]*x509.Certificate{a.Signer}, a.Chain...)
}

// notAfter is when the first of the signer's chain and the root expires:
// no certificate issued with it may live longer.
func (a *Authority) notAfter() time.Time {
	t := a.Root.NotAfter
	for _, c := range a.signerChain() {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// Fingerprint is the hex SHA-256 of a certificate's DER encoding: how roots
// are named in the state, the status and the store.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ShortFingerprint is the first 16 hex digits of a fingerprint, for people.
func ShortFingerprint(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// State is everything a CA keeps, as stored: the active authority, the
// roots a rotation adds or retires, and the rotation itself.
//
// The trust bundle is the active root, then Next's root while a rotation
// adds it (phase 1), or Previous's root while workload certificates are
// reissued (phase 2). See rotation.go.
type State struct {
	TrustDomain string
	// Generation counts the changes to the state; control planes sharing a
	// CA compare it to know whether they follow the latest.
	Generation uint64
	Active     *Authority
	// Next is the authority a rotation moves to, before it becomes active.
	Next *Authority
	// Previous is the authority a rotation moves away from, once the new
	// one is active (phases 2 and 3); its root is in the bundle in phase 2.
	Previous *Authority
	Rotation *Rotation
	// Last is the outcome of the last rotation that ended.
	Last *RotationRecord
	// Retired are the fingerprints of roots that rotations removed, oldest
	// first (at most maxRetired).
	Retired []string
}

const maxRetired = 16

// clone returns a shallow copy: the authorities are shared, as they are
// never modified.
func (s *State) clone() *State {
	n := *s
	n.Retired = slices.Clone(s.Retired)
	if s.Rotation != nil {
		r := *s.Rotation
		n.Rotation = &r
	}
	return &n
}

// Bundle returns the trust bundle: the active root first, then the other
// root a rotation keeps in it, without duplicates.
func (s *State) Bundle() []*x509.Certificate {
	out := []*x509.Certificate{s.Active.Root}
	add := func(a *Authority) {
		if a != nil && !slices.ContainsFunc(out, a.Root.Equal) {
			out = append(out, a.Root)
		}
	}
	add(s.Next)
	if s.Rotation != nil && s.Rotation.Phase == PhaseReissuing {
		add(s.Previous)
	}
	return out
}

// stateVersion is the version of the encoding EncodeState writes.
const stateVersion = 1

type stateJSON struct {
	Version     int             `json:"version"`
	TrustDomain string          `json:"trustDomain"`
	Generation  uint64          `json:"generation"`
	Active      *authorityJSON  `json:"active"`
	Next        *authorityJSON  `json:"next,omitempty"`
	Previous    *authorityJSON  `json:"previous,omitempty"`
	Rotation    *Rotation       `json:"rotation,omitempty"`
	Last        *RotationRecord `json:"last,omitempty"`
	Retired     []string        `json:"retired,omitempty"`
}

// authorityJSON holds certificates and keys as PEM (keys PKCS#8).
type authorityJSON struct {
	Source    Source `json:"source"`
	Root      string `json:"root"`
	RootKey   string `json:"rootKey,omitempty"`
	Chain     string `json:"chain,omitempty"`
	Signer    string `json:"signer,omitempty"`
	SignerKey string `json:"signerKey,omitempty"`
}

// EncodeState encodes a state for a Storage. The encoding holds private
// keys in the clear: the storage protects it (a 0600 file in a 0700
// directory, or sealed in the store).
func EncodeState(s *State) ([]byte, error) {
	if s == nil || s.Active == nil {
		return nil, errors.New("ca: encode: no active authority")
	}
	j := stateJSON{
		Version: stateVersion, TrustDomain: s.TrustDomain, Generation: s.Generation,
		Rotation: s.Rotation, Last: s.Last, Retired: s.Retired,
	}
	var err error
	if j.Active, err = encodeAuthority(s.Active); err != nil {
		return nil, err
	}
	if s.Next != nil {
		if j.Next, err = encodeAuthority(s.Next); err != nil {
			return nil, err
		}
	}
	if s.Previous != nil {
		if j.Previous, err = encodeAuthority(s.Previous); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("ca: encode state: %w", err)
	}
	return append(b, '\n'), nil
}

func encodeAuthority(a *Authority) (*authorityJSON, error) {
	j := &authorityJSON{Source: a.Source, Root: string(certPEM(a.Root))}
	var err error
	if a.RootKey != nil {
		if j.RootKey, err = keyPEM(a.RootKey); err != nil {
			return nil, err
		}
	}
	for _, c := range a.Chain {
		j.Chain += string(certPEM(c))
	}
	if a.Signer != nil {
		j.Signer = string(certPEM(a.Signer))
		if j.SignerKey, err = keyPEM(a.SignerKey); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// DecodeState decodes what EncodeState wrote and checks that each
// authority holds together: keys match their certificates, the signer's
// chain leads to a self-signed root, every certificate is a CA, and those
// that name a trust domain name the state's.
func DecodeState(b []byte) (*State, error) {
	var j stateJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("malformed CA state: %w", err)
	}
	if j.Version != stateVersion {
		return nil, fmt.Errorf("CA state version %d is not supported (want %d); was it written by a newer Trellis?", j.Version, stateVersion)
	}
	if j.Active == nil {
		return nil, errors.New("CA state has no active authority")
	}
	s := &State{TrustDomain: j.TrustDomain, Generation: j.Generation, Rotation: j.Rotation, Last: j.Last, Retired: j.Retired}
	var err error
	if s.Active, err = decodeAuthority(j.Active, s.TrustDomain, "active"); err != nil {
		return nil, err
	}
	if j.Next != nil {
		if s.Next, err = decodeAuthority(j.Next, s.TrustDomain, "next"); err != nil {
			return nil, err
		}
	}
	if j.Previous != nil {
		if s.Previous, err = decodeAuthority(j.Previous, s.TrustDomain, "previous"); err != nil {
			return nil, err
		}
	}
	if err := s.Rotation.check(s); err != nil {
		return nil, err
	}
	return s, nil
}

func decodeAuthority(j *authorityJSON, td, role string) (*Authority, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("CA state: %s authority: %s", role, fmt.Sprintf(format, args...))
	}
	a := &Authority{Source: j.Source}
	switch j.Source {
	case SourceGenerated, SourceRoot, SourceIntermediate:
	default:
		return nil, fail("unknown source %q", j.Source)
	}
	var err error
	if a.Root, err = oneCertPEM(j.Root); err != nil {
		return nil, fail("root: %v", err)
	}
	if j.RootKey != "" {
		if a.RootKey, err = parseKeyPEM([]byte(j.RootKey)); err != nil {
			return nil, fail("root key: %v", err)
		}
	}
	if j.Chain != "" {
		if a.Chain, err = certsPEM([]byte(j.Chain)); err != nil {
			return nil, fail("chain: %v", err)
		}
	}
	if j.Signer != "" {
		if a.Signer, err = oneCertPEM(j.Signer); err != nil {
			return nil, fail("signer: %v", err)
		}
		if a.SignerKey, err = parseKeyPEM([]byte(j.SignerKey)); err != nil {
			return nil, fail("signer key: %v", err)
		}
	}
	if err := a.check(td); err != nil {
		return nil, fail("%v", err)
	}
	return a, nil
}

// check verifies what the CA relies on in an authority.
func (a *Authority) check(td string) error {
	if a.RootKey == nil && a.Source != SourceIntermediate {
		return errors.New("no root key")
	}
	if a.RootKey != nil && !keyMatches(a.Root, a.RootKey) {
		return errors.New("the root key does not belong to the root certificate")
	}
	if err := a.Root.CheckSignatureFrom(a.Root); err != nil {
		return fmt.Errorf("root %q is not self-signed: %w", a.Root.Subject, err)
	}
	if a.Signer == nil {
		if !a.renewable() {
			return errors.New("no intermediate")
		}
		return checkCA(a.Root, td, a.Source == SourceGenerated)
	}
	if !keyMatches(a.Signer, a.SignerKey) {
		return errors.New("the intermediate's key does not belong to its certificate")
	}
	chain := append(a.signerChain(), a.Root)
	for i, c := range chain {
		// Trellis's own certificates must name the trust domain; supplied
		// ones may name none.
		ours := a.Source == SourceGenerated || (a.Source == SourceRoot && c == a.Signer)
		if err := checkCA(c, td, ours); err != nil {
			return err
		}
		if i+1 < len(chain) {
			if err := c.CheckSignatureFrom(chain[i+1]); err != nil {
				return fmt.Errorf("%q is not signed by %q: %w", c.Subject, chain[i+1].Subject, err)
			}
		}
	}
	return nil
}

// checkCA checks that cert is a CA certificate with keyCertSign and, if it
// names a trust domain (or must), that it names td.
func checkCA(cert *x509.Certificate, td string, mustName bool) error {
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%q is not a CA certificate (needs CA=true and keyCertSign)", cert.Subject)
	}
	if len(cert.URIs) == 0 && !mustName {
		return nil
	}
	got, err := certTrustDomain(cert)
	if err != nil {
		return fmt.Errorf("%q: %w", cert.Subject, err)
	}
	if got != td {
		return fmt.Errorf("%q names trust domain %q, not %q", cert.Subject, got, td)
	}
	return nil
}

func keyMatches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && key != nil && pub.Equal(key.Public())
}

func keyPEM(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("ca: marshal key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// certsPEM parses one or more PEM certificates and nothing else.
func certsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(b)) != 0 {
		return nil, errors.New("data that is not PEM")
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

func oneCertPEM(s string) (*x509.Certificate, error) {
	certs, err := certsPEM([]byte(s))
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%d certificates, want one", len(certs))
	}
	return certs[0], nil
}
