package ca

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// LoadSupplied reads a CA an operator supplies (trellis control --ca-cert,
// --ca-key): certFile holds either a self-signed root, or an intermediate
// followed by its chain up to a root (root last); keyFile holds the key of
// the first certificate. It checks everything the CA will rely on and
// returns an Authority of SourceRoot (the CA issues its own intermediate
// under the root) or SourceIntermediate (the CA signs with it as is).
//
// Each problem is an error naming the file and the reason: the key does
// not match, a key that is not ECDSA P-256, a certificate that is not a CA
// (CA:TRUE, keyCertSign), is expired or not yet valid, a chain that does
// not verify, a root with pathlen 0 (it cannot sign an intermediate), a
// trust domain other than trustDomain in a URI SAN, or name constraints or
// extended key usages that would make the workload certificates issued
// under it fail verification.
func LoadSupplied(certFile, keyFile, trustDomain string, now time.Time, logger *slog.Logger) (*Authority, error) {
	if trustDomain == "" {
		trustDomain = identity.DefaultTrustDomain
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	certs, err := readCertFile(certFile)
	if err != nil {
		return nil, err
	}
	warnKeyMode(logger, keyFile)
	keyBytes, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ca: CA key: %w", err)
	}
	key, err := parseKeyPEM(keyBytes)
	if err != nil {
		return nil, fmt.Errorf("ca: CA key %s: %w", keyFile, err)
	}
	first := certs[0]
	if !keyMatches(first, key) {
		return nil, fmt.Errorf("ca: CA key %s is not the key of the first certificate in %s (%s)", keyFile, certFile, first.Subject)
	}

	fail := func(format string, args ...any) error {
		return fmt.Errorf("ca: CA certificate %s: %s", certFile, fmt.Sprintf(format, args...))
	}
	name := func(i int) string {
		if len(certs) == 1 {
			return fmt.Sprintf("%q", certs[i].Subject)
		}
		return fmt.Sprintf("certificate %d (%q)", i+1, certs[i].Subject)
	}
	last := certs[len(certs)-1]
	switch {
	case len(certs) == 1 && !selfSigned(first):
		return nil, fail("%s is not self-signed: a root must be; for an intermediate, append its chain up to the root, root last", name(0))
	case len(certs) > 1 && selfSigned(first):
		return nil, fail("%s is a self-signed root but more certificates follow it: give a root alone, or an intermediate first and its chain up to the root", name(0))
	case len(certs) > 1 && !selfSigned(last):
		return nil, fail("the last certificate, %s, is not a self-signed root: the file must hold the intermediate first, then its chain up to the root, root last", name(len(certs)-1))
	}
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fail("%s is not a CA certificate (basic constraints CA:TRUE)", name(i))
		}
		if (i == 0 || c.KeyUsage != 0) && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fail("%s lacks the keyCertSign key usage", name(i))
		}
		if now.Before(c.NotBefore) {
			return nil, fail("%s is not valid before %s", name(i), c.NotBefore.Format(time.RFC3339))
		}
		if !now.Before(c.NotAfter) {
			return nil, fail("%s expired at %s", name(i), c.NotAfter.Format(time.RFC3339))
		}
		if len(c.URIs) > 0 {
			td, err := certTrustDomain(c)
			if err != nil {
				return nil, fail("%s: %v", name(i), err)
			}
			if td != trustDomain {
				return nil, fail("%s is for SPIFFE trust domain %q, and this mesh's is %q", name(i), td, trustDomain)
			}
		}
		if len(c.ExtKeyUsage) > 0 && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) &&
			(!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)) {
			return nil, fail("%s restricts extended key usage without both serverAuth and clientAuth, which workload certificates need", name(i))
		}
		if i+1 < len(certs) {
			if err := c.CheckSignatureFrom(certs[i+1]); err != nil {
				return nil, fail("%s is not signed by %s: %v", name(i), name(i+1), err)
			}
		}
	}

	var a *Authority
	if len(certs) == 1 {
		if first.MaxPathLen == 0 && first.MaxPathLenZero {
			return nil, fail("the root has pathlen 0, so it cannot sign the intermediate the CA issues under it; supply an intermediate (with its chain) instead")
		}
		a = &Authority{Source: SourceRoot, Root: first, RootKey: key}
	} else {
		a = &Authority{Source: SourceIntermediate, Root: last, Chain: certs[1 : len(certs)-1], Signer: first, SignerKey: key}
	}
	if err := trialVerify(a, trustDomain, now); err != nil {
		return nil, fail("%v", err)
	}
	return a, nil
}

// readCertFile reads the PEM certificates of a supplied CA file.
func readCertFile(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: CA certificate: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			hint := ""
			if strings.Contains(block.Type, "PRIVATE KEY") {
				hint = " (the key goes in its own file, --ca-key)"
			}
			return nil, fmt.Errorf("ca: CA certificate %s holds a %q PEM block; want only CERTIFICATE blocks%s", path, block.Type, hint)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: CA certificate %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(b)) != 0 && len(certs) > 0 {
		return nil, fmt.Errorf("ca: CA certificate %s: data after certificate %d that is not PEM", path, len(certs))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("ca: CA certificate %s holds no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// selfSigned reports whether c is signed by its own key, whatever its
// constraints (checked apart, for clearer errors).
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// trialVerify issues a throwaway workload certificate the way the CA
// will (under a throwaway intermediate for a root) and verifies it as a
// proxy does, for both server and client use: name constraints, path
// lengths and extended key usages of the supplied chain all apply.
func trialVerify(a *Authority, td string, now time.Time) error {
	scratch := &CA{td: td, log: slog.New(slog.DiscardHandler)}
	signer, signerKey, chain := a.Signer, a.SignerKey, a.Chain
	if signer == nil {
		t, err := scratch.issueIntermediate(a, now)
		if err != nil {
			return err
		}
		signer, signerKey = t.Signer, t.SignerKey
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	id := identity.ID{TrustDomain: td, Namespace: "trellis-system", ServiceAccount: "supplied-ca-check"}
	notAfter := now.Add(time.Minute)
	if signer.NotAfter.Before(notAfter) {
		notAfter = signer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, URIs: []*url.URL{id.URL()}, NotBefore: now.Add(-time.Minute), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		return fmt.Errorf("cannot sign a workload certificate with it: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	inter.AddCert(signer)
	for _, c := range chain {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Root)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		var invalid x509.CertificateInvalidError
		switch {
		case err == nil:
		case errors.As(err, &invalid) && invalid.Reason == x509.CANotAuthorizedForThisName:
			return fmt.Errorf("its name constraints exclude SPIFFE IDs of trust domain %q (%v)", td, err)
		default:
			return fmt.Errorf("workload certificates issued under it would not verify: %v", err)
		}
	}
	return nil
}
