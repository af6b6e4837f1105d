package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffeapi "github.com/spiffe/go-spiffe/v2/workloadapi"

	"trellis.dev/trellis/internal/demo/app"
	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/proxy/secrets"
	"trellis.dev/trellis/internal/translate"
)

// TestWorkloadAPI runs a sidecar that serves the SPIFFE Workload API and
// plays the SPIFFE-aware application behind it with go-spiffe's client: it
// gets the workload's SVID, which verifies against the root the control
// plane's CA wrote, and uses it for mTLS straight to another workload's
// sidecar, which accepts it as that workload's identity.
func TestWorkloadAPI(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, `
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: demo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 80, targetPort: 8080}]
`)
	startWorkload(t, s, cp, sidecar{name: "reviews-1", service: "reviews", account: "reviews", version: "v1", host: 12})

	dir, err := os.MkdirTemp("", "e2e-wlapi")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "socket")
	webIP := s.ip(11)
	pemBytes, err := os.ReadFile(cp.bundle(t))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := secrets.ParseBundle(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{
		ControlPlane: cp.xds, TrustBundle: roots, NodeID: "web-1.demo",
		Registration: nodemeta.Metadata{
			Kind: nodemeta.KindSidecar, Name: "web-1", Namespace: "demo", ServiceAccount: "web",
			Address: webIP, AppAddress: webIP, OutboundAddress: webIP, MeshPort: 15008,
		},
		AdminAddress: net.JoinHostPort(webIP, "15000"), Logger: testLogger(t, "web-1"),
		DrainTimeout: time.Second, WorkloadAPISocket: socket,
		Token: cp.token(t, "demo", "web"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop := stopper(t, "proxy web-1", cancel, done)

	fetchCtx, cancelFetch := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelFetch()
	source, err := spiffeapi.NewX509Source(fetchCtx, spiffeapi.WithClientOptions(spiffeapi.WithAddr("unix://"+socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(identity.DefaultTrustDomain)
	webID := identity.ID{TrustDomain: td.Name(), Namespace: "demo", ServiceAccount: "web"}
	id, _, err := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, roots))
	if err != nil {
		t.Fatalf("the SVID from the Workload API does not verify against the CA's root: %v", err)
	}
	if id.String() != webID.String() {
		t.Fatalf("SVID for %s, want %s", id, webID)
	}

	// The application's own mTLS, with that SVID, to the reviews sidecar's
	// mesh port, naming the service port by SNI as a sidecar does.
	reviewsID := spiffeid.RequireFromString(identity.ID{TrustDomain: td.Name(), Namespace: "demo", ServiceAccount: "reviews"}.String())
	conf := tlsconfig.MTLSClientConfig(source, source, tlsconfig.AuthorizeID(reviewsID))
	conf.ServerName = translate.SNI(80, "reviews.demo.svc.cluster.local")
	conf.MinVersion = tls.VersionTLS13
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	url := "https://" + net.JoinHostPort(s.ip(12), "15008") + "/"
	eventually(t, 30*time.Second, "reviews through its sidecar with the Workload API's SVID", func() error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		var chain app.Chain
		if err := json.Unmarshal(body, &chain); err != nil {
			return err
		}
		if len(chain.Hops) != 1 || chain.Hops[0].Caller != webID.String() {
			return fmt.Errorf("reviews saw %+v, want one hop called by %s", chain.Hops, webID)
		}
		return nil
	})

	// The socket goes away with the proxy.
	stop()
	if _, err := os.Lstat(socket); !os.IsNotExist(err) {
		t.Errorf("the Workload API socket is still there after the proxy stopped: %v", err)
	}
}
