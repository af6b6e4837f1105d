package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/controlapi"
)

// runControlPlane runs Run on loopback ports with its own data directory
// and returns the addresses of the xDS/CA port and the API.
func runControlPlane(t *testing.T, edit ...func(*Options)) (xdsAddr, apiAddr, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	ready := make(chan [2]string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := Options{
		DataDir: dataDir, XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Ready:  func(x, d net.Addr) { ready <- [2]string{x.String(), d.String()} },
	}
	for _, e := range edit {
		e(&opts)
	}
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a[0], a[1], dataDir
	case err := <-done:
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("control plane did not start in 60s")
	}
	return
}

// TestTokenAPI: tokens are made, listed without secrets, and revoked
// through the API, on the embedded etcd; a bad request makes none; tokens
// are no resource kind.
func TestTokenAPI(t *testing.T) {
	ctx := context.Background()
	_, api, _ := runControlPlane(t)
	client, err := controlapi.NewClient(api)
	if err != nil {
		t.Fatal(err)
	}

	made, err := client.CreateTokens(ctx, []controlapi.TokenSpec{
		{Namespace: "shop", ServiceAccount: "web", TTLSeconds: 600, Uses: 2},
		{Namespace: "shop", ServiceAccount: "db"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 2 || made[0].Identity != "spiffe://cluster.local/ns/shop/sa/web" || made[0].UsesLeft != 2 ||
		made[1].Uses != 1 || made[1].ExpiresAt.Sub(made[1].CreatedAt) != time.Hour || made[0].State != "active" {
		t.Fatalf("made %+v", made)
	}
	if !strings.HasPrefix(made[0].Token, made[0].ID+".") {
		t.Errorf("token %q does not start with its ID %s", made[0].Token, made[0].ID)
	}

	// A bad request lists every problem and makes nothing.
	_, err = client.CreateTokens(ctx, []controlapi.TokenSpec{
		{Namespace: "shop", ServiceAccount: "ok"},
		{Namespace: "sh op", ServiceAccount: "web", TTLSeconds: -5, Uses: -1},
		{ServiceAccount: "web", TTLSeconds: 1 << 62},
	})
	var apiErr *controlapi.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnprocessableEntity {
		t.Fatalf("bad request: %v", err)
	}
	for _, want := range []string{"tokens[1].namespace/serviceAccount", "tokens[1].ttl: -5s", "tokens[1].uses: -1", "tokens[2].namespace: required", "tokens[2].ttl", "no token was made"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}

	list, err := client.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !slices.ContainsFunc(list, func(in controlapi.TokenInfo) bool { return in == made[0].TokenInfo }) ||
		!slices.ContainsFunc(list, func(in controlapi.TokenInfo) bool { return in == made[1].TokenInfo }) {
		t.Fatalf("listed %+v, want the two tokens made", list)
	}
	// The raw listing holds no secret.
	resp, err := http.Get("http://" + api + controlapi.PathTokens)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range made {
		_, secret, _ := strings.Cut(m.Token, ".")
		if strings.Contains(string(raw), secret) || strings.Contains(string(raw), `"token"`) {
			t.Errorf("the listing shows a secret: %s", raw)
		}
	}

	revoked, err := client.RevokeToken(ctx, made[1].ID)
	if err != nil || revoked.State != "revoked" || revoked.RevokedAt.IsZero() {
		t.Fatalf("revoke: %+v, %v", revoked, err)
	}
	if _, err := client.RevokeToken(ctx, "tok_00000000000000aa"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("revoking an unknown token: %v", err)
	}
	if _, err := client.RevokeToken(ctx, "tok_XYZ"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Errorf("revoking a malformed ID: %v", err)
	}

	// Tokens are not a resource kind: `trellis get` cannot list them.
	if _, err := client.List(ctx, "tokens", "", ""); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("get tokens: %v", err)
	}
}
