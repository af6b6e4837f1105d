package proxycli

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/usage"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]nodemeta.Port{
		"8080":           {Port: 8080, Protocol: "TCP"},
		"http:8080":      {Name: "http", Port: 8080, Protocol: "HTTP"},
		"http-api:9000":  {Name: "http-api", Port: 9000, Protocol: "HTTP"},
		"db:5432/tcp":    {Name: "db", Port: 5432, Protocol: "TCP"},
		"grpc:9090/GRPC": {Name: "grpc", Port: 9090, Protocol: "GRPC"},
	} {
		got, err := parsePort(in)
		if err != nil || got != want {
			t.Errorf("parsePort(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "http:0", "http:70000", "8080/SCTP", "a:b:c"} {
		if _, err := parsePort(in); err == nil {
			t.Errorf("parsePort(%q) succeeded", in)
		}
	}
}

func TestParseUpstream(t *testing.T) {
	got, err := parseUpstream("catalog.shop:80=9001")
	if want := (nodemeta.Upstream{Service: "catalog", Namespace: "shop", Port: 80, LocalPort: 9001}); err != nil || got != want {
		t.Errorf("parseUpstream = %+v, %v; want %+v", got, err, want)
	}
	for _, in := range []string{"catalog", "catalog:80", "catalog=9001", "catalog:x=9001", "catalog:80=0"} {
		if _, err := parseUpstream(in); err == nil {
			t.Errorf("parseUpstream(%q) succeeded", in)
		}
	}
}

// TestUsageErrors checks that mistakes in the command line are usage
// errors (exit code 2) that say what is wrong.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--name", "a", "--port", "http:0"}, `--port "http:0"`},
		{[]string{"--name", "a", "--label", "novalue"}, "want KEY=VALUE"},
		{[]string{"--gateway", "nonamespace"}, "want NAMESPACE/NAME"},
		{[]string{"--name", "a"}, "--ca-bundle is required"},
		{[]string{"--name", "a", "--address", "example.com", "--ca-bundle", "x"}, `address: "example.com" is not an IP address`},
		{[]string{"--name", "a", "--control-plane", "cp-a:15012,"}, `--control-plane: proxy: control plane address "": want HOST:PORT`},
		{[]string{"--name", "a", "--control-plane", "cp-a:15012,cp-b"}, `control plane address "cp-b"`},
		{[]string{"--name", "a", "--ca-bundle", "testdata/none.pem", "--token", "t", "--token-file", "f"}, "--token and --token-file: give one of them"},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &out)
		if !usage.Is(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestControlPlanes(t *testing.T) {
	for in, want := range map[string][]string{
		"127.0.0.1:15012":                 {"127.0.0.1:15012"},
		"cp-a:15012, 10.0.0.2:15012":      {"cp-a:15012", "10.0.0.2:15012"},
		"[fd00::1]:15012,[fd00::2]:15012": {"[fd00::1]:15012", "[fd00::2]:15012"},
	} {
		got, err := proxy.ParseControlPlanes(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseControlPlanes(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "cp-a", "cp-a:15012,", ":15012", "cp-a:"} {
		if got, err := proxy.ParseControlPlanes(in); err == nil {
			t.Errorf("ParseControlPlanes(%q) = %q, want an error", in, got)
		}
	}
}

func TestWorkloadAPIPath(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "socket")
	missing := filepath.Join(dir, "none", "socket")
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name      string
		set       bool
		flag      string
		kind, def string
		want      string
		usage     bool
		err       string
	}{
		{name: "sidecar, default directory exists", kind: nodemeta.KindSidecar, def: def, want: def},
		{name: "sidecar, no default directory", kind: nodemeta.KindSidecar, def: missing, want: ""},
		{name: "gateway by default", kind: nodemeta.KindGateway, def: def, want: ""},
		{name: "explicit", set: true, flag: def, kind: nodemeta.KindSidecar, def: missing, want: def},
		{name: "explicit for a gateway", set: true, flag: def, kind: nodemeta.KindGateway, def: missing, want: def},
		{name: "explicitly disabled", set: true, flag: "", kind: nodemeta.KindSidecar, def: def, want: ""},
		{name: "explicit, missing directory", set: true, flag: missing, kind: nodemeta.KindSidecar, err: "create the directory"},
		{name: "relative", set: true, flag: "api.sock", kind: nodemeta.KindSidecar, usage: true, err: "want an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := flags{workloadAPISocket: tc.flag, workloadAPISocketSet: tc.set}
			got, err := f.workloadAPIPath(tc.kind, tc.def, log)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || usage.Is(err) != tc.usage {
					t.Fatalf("error %v, want one containing %q (usage error: %v)", err, tc.err, tc.usage)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
