package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/logtest"
)

func testLogger(t *testing.T, also io.Writer) *slog.Logger {
	w := t.Output()
	if also != nil {
		w = io.MultiWriter(w, also)
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// serve runs s on a real TLS 1.3 gRPC listener on 127.0.0.1 with tlsCfg and
// returns its address. The server stops when the test ends.
func serve(t *testing.T, s *Server, tlsCfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.MinVersion = tls.VersionTLS13
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	s.Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

// serveWithServerCertificate serves s with a certificate from
// CA.ServerCertificate for the control plane's identity.
func serveWithServerCertificate(t *testing.T, c *CA, s *Server) string {
	t.Helper()
	cert, err := c.ServerCertificate(identity.ControlPlane(c.TrustDomain()), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s, &tls.Config{Certificates: []tls.Certificate{cert}})
}

// dial connects like a proxy: it trusts c's roots and accepts only a server
// whose SPIFFE ID is serverID, checked by go-spiffe.
func dial(t *testing.T, addr string, c *CA, serverID identity.ID) capb.CertificateServiceClient {
	t.Helper()
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(c.TrustDomain()), c.Roots())
	cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID.String())))
	cfg.MinVersion = tls.VersionTLS13
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return capb.NewCertificateServiceClient(conn)
}

func parsePEMChain(t *testing.T, pems []string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for _, p := range pems {
		block, rest := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("not one PEM certificate: %q", p)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cert)
	}
	return certs
}

// acceptAll approves every request: for tests of what the server does
// around its Authenticator.
func acceptAll() Authenticator {
	return AuthenticatorFunc(func(context.Context, *capb.CreateCertificateRequest, identity.ID) error { return nil })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCreateCertificateOverTLS(t *testing.T) {
	var logs logtest.Buffer
	log := testLogger(t, &logs)
	c := openCA(t, Options{Logger: log})

	var (
		mu       sync.Mutex
		authSaw  []identity.ID
		tokenSaw []string
		issued   = map[string][]*x509.Certificate{}
	)
	auth := AuthenticatorFunc(func(_ context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
		mu.Lock()
		defer mu.Unlock()
		authSaw = append(authSaw, id)
		tokenSaw = append(tokenSaw, req.GetToken())
		return nil
	})
	s := NewServer(c, auth, log)
	s.OnIssue(func(node string, chain []*x509.Certificate) {
		mu.Lock()
		defer mu.Unlock()
		issued[node] = chain
	})
	client := dial(t, serveWithServerCertificate(t, c, s), c, identity.ControlPlane(testTD))

	key := newP256(t)
	resp, err := client.CreateCertificate(ctx(t), &capb.CreateCertificateRequest{
		Csr:             string(makeCSR(t, key, testID.String())),
		NodeId:          "sidecar~10.0.0.7~web-7d9f.demo~demo.svc.cluster.local",
		Token:           "join-token",
		ValiditySeconds: 3600,
	})
	if err != nil {
		t.Fatal(err)
	}

	chain := parsePEMChain(t, resp.GetCertChain())
	if len(chain) != 2 {
		t.Fatalf("cert_chain has %d certificates, want leaf and intermediate", len(chain))
	}
	bundle := parsePEMChain(t, resp.GetTrustBundle())
	if len(bundle) != 1 || !bundle[0].Equal(c.Roots()[0]) {
		t.Fatal("trust_bundle is not the CA's roots")
	}
	if got := verifySVID(t, chain, key, bundle, time.Now()); got.String() != testID.String() {
		t.Errorf("issued %s, want %s", got, testID)
	}
	checkLeaf(t, chain[0], testID)
	checkSigningCertSPIFFE(t, chain[1], 0)
	checkSigningCertSPIFFE(t, bundle[0], 1)
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life != time.Hour+ClockSkew {
		t.Errorf("lifetime %v, want the requested 1h (+%v backdating)", life, ClockSkew)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(authSaw) != 1 || authSaw[0] != testID || tokenSaw[0] != "join-token" {
		t.Errorf("authenticator saw %v with tokens %q, want %v once with the token", authSaw, tokenSaw, testID)
	}
	got := issued["sidecar~10.0.0.7~web-7d9f.demo~demo.svc.cluster.local"]
	if len(got) != 2 || !got[0].Equal(chain[0]) || !got[1].Equal(chain[1]) {
		t.Error("OnIssue did not get the node's chain")
	}
	line := ""
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, `msg="issued certificate"`) {
			line = l
		}
	}
	for _, want := range []string{"node=sidecar~10.0.0.7", "identity=" + testID.String(), "serial=" + serialHex(chain[0]), "expiry="} {
		if !strings.Contains(line, want) {
			t.Errorf("issuance log %q lacks %q", line, want)
		}
	}
	if strings.Contains(logs.String(), "join-token") {
		t.Error("the token was logged")
	}
}

