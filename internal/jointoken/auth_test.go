package jointoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/logtest"
)

// certService is the control plane's certificate service on a real TLS
// port: the CA, PeerOrToken with a token store, and the control plane's
// TLS settings (client certificates verified if given).
type certService struct {
	ca     *ca.CA
	tokens *Store
	addr   string
	logs   *logtest.Buffer
	issued atomic.Int64
}

func startCertService(t *testing.T, clk *clock) *certService {
	t.Helper()
	cs := &certService{logs: &logtest.Buffer{}}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), cs.logs), nil))
	authority, err := ca.Open(ca.Options{Dir: t.TempDir(), TrustDomain: testTD, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cs.ca = authority
	opts := Options{TrustDomain: testTD, Logger: log}
	if clk != nil {
		opts.Now = clk.Now
	}
	cs.tokens = New(testStore, opts)
	srv := ca.NewServer(authority, ca.PeerOrToken(authority, cs.tokens), log)
	srv.OnIssue(func(string, []*x509.Certificate) { cs.issued.Add(1) })

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range authority.Roots() {
		pool.AddCert(r)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: authority.ServerCertificateFunc(identity.ControlPlane(testTD), nil, []net.IP{net.IPv4(127, 0, 0, 1)}),
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
	})))
	srv.Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	cs.addr = lis.Addr().String()
	return cs
}

// client connects like a proxy, presenting svid when it has one.
func (cs *certService) client(t *testing.T, svid *x509svid.SVID) capb.CertificateServiceClient {
	t.Helper()
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(testTD), cs.ca.Roots())
	authorize := tlsconfig.AuthorizeID(spiffeid.RequireFromString(identity.ControlPlane(testTD).String()))
	cfg := tlsconfig.TLSClientConfig(bundle, authorize)
	if svid != nil {
		cfg = tlsconfig.MTLSClientConfig(svid, bundle, authorize)
	}
	conn, err := grpc.NewClient(cs.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return capb.NewCertificateServiceClient(conn)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, key crypto.Signer, id identity.ID) string {
	t.Helper()
	u, _ := url.Parse(id.String())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// svidOf checks an issued chain with go-spiffe's x509svid.ParseAndVerify
// against the CA's roots, checks that it has exactly one URI SAN, want, and
// returns it with its key.
func (cs *certService) svidOf(t *testing.T, resp *capb.CreateCertificateResponse, key crypto.Signer, want identity.ID) *x509svid.SVID {
	t.Helper()
	var raw [][]byte
	var certs []*x509.Certificate
	for _, p := range resp.GetCertChain() {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			t.Fatalf("not PEM: %q", p)
		}
		raw = append(raw, block.Bytes)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(testTD), cs.ca.Roots())
	got, _, err := x509svid.ParseAndVerify(raw, bundle)
	if err != nil {
		t.Fatalf("issued certificate is not a valid X509-SVID: %v", err)
	}
	if got.String() != want.String() || len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != want.String() {
		t.Fatalf("issued %s with URI SANs %v, want exactly %s", got, certs[0].URIs, want)
	}
	return &x509svid.SVID{ID: got, Certificates: certs, PrivateKey: key}
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, substrings ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: got %v %q, want %v", what, st.Code(), st.Message(), code)
		return
	}
	for _, s := range substrings {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("%s: %q lacks %q", what, st.Message(), s)
		}
	}
}

