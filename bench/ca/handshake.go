package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"time"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/tlshandshake"
)

// handshakeServerName is a DNS name the benchmark's certificates carry
// besides the SPIFFE ID, only so that bare Go TLS can verify the server by
// name.
const handshakeServerName = "backend.bench.svc"

// curves are the key exchanges measured, each alone on both sides.
var curves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}

// handshakeResult is, for one key exchange, a new connection's time with
// bare Go TLS and with the mesh configs.
type handshakeResult struct {
	Curve string `json:"curve"`
	// Microseconds per connection (TCP, TLS 1.3 handshake verified both
	// ways, one byte from the server), the median round.
	BareMicros    float64 `json:"bareMicros"`
	TrellisMicros float64 `json:"trellisMicros"`
	// Ratio is trellis/bare.
	Ratio float64 `json:"ratio"`
}

// peers are two proxies' identities from one CA, as Managers and as bare
// certificates with the same keys.
type peers struct {
	pool           *x509.CertPool
	client, server *secrets.Manager
}

func newPeers(dir string) (*peers, error) {
	c, err := ca.Open(ca.Options{Dir: filepath.Join(dir, "handshake-ca")})
	if err != nil {
		return nil, err
	}
	p := &peers{pool: c.RootPool()}
	for _, side := range []struct {
		sa string
		m  **secrets.Manager
	}{{"client", &p.client}, {"backend", &p.server}} {
		id := identity.ID{TrustDomain: c.TrustDomain(), Namespace: namespace, ServiceAccount: side.sa}
		m := secrets.New(id, c.Roots(), nil)
		if err := m.Renew(context.Background(), withServerName(c)); err != nil {
			return nil, err
		}
		*side.m = m
	}
	return p, nil
}

// withServerName signs a CSR like the CA, with the intermediate, adding
// handshakeServerName.
func withServerName(c *ca.CA) secrets.Issuer {
	return secrets.IssuerFunc(func(_ context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error) {
		csr, err := ca.ParseCSR(csrPEM)
		if err != nil {
			return nil, nil, err
		}
		if _, err := ca.CheckCSR(csr, c.TrustDomain()); err != nil {
			return nil, nil, err
		}
		a := c.State().Active
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, nil, err
		}
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber: serial, URIs: csr.URIs, DNSNames: []string{handshakeServerName},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Signer, csr.PublicKey, a.SignerKey)
		if err != nil {
			return nil, nil, err
		}
		return [][]byte{der, a.Signer.Raw}, c.Roots(), nil
	})
}

// configs returns the client and server configs of a kind, "bare" or
// "trellis", with curve as the only key exchange.
func (p *peers) configs(kind string, curve tls.CurveID) (client, server *tls.Config) {
	if kind == "bare" {
		server = &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*p.server.Certificate()},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
		}
		client = &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*p.client.Certificate()},
			RootCAs: p.pool, ServerName: handshakeServerName,
		}
	} else {
		server = p.server.ServerConfig(secrets.AllowIDs("", p.client.ID()))
		client = p.client.ClientConfig(handshakeServerName, secrets.AllowIDs("", p.server.ID()))
	}
	client.CurvePreferences = []tls.CurveID{curve}
	server.CurvePreferences = []tls.CurveID{curve}
	return client, server
}

// handshakes measures rounds × (each curve × bare, trellis) × n new
// connections and returns, per curve, the median round's figures.
func handshakes(dir string, rounds, n int) ([]handshakeResult, error) {
	p, err := newPeers(dir)
	if err != nil {
		return nil, err
	}
	kinds := []string{"bare", "trellis"}
	type server struct {
		ln     net.Listener
		client *tls.Config
	}
	servers := map[string]server{}
	for _, curve := range curves {
		for _, kind := range kinds {
			client, conf := p.configs(kind, curve)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			defer ln.Close()
			go tlshandshake.Serve(ln, conf)
			servers[curve.String()+kind] = server{ln, client}
		}
	}
	times := map[string][]float64{}
	for range rounds {
		for _, curve := range curves {
			for _, kind := range kinds {
				s := servers[curve.String()+kind]
				start := time.Now()
				for range n {
					if err := tlshandshake.Dial(s.ln.Addr().String(), s.client, curve); err != nil {
						return nil, errors.New(kind + " " + curve.String() + ": " + err.Error())
					}
				}
				times[curve.String()+kind] = append(times[curve.String()+kind], time.Since(start).Seconds()/float64(n)*1e6)
			}
		}
	}
	var out []handshakeResult
	for _, curve := range curves {
		r := handshakeResult{
			Curve:         curve.String(),
			BareMicros:    median(times[curve.String()+"bare"]),
			TrellisMicros: median(times[curve.String()+"trellis"]),
		}
		r.Ratio = r.TrellisMicros / r.BareMicros
		out = append(out, r)
	}
	return out, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
