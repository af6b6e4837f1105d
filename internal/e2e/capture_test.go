package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/identity"
)

// captureMesh: web is a headless service (its pods are called by pod IP)
// with an HTTP port, a declared TCP port and a port with no declared
// protocol, both of a server-first protocol; vault is under STRICT mTLS.
const captureMesh = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
  - {name: grpc, port: 9090}
  - {name: tcp-smtp, port: 2525}
  - {name: banner, port: 2526}
  - {name: rpc, port: 9091}
---
apiVersion: v1
kind: Service
metadata: {name: vault, namespace: shop}
spec:
  clusterIP: VAULT_VIP
  selector: {app: vault}
  ports: [{name: http, port: 8080}]
---
apiVersion: trellis.dev/v1alpha1
kind: MTLSPolicy
metadata: {name: vault, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: vault}]
  mode: STRICT
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: vault, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: vault, port: 8080}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-via, value: vault-route}]}
    backendRefs: [{name: vault, port: 8080}]
`

// proxyMark is the socket mark of the proxies' own connections, which the
// capture rules let through.
const proxyMark = "1337"

// TestTransparentCapture runs workloads in network namespaces with their
// traffic captured by `trellis-proxy init` rules (iptables in some,
// nftables in others) and checks, calling pod IPs directly:
//   - a mesh client reaches a server through both sidecars over mTLS, and
//     the server's app sees the caller's SPIFFE ID in
//     x-forwarded-client-cert;
//   - PERMISSIVE accepts plaintext from a client outside the mesh, STRICT
//     refuses it (and still accepts the mesh client);
//   - an HTTP/1.1 Upgrade, and a gRPC bidirectional stream with its
//     trailer, go through both sidecars;
//   - a Service's ClusterIP is routed by the HTTPRoute attached to it;
//   - a server-first protocol works on a declared TCP port and, after the
//     bounded protocol detection wait, on a port with no declared
//     protocol, from the mesh client and from outside;
//   - under STRICT, plaintext probes on the stats port reach the app;
//   - init --clean leaves no rule behind.
func TestTransparentCapture(t *testing.T) {
	n := newNetns(t)
	cpNS, cpIP := n.add("cp")
	clientNS, clientIP := n.add("client")
	webNS, webIP := n.add("web")
	vaultNS, vaultIP := n.add("vault")
	outsideNS, _ := n.add("outside")

	dir := t.TempDir()
	yaml := filepath.Join(dir, "mesh.yaml")
	// The virtual address of vault is on the namespaces' link, so that
	// the app's connect has a route; the capture rules redirect it before
	// anything answers for it.
	vaultVIP := n.subnet + ".200"
	if err := os.WriteFile(yaml, []byte(strings.ReplaceAll(captureMesh, "VAULT_VIP", vaultVIP)), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	n.start(cpNS, "control", filepath.Join(dir, "data"), cpIP+":15012", cpIP+":15014", yaml, ready)
	waitFile(t, ready, 90*time.Second)
	bundle := filepath.Join(dir, "data", "ca", "root-cert.pem")

	type workload struct {
		ns, ip, name, account, mode string
		ports                       []string
	}
	workloads := []workload{
		{clientNS, clientIP, "client-0", "client", "iptables", nil},
		{webNS, webIP, "web-0", "web", "nftables", []string{"http:8080/HTTP", "grpc:9090/GRPC", "tcp-smtp:2525/TCP", "banner:2526", "rpc:9091"}},
		{vaultNS, vaultIP, "vault-0", "vault", "iptables", []string{"http:8080/HTTP"}},
	}
	for _, w := range workloads {
		if out, err := n.run(w.ns, "proxy", "init", "--mode", w.mode, "--proxy-mark", proxyMark); err != nil {
			t.Fatalf("init in %s: %v\n%s", w.name, err, out)
		}
		app, _, _ := strings.Cut(w.name, "-")
		if len(w.ports) > 0 {
			n.start(w.ns, "app", "8080", "9090", "2525", "2526", "grpc:9091")
		}
		token := filepath.Join(dir, w.name+".token")
		if out, err := n.run(cpNS, "token", cpIP+":15014", "shop", w.account, token); err != nil {
			t.Fatalf("join token for %s: %v\n%s", w.name, err, out)
		}
		args := []string{"--control-plane", cpIP + ":15012", "--ca-bundle", bundle, "--token-file", token, "--name", w.name, "--namespace", "shop",
			"--service-account", w.account, "--address", w.ip, "--app-address", "127.0.0.1", "--label", "app=" + app,
			"--capture", "--socket-mark", proxyMark, "--log-level", "debug"}
		for _, p := range w.ports {
			args = append(args, "--port", p)
		}
		n.start(w.ns, "proxy", args...)
	}
	// Outside the mesh, the web app also serves the banner to a client
	// that sends nothing: through the capture rules and the PERMISSIVE
	// inbound listener.
	outside := func(role, target string) (string, error) { return n.run(outsideNS, role, target) }
	fromClient := func(role, target string) (string, error) { return n.run(clientNS, role, target) }

	wantID := "spiffe://" + identity.DefaultTrustDomain + "/ns/shop/sa/client"
	eventually(t, 60*time.Second, "mesh client to web over mTLS", func() error {
		out, err := fromClient("get", "http://"+webIP+":8080/")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasPrefix(out, "200 ") || !strings.Contains(out, wantID) {
			return fmt.Errorf("got %q, want 200 with x-forwarded-client-cert naming %s", out, wantID)
		}
		return nil
	})
	eventually(t, 30*time.Second, "mesh client to the STRICT vault over mTLS", func() error {
		out, err := fromClient("get", "http://"+vaultIP+":8080/")
		if err != nil || !strings.HasPrefix(out, "200 ") || !strings.Contains(out, wantID) {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	// gRPC through both sidecars: h2c from the app, HTTP/2 over mTLS
	// (ALPN h2) between the sidecars, h2c to the server app; streaming
	// and trailers.
	eventually(t, 30*time.Second, "mesh client, gRPC stream", func() error {
		out, err := fromClient("grpc", webIP+":9090")
		if err != nil || out != "trailer=clean" {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	// gRPC on a port with no declared protocol: detected by its HTTP/2
	// preface, and sent on as HTTP/2 (the clusters use the downstream
	// protocol), from the mesh client and from outside the mesh.
	eventually(t, 30*time.Second, "gRPC stream on a port with no declared protocol", func() error {
		for _, from := range []func(string, string) (string, error){fromClient, outside} {
			out, err := from("grpc", webIP+":9091")
			if err != nil || out != "trailer=clean" {
				return fmt.Errorf("%v: %q", err, out)
			}
		}
		return nil
	})
	// HTTP/1.1 Upgrade (as WebSocket does) through both sidecars.
	eventually(t, 30*time.Second, "mesh client, HTTP/1.1 Upgrade", func() error {
		out, err := fromClient("upgrade", webIP+":8080")
		if err != nil || out != "echo: ping\n" {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	// The service's virtual address: routed by the HTTPRoute attached to
	// the Service (GAMMA), then over mTLS to a member.
	eventually(t, 30*time.Second, "mesh client to vault's ClusterIP", func() error {
		out, err := fromClient("get", "http://"+vaultVIP+":8080/")
		if err != nil || !strings.HasPrefix(out, "200 ") || !strings.Contains(out, wantID) || !strings.Contains(out, "vault-route") {
			return fmt.Errorf("%v: %q; want 200 through the HTTPRoute, with the caller's identity", err, out)
		}
		return nil
	})
	for _, port := range []string{"2525", "2526"} {
		eventually(t, 30*time.Second, "mesh client, server-first protocol on port "+port, func() error {
			out, err := fromClient("banner", webIP+":"+port)
			if err != nil || !strings.HasPrefix(out, "220 banner") {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
		eventually(t, 30*time.Second, "outside client, server-first protocol on port "+port, func() error {
			out, err := outside("banner", webIP+":"+port)
			if err != nil || !strings.HasPrefix(out, "220 banner") {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
	}

	// PERMISSIVE: plaintext from outside the mesh reaches the app, with
	// no identity (and no forged one).
	out, err := outside("get", "http://"+webIP+":8080/")
	if err != nil || !strings.HasPrefix(out, "200 ") || strings.Contains(out, "spiffe://") {
		t.Errorf("PERMISSIVE, plaintext from outside: %v: %q; want 200 without identity", err, out)
	}
	// IPv6: the rules capture it too (ip6tables on the client, the inet
	// table on the server); an address the mesh does not know passes
	// through the client's sidecar, and the server's PERMISSIVE inbound
	// listener takes the plaintext.
	web6 := "http://[" + n.addr6(3) + "]:8080/"
	for name, from := range map[string]func(string, string) (string, error){"outside": outside, "mesh client": fromClient} {
		eventually(t, 30*time.Second, "IPv6 from "+name, func() error {
			out, err := from("get", web6)
			if err != nil || !strings.HasPrefix(out, "200 ") {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
	}
	// STRICT: plaintext is refused, over IPv4 and IPv6.
	for _, url := range []string{"http://" + vaultIP + ":8080/", "http://[" + n.addr6(4) + "]:8080/"} {
		if out, err := outside("get", url); err == nil {
			t.Errorf("STRICT, plaintext from outside to %s: got %q, want the connection refused", url, out)
		}
	}

	// Probes under STRICT: kubelet's plaintext probes, rewritten by the
	// injector to the sidecar's stats port (15020, never captured), reach
	// the app; the app's port itself stays closed to plaintext.
	for _, probe := range []string{"/app-health/8080/", "/app-tcp/8080"} {
		out, err := outside("get", "http://"+vaultIP+":15020"+probe)
		if err != nil || !strings.HasPrefix(out, "200 ") {
			t.Errorf("STRICT, a plaintext probe of %s on the stats port: %v %q, want 200", probe, err, out)
		}
	}
	if out, err := outside("get", "http://"+vaultIP+":15020/app-tcp/9999"); err != nil || !strings.HasPrefix(out, "404 ") {
		t.Errorf("a probe of a port the workload does not declare: %v %q, want 404", err, out)
	}

	// init --clean removes every rule init added.
	for _, w := range workloads {
		if out, err := n.run(w.ns, "proxy", "init", "--clean", "--mode", w.mode); err != nil {
			t.Fatalf("init --clean in %s: %v\n%s", w.name, err, out)
		}
		var dump []byte
		if w.mode == "nftables" {
			dump, err = exec.Command("ip", "netns", "exec", w.ns, "nft", "list", "ruleset").CombinedOutput()
		} else {
			dump, err = exec.Command("ip", "netns", "exec", w.ns, "iptables-save", "-t", "nat").CombinedOutput()
			// IPv6 rules, which init added where the namespace has IPv6.
			v6, _ := exec.Command("ip", "netns", "exec", w.ns, "ip6tables-save", "-t", "nat").CombinedOutput()
			dump = append(dump, v6...)
		}
		if err != nil {
			t.Fatalf("listing rules in %s: %v: %s", w.name, err, dump)
		}
		if strings.Contains(strings.ToLower(string(dump)), "trellis") {
			t.Errorf("rules left in %s after init --clean:\n%s", w.name, dump)
		}
	}
}
