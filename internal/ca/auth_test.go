package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
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
)

// issueSVID has c sign a fresh key for id, as a proxy's first certificate.
func issueSVID(t *testing.T, c *CA, id identity.ID) *x509svid.SVID {
	t.Helper()
	key := newP256(t)
	chain, err := c.Sign(mustParseCSR(t, makeCSR(t, key, id.String())), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: spiffeid.RequireFromString(id.String()), Certificates: chain, PrivateKey: key}
}

// serveCA serves s like the control plane does: TLS 1.3 with the CA's
// server certificate, and client certificates verified if given
// (tls.VerifyClientCertIfGiven), or, with verify false, requested but left
// to the Authenticator alone (tls.RequestClientCert).
func serveCA(t *testing.T, c *CA, s *Server, verify bool) string {
	t.Helper()
	cert, err := c.ServerCertificate(identity.ControlPlane(c.TrustDomain()), nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	if verify {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = certPool(c.Roots())
	}
	return serve(t, s, cfg)
}

// dialAs connects presenting svid (none if nil), verifying the control
// plane's identity.
func dialAs(t *testing.T, addr string, c *CA, svid *x509svid.SVID) capb.CertificateServiceClient {
	t.Helper()
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(c.TrustDomain()), c.Roots())
	authorize := tlsconfig.AuthorizeID(spiffeid.RequireFromString(identity.ControlPlane(c.TrustDomain()).String()))
	cfg := tlsconfig.TLSClientConfig(bundle, authorize)
	if svid != nil {
		cfg = tlsconfig.MTLSClientConfig(svid, bundle, authorize)
	}
	cfg.MinVersion = tls.VersionTLS13
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return capb.NewCertificateServiceClient(conn)
}

// tokenJudge stands in for the token authenticator (jointoken's tests run
// the real one through this path): it approves the token "ok" and records
// what it was asked.
type tokenJudge struct {
	mu    sync.Mutex
	asked []string
}

func (j *tokenJudge) Authenticate(_ context.Context, req *capb.CreateCertificateRequest, id identity.ID) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.asked = append(j.asked, req.GetToken()+" for "+id.String())
	if req.GetToken() != "ok" {
		return status.Error(codes.Unauthenticated, "bad token")
	}
	return nil
}

func (j *tokenJudge) calls() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.asked...)
}

// TestPeerOrToken: a certificate renews exactly its own identity without a
// token; a request without a usable certificate goes to the token judge;
// with neither, or a certificate for another identity and no token, the
// refusal says why. Issued certificates are checked with go-spiffe.
func TestPeerOrToken(t *testing.T) {
	clk := newClock(time.Now())
	c := openCA(t, Options{Logger: testLogger(t, nil), Now: clk.Now})
	other := identity.ID{TrustDomain: testTD, Namespace: "demo", ServiceAccount: "catalog"}
	judge := &tokenJudge{}
	s := NewServer(c, PeerOrToken(c, judge), testLogger(t, nil))
	addr := serveCA(t, c, s, true)
	web := issueSVID(t, c, testID)

	request := func(client capb.CertificateServiceClient, id identity.ID, token string) (*capb.CreateCertificateResponse, error) {
		key := newP256(t)
		return client.CreateCertificate(ctx(t), &capb.CreateCertificateRequest{
			Csr: string(makeCSR(t, key, id.String())), NodeId: "web-1.demo", Token: token,
		})
	}
	expect := func(what string, err error, code codes.Code, want string) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != code || !strings.Contains(st.Message(), want) {
			t.Errorf("%s: got %v %q, want %v containing %q", what, st.Code(), st.Message(), code, want)
		}
	}

	// Renewal: the certificate for web gets web, and the token judge is
	// not asked even though a token came along.
	resp, err := request(dialAs(t, addr, c, web), testID, "ok")
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if id := parseAndVerify(t, c, resp); id != testID.String() {
		t.Errorf("renewal issued %s", id)
	}
	if calls := judge.calls(); len(calls) != 0 {
		t.Errorf("the token judge was asked %q on a renewal", calls)
	}

	// The certificate for web cannot get catalog.
	_, err = request(dialAs(t, addr, c, web), other, "")
	expect("web's certificate for catalog", err, codes.PermissionDenied,
		"no certificate for spiffe://example.org/ns/demo/sa/catalog: the client certificate is for spiffe://example.org/ns/demo/sa/web, and a certificate renews only its own identity")

	// Neither certificate nor token.
	_, err = request(dialAs(t, addr, c, nil), testID, "")
	expect("no credentials", err, codes.Unauthenticated, "no certificate for spiffe://example.org/ns/demo/sa/web: no credentials")

	// A token decides when no certificate matches; its refusal is passed on.
	if _, err := request(dialAs(t, addr, c, nil), other, "ok"); err != nil {
		t.Errorf("token on first contact: %v", err)
	}
	_, err = request(dialAs(t, addr, c, web), other, "nope")
	expect("web's certificate and a bad token for catalog", err, codes.Unauthenticated, "bad token")
	if calls := judge.calls(); len(calls) != 2 || calls[0] != "ok for "+other.String() || calls[1] != "nope for "+other.String() {
		t.Errorf("the token judge was asked %q", calls)
	}

	// No token judge: tokens are refused.
	noTokens := serveCA(t, c, NewServer(c, PeerOrToken(c, nil), nil), true)
	_, err = request(dialAs(t, noTokens, c, nil), testID, "ok")
	expect("no token judge", err, codes.Unauthenticated, "accepts no tokens")
}

