package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/logtest"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
)

// testLogWriter is where testLogger writes: standard error with
// TRELLIS_TEST_LOGS set, else nowhere.
func testLogWriter() io.Writer {
	if os.Getenv("TRELLIS_TEST_LOGS") == "" {
		return io.Discard
	}
	return os.Stderr
}

// connected reports whether the control plane has proxy id connected.
func connected(cp *controlPlane, t *testing.T, id string) error {
	list, err := cp.client(t).Proxies(context.Background())
	if err != nil {
		return err
	}
	for _, p := range list {
		if p.ID == id && p.Connected {
			return nil
		}
	}
	return fmt.Errorf("proxy %s is not connected", id)
}

// tokenState returns the state and uses left of token id.
func tokenState(cp *controlPlane, t *testing.T, id string) (string, int) {
	t.Helper()
	list, err := cp.client(t).Tokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.ID == id {
			return in.State, in.UsesLeft
		}
	}
	t.Fatalf("token %s is not listed", id)
	return "", 0
}

// TestProxyJoinsWithTokenFile: a proxy whose token file holds a token for
// another identity gets no certificate, and the token is not spent; once
// the right token is written to the file the proxy picks it up and joins.
// Restarted with its identity directory and no token, it goes on with its
// certificate.
func TestProxyJoinsWithTokenFile(t *testing.T) {
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	ctx := context.Background()
	meta := nodemeta.Metadata{
		Kind: nodemeta.KindSidecar, Name: "web-1", Namespace: "demo", ServiceAccount: "web",
		Address: s.ip(11), AppAddress: s.ip(11), OutboundAddress: s.ip(11), MeshPort: 15008,
	}
	made, err := cp.client(t).CreateTokens(ctx, []controlapi.TokenSpec{
		{Namespace: "demo", ServiceAccount: "db"},
		{Namespace: "demo", ServiceAccount: "web"},
	})
	if err != nil {
		t.Fatal(err)
	}
	forDB, forWeb := made[0], made[1]
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(forDB.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	opts := proxy.Options{TokenFile: tokenFile, IdentityDir: filepath.Join(dir, "identity"),
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testLogWriter()), nil))}
	stop := startProxyWith(t, cp, meta, opts)

	// The proxy is refused, saying why; that spends nothing, and without a
	// certificate the proxy cannot open its ADS stream.
	refusal := "join token " + forDB.ID + " is for spiffe://cluster.local/ns/demo/sa/db only"
	eventually(t, 30*time.Second, "a refused certificate request", func() error {
		if !strings.Contains(logs.String(), refusal) {
			return fmt.Errorf("the proxy did not log %q", refusal)
		}
		return nil
	})
	if state, left := tokenState(cp, t, forDB.ID); state != "active" || left != 1 {
		t.Fatalf("the db token is %s with %d uses left after the web proxy presented it", state, left)
	}
	if err := connected(cp, t, "web-1.demo"); err == nil {
		t.Fatal("the proxy joined with a token for another identity")
	}
	if err := os.WriteFile(tokenFile, []byte(forWeb.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the proxy joined with the right token", func() error { return connected(cp, t, "web-1.demo") })
	if state, left := tokenState(cp, t, forWeb.ID); state != "used" || left != 0 {
		t.Errorf("the web token is %s with %d uses left", state, left)
	}

	// Restart: the identity directory carries the proxy, without a token.
	stop()
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the proxy gone", func() error {
		if connected(cp, t, "web-1.demo") == nil {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	startProxyWith(t, cp, meta, opts)
	eventually(t, 60*time.Second, "the restarted proxy joined", func() error { return connected(cp, t, "web-1.demo") })
}
