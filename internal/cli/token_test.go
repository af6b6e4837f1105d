package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/usage"
)

// startControl runs a control plane on loopback ports and returns its API
// address.
func startControl(t *testing.T) string {
	t.Helper()
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- control.Run(ctx, control.Options{
			DataDir: t.TempDir(), XDSAddress: "127.0.0.1:0", DebugAddress: "127.0.0.1:0",
			Logger: slog.New(slog.DiscardHandler),
			Ready:  func(_, api net.Addr) { ready <- api.String() },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	select {
	case api := <-ready:
		return api
	case err := <-done:
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("control plane did not start in 60s")
	}
	return ""
}

// run runs the trellis command line and returns its output and error.
func run(api string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = Run(context.Background(), append([]string{"--control-plane", api}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestTokenCommands runs trellis token create, list and revoke against a
// control plane, and their usage errors (exit code 2) and failures (1).
func TestTokenCommands(t *testing.T) {
	api := startControl(t)

	out, errOut, err := run(api, "token", "create", "-n", "shop", "--service-account", "web", "--ttl", "10m", "--uses", "2")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	id, _, ok := strings.Cut(token, ".")
	if !ok || strings.Count(out, "\n") != 1 || !strings.HasPrefix(token, "tok_") {
		t.Fatalf("create printed %q, want the token alone on a line", out)
	}
	if !strings.Contains(errOut, "join token "+id+" for spiffe://cluster.local/ns/shop/sa/web: 2 uses, expires") || strings.Contains(errOut, token) {
		t.Errorf("create said %q", errOut)
	}

	out, _, err = run(api, "token", "create", "-n", "shop", "--service-account", "db", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var made controlapi.NewToken
	if err := json.Unmarshal([]byte(out), &made); err != nil || !strings.HasPrefix(made.Token, made.ID+".") || made.Uses != 1 {
		t.Fatalf("create -o json printed %s (%v)", out, err)
	}

	out, _, err = run(api, "token", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ID") || !strings.Contains(out, id) || !strings.Contains(out, "2/2") || !strings.Contains(out, made.ID) || strings.Contains(out, token) {
		t.Errorf("list printed\n%s", out)
	}

	out, _, err = run(api, "token", "revoke", id)
	if err != nil || out != "join token "+id+" for spiffe://cluster.local/ns/shop/sa/web revoked\n" {
		t.Fatalf("revoke: %q, %v", out, err)
	}
	out, _, err = run(api, "token", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list []controlapi.TokenInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("list -o json printed %s (%v)", out, err)
	}
	for _, in := range list {
		if want := map[bool]string{true: "revoked", false: "active"}[in.ID == id]; in.State != want {
			t.Errorf("%s is %s, want %s", in.ID, in.State, want)
		}
	}

	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"token"}, true, "expects a subcommand"},
		{[]string{"token", "frob"}, true, "expects a subcommand"},
		{[]string{"token", "create", "--service-account", "web"}, true, "--namespace is required"},
		{[]string{"token", "create", "-n", "shop"}, true, "--service-account is required"},
		{[]string{"token", "create", "-n", "shop", "--service-account", "web", "--ttl", "soon"}, true, "invalid argument"},
		{[]string{"token", "create", "-n", "shop", "--service-account", "web", "--uses", "0"}, true, "--uses 0"},
		{[]string{"token", "create", "-n", "shop", "--service-account", "web", "--ttl", "9000h"}, false, "ttl: 9000h0m0s is outside"},
		{[]string{"token", "list", "-o", "yaml"}, true, "-o yaml"},
		{[]string{"token", "revoke"}, true, "expects one token ID"},
		{[]string{"token", "revoke", "web"}, true, "is not a token ID"},
		{[]string{"token", "revoke", "tok_00000000000000aa"}, false, "join token tok_00000000000000aa is unknown"},
	} {
		_, _, err := run(api, tc.args...)
		if err == nil || usage.Is(err) != tc.usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v (usage %v), want usage=%v containing %q", tc.args, err, usage.Is(err), tc.usage, tc.want)
		}
	}
}