// TestPeerOrTokenVerifiesTheCertificate: the Authenticator verifies the
// peer certificate itself, now, against the CA's bundle, whatever the TLS
// server accepted: expired certificates and those of another CA renew
// nothing.
func TestPeerOrTokenVerifiesTheCertificate(t *testing.T) {
	clk := newClock(time.Now())
	c := openCA(t, Options{Logger: testLogger(t, nil), Now: clk.Now, WorkloadTTL: time.Hour})
	foreign := openCA(t, Options{Dir: filepath.Join(t.TempDir(), "foreign")})
	// RequestClientCert: TLS passes any certificate on to the CA.
	addr := serveCA(t, c, NewServer(c, PeerOrToken(c, nil), testLogger(t, nil)), false)

	for _, tc := range []struct {
		name string
		svid *x509svid.SVID
		want string
	}{
		{"another CA", issueSVID(t, foreign, testID), "the client certificate does not verify"},
		{"expired", issueSVID(t, c, testID), "the client certificate does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := dialAs(t, addr, c, tc.svid)
			if tc.name == "expired" {
				clk.Advance(2 * time.Hour)
				defer clk.Advance(-2 * time.Hour)
			}
			_, err := client.CreateCertificate(ctx(t), &capb.CreateCertificateRequest{
				Csr: string(makeCSR(t, newP256(t), testID.String())), NodeId: "n",
			})
			st, _ := status.FromError(err)
			if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), tc.want) {
				t.Errorf("got %v %q, want Unauthenticated containing %q", st.Code(), st.Message(), tc.want)
			}
		})
	}
}

// parseAndVerify checks an issued chain with go-spiffe's x509svid and
// returns its SPIFFE ID.
func parseAndVerify(t *testing.T, c *CA, resp *capb.CreateCertificateResponse) string {
	t.Helper()
	var raw [][]byte
	for _, cert := range parsePEMChain(t, resp.GetCertChain()) {
		raw = append(raw, cert.Raw)
	}
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(c.TrustDomain()), c.Roots())
	id, _, err := x509svid.ParseAndVerify(raw, bundle)
	if err != nil {
		t.Fatalf("issued certificate is not a valid X509-SVID: %v", err)
	}
	leaf, _ := x509.ParseCertificate(raw[0])
	if len(leaf.URIs) != 1 {
		t.Errorf("issued certificate has %d URI SANs, want exactly one", len(leaf.URIs))
	}
	return id.String()
}
