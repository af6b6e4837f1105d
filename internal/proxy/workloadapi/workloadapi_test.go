package workloadapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffeapi "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/ca"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/proxy/workloadapi"
)

var testID = identity.ID{TrustDomain: "example.org", Namespace: "shop", ServiceAccount: "cart"}

// fixture is a real CA, the sidecar's real secrets.Manager and the server
// on a UNIX socket in a temporary directory.
type fixture struct {
	ca     *ca.CA
	m      *secrets.Manager
	issuer secrets.Issuer
	path   string
	addr   string // for go-spiffe: unix://PATH
}

func openCA(t *testing.T) *ca.CA {
	t.Helper()
	c, err := ca.Open(ca.Options{Dir: t.TempDir(), TrustDomain: testID.TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// socketDir returns a short temporary directory: socket paths are limited
// to about 100 bytes.
func socketDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "wlapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func start(t *testing.T) *fixture {
	t.Helper()
	c := openCA(t)
	f := &fixture{ca: c, m: secrets.New(testID, c.Roots(), nil)}
	f.issuer = secrets.IssuerFunc(func(_ context.Context, csrPEM []byte) ([][]byte, []*x509.Certificate, error) {
		csr, err := ca.ParseCSR(csrPEM)
		if err != nil {
			return nil, nil, err
		}
		id, err := ca.CheckCSR(csr, c.TrustDomain())
		if err != nil {
			return nil, nil, err
		}
		chain, err := c.Sign(csr, id, ca.MinWorkloadTTL)
		if err != nil {
			return nil, nil, err
		}
		return [][]byte{chain[0].Raw, chain[1].Raw}, c.Roots(), nil
	})
	f.path = filepath.Join(socketDir(t), "api.sock")
	f.addr = "unix://" + f.path
	ln, err := workloadapi.Listen(f.path, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- workloadapi.New(f.m, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return f
}

func (f *fixture) renew(t *testing.T) {
	t.Helper()
	if err := f.m.Renew(context.Background(), f.issuer); err != nil {
		t.Fatal(err)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkSVID verifies svid against bundles and checks it is the sidecar's.
func (f *fixture) checkSVID(t *testing.T, svid *x509svid.SVID, bundles x509bundle.Source) {
	t.Helper()
	id, _, err := x509svid.Verify(svid.Certificates, bundles)
	if err != nil {
		t.Fatalf("the SVID does not verify against the bundle: %v", err)
	}
	if id.String() != testID.String() || svid.ID.String() != testID.String() {
		t.Errorf("SVID for %s (verified %s), want %s", svid.ID, id, testID)
	}
	cur := f.m.Certificate()
	if !bytes.Equal(svid.Certificates[0].Raw, cur.Leaf.Raw) {
		t.Error("the SVID is not the sidecar's current certificate")
	}
	if !svid.Certificates[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(svid.PrivateKey.Public()) {
		t.Error("the private key does not match the certificate")
	}
}

func TestFetchX509SVIDAndBundles(t *testing.T) {
	f := start(t)
	f.renew(t)
	ctx := testContext(t)

	svid, err := spiffeapi.FetchX509SVID(ctx, spiffeapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := spiffeapi.FetchX509Bundles(ctx, spiffeapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	f.checkSVID(t, svid, bundles)
	if len(svid.Certificates) != 2 {
		t.Errorf("chain of %d certificates, want the leaf and the intermediate", len(svid.Certificates))
	}
	b, ok := bundles.Get(spiffeid.RequireTrustDomainFromString(testID.TrustDomain))
	if !ok || len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(f.ca.Roots()[0]) {
		t.Errorf("bundle of the trust domain is not the CA's root")
	}

	// The context (SVIDs and the bundle that comes with them) verifies too.
	x, err := spiffeapi.FetchX509Context(ctx, spiffeapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	f.checkSVID(t, x.DefaultSVID(), x.Bundles)
}

// watcher collects X.509 context updates from go-spiffe's client.
type watcher struct {
	updates chan *spiffeapi.X509Context
}

func (w *watcher) OnX509ContextUpdate(c *spiffeapi.X509Context) { w.updates <- c }
func (w *watcher) OnX509ContextWatchError(error)                {}

func TestRenewalReachesWatchers(t *testing.T) {
	f := start(t)
	f.renew(t)
	ctx := testContext(t)

	source, err := spiffeapi.NewX509Source(ctx, spiffeapi.WithClientOptions(spiffeapi.WithAddr(f.addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	w := &watcher{updates: make(chan *spiffeapi.X509Context, 16)}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- spiffeapi.WatchX509Context(watchCtx, w, spiffeapi.WithAddr(f.addr)) }()
	defer func() {
		stopWatch()
		<-watchDone
	}()
	first := <-w.updates
	f.checkSVID(t, first.DefaultSVID(), first.Bundles)
	before := first.DefaultSVID().Certificates[0].SerialNumber

	// What secrets.Manager.Run does at half the certificate's life.
	f.renew(t)

	var got *spiffeapi.X509Context
	select {
	case got = <-w.updates:
	case <-ctx.Done():
		t.Fatal("the watcher saw no update after the renewal")
	}
	svid := got.DefaultSVID()
	if svid.Certificates[0].SerialNumber.Cmp(before) == 0 {
		t.Fatal("the update carries the old certificate")
	}
	f.checkSVID(t, svid, got.Bundles)

	// The X509Source follows as well.
	if err := source.WaitUntilUpdated(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := source.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	f.checkSVID(t, cur, source)
}

// bundleWatcher collects X.509 bundle updates.
type bundleWatcher struct{ updates chan *x509bundle.Set }

func (w *bundleWatcher) OnX509BundlesUpdate(s *x509bundle.Set) { w.updates <- s }
func (w *bundleWatcher) OnX509BundlesWatchError(error)         {}

func TestBundleChangeReachesWatchers(t *testing.T) {
	f := start(t)
	ctx := testContext(t)
	td := spiffeid.RequireTrustDomainFromString(testID.TrustDomain)

	// The bundle is there before any certificate: the proxy starts with
	// the roots it was given.
	w := &bundleWatcher{updates: make(chan *x509bundle.Set, 16)}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() { watchDone <- spiffeapi.WatchX509Bundles(watchCtx, w, spiffeapi.WithAddr(f.addr)) }()
	defer func() {
		stopWatch()
		<-watchDone
	}()
	first := <-w.updates
	if b, ok := first.Get(td); !ok || len(b.X509Authorities()) != 1 {
		t.Fatalf("first bundle: %v", first.Bundles())
	}

	// A second root arrives over SDS, as during a root rotation.
	other := openCA(t)
	both := append(f.ca.BundlePEM(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Roots()[0].Raw})...)
	if err := f.m.SetTrustBundle(both); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-w.updates:
		b, ok := s.Get(td)
		if !ok || len(b.X509Authorities()) != 2 || !b.HasX509Authority(other.Roots()[0]) {
			t.Errorf("bundle after the change: %d authorities, want both roots", len(b.X509Authorities()))
		}
	case <-ctx.Done():
		t.Fatal("the watcher saw no update after the trust bundle changed")
	}
}

func TestBeforeTheFirstCertificate(t *testing.T) {
	f := start(t)
	ctx := testContext(t)

	// The standard: the first answer comes at once; an endpoint still
	// initializing answers Unavailable, which clients retry.
	_, err := spiffeapi.FetchX509SVID(ctx, spiffeapi.WithAddr(f.addr))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("FetchX509SVID before the first certificate: %v, want Unavailable", err)
	}

	// A source started now retries and gets the certificate once issued.
	type result struct {
		s   *spiffeapi.X509Source
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, err := spiffeapi.NewX509Source(ctx, spiffeapi.WithClientOptions(spiffeapi.WithAddr(f.addr)))
		got <- result{s, err}
	}()
	f.renew(t)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.s.Close()
	svid, err := r.s.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	f.checkSVID(t, svid, r.s)
}

func TestSecurityHeaderRequired(t *testing.T) {
	f := start(t)
	f.renew(t)
	ctx := testContext(t)
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := workload.NewSpiffeWorkloadAPIClient(conn)

	for name, md := range map[string]metadata.MD{
		"missing":     nil,
		"false":       metadata.Pairs(workloadapi.HeaderKey, "false"),
		"capitalized": metadata.Pairs(workloadapi.HeaderKey, "True"),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(ctx, md)
			stream, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("FetchX509SVID: %v, want InvalidArgument", err)
			}
			_, err = client.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"x"}})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("FetchJWTSVID: %v, want InvalidArgument", err)
			}
		})
	}

	// With the header, the same raw client gets the SVID.
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(workloadapi.HeaderKey, workloadapi.HeaderValue))
	stream, err := client.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetSvids()) != 1 || resp.GetSvids()[0].GetSpiffeId() != testID.String() {
		t.Errorf("response: %v", resp)
	}
}

func TestJWT(t *testing.T) {
	f := start(t)
	f.renew(t)
	ctx := testContext(t)
	client, err := spiffeapi.New(ctx, spiffeapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	_, err = client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "billing"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("FetchJWTSVID: %v, want Unimplemented", err)
	}
	_, err = client.ValidateJWTSVID(ctx, "a.b.c", "billing")
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ValidateJWTSVID: %v, want Unimplemented", err)
	}

	// No JWT authorities: an empty JWT bundle, so that a BundleSource,
	// which waits for X.509 and JWT bundles, starts.
	jwtBundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(testID.TrustDomain)
	if b, ok := jwtBundles.Get(td); !ok || len(b.JWTAuthorities()) != 0 {
		t.Errorf("JWT bundle: %v, want an empty one for %s", jwtBundles.Bundles(), td)
	}
	source, err := spiffeapi.NewBundleSource(ctx, spiffeapi.WithClient(client))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	b, err := source.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasX509Authority(f.ca.Roots()[0]) {
		t.Error("the bundle source lacks the CA's root")
	}
}

