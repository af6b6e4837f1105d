// Package testcert makes self-signed certificates for tests: a server's
// certificate and private key, PEM-encoded and as a tls.Certificate. It
// is imported by tests only; the mesh's own certificates come from
// internal/ca.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// Options describe a certificate. The zero value is an ECDSA P-256
// certificate with serial 1 and no names, valid from an hour ago for a
// day.
type Options struct {
	// Hosts are its DNS names; the first is also its common name.
	Hosts []string
	IPs   []net.IP
	// CommonName overrides the first host as the subject's common name.
	CommonName string
	Serial     int64
	// Valid is how long it is valid after now; zero means a day.
	Valid time.Duration
	// CA lets it sign certificates too, as a self-signed root that is
	// its own server's trust anchor.
	CA bool
	// RSA makes a 2048-bit RSA key instead of ECDSA P-256.
	RSA bool
	// Key, when set, is the key to certify instead of a new one.
	Key crypto.Signer
}

// Pair is a certificate and its key.
type Pair struct {
	CertPEM, KeyPEM []byte // CERTIFICATE and PKCS #8 PRIVATE KEY blocks
	Cert            tls.Certificate
	Leaf            *x509.Certificate
}

// New makes a self-signed certificate.
func New(o Options) (Pair, error) {
	key := o.Key
	if key == nil {
		var err error
		if o.RSA {
			key, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			return Pair{}, err
		}
	}
	serial, valid, cn := o.Serial, o.Valid, o.CommonName
	if serial == 0 {
		serial = 1
	}
	if valid == 0 {
		valid = 24 * time.Hour
	}
	if cn == "" && len(o.Hosts) > 0 {
		cn = o.Hosts[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		DNSNames: o.Hosts, IPAddresses: o.IPs,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(valid),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if o.RSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if o.CA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return Pair{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		Cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Leaf:    leaf,
	}, nil
}

// Make is New for a test, which it fails on error.
func Make(t testing.TB, o Options) Pair {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatalf("testcert: %v", err)
	}
	return p
}
