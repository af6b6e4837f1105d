package secrets

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/tlshandshake"
)

// handshakePair is two proxies' identities from one real CA, each usable
// as bare Go TLS (tls.Certificate plus a pool of the roots) and as a
// Manager. The certificates carry a DNS name besides the SPIFFE ID only so
// that bare Go TLS can verify the server by name.
type handshakePair struct {
	pool                   *x509.CertPool
	client, server         *Manager
	clientCert, serverCert tls.Certificate
}

const handshakeServerName = "backend.bench.svc"

func newHandshakePair(tb testing.TB) *handshakePair {
	tb.Helper()
	c, err := ca.Open(ca.Options{Dir: filepath.Join(tb.TempDir(), "ca"), TrustDomain: "example.org"})
	if err != nil {
		tb.Fatal(err)
	}
	p := &handshakePair{pool: c.RootPool()}
	for _, side := range []struct {
		sa   string
		cert *tls.Certificate
		m    **Manager
	}{{"client", &p.clientCert, &p.client}, {"backend", &p.serverCert, &p.server}} {
		id := identity.ID{TrustDomain: "example.org", Namespace: "bench", ServiceAccount: side.sa}
		cert, err := c.ServerCertificate(id, []string{handshakeServerName}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		m := New(id, c.Roots(), nil)
		if err := m.install(cert.PrivateKey.(*ecdsa.PrivateKey), cert.Certificate); err != nil {
			tb.Fatal(err)
		}
		*side.cert, *side.m = cert, m
	}
	return p
}

// configs returns the client and server configs of a kind: "bare" (Go's
// own verification against the pool, client certificate required) or
// "trellis" (the proxies' ServerConfig and ClientConfig, SPIFFE ID
// authorization), with curve as the only key exchange.
func (p *handshakePair) configs(kind string, curve tls.CurveID) (client, server *tls.Config) {
	switch kind {
	case "bare":
		server = &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
		}
		client = &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.clientCert},
			RootCAs: p.pool, ServerName: handshakeServerName,
		}
	default:
		server = p.server.ServerConfig(AllowIDs("", p.client.ID()))
		client = p.client.ClientConfig(handshakeServerName, AllowIDs("", p.server.ID()))
	}
	client.CurvePreferences = []tls.CurveID{curve}
	server.CurvePreferences = []tls.CurveID{curve}
	return client, server
}

// BenchmarkHandshake measures a new mTLS connection over loopback, one at
// a time: bare Go TLS 1.3 against the proxies' mesh configs, with the same
// keys and certificates, for each key exchange. The ratio trellis/bare of
// one key exchange is the cost of Trellis's own verification.
//
//	go test -run '^$' -bench Handshake ./internal/proxy/secrets
func BenchmarkHandshake(b *testing.B) {
	p := newHandshakePair(b)
	for _, curve := range []tls.CurveID{tls.X25519MLKEM768, tls.X25519} {
		for _, kind := range []string{"bare", "trellis"} {
			b.Run(curve.String()+"/"+kind, func(b *testing.B) {
				client, server := p.configs(kind, curve)
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go tlshandshake.Serve(ln, server)
				b.ReportAllocs()
				for b.Loop() {
					if err := tlshandshake.Dial(ln.Addr().String(), client, curve); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestHandshakeConfigs checks that the benchmark's configurations connect
// with the key exchange asked for, and that the mesh configs refuse a
// peer identity they do not allow.
func TestHandshakeConfigs(t *testing.T) {
	p := newHandshakePair(t)
	for _, curve := range []tls.CurveID{tls.X25519MLKEM768, tls.X25519} {
		for _, kind := range []string{"bare", "trellis"} {
			client, server := p.configs(kind, curve)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go tlshandshake.Serve(ln, server)
			if err := tlshandshake.Dial(ln.Addr().String(), client, curve); err != nil {
				t.Errorf("%s %s: %v", kind, curve, err)
			}
			ln.Close()
		}
	}
	client, server := p.configs("trellis", tls.X25519)
	server.VerifyPeerCertificate = p.server.verifier(AllowIDs("", p.server.ID()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go tlshandshake.Serve(ln, server)
	if err := tlshandshake.Dial(ln.Addr().String(), client, tls.X25519); err == nil {
		t.Error("a server that allows only its own identity accepted the client")
	}
}

// TestMeshKeyExchange checks the key exchange of mesh mTLS: two proxies
// agree on X25519MLKEM768, and a peer that offers only X25519 (one without
// post-quantum key exchange) still connects, with X25519.
func TestMeshKeyExchange(t *testing.T) {
	p := newHandshakePair(t)
	for _, tc := range []struct {
		name         string
		clientCurves []tls.CurveID // nil: the mesh's
		serverCurves []tls.CurveID
		want         tls.CurveID
	}{
		{"mesh", nil, nil, tls.X25519MLKEM768},
		{"client without ML-KEM", []tls.CurveID{tls.X25519}, nil, tls.X25519},
		{"server without ML-KEM", nil, []tls.CurveID{tls.X25519}, tls.X25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := p.server.ServerConfig(AllowIDs("", p.client.ID()))
			client := p.client.ClientConfig(handshakeServerName, AllowIDs("", p.server.ID()))
			if tc.clientCurves != nil {
				client.CurvePreferences = tc.clientCurves
			}
			if tc.serverCurves != nil {
				server.CurvePreferences = tc.serverCurves
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go tlshandshake.Serve(ln, server)
			if err := tlshandshake.Dial(ln.Addr().String(), client, tc.want); err != nil {
				t.Error(err)
			}
		})
	}
}
