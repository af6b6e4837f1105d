package jointoken

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/ca/capb"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/store"
)

// counterReader yields the same bytes in every process, so that the fuzz
// target's tokens are the same strings in the coordinator and in each
// worker (every process has an etcd of its own).
type counterReader struct{ n byte }

func (r *counterReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

// Peers a fuzzed request can come from.
const (
	peerNone = iota
	peerWeb
	peerDB
	peerForeign
	peerKinds
)

// FuzzCreateCertificate feeds arbitrary CSRs, tokens, node IDs, lifetimes
// and peers to the certificate service's handler, with PeerOrToken and
// tokens on the embedded etcd, as the control plane runs it. The handler
// must never panic and never issue without valid credentials for exactly
// the identity asked for: a peer certificate for it, or a token for it with
// a use left, which the issuance then spends. A refusal changes no token;
// every issued certificate is a valid X509-SVID of the CA.
func FuzzCreateCertificate(f *testing.F) {
	clk := &clock{t: time.Now()}
	authority, err := ca.Open(ca.Options{Dir: filepath.Join(f.TempDir(), "ca"), TrustDomain: testTD})
	if err != nil {
		f.Fatal(err)
	}
	foreign, err := ca.Open(ca.Options{Dir: filepath.Join(f.TempDir(), "foreign"), TrustDomain: testTD})
	if err != nil {
		f.Fatal(err)
	}
	tokens := New(testStore, Options{TrustDomain: testTD, Now: clk.Now})
	tokens.random = &counterReader{}
	srv := ca.NewServer(authority, ca.PeerOrToken(authority, tokens), nil)
	ctx := context.Background()
	web, db := id("fuzz", "web"), id("fuzz", "db")

	// Deterministic tokens: good (many uses), single (one use), db (for
	// another identity), revoked, expired.
	specs := []Spec{
		{Namespace: "fuzz", ServiceAccount: "web", TTL: time.Hour, Uses: MaxUses},
		{Namespace: "fuzz", ServiceAccount: "web", TTL: time.Hour},
		{Namespace: "fuzz", ServiceAccount: "db", TTL: time.Hour},
		{Namespace: "fuzz", ServiceAccount: "web", TTL: time.Hour},
		{Namespace: "fuzz", ServiceAccount: "web", TTL: time.Minute},
	}
	created, err := tokens.Create(ctx, specs)
	if errors.Is(err, store.ErrExists) {
		f.Skip("the fuzz target's tokens exist already in this process (-count > 1)")
	}
	if err != nil {
		f.Fatal(err)
	}
	good, single, forDB, revoked, expired := created[0], created[1], created[2], created[3], created[4]
	if _, err := tokens.Revoke(ctx, revoked.ID); err != nil {
		f.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	ids := map[string]identity.ID{}
	for _, c := range created {
		ids[c.Token] = c.Identity
	}

	peers := [peerKinds][]*x509.Certificate{}
	for kind, issuer := range map[int]*ca.CA{peerWeb: authority, peerDB: authority, peerForeign: foreign} {
		want := web
		if kind == peerDB {
			want = db
		}
		chain, err := issuer.Sign(mustCSR(f, csrFor(f, newKey(f), want)), want, 0)
		if err != nil {
			f.Fatal(err)
		}
		peers[kind] = chain
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	webCSR, dbCSR := csrFor(f, newKey(f), web), csrFor(f, newKey(f), db)
	for _, tok := range []string{good.Token, single.Token, forDB.Token, revoked.Token, expired.Token, "", "tok_0123456789abcdef"} {
		f.Add(webCSR, tok, "web-1.fuzz", int64(0), uint8(peerNone))
		f.Add(dbCSR, tok, "db-1.fuzz", int64(3600), uint8(peerNone))
	}
	f.Add(webCSR, "", "web-1.fuzz", int64(0), uint8(peerWeb))
	f.Add(dbCSR, "", "web-1.fuzz", int64(0), uint8(peerWeb))
	f.Add(dbCSR, forDB.Token, "web-1.fuzz", int64(0), uint8(peerWeb))
	f.Add(webCSR, "", "web-1.fuzz", int64(0), uint8(peerForeign))
	f.Add(csrFor(f, rsaKey, web), good.Token, "web-1.fuzz", int64(0), uint8(peerNone))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n", good.Token, "n", int64(-1), uint8(peerNone))

	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(testTD), authority.Roots())
	f.Fuzz(func(t *testing.T, csr, token, node string, validity int64, peerKind uint8) {
		kind := int(peerKind) % peerKinds
		rctx := ctx
		if certs := peers[kind]; certs != nil {
			rctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: certs}}})
		}
		before := usesLeft(t, created)
		resp, err := srv.CreateCertificate(rctx, &capb.CreateCertificateRequest{Csr: csr, Token: token, NodeId: node, ValiditySeconds: validity})
		after := usesLeft(t, created)
		if err != nil {
			if resp != nil {
				t.Fatal("a response with an error")
			}
			if after != before {
				t.Fatalf("a refused request changed tokens: uses left %v, then %v", before, after)
			}
			return
		}

		var raw [][]byte
		for _, p := range resp.GetCertChain() {
			block, _ := pem.Decode([]byte(p))
			if block == nil {
				t.Fatalf("issued chain is not PEM: %q", p)
			}
			raw = append(raw, block.Bytes)
		}
		got, _, err := x509svid.ParseAndVerify(raw, bundle)
		if err != nil {
			t.Fatalf("issued certificate is not a valid X509-SVID: %v", err)
		}
		issued, err := identity.Parse(got.String())
		if err != nil {
			t.Fatal(err)
		}
		byPeer := (kind == peerWeb && issued == web) || (kind == peerDB && issued == db)
		if byPeer {
			if after != before {
				t.Fatalf("a renewal spent a token: uses left %v, then %v", before, after)
			}
			return
		}
		owner, ok := ids[token]
		if !ok || owner != issued {
			t.Fatalf("issued %s to peer kind %d with token %q", issued, kind, token)
		}
		spent := -1
		for i, c := range created {
			if c.Token == token {
				spent = i
			}
		}
		want := before
		want[spent]--
		if after != want || before[spent] <= 0 {
			t.Fatalf("issued %s with token %s: uses left %v, then %v", issued, created[spent].ID, before, after)
		}
	})
}

// usesLeft reads the uses left of each token.
func usesLeft(t *testing.T, created []Created) [5]int {
	t.Helper()
	var out [5]int
	for i, c := range created {
		it := stored(t, c.ID)
		var r record
		if err := json.NewDecoder(bytes.NewReader(it.Value)).Decode(&r); err != nil {
			t.Fatal(err)
		}
		out[i] = r.UsesLeft
	}
	return out
}

func mustCSR(t testing.TB, pemCSR string) *x509.CertificateRequest {
	t.Helper()
	csr, err := ca.ParseCSR([]byte(pemCSR))
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