// TestCertificateRequests runs the certificate service as the control
// plane does, over real TLS, with tokens on the embedded etcd: bad
// requests spend no token; a token gets exactly its identity, once; the
// certificate then renews itself without a token and nothing else; every
// refusal says why, and none issues anything.
func TestCertificateRequests(t *testing.T) {
	clk := &clock{t: time.Now()}
	cs := startCertService(t, clk)
	ctx := context.Background()
	web, db := id("full", "web"), id("full", "db")
	tok := create(t, cs.tokens, Spec{Namespace: "full", ServiceAccount: "web", TTL: time.Hour})
	_, secret, _ := Parse(tok.Token)
	first := cs.client(t, nil)
	before := stored(t, tok.ID)

	// Bad requests with a good token: refused before the token is looked at.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, csr string
		code      codes.Code
		want      string
	}{
		{"malformed CSR", "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n", codes.InvalidArgument, "malformed PEM"},
		{"garbage CSR", "hello", codes.InvalidArgument, "not a PKCS#10 CSR"},
		{"oversized CSR", strings.Repeat("x", 16<<10+1), codes.InvalidArgument, "more than the 16384 allowed"},
		{"RSA key", csrFor(t, rsaKey, web), codes.InvalidArgument, "key is RSA 2048-bit; generate an ECDSA P-256 key"},
		{"P-384 key", csrFor(t, p384, web), codes.InvalidArgument, "key is ECDSA P-384"},
		{"token for another identity", csrFor(t, newKey(t), db), codes.PermissionDenied,
			"no certificate for spiffe://example.org/ns/full/sa/db: join token " + tok.ID + " is for spiffe://example.org/ns/full/sa/web only"},
	} {
		_, err := first.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: tc.csr, NodeId: "web-1.full", Token: tok.Token})
		wantStatus(t, tc.name, err, tc.code, tc.want)
	}
	if after := stored(t, tok.ID); after.Revision != before.Revision {
		t.Errorf("refused requests changed the token: %s", after.Value)
	}
	logs := cs.logs.String()
	if !strings.Contains(logs, `msg="certificate request refused"`) || !strings.Contains(logs, "token_id="+tok.ID) ||
		!strings.Contains(logs, "identity=spiffe://example.org/ns/full/sa/db") {
		t.Errorf("the refusal for another identity is not logged with the token's ID:\n%s", logs)
	}

	// First contact.
	key := newKey(t)
	resp, err := first.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csrFor(t, key, web), NodeId: "web-1.full", Token: tok.Token})
	if err != nil {
		t.Fatalf("first contact: %v", err)
	}
	svid := cs.svidOf(t, resp, key, web)

	// The token is spent: a replay is refused.
	_, err = first.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csrFor(t, newKey(t), web), NodeId: "web-2.full", Token: tok.Token})
	wantStatus(t, "replay", err, codes.Unauthenticated, "join token "+tok.ID+" has no uses left", "replayed")

	// Renewal with the certificate, no token.
	renewer := cs.client(t, svid)
	key2 := newKey(t)
	resp, err = renewer.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csrFor(t, key2, web), NodeId: "web-1.full"})
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	cs.svidOf(t, resp, key2, web)
	// ... for its own identity only.
	_, err = renewer.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csrFor(t, newKey(t), db), NodeId: "web-1.full"})
	wantStatus(t, "web renewing db", err, codes.PermissionDenied, "the client certificate is for spiffe://example.org/ns/full/sa/web", "renews only its own identity")

	// Revoked, expired, unknown, malformed, none.
	revoked := create(t, cs.tokens, Spec{Namespace: "full", ServiceAccount: "web"})
	if _, err := cs.tokens.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	expired := create(t, cs.tokens, Spec{Namespace: "full", ServiceAccount: "web", TTL: time.Minute})
	clk.Advance(2 * time.Minute)
	for _, tc := range []struct{ name, token, want string }{
		{"revoked", revoked.Token, "join token " + revoked.ID + " was revoked"},
		{"expired", expired.Token, "join token " + expired.ID + " expired at"},
		{"unknown", "tok_0123456789abcdef." + secret, "join token tok_0123456789abcdef is unknown"},
		{"malformed", "tok_0123456789abcdef", "join token is malformed"},
		{"none", "", "no credentials"},
	} {
		_, err := first.CreateCertificate(ctx, &capb.CreateCertificateRequest{Csr: csrFor(t, newKey(t), web), NodeId: "web-3.full", Token: tc.token})
		wantStatus(t, tc.name, err, codes.Unauthenticated, "no certificate for spiffe://example.org/ns/full/sa/web", tc.want)
	}

	if n := cs.issued.Load(); n != 2 {
		t.Errorf("%d certificates issued, want 2 (first contact and renewal)", n)
	}
	if strings.Contains(cs.logs.String(), secret) {
		t.Error("a token's secret was logged")
	}
}

// TestConcurrentFirstContacts: two proxies presenting one single-use token
// at the same moment get one certificate between them; the other is told
// the token was used.
func TestConcurrentFirstContacts(t *testing.T) {
	cs := startCertService(t, nil)
	web := id("twice", "web")
	for round := range 3 {
		tok := create(t, cs.tokens, Spec{Namespace: "twice", ServiceAccount: "web"})
		start := make(chan struct{})
		errs := make(chan error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			client := cs.client(t, nil)
			csr := csrFor(t, newKey(t), web)
			wg.Go(func() {
				<-start
				_, err := client.CreateCertificate(context.Background(), &capb.CreateCertificateRequest{Csr: csr, NodeId: "web-" + string(rune('a'+i)), Token: tok.Token})
				errs <- err
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			if err == nil {
				won++
				continue
			}
			wantStatus(t, "the loser", err, codes.Unauthenticated, "no uses left")
		}
		if won != 1 {
			t.Errorf("round %d: %d of 2 concurrent uses of a single-use token succeeded, want exactly 1", round, won)
		}
	}
	if n := cs.issued.Load(); n != 3 {
		t.Errorf("%d certificates issued in 3 rounds, want 3", n)
	}
}