func TestSocket(t *testing.T) {
	dir := socketDir(t)

	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		// A process that died leaves its socket file behind.
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		ln, err = workloadapi.Listen(path, 0o660)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o660 {
			t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
		}
		ln.Close()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("the socket is still there after Close: %v", err)
		}
	})

	t.Run("socket in use is an error", func(t *testing.T) {
		path := filepath.Join(dir, "busy.sock")
		ln, err := workloadapi.Listen(path, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if ln2, err := workloadapi.Listen(path, 0o666); err == nil {
			ln2.Close()
			t.Fatal("a second Listen on a served socket succeeded")
		}
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("the served socket is gone: %v", err)
		}
	})

	t.Run("other file is left alone", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if ln, err := workloadapi.Listen(path, 0o666); err == nil {
			ln.Close()
			t.Fatal("Listen replaced a regular file")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
			t.Errorf("the file changed: %q, %v", b, err)
		}
	})

	t.Run("missing directory is an error", func(t *testing.T) {
		if ln, err := workloadapi.Listen(filepath.Join(dir, "none", "api.sock"), 0o666); err == nil {
			ln.Close()
			t.Fatal("Listen created a directory")
		}
	})
}

func TestServeRemovesSocket(t *testing.T) {
	c := openCA(t)
	path := filepath.Join(socketDir(t), "api.sock")
	ln, err := workloadapi.Listen(path, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- workloadapi.New(secrets.New(testID, c.Roots(), nil), nil).Serve(ctx, ln) }()
	if _, err := spiffeapi.FetchX509Bundles(testContext(t), spiffeapi.WithAddr("unix://"+path)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the socket is still there after Serve returned: %v", err)
	}
}