// A proxy that expects another server identity refuses the control plane.
func TestClientRefusesWrongServerIdentity(t *testing.T) {
	c := openCA(t, Options{Logger: testLogger(t, nil)})
	s := NewServer(c, acceptAll(), nil)
	called := false
	s.OnIssue(func(string, []*x509.Certificate) { called = true })
	other := identity.ID{TrustDomain: testTD, Namespace: "trellis-system", ServiceAccount: "impostor"}
	client := dial(t, serveWithServerCertificate(t, c, s), c, other)
	_, err := client.CreateCertificate(ctx(t), &capb.CreateCertificateRequest{
		Csr: string(makeCSR(t, newP256(t), testID.String())), NodeId: "n",
	})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "unexpected ID") {
		t.Errorf("got %v, want Unavailable from a failed SPIFFE ID check", err)
	}
	if called {
		t.Error("a certificate was issued")
	}
}

func TestCreateCertificateErrors(t *testing.T) {
	c := openCA(t, Options{Logger: testLogger(t, nil)})
	var authCalls []string
	var authMu sync.Mutex
	auth := AuthenticatorFunc(func(_ context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
		authMu.Lock()
		authCalls = append(authCalls, req.GetToken())
		authMu.Unlock()
		switch req.GetToken() {
		case "revoked":
			return errors.New("token revoked")
		case "none":
			return status.Error(codes.Unauthenticated, "no token")
		}
		if id.Namespace == "kube-system" {
			return errors.New("namespace kube-system is not in the mesh")
		}
		return nil
	})
	s := NewServer(c, auth, testLogger(t, nil))
	var issued int
	var mu sync.Mutex
	s.OnIssue(func(string, []*x509.Certificate) { mu.Lock(); issued++; mu.Unlock() })
	addr := serveWithServerCertificate(t, c, s)
	client := dial(t, addr, c, identity.ControlPlane(testTD))

	key := newP256(t)
	good := string(makeCSR(t, key, testID.String()))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *capb.CreateCertificateRequest
		code codes.Code
		want string
	}{
		{"no node", &capb.CreateCertificateRequest{Csr: good}, codes.InvalidArgument, "node_id is empty"},
		{"huge node", &capb.CreateCertificateRequest{Csr: good, NodeId: strings.Repeat("n", maxNodeIDLen+1)}, codes.InvalidArgument, "node_id is"},
		{"negative validity", &capb.CreateCertificateRequest{Csr: good, NodeId: "n", ValiditySeconds: -5}, codes.InvalidArgument, "validity_seconds is -5"},
		{"too short validity", &capb.CreateCertificateRequest{Csr: good, NodeId: "n", ValiditySeconds: 10, Token: "never-judged"}, codes.InvalidArgument, "shorter than the minimum"},
		{"huge token", &capb.CreateCertificateRequest{Csr: good, NodeId: "n", Token: strings.Repeat("t", maxTokenLen+1)}, codes.InvalidArgument, "token is 8193 bytes"},
		{"huge CSR", &capb.CreateCertificateRequest{Csr: strings.Repeat("c", maxCSRSize+1), NodeId: "n", Token: "never-judged"}, codes.InvalidArgument, "more than the 16384 allowed"},
		{"garbage CSR", &capb.CreateCertificateRequest{Csr: "hello", NodeId: "n"}, codes.InvalidArgument, "not a PKCS#10 CSR"},
		{"P-384 CSR", &capb.CreateCertificateRequest{Csr: string(makeCSR(t, p384, testID.String())), NodeId: "n"}, codes.InvalidArgument, "ECDSA P-384"},
		{"foreign trust domain", &capb.CreateCertificateRequest{Csr: string(makeCSR(t, key, "spiffe://other.org/ns/demo/sa/web")), NodeId: "n"}, codes.InvalidArgument, "other.org"},
		{"refused token", &capb.CreateCertificateRequest{Csr: good, NodeId: "n", Token: "revoked"}, codes.PermissionDenied, "not allowed to have identity spiffe://example.org/ns/demo/sa/web: token revoked"},
		{"refused identity", &capb.CreateCertificateRequest{Csr: string(makeCSR(t, key, "spiffe://example.org/ns/kube-system/sa/default")), NodeId: "n"}, codes.PermissionDenied, "kube-system is not in the mesh"},
		{"status from authenticator", &capb.CreateCertificateRequest{Csr: good, NodeId: "n", Token: "none"}, codes.Unauthenticated, "no token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.CreateCertificate(ctx(t), tc.req)
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) {
				t.Errorf("got %v: %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.want)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if issued != 0 {
		t.Errorf("%d certificates issued for refused requests", issued)
	}
	authMu.Lock()
	defer authMu.Unlock()
	if slices.Contains(authCalls, "never-judged") || len(authCalls) != 3 {
		t.Errorf("the authenticator saw tokens %q; want only the three requests that were valid but for authentication", authCalls)
	}

	// A server without an authenticator refuses everything.
	closed := NewServer(c, nil, nil)
	_, err = dial(t, serveWithServerCertificate(t, c, closed), c, identity.ControlPlane(testTD)).
		CreateCertificate(ctx(t), &capb.CreateCertificateRequest{Csr: good, NodeId: "n"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("nil authenticator: %v, want PermissionDenied", err)
	}
}

// Certificates from this CA work for what they are for: mutual TLS 1.3
// between a workload and the control plane, each side checking the other's
// SPIFFE ID with go-spiffe. The control plane's side renews through
// ServerCertificateFunc.
func TestIssuedSVIDsWorkForMTLS(t *testing.T) {
	c := openCA(t, Options{Logger: testLogger(t, nil)})
	td := spiffeid.RequireTrustDomainFromString(testTD)
	bundle := x509bundle.FromX509Authorities(td, c.Roots())
	cpID := identity.ControlPlane(testTD)

	// The workload gets its SVID over gRPC.
	s := NewServer(c, acceptAll(), nil)
	client := dial(t, serve(t, s, &tls.Config{GetCertificate: c.ServerCertificateFunc(cpID, nil, nil)}), c, cpID)
	key := newP256(t)
	resp, err := client.CreateCertificate(ctx(t), &capb.CreateCertificateRequest{Csr: string(makeCSR(t, key, testID.String())), NodeId: "n"})
	if err != nil {
		t.Fatal(err)
	}
	workload := &x509svid.SVID{
		ID:           spiffeid.RequireFromString(testID.String()),
		Certificates: parsePEMChain(t, resp.GetCertChain()),
		PrivateKey:   key,
	}

	serverCert, err := c.ServerCertificate(cpID, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	server := &x509svid.SVID{
		ID:           spiffeid.RequireFromString(cpID.String()),
		Certificates: []*x509.Certificate{serverCert.Leaf, c.signer()},
		PrivateKey:   serverCert.PrivateKey.(*ecdsa.PrivateKey),
	}

	serverCfg := tlsconfig.MTLSServerConfig(server, bundle, tlsconfig.AuthorizeID(workload.ID))
	lis, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type result struct {
		peer    spiffeid.ID
		version uint16
		err     error
	}
	results := make(chan result, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			results <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.HandshakeContext(t.Context()); err != nil {
			results <- result{err: err}
			return
		}
		st := tc.ConnectionState()
		id, err := x509svid.IDFromCert(st.PeerCertificates[0])
		results <- result{peer: id, version: st.Version, err: err}
	}()

	clientCfg := tlsconfig.MTLSClientConfig(workload, bundle, tlsconfig.AuthorizeID(server.ID))
	clientCfg.MinVersion = tls.VersionTLS13
	conn, err := tls.Dial("tcp", lis.Addr().String(), clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := <-results
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.peer != workload.ID || r.version != tls.VersionTLS13 {
		t.Errorf("server saw peer %s over TLS %x, want %s over TLS 1.3", r.peer, r.version, workload.ID)
	}
}
