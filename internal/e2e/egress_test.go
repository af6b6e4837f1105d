package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testcert"
)

// registryOnlyEnv makes the control role start with the outbound traffic
// policy registry-only.
const registryOnlyEnv = "TRELLIS_E2E_REGISTRY_ONLY"

// egressRoles are the roles of TestEgress (runRole):
//
//	extserver TLSPORT HTTPPORT...  HTTP servers and one HTTPS server outside
//	                               the mesh, answering "PORT REMOTE-IP HOST"
//	gethost URL HOST               prints "STATUS BODY" of a GET with Host
//	gettls ADDR                    a GET over TLS (the server's certificate
//	                               is not checked); prints "STATUS BODY"
var egressRoles = map[string]func(context.Context, []string) error{
	"extserver": roleExtServer,
	"gethost": func(_ context.Context, args []string) error {
		req, err := http.NewRequest("GET", args[0], nil)
		if err != nil {
			return err
		}
		req.Host = args[1]
		return printResponse(http.DefaultTransport, req)
	},
	"gettls": func(_ context.Context, args []string) error {
		req, err := http.NewRequest("GET", "https://"+args[0]+"/", nil)
		if err != nil {
			return err
		}
		return printResponse(&http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, req)
	},
}

func printResponse(rt http.RoundTripper, req *http.Request) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: rt}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	return nil
}

// roleExtServer serves HTTP on every port of args[1:] and HTTPS on
// args[0], each answering with its port, the caller's address and the Host
// it was asked for.
func roleExtServer(ctx context.Context, args []string) error {
	p, err := testcert.New(testcert.Options{CommonName: "payments-api", Hosts: []string{"payments-api.example.com"}})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var servers []*http.Server
	for i, port := range args {
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintf(w, "%s %s %s", port, host, r.Host)
		})}
		if i == 0 {
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{p.Cert}}
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		servers = append(servers, srv)
		wg.Go(func() { _ = srv.Serve(ln) })
	}
	<-ctx.Done()
	for _, s := range servers {
		_ = s.Close()
	}
	wg.Wait()
	return nil
}

