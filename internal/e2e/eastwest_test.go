package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/netnstest"
)

// eastWestMesh: echo has one member, in network b; split has one in
// network a and two in network b. eastwest-b is network b's east-west
// gateway.
const eastWestMesh = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: ECHO_VIP
  selector: {app: echo}
  ports:
  - {name: http, port: 8080}
  - {name: tcp-banner, port: 2525}
---
apiVersion: v1
kind: Service
metadata: {name: split, namespace: shop}
spec:
  selector: {role: split}
  ports: [{name: http, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: eastwest-b
  namespace: shop
  labels: {trellis.dev/network: b}
spec:
  gatewayClassName: trellis
  listeners:
  - name: cross-network
    port: 15443
    protocol: TLS
    tls:
      mode: Passthrough
      options: {trellis.dev/listener-mode: auto-passthrough}
`

// TestEastWest runs two networks on two subnets joined only by network
// b's east-west gateway (a namespace with a leg on each) and one control
// plane on both. A client of network a calls, through its sidecar, by
// service name:
//   - echo, whose only member is in network b and whose address the
//     client cannot reach: the call goes through the gateway, and the
//     member's sidecar reports the client's SPIFFE ID (mTLS end to end,
//     not terminated at the gateway); a TCP call's bytes show in the
//     gateway's stats; an unknown SNI is refused;
//   - echo's ClusterIP, from a client whose traffic is captured;
//   - split, with one member in network a and two in network b: 30 calls
//     split 10 direct and 20 through the gateway (weight 2).
func TestEastWest(t *testing.T) {
	n := newNetns(t)
	n2 := n.Sibling()
	cpNS, cpIP := n.add("cp")
	cpIP2 := n2.Attach(cpNS)
	clientNS, clientIP := n.add("client")
	captureNS, captureIP := n.add("capture")
	splitANS, splitAIP := n.add("split-a")
	gwNS, gwIP := n.add("gw")
	n2.Attach(gwNS)
	b0NS, b0IP := n2.Add("b0")
	b1NS, b1IP := n2.Add("b1")

	dir := t.TempDir()
	yaml := filepath.Join(dir, "mesh.yaml")
	// echo's virtual address is on network a's link, so that the capture
	// client's connect has a route; its capture rules redirect it.
	echoVIP := n.subnet + ".200"
	if err := os.WriteFile(yaml, []byte(strings.ReplaceAll(eastWestMesh, "ECHO_VIP", echoVIP)), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready")
	n.start(cpNS, "control", filepath.Join(dir, "data"), "0.0.0.0:15012", cpIP+":15014", yaml, ready)
	waitFile(t, ready, 90*time.Second)
	bundle := filepath.Join(dir, "data", "ca", "root-cert.pem")

	// The subnets are joined only through the gateway's namespace.
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if c, err := netnstest.Dialer(clientNS)(short, "tcp", net.JoinHostPort(b0IP, "15008")); err == nil {
		c.Close()
		t.Fatal("network a reached a member of network b directly")
	}
	cancel()

	type proxy struct {
		ns, ip, cp, name, account, network string
		args                               []string
	}
	proxies := []proxy{
		{b0NS, b0IP, cpIP2, "b0", "server-b", "b", []string{"--label", "app=echo", "--label", "role=split", "--port", "http:8080/HTTP", "--port", "banner:2525/TCP"}},
		{b1NS, b1IP, cpIP2, "b1", "server-b", "b", []string{"--label", "role=split", "--port", "http:8080/HTTP"}},
		{splitANS, splitAIP, cpIP, "split-a", "split-a", "a", []string{"--label", "role=split", "--port", "http:8080/HTTP"}},
		{clientNS, clientIP, cpIP, "client", "client", "a", []string{"--upstream", "echo:8080=9001", "--upstream", "echo:2525=9002", "--upstream", "split:8080=9003"}},
		{captureNS, captureIP, cpIP, "capture", "client", "a", []string{"--capture", "--socket-mark", proxyMark}},
		{gwNS, gwIP, cpIP, "eastwest-b", "eastwest", "", []string{"--gateway", "shop/eastwest-b"}},
	}
	if out, err := n.run(captureNS, "proxy", "init", "--mode", "iptables", "--proxy-mark", proxyMark); err != nil {
		t.Fatalf("init in capture: %v\n%s", err, out)
	}
	for _, p := range proxies {
		if p.name != "client" && p.name != "eastwest-b" {
			n.start(p.ns, "app", "8080", "9090", "2525")
		}
		token := filepath.Join(dir, p.name+".token")
		if out, err := n.run(cpNS, "token", cpIP+":15014", "shop", p.account, token); err != nil {
			t.Fatalf("join token for %s: %v\n%s", p.name, err, out)
		}
		args := append([]string{"--control-plane", p.cp + ":15012", "--ca-bundle", bundle, "--token-file", token, "--name", p.name,
			"--namespace", "shop", "--service-account", p.account, "--address", p.ip, "--log-level", "debug"}, p.args...)
		if p.network != "" {
			args = append(args, "--network", p.network)
		}
		n.start(p.ns, "proxy", args...)
	}

	td := identity.DefaultTrustDomain
	clientID := "spiffe://" + td + "/ns/shop/sa/client"
	serverB := "spiffe://" + td + "/ns/shop/sa/server-b"
	// call returns the identity of the member that answered (By) and of
	// the caller it saw (URI).
	call := func(port int) (by, uri string, err error) {
		out, err := n.run(clientNS, "get", "http://127.0.0.1:"+strconv.Itoa(port)+"/")
		if err != nil {
			return "", "", fmt.Errorf("%v: %s", err, out)
		}
		status, body, _ := strings.Cut(out, " ")
		if status != "200" {
			return "", "", fmt.Errorf("status %s: %s", status, body)
		}
		var seen struct{ XFCC string }
		if err := json.Unmarshal([]byte(body), &seen); err != nil {
			return "", "", fmt.Errorf("%v: %s", err, body)
		}
		for _, f := range strings.Split(seen.XFCC, ";") {
			if v, ok := strings.CutPrefix(f, "By="); ok {
				by = v
			}
			if v, ok := strings.CutPrefix(f, "URI="); ok {
				uri = v
			}
		}
		return by, uri, nil
	}
	eventually(t, 60*time.Second, "client in network a to echo in network b", func() error {
		by, uri, err := call(9001)
		if err != nil {
			return err
		}
		if by != serverB || uri != clientID {
			return fmt.Errorf("answered by %q, which saw caller %q; want %q and %q", by, uri, serverB, clientID)
		}
		return nil
	})

	// Transparent capture: a call to echo's ClusterIP goes the same way.
	eventually(t, 30*time.Second, "capture client to echo's ClusterIP in network b", func() error {
		out, err := n.run(captureNS, "get", "http://"+echoVIP+":8080/")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.HasPrefix(out, "200 ") || !strings.Contains(out, "By="+serverB) || !strings.Contains(out, "URI="+clientID) {
			return fmt.Errorf("got %s", out)
		}
		return nil
	})

	// The gateway refuses an SNI that names no mesh service port of its
	// network.
	dial, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	raw, err := netnstest.Dialer(clientNS)(dial, "tcp", net.JoinHostPort(gwIP, "15443"))
	if err != nil {
		t.Fatal(err)
	}
	unknown := tls.Client(raw, &tls.Config{ServerName: "outbound_.8080_._.nope.shop.svc.cluster.local", InsecureSkipVerify: true})
	if err := unknown.HandshakeContext(dial); err == nil {
		t.Error("the gateway passed a connection with an unknown SNI")
	}
	unknown.Close()
	cancel2()

	// Opaque TCP: a server-first protocol through the gateway.
	eventually(t, 30*time.Second, "TCP to echo in network b", func() error {
		out, err := n.run(clientNS, "banner", "127.0.0.1:9002")
		if err != nil || !strings.HasPrefix(out, "220 banner") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	stats := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: netnstest.Dialer(gwNS)}}
	eventually(t, 30*time.Second, "the gateway's TCP bytes for echo", func() error {
		resp, err := stats.Get("http://" + gwIP + ":15020/stats/prometheus")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var sent, received int
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, `destination_service="echo.shop.svc.cluster.local"`) {
				continue
			}
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[len(f)-1])
			switch {
			case strings.HasPrefix(line, "trellis_tcp_sent_bytes_total"):
				sent += v
			case strings.HasPrefix(line, "trellis_tcp_received_bytes_total"):
				received += v
			}
		}
		if sent == 0 || received == 0 {
			return fmt.Errorf("sent %d, received %d bytes", sent, received)
		}
		return nil
	})

	// split: both members of network b through the gateway, weight 2,
	// and split-a directly, weight 1.
	splitA := "spiffe://" + td + "/ns/shop/sa/split-a"
	eventually(t, 30*time.Second, "split reaches both networks", func() error {
		seen := map[string]bool{}
		for range 6 {
			by, _, err := call(9003)
			if err != nil {
				return err
			}
			seen[by] = true
		}
		if !seen[serverB] || !seen[splitA] {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})
	counts := map[string]int{}
	for range 30 {
		by, uri, err := call(9003)
		if err != nil {
			t.Fatal(err)
		}
		if uri != clientID {
			t.Fatalf("%s saw caller %q", by, uri)
		}
		counts[by]++
	}
	if counts[serverB] != 20 || counts[splitA] != 10 {
		t.Errorf("30 calls answered %v; want 20 by network b (through the gateway, weight 2) and 10 by split-a", counts)
	}
}
