package testcert

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// TestNew: the PEM pair loads as a TLS key pair, and the certificate
// verifies for its names against itself as root when it is a CA.
func TestNew(t *testing.T) {
	for _, o := range []Options{
		{Hosts: []string{"a.example.com", "b.example.com"}, Serial: 7, CA: true},
		{IPs: []net.IP{net.ParseIP("127.0.0.1")}, CA: true, RSA: true},
	} {
		p := Make(t, o)
		if _, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if _, isRSA := p.Cert.PrivateKey.(*rsa.PrivateKey); isRSA != o.RSA {
			t.Errorf("%+v: key %T", o, p.Cert.PrivateKey)
		}
		roots := x509.NewCertPool()
		roots.AddCert(p.Leaf)
		name := "127.0.0.1"
		if len(o.Hosts) > 0 {
			name = o.Hosts[1]
		}
		if _, err := p.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
		if o.Serial != 0 && p.Leaf.SerialNumber.Int64() != o.Serial {
			t.Errorf("serial %v, want %d", p.Leaf.SerialNumber, o.Serial)
		}
	}
}