// egressExample returns the YAML blocks of docs/gateways.md's Egress
// section, with the GatewayClass all examples share.
func egressExample(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "gateways.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	blocks := func(s string) []string {
		var out []string
		for _, part := range strings.Split(s, "```yaml\n")[1:] {
			end := strings.Index(part, "```")
			if end < 0 {
				t.Fatal("docs/gateways.md: an unterminated yaml block")
			}
			out = append(out, strings.TrimSpace(part[:end])+"\n")
		}
		return out
	}
	start := strings.Index(text, "\n## Egress\n")
	if start < 0 {
		t.Fatal("docs/gateways.md has no Egress section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	all := append(blocks(text)[:1], blocks(section)...)
	if len(all) < 4 || !strings.Contains(all[0], "kind: GatewayClass") {
		t.Fatalf("docs/gateways.md: want the GatewayClass and the Egress section's blocks, got %d blocks", len(all))
	}
	return strings.Join(all, "---\n")
}

// TestEgress runs the Egress example of docs/gateways.md in network
// namespaces: two capturing client workloads (shop/billing, which the
// AccessPolicy lets leave, and shop/checkout, which it does not), the
// egress gateway (a mesh workload with a mesh port), and, outside the
// mesh, the external host (HTTP on 8080 and 8081, its own TLS on 8443, and
// 9090 that no Service names). It checks:
//
//	(a) allow-any: a direct call to an address the mesh does not know
//	    passes through;
//	(b) registry-only (the control plane restarted with it): that call is
//	    refused, and counted as BlackHoleCluster; the registered host is
//	    reached through the egress gateway, whose address it sees;
//	(c) the AccessPolicy on the gateway: checkout gets 403 over HTTP and
//	    its TCP (TLS) connection closed, billing passes;
//	(d) an ExternalName host, resolved by the gateway from its own
//	    /etc/hosts, through the gateway's Service by Host.
func TestEgress(t *testing.T) {
	n := newNetns(t)
	cpNS, cpIP := n.add("cp")
	billingNS, billingIP := n.add("billing")
	checkoutNS, checkoutIP := n.add("checkout")
	egressNS, egressIP := n.add("egress")
	extNS, extIP := n.add("ext")
	gatewayVIP := n.subnet + ".201"

	// The gateway resolves status.example.com with its own hosts file,
	// which `ip netns exec` mounts over /etc/hosts.
	hostsDir := filepath.Join("/etc/netns", egressNS)
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostsDir) })
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts"), []byte("127.0.0.1 localhost\n"+extIP+" status.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	yaml := egressExample(t)
	yaml = strings.ReplaceAll(yaml, "203.0.113.10", extIP)
	withVIP := strings.Replace(yaml, "metadata: {name: egress-gateway, namespace: egress}\nspec:\n",
		"metadata: {name: egress-gateway, namespace: egress}\nspec:\n  clusterIP: "+gatewayVIP+"\n", 1)
	if withVIP == yaml {
		t.Fatal("the example has no Service egress-gateway to give a ClusterIP")
	}
	yamlFile := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(yamlFile, []byte(withVIP), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	startControl := func(registryOnly bool, ready string) *exec.Cmd {
		env := []string{roleEnv + "=control"}
		if registryOnly {
			env = append(env, registryOnlyEnv+"=1")
		}
		cmd := n.Command(cpNS, env, os.Args[0], data, cpIP+":15012", cpIP+":15014", yamlFile, ready)
		if os.Getenv("TRELLIS_TEST_LOGS") != "" {
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		}
		n.Start(cmd)
		waitFile(t, ready, 90*time.Second)
		return cmd
	}
	control := startControl(false, filepath.Join(dir, "ready-1"))
	bundle := filepath.Join(data, "ca", "root-cert.pem")

	n.start(extNS, "extserver", "8443", "8080", "8081", "9090")
	token := func(ns, sa string) string {
		path := filepath.Join(dir, ns+"-"+sa+".token")
		if out, err := n.run(cpNS, "token", cpIP+":15014", ns, sa, path); err != nil {
			t.Fatalf("join token for %s/%s: %v\n%s", ns, sa, err, out)
		}
		return path
	}
	for _, c := range []struct{ ns, ip, name string }{{billingNS, billingIP, "billing"}, {checkoutNS, checkoutIP, "checkout"}} {
		if out, err := n.run(c.ns, "proxy", "init", "--mode", "iptables", "--proxy-mark", proxyMark); err != nil {
			t.Fatalf("init in %s: %v\n%s", c.name, err, out)
		}
		n.start(c.ns, "proxy", "--control-plane", cpIP+":15012", "--ca-bundle", bundle, "--token-file", token("shop", c.name),
			"--name", c.name+"-1", "--namespace", "shop", "--service-account", c.name, "--address", c.ip, "--label", "app="+c.name,
			"--capture", "--socket-mark", proxyMark)
	}
	n.start(egressNS, "proxy", "--gateway", "egress/egress", "--control-plane", cpIP+":15012", "--ca-bundle", bundle,
		"--token-file", token("egress", "egress"), "--name", "egress-1", "--namespace", "egress", "--service-account", "egress",
		"--address", egressIP, "--label", "app=egress-gateway", "--mesh-port", "15008")

	from := func(ns string) func(role string, args ...string) (string, error) {
		return func(role string, args ...string) (string, error) { return n.run(ns, role, args...) }
	}
	billing, checkout := from(billingNS), from(checkoutNS)
	want := func(out string, err error, prefix string) error {
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasPrefix(out, prefix) {
			return fmt.Errorf("got %q, want %q...", out, prefix)
		}
		return nil
	}

	// (a) allow-any: an address no Service names passes through, from the
	// client's own address.
	eventually(t, 60*time.Second, "allow-any: checkout calls an unknown address directly", func() error {
		out, err := checkout("get", "http://"+extIP+":9090/")
		return want(out, err, "200 9090 "+checkoutIP+" ")
	})

	// (b) registry-only: the control plane restarts with it; the proxies
	// keep running and get their new config.
	_ = control.Process.Signal(syscall.SIGTERM)
	_ = control.Wait()
	startControl(true, filepath.Join(dir, "ready-2"))
	eventually(t, 60*time.Second, "registry-only: the direct call to an unknown address is refused", func() error {
		if out, err := checkout("get", "http://"+extIP+":9090/"); err == nil {
			return fmt.Errorf("got %q, want the connection refused", out)
		}
		return nil
	})
	if out, err := billing("get", "http://"+extIP+":9090/"); err == nil {
		t.Errorf("registry-only: billing's direct call to an unknown address: got %q, want it refused", out)
	}
	// The external host, registered, is reached through the egress
	// gateway (the mesh route on payments-api), and sees the gateway.
	eventually(t, 60*time.Second, "registry-only: billing reaches payments-api through the egress gateway", func() error {
		out, err := billing("get", "http://"+extIP+":8080/")
		return want(out, err, "200 8080 "+egressIP+" ")
	})
	// The refusal is visible in the client's metrics.
	eventually(t, 30*time.Second, "BlackHoleCluster in checkout's metrics", func() error {
		out, err := n.run(cpNS, "get", "http://"+checkoutIP+":15020/stats/prometheus")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "trellis_tcp_connections_closed_total{") && strings.Contains(line, `destination_service="BlackHoleCluster"`) {
				return nil
			}
		}
		return fmt.Errorf("no closed connection to BlackHoleCluster counted:\n%s", out)
	})

	// (c) the AccessPolicy: only billing may leave.
	out, err := checkout("get", "http://"+extIP+":8080/")
	if err := want(out, err, "403 "); err != nil {
		t.Errorf("checkout through the egress gateway over HTTP: %v", err)
	}
	// A client outside the mesh, calling the gateway's own listener, has
	// no identity: the ALLOW refuses it.
	out, err = n.run(cpNS, "get", "http://"+egressIP+":80/")
	if err := want(out, err, "403 "); err != nil {
		t.Errorf("a plaintext client of the gateway's listener: %v", err)
	}
	eventually(t, 30*time.Second, "billing's own TLS to payments-api, through the gateway's TCP listener", func() error {
		out, err := billing("gettls", extIP+":8443")
		return want(out, err, "200 8443 "+egressIP+" ")
	})
	if out, err := checkout("gettls", extIP+":8443"); err == nil {
		t.Errorf("checkout's TLS through the egress gateway: got %q, want the connection closed", out)
	}

	// (d) status.example.com (ExternalName), resolved by the gateway: the
	// app calls the gateway's Service with the name as Host.
	eventually(t, 30*time.Second, "billing reaches the ExternalName host through the gateway", func() error {
		out, err := billing("gethost", "http://"+gatewayVIP+"/", "status.example.com")
		return want(out, err, "200 8081 "+egressIP+" status.example.com")
	})
	out, err = checkout("gethost", "http://"+gatewayVIP+"/", "status.example.com")
	if err := want(out, err, "403 "); err != nil {
		t.Errorf("checkout to the ExternalName host: %v", err)
	}
}
