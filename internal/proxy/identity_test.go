package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/jointoken"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/store"
)

// certService serves the control plane's certificate service (its CA with
// PeerOrToken and join tokens on an embedded etcd) on a real TLS port, and
// returns its address, its CA and its tokens.
func certService(t *testing.T) (string, *ca.CA, *jointoken.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authority, err := ca.Open(ca.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	tokens := jointoken.New(st, jointoken.Options{Logger: log})
	srv := ca.NewServer(authority, ca.PeerOrToken(authority, tokens), log)
	pool := x509.NewCertPool()
	for _, r := range authority.Roots() {
		pool.AddCert(r)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: authority.ServerCertificateFunc(identity.ControlPlane(identity.DefaultTrustDomain), nil, []net.IP{net.IPv4(127, 0, 0, 1)}),
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
	})))
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String(), authority, tokens
}

// TestCertificateLifecycle follows a proxy's identity through the real
// certificate service: the first certificate with the join token from a
// file, renewals with the certificate alone (the used token would be
// refused, and then the file is gone), and a restart that goes on with the
// certificate in the identity directory.
func TestCertificateLifecycle(t *testing.T) {
	ctx := context.Background()
	addr, authority, tokens := certService(t)
	made, err := tokens.Create(ctx, []jointoken.Spec{{Namespace: "shop", ServiceAccount: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	// A token file as an editor leaves it: with a newline.
	if err := os.WriteFile(tokenFile, []byte(made[0].Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newProxy := func() *Proxy {
		t.Helper()
		p, err := New(Options{
			ControlPlane: addr, TrustBundle: authority.Roots(), NodeID: "web-1.shop",
			Registration: nodemeta.Metadata{Kind: nodemeta.KindSidecar, Name: "web-1", Namespace: "shop", ServiceAccount: "web", Address: "127.0.0.1"},
			TokenFile:    tokenFile, IdentityDir: filepath.Join(dir, "identity"),
			Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	p := newProxy()
	if restored, err := p.secrets.UseDir(p.opts.IdentityDir); err != nil || restored {
		t.Fatalf("fresh identity directory: %v, %v", restored, err)
	}
	if err := p.secrets.Renew(ctx, p.issuer()); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	first := p.secrets.Certificate().Leaf
	list, err := tokens.List(ctx)
	if err != nil || list[0].State != jointoken.Used {
		t.Fatalf("the token was not spent: %+v, %v", list, err)
	}

	// Renewal: the certificate authenticates; the token is not sent (it
	// would be refused as used).
	if err := p.secrets.Renew(ctx, p.issuer()); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	second := p.secrets.Certificate().Leaf
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renewal kept the certificate")
	}
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if err := p.secrets.Renew(ctx, p.issuer()); err != nil {
		t.Fatalf("renewal without a token file: %v", err)
	}
	third := p.secrets.Certificate().Leaf

	// A restart goes on with the stored certificate, without a token.
	q := newProxy()
	if restored, err := q.secrets.UseDir(q.opts.IdentityDir); err != nil || !restored {
		t.Fatalf("restart: restored %v, %v", restored, err)
	}
	if !bytes.Equal(q.secrets.Certificate().Leaf.Raw, third.Raw) {
		t.Fatal("the restarted proxy has another certificate than the last one issued")
	}
	if err := q.secrets.Renew(ctx, q.issuer()); err != nil {
		t.Fatalf("renewal after the restart: %v", err)
	}
}
