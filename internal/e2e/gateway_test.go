package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"trellis.dev/trellis/internal/controlapi"
	"trellis.dev/trellis/internal/nodemeta"
	"trellis.dev/trellis/internal/proxy"
	"trellis.dev/trellis/internal/testcert"
)

// The gateway tests run a control plane and a gateway proxy serving the
// Gateway infra/edge on the subnet's .10, with backends on real sockets:
// each listener type with a working config, the certificates of HTTPS
// listeners read from files and rotated, and route attachment between
// namespaces.

const gatewayClass = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
`

// gatewayEnv is a control plane and the gateway infra/edge.
type gatewayEnv struct {
	s     subnet
	cp    *controlPlane
	ip    string // the gateway's address
	certs string // its --certs-dir
}

func newGatewayEnv(t *testing.T) *gatewayEnv {
	t.Helper()
	s := newSubnet(t)
	e := &gatewayEnv{s: s, cp: startControlPlane(t, s, t.TempDir()), ip: s.ip(10), certs: t.TempDir()}
	meta := nodemeta.Metadata{Kind: nodemeta.KindGateway, Name: "edge", Namespace: "infra", ServiceAccount: "edge",
		Address: e.ip, Gateway: "infra/edge"}
	startProxyWith(t, e.cp, meta, proxy.Options{
		Token: e.cp.token(t, "infra", "edge"), GatewayCertsDir: e.certs, GatewayCertsInterval: 100 * time.Millisecond,
	})
	return e
}

func (e *gatewayEnv) addr(port int) string { return net.JoinHostPort(e.ip, fmt.Sprint(port)) }

// serveRatings serves the gRPC test service as ratings-1 on host 23's port
// 9090 until the test ends.
func (e *gatewayEnv) serveRatings(t *testing.T) {
	t.Helper()
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &echoServer{name: "ratings-1"})
	ln, err := net.Listen("tcp", net.JoinHostPort(e.s.ip(23), "9090"))
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
}

// tryApply applies yaml and returns the control plane's refusal, if any.
func (cp *controlPlane) tryApply(t *testing.T, yaml string) error {
	_, err := cp.client(t).Apply(context.Background(), controlapi.ApplyRequest{Files: []controlapi.File{{Name: "test.yaml", Content: yaml}}})
	return err
}

// problems returns the problems the control plane reports for proxy id.
func (cp *controlPlane) problems(t *testing.T, id string) ([]string, error) {
	ps, err := cp.client(t).Proxies(context.Background())
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.ID == id {
			return p.Problems, nil
		}
	}
	return nil, fmt.Errorf("proxy %s is not known", id)
}

// backendYAML is a Service NAME in ns with one port (PORT → the same
// port) and a Workload without sidecar at ip serving it.
func backendYAML(ns, name, ip string, port int, protocol string) string {
	portName := strings.ToLower(protocol)
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  selector: {app: %[2]s}
  ports: [{name: %[5]s, port: %[4]d, targetPort: %[4]d}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: %[2]s-1, namespace: %[1]s, labels: {app: %[2]s}}
spec:
  address: %[3]s
  ports: [{name: %[5]s, port: %[4]d, protocol: %[6]s}]
---
`, ns, name, ip, port, portName, protocol)
}

// serveHTTP answers every request on addr with "NAME HOST PATH".
func serveHTTP(t *testing.T, addr, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", name, r.Host, r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// serveTCP writes banner to each connection, then echoes what it reads.
func serveTCP(t *testing.T, ln net.Listener, banner string) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, banner+"\n"); err != nil {
					return
				}
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// newCert makes a self-signed ECDSA certificate for hosts with serial.
func newCert(t *testing.T, serial int64, hosts ...string) (crtPEM, keyPEM []byte, cert tls.Certificate) {
	p := testcert.Make(t, testcert.Options{Hosts: hosts, Serial: serial})
	return p.CertPEM, p.KeyPEM, p.Cert
}

// writeSecret writes a certificate for hosts as Secret ns/name under
// dir, as a mounted TLS Secret: DIR/NS/NAME/tls.crt and tls.key, each
// renamed into place.
func writeSecret(t *testing.T, dir, ns, name string, serial int64, hosts ...string) {
	t.Helper()
	crt, key, _ := newCert(t, serial, hosts...)
	d := filepath.Join(dir, ns, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"tls.key": key, "tls.crt": crt} {
		tmp := filepath.Join(d, "."+file+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(d, file)); err != nil {
			t.Fatal(err)
		}
	}
}

// httpsGet sends GET path to addr over TLS with SNI and Host sni, on a
// new connection, and returns the body and the serial number of the
// certificate the gateway presented.
func httpsGet(addr, sni, path string) (string, int64, error) {
	return httpsGetHost(addr, sni, sni, path)
}

// httpsGetHost is httpsGet with a Host header of its own.
func httpsGetHost(addr, sni, host, path string) (string, int64, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		// The test checks which certificate is served, by serial number.
		TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true},
	}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	serial := resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	if resp.StatusCode != http.StatusOK {
		return "", serial, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), serial, nil
}

// httpGet sends GET path with Host host to addr in plaintext.
func httpGet(addr, host, path string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// expectBody waits until GET host/path through addr answers want.
func expectBody(t *testing.T, addr, host, path, want string) {
	t.Helper()
	eventually(t, 30*time.Second, host+path+" answers "+want, func() error {
		code, body, err := httpGet(addr, host, path)
		if err != nil {
			return err
		}
		if code != http.StatusOK || body != want {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}

// TestGatewayHTTP: an HTTP listener routes by hostname to a backend
// behind its sidecar (reached over mesh mTLS); other hostnames get 404;
// gRPC calls on the same listener follow a GRPCRoute.
func TestGatewayHTTP(t *testing.T) {
	e := newGatewayEnv(t)
	e.cp.apply(t, gatewayClass+`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: web, protocol: HTTP, port: 18080, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{name: edge, namespace: infra}]
  hostnames: [web.example.com]
  rules:
  - backendRefs: [{name: web, port: 80}]
`)
	startWorkload(t, e.s, e.cp, sidecar{name: "web-1", service: "web", account: "web", version: "v1", host: 21})
	eventually(t, 30*time.Second, "web.example.com through the gateway", func() error {
		code, body, err := httpGet(e.addr(18080), "web.example.com", "/")
		if err != nil {
			return err
		}
		// The demo app names its workload and the caller's identity,
		// which only mesh mTLS tells it.
		if code != http.StatusOK || !strings.Contains(body, "web") || !strings.Contains(body, "/ns/infra/sa/edge") {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	if code, _, err := httpGet(e.addr(18080), "other.example.com", "/"); err != nil || code != http.StatusNotFound {
		t.Errorf("a hostname no route serves: %d %v, want 404", code, err)
	}

	// gRPC over the same plaintext listener (HTTP/2 with prior knowledge),
	// routed by a GRPCRoute.
	e.serveRatings(t)
	e.cp.apply(t, backendYAML("demo", "ratings", e.s.ip(23), 9090, "GRPC")+`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ratings, namespace: demo}
spec:
  parentRefs: [{name: edge, namespace: infra}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: grpc.testing.TestService}}]
    backendRefs: [{name: ratings, port: 9090}]
`)
	conn, err := grpc.NewClient(e.addr(18080), grpc.WithAuthority("grpc.example.com"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	callRatings(t, conn, "a gRPC call through the HTTP listener")
}

// httpsGateway is a Gateway whose port 18443 serves a.example.com,
// b.example.com (its certificate a Secret of team-b, granted) and
// grpc.example.com, each with its own certificate, and c.example.com
// whose certificate has no files.
const httpsGateway = gatewayClass + `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - name: a
    protocol: HTTPS
    port: 18443
    hostname: a.example.com
    tls: {mode: Terminate, certificateRefs: [{name: a-cert}]}
  - name: b
    protocol: HTTPS
    port: 18443
    hostname: b.example.com
    tls: {mode: Terminate, certificateRefs: [{name: b-cert, namespace: team-b}]}
  - name: grpc
    protocol: HTTPS
    port: 18443
    hostname: grpc.example.com
    tls: {mode: Terminate, certificateRefs: [{name: grpc-cert}]}
  - name: c
    protocol: HTTPS
    port: 18443
    hostname: c.example.com
    tls: {mode: Terminate, certificateRefs: [{name: c-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: edge-certs, namespace: team-b}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret}]
---
`

func httpsRoute(name, host, backend string) string {
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  hostnames: [%s]
  rules:
  - backendRefs: [{name: %s, port: 8080}]
---
`, name, host, backend)
}

// startHTTPS applies httpsGateway with backends a and b and writes the
// certificates of a (serial 1), b (2) and grpc (3).
func startHTTPS(t *testing.T) *gatewayEnv {
	e := newGatewayEnv(t)
	writeSecret(t, e.certs, "infra", "a-cert", 1, "a.example.com")
	writeSecret(t, e.certs, "team-b", "b-cert", 2, "b.example.com")
	writeSecret(t, e.certs, "infra", "grpc-cert", 3, "grpc.example.com")
	serveHTTP(t, net.JoinHostPort(e.s.ip(21), "8080"), "a")
	serveHTTP(t, net.JoinHostPort(e.s.ip(22), "8080"), "b")
	e.cp.apply(t, httpsGateway+backendYAML("infra", "a", e.s.ip(21), 8080, "HTTP")+backendYAML("infra", "b", e.s.ip(22), 8080, "HTTP")+
		httpsRoute("a", "a.example.com", "a")+httpsRoute("b", "b.example.com", "b"))
	return e
}

// TestGatewayHTTPS: HTTPS listeners on one port, each with its own
// certificate, chosen by SNI; a listener whose certificate files are
// missing fails its handshakes and says why, without harming the others;
// gRPC is served through an HTTPS listener by a GRPCRoute.
func TestGatewayHTTPS(t *testing.T) {
	e := startHTTPS(t)
	for _, tc := range []struct {
		sni, body string
		serial    int64
	}{
		{"a.example.com", "a a.example.com /x", 1},
		{"b.example.com", "b b.example.com /x", 2},
	} {
		eventually(t, 30*time.Second, "https://"+tc.sni, func() error {
			body, serial, err := httpsGet(e.addr(18443), tc.sni, "/x")
			if err != nil {
				return err
			}
			if body != tc.body || serial != tc.serial {
				return fmt.Errorf("body %q certificate serial %d, want %q and %d", body, serial, tc.body, tc.serial)
			}
			return nil
		})
	}
	// A listener's certificate does not open another listener's routes:
	// SNI a.example.com with Host b.example.com is misdirected (421), and
	// the client is told to open a connection of its own for b.
	if body, _, err := httpsGetHost(e.addr(18443), "a.example.com", "b.example.com", "/"); err == nil || !strings.Contains(err.Error(), "421") {
		t.Errorf("SNI a.example.com, Host b.example.com: %q %v, want 421", body, err)
	}
	_, _, err := httpsGet(e.addr(18443), "c.example.com", "/")
	if err == nil {
		t.Error("c.example.com, whose certificate has no files, was served")
	}
	eventually(t, 10*time.Second, "the gateway's /certs reports infra/c-cert", func() error {
		code, body, err := httpGet(e.addr(15000), e.ip, "/certs")
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, `"secret":"infra/c-cert","serving":false`) || !strings.Contains(body, "no such file") {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})

	// gRPC through the HTTPS listener grpc.example.com.
	e.serveRatings(t)
	e.cp.apply(t, backendYAML("infra", "ratings", e.s.ip(23), 9090, "GRPC")+`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ratings, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: grpc}]
  rules:
  - matches: [{method: {service: grpc.testing.TestService}}]
    backendRefs: [{name: ratings, port: 9090}]
`)
	var served *x509.Certificate
	conn, err := grpc.NewClient(e.addr(18443), grpc.WithAuthority("grpc.example.com"),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			ServerName: "grpc.example.com", InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error { served = cs.PeerCertificates[0]; return nil },
		})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	callRatings(t, conn, "a gRPC call through grpc.example.com")
	if served == nil || served.SerialNumber.Int64() != 3 {
		t.Errorf("the gRPC client was served %v, want the certificate of grpc.example.com (serial 3)", served)
	}

	// Without the ReferenceGrant, team-b's certificate may not be used:
	// b.example.com is no longer served, a.example.com still is.
	if _, err := e.cp.client(t).Delete(context.Background(), "ReferenceGrant", "team-b", "edge-certs", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "b.example.com without the grant", func() error {
		if body, serial, err := httpsGet(e.addr(18443), "b.example.com", "/"); err == nil {
			return fmt.Errorf("still served: %q, certificate serial %d", body, serial)
		}
		return nil
	})
	if body, serial, err := httpsGet(e.addr(18443), "a.example.com", "/"); err != nil || serial != 1 {
		t.Errorf("a.example.com after b's grant went: %q %d %v", body, serial, err)
	}
}

// TestGatewayCertificateRotation: new files replace a listener's
// certificate for new connections, while a connection opened before goes
// on working.
func TestGatewayCertificateRotation(t *testing.T) {
	e := startHTTPS(t)
	var old *tls.Conn
	eventually(t, 30*time.Second, "a TLS connection to a.example.com", func() error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr(18443),
			&tls.Config{ServerName: "a.example.com", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			return err
		}
		if _, err := roundTrip(c, "a.example.com"); err != nil {
			c.Close()
			return err
		}
		old = c
		return nil
	})
	defer old.Close()
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 1 {
		t.Fatalf("first certificate serial %d, want 1", got)
	}

	writeSecret(t, e.certs, "infra", "a-cert", 11, "a.example.com")
	eventually(t, 30*time.Second, "new connections get the new certificate", func() error {
		_, serial, err := httpsGet(e.addr(18443), "a.example.com", "/")
		if err != nil {
			return err
		}
		if serial != 11 {
			return fmt.Errorf("serial %d, want 11", serial)
		}
		return nil
	})
	// The connection opened before the rotation still works.
	for range 3 {
		body, err := roundTrip(old, "a.example.com")
		if err != nil {
			t.Fatalf("the connection opened before the rotation: %v", err)
		}
		if body != "a a.example.com /" {
			t.Fatalf("the connection opened before the rotation: %q", body)
		}
	}

	// Files that cannot be loaded leave the last good certificate.
	if err := os.WriteFile(filepath.Join(e.certs, "infra", "a-cert", "tls.crt"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "/certs reports the bad file", func() error {
		_, body, err := httpGet(e.addr(15000), e.ip, "/certs")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"secret":"infra/a-cert","serving":true`) || !strings.Contains(body, "failed to find any PEM data") {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	if _, serial, err := httpsGet(e.addr(18443), "a.example.com", "/"); err != nil || serial != 11 {
		t.Errorf("after a bad file: serial %d, %v; want the last good certificate, 11", serial, err)
	}
}

// roundTrip sends one HTTP/1.1 request on c and reads the answer.
func roundTrip(c net.Conn, host string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), nil
}

// TestGatewayTLSPassthrough: two TLS servers (databases, say) share one
// port and address of the gateway, chosen by SNI; the gateway does not
// terminate: each client sees its server's own certificate.
func TestGatewayTLSPassthrough(t *testing.T) {
	e := newGatewayEnv(t)
	serials := map[string]int64{"pg": 21, "mysql": 22}
	ips := map[string]string{"pg": e.s.ip(31), "mysql": e.s.ip(32)}
	yaml := gatewayClass + `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - name: db
    protocol: TLS
    port: 19443
    hostname: "*.db.example.com"
    tls: {mode: Passthrough}
    allowedRoutes: {namespaces: {from: All}}
---
`
	for _, db := range []string{"pg", "mysql"} {
		_, _, cert := newCert(t, serials[db], db+".db.example.com")
		ln, err := tls.Listen("tcp", net.JoinHostPort(ips[db], "5432"), &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		serveTCP(t, ln, db)
		yaml += backendYAML("data", db, ips[db], 5432, "TCP") + fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: %[1]s, namespace: data}
spec:
  parentRefs: [{name: edge, namespace: infra}]
  hostnames: [%[1]s.db.example.com]
  rules:
  - backendRefs: [{name: %[1]s, port: 5432}]
---
`, db)
	}
	e.cp.apply(t, yaml)
	for _, db := range []string{"pg", "mysql"} {
		eventually(t, 30*time.Second, db+" through the gateway", func() error {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr(19443),
				&tls.Config{ServerName: db + ".db.example.com", InsecureSkipVerify: true})
			if err != nil {
				return err
			}
			defer c.Close()
			if got := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != serials[db] {
				return fmt.Errorf("certificate serial %d, want %s's own, %d", got, db, serials[db])
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			banner, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if banner != db+"\n" {
				return fmt.Errorf("banner %q", banner)
			}
			fmt.Fprintf(c, "ping\n")
			if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
				return fmt.Errorf("echo %q %v", echo, err)
			}
			return nil
		})
	}
	// An SNI no route names reaches nothing.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr(19443),
		&tls.Config{ServerName: "redis.db.example.com", InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Error("a TLS connection for an unrouted hostname was completed")
	}
}

// TestGatewayTCP: a TCP listener forwards to its TCPRoute's backend; a
// younger TCPRoute on the same listener is reported and not in effect.
func TestGatewayTCP(t *testing.T) {
	e := newGatewayEnv(t)
	for i, name := range []string{"redis", "redis-new"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(e.s.ip(byte(41+i)), "6379"))
		if err != nil {
			t.Fatal(err)
		}
		serveTCP(t, ln, name)
	}
	route := func(name, backend string) string {
		return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: %s, namespace: data}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: redis}]
  rules:
  - backendRefs: [{name: %s, port: 6379}]
---
`, name, backend)
	}
	e.cp.apply(t, gatewayClass+`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: redis, protocol: TCP, port: 16379, allowedRoutes: {namespaces: {from: All}}}
---
`+backendYAML("data", "redis", e.s.ip(41), 6379, "TCP")+backendYAML("data", "redis-new", e.s.ip(42), 6379, "TCP")+route("redis", "redis"))
	banner := func() (string, error) {
		c, err := net.DialTimeout("tcp", e.addr(16379), 5*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return bufio.NewReader(c).ReadString('\n')
	}
	eventually(t, 30*time.Second, "redis through the gateway", func() error {
		b, err := banner()
		if err != nil {
			return err
		}
		if b != "redis\n" {
			return fmt.Errorf("banner %q", b)
		}
		return nil
	})
	// Created later (or in the same second, when data/redis sorts first):
	// not in effect.
	e.cp.apply(t, route("takeover", "redis-new"))
	eventually(t, 30*time.Second, "the younger route reported", func() error {
		ps, err := e.cp.problems(t, "edge.infra")
		if err != nil {
			return err
		}
		for _, p := range ps {
			if strings.Contains(p, "TCPRoute data/takeover") && strings.Contains(p, "not in effect") {
				return nil
			}
		}
		return fmt.Errorf("problems %v", ps)
	})
	for range 5 {
		if b, err := banner(); err != nil || b != "redis\n" {
			t.Fatalf("after a younger route: %q %v, want the older route's backend", b, err)
		}
	}
}

// attachmentGateway has HTTP listeners on one port for each way of
// admitting routes (Same, All, Selector), one per team hostname,
// admitting routes from namespaces as from says, one for markers and a
// catch-all.
func attachmentGateway(from string) string {
	return gatewayClass + fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - {name: same, protocol: HTTP, port: 18080, hostname: same.example.com}
  - {name: all, protocol: HTTP, port: 18080, hostname: all.example.com, allowedRoutes: {namespaces: {from: All}}}
  - name: selector
    protocol: HTTP
    port: 18080
    hostname: selector.example.com
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway: edge}}}}
  - {name: team-a, protocol: HTTP, port: 18080, hostname: a.example.com, allowedRoutes: {namespaces: {from: %[1]s}}}
  - {name: team-b, protocol: HTTP, port: 18080, hostname: b.example.com, allowedRoutes: {namespaces: {from: %[1]s}}}
  - {name: markers, protocol: HTTP, port: 18080, hostname: "*.marker.example.com"}
  - {name: any, protocol: HTTP, port: 18080, allowedRoutes: {namespaces: {from: All}}}
---
`, from)
}

// routeYAML is an HTTPRoute ns/name attached to listener section of
// infra/edge (all its listeners when section is empty) for host, to
// Service backendNS/backend.
func routeYAML(ns, name, section, host, backendNS, backend string) string {
	if section != "" {
		section = ", sectionName: " + section
	}
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: %s}
spec:
  parentRefs: [{name: edge, namespace: infra%s}]
  hostnames: [%s]
  rules:
  - backendRefs: [{name: %s, namespace: %s, port: 8080}]
---
`, name, ns, section, host, backend, backendNS)
}

// TestGatewayAttachment: routes attach as allowedRoutes says (Same, All;
// a Selector cannot be evaluated off Kubernetes, where namespaces have no
// labels); a backend in another namespace is used only while a
// ReferenceGrant allows it; and one team changing its route cannot change
// what another team's hostname serves.
func TestGatewayAttachment(t *testing.T) {
	e := newGatewayEnv(t)
	for i, ns := range []string{"infra", "team-a", "team-b", "shared"} {
		serveHTTP(t, net.JoinHostPort(e.s.ip(byte(51+i)), "8080"), ns)
	}
	gw := e.addr(18080)
	e.cp.apply(t, attachmentGateway("All")+
		backendYAML("infra", "web", e.s.ip(51), 8080, "HTTP")+backendYAML("team-a", "web", e.s.ip(52), 8080, "HTTP")+
		backendYAML("team-b", "web", e.s.ip(53), 8080, "HTTP")+backendYAML("shared", "web", e.s.ip(54), 8080, "HTTP"))

	// Same: a route of the Gateway's namespace attaches, another's is
	// refused with the analyzer's reason.
	e.cp.apply(t, routeYAML("infra", "same", "same", "same.example.com", "infra", "web"))
	expectBody(t, gw, "same.example.com", "/", "infra same.example.com /")
	err := e.cp.tryApply(t, routeYAML("team-a", "same", "same", "same.example.com", "team-a", "web"))
	if err == nil || !strings.Contains(err.Error(), "TRL2005") {
		t.Errorf("a route from team-a on a Same listener of infra: %v, want TRL2005", err)
	}
	// All: another namespace's route attaches.
	e.cp.apply(t, routeYAML("team-a", "all", "all", "all.example.com", "team-a", "web"))
	expectBody(t, gw, "all.example.com", "/", "team-a all.example.com /")
	// Selector: namespace labels are unknown off Kubernetes; the route is
	// accepted with an info finding and not served.
	e.cp.apply(t, routeYAML("team-a", "selector", "selector", "selector.example.com", "team-a", "web"))
	findings, err := e.cp.client(t).Findings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range findings {
		found = found || f.Code == "TRL2008" && f.Resource.Namespace == "team-a" && f.Resource.Name == "selector"
	}
	if !found {
		t.Errorf("no TRL2008 finding for the Selector listener's route: %v", findings)
	}

	// Cross-namespace backend: refused without a grant, served with one,
	// and 500 once the grant is deleted.
	err = e.cp.tryApply(t, routeYAML("team-a", "a", "team-a", "a.example.com", "shared", "web"))
	if err == nil || !strings.Contains(err.Error(), "ReferenceGrant") {
		t.Errorf("a backend of another namespace without a grant: %v, want a refusal naming the ReferenceGrant", err)
	}
	e.cp.apply(t, `apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-team-a, namespace: shared}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-a}]
  to: [{group: "", kind: Service}]
---
`+routeYAML("team-a", "a", "team-a", "a.example.com", "shared", "web"))
	expectBody(t, gw, "a.example.com", "/", "shared a.example.com /")
	if _, err := e.cp.client(t).Delete(context.Background(), "ReferenceGrant", "shared", "from-team-a", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a.example.com without the grant", func() error {
		code, body, err := httpGet(gw, "a.example.com", "/")
		if err != nil {
			return err
		}
		if code != http.StatusInternalServerError {
			return fmt.Errorf("%d %q, want 500", code, body)
		}
		return nil
	})

	// Two teams: team-b serves b.example.com; team-a's route changes to
	// claim b.example.com too, through its own listener and then the
	// catch-all one: b.example.com still serves team-b.
	e.cp.apply(t, routeYAML("team-b", "b", "team-b", "b.example.com", "team-b", "web"))
	expectBody(t, gw, "b.example.com", "/", "team-b b.example.com /")
	e.cp.apply(t, routeYAML("team-a", "all", "all", "all.example.com", "team-a", "web"))
	for i, change := range []string{
		// On team-a's own listener, with b.example.com added.
		strings.Replace(routeYAML("team-a", "a", "team-a", "a.example.com", "team-a", "web"), "hostnames: [a.example.com]", "hostnames: [a.example.com, b.example.com]", 1),
		// On the All listener, with b.example.com and a wildcard.
		strings.Replace(routeYAML("team-a", "all", "all", "all.example.com", "team-a", "web"), "hostnames: [all.example.com]", `hostnames: [all.example.com, b.example.com, "*.example.com"]`, 1),
		// On the catch-all listener, for b.example.com/api, a longer path
		// than team-b's: the more specific listener team-b owns serves
		// that hostname.
		strings.Replace(routeYAML("team-a", "any", "any", "b.example.com", "team-a", "web"),
			"  - backendRefs", "  - matches: [{path: {type: PathPrefix, value: /api}}]\n    backendRefs", 1),
		// On every listener (no sectionName), for b.example.com only:
		// team-b's listener admits it (All), and its match is the same
		// as team-b's, so the analyzer refuses it.
		routeYAML("team-a", "a", "", "b.example.com", "team-a", "web"),
	} {
		// Whether the control plane accepts the change (with warnings) or
		// refuses it, b.example.com keeps serving team-b.
		applyErr := e.cp.tryApply(t, change)
		t.Logf("team-a change %d: apply: %v", i, applyErr)
		marker := fmt.Sprintf("m%d.marker.example.com", i)
		e.cp.apply(t, routeYAML("infra", "marker", "markers", marker, "infra", "web"))
		// Once the marker is served, the change above has been pushed too.
		expectBody(t, gw, marker, "/", "infra "+marker+" /")
		for _, path := range []string{"/", "/api", "/api/x"} {
			code, body, err := httpGet(gw, "b.example.com", path)
			if want := "team-b b.example.com " + path; err != nil || code != http.StatusOK || body != want {
				t.Errorf("after team-a's change %d (apply: %v): b.example.com%s answers %d %q %v, want %q", i, applyErr, path, code, body, err, want)
			}
		}
	}
}

// TestGatewayDocsExamples applies every YAML block of docs/gateways.md
// together, writes the certificates it names, and starts a gateway per
// Gateway: each binds its port, serves its certificates, and has no
// problem.
func TestGatewayDocsExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "gateways.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, part := range strings.Split(string(doc), "```yaml\n")[1:] {
		end := strings.Index(part, "```")
		if end < 0 {
			t.Fatal("docs/gateways.md: an unterminated yaml block")
		}
		blocks = append(blocks, strings.TrimSpace(part[:end])+"\n")
	}
	if len(blocks) < 6 {
		t.Fatalf("docs/gateways.md has %d yaml blocks, want the GatewayClass and one per listener type", len(blocks))
	}
	s := newSubnet(t)
	cp := startControlPlane(t, s, t.TempDir())
	cp.apply(t, strings.Join(blocks, "---\n"))
	certs := t.TempDir()
	writeSecret(t, certs, "infra", "shop-cert", 1, "shop.example.com")
	writeSecret(t, certs, "api", "api-cert", 2, "api.example.com")
	writeSecret(t, certs, "infra", "grpc-cert", 3, "grpc.example.com")
	for i, gw := range []struct {
		name string
		port int
	}{{"web", 8080}, {"secure", 8443}, {"grpc", 9443}, {"databases", 5432}, {"cache", 6379}, {"shared", 8081}} {
		ip := s.ip(byte(10 + i))
		startProxyWith(t, cp, nodemeta.Metadata{Kind: nodemeta.KindGateway, Name: gw.name, Namespace: "infra", ServiceAccount: gw.name,
			Address: ip, Gateway: "infra/" + gw.name}, proxy.Options{Token: cp.token(t, "infra", gw.name), GatewayCertsDir: certs})
		eventually(t, 30*time.Second, "gateway "+gw.name+" listens", func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(gw.port)), time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if ps, err := cp.problems(t, gw.name+".infra"); err != nil || len(ps) > 0 {
			t.Errorf("gateway %s: problems %v %v", gw.name, ps, err)
		}
	}
	for _, host := range []string{"shop.example.com", "api.example.com"} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(s.ip(11), "8443"),
			&tls.Config{ServerName: host, InsecureSkipVerify: true})
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		if got := c.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != host {
			t.Errorf("%s: served the certificate of %v", host, got)
		}
		c.Close()
	}
}

// TestGatewayTeamListenerSets: off Kubernetes, where namespaces have no
// labels for allowedRoutes selectors, a team brings its hostname to a
// shared Gateway as a ListenerSet of its own namespace, whose listener
// admits only that namespace's routes. Nothing another team does to its
// routes changes what that hostname serves.
func TestGatewayTeamListenerSets(t *testing.T) {
	e := newGatewayEnv(t)
	for i, ns := range []string{"team-a", "team-b"} {
		serveHTTP(t, net.JoinHostPort(e.s.ip(byte(61+i)), "8080"), ns)
	}
	gw := e.addr(18080)
	e.cp.apply(t, gatewayClass+`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: any, protocol: HTTP, port: 18080, allowedRoutes: {namespaces: {from: All}}}
  - {name: markers, protocol: HTTP, port: 18080, hostname: "*.marker.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team-b, namespace: team-b}
spec:
  parentRef: {name: edge, namespace: infra}
  listeners:
  - {name: b, protocol: HTTP, port: 18080, hostname: b.example.com}
---
`+backendYAML("team-a", "web", e.s.ip(61), 8080, "HTTP")+backendYAML("team-b", "web", e.s.ip(62), 8080, "HTTP")+
		backendYAML("infra", "web", e.s.ip(61), 8080, "HTTP")+`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: team-b}
spec:
  parentRefs: [{kind: ListenerSet, name: team-b}]
  hostnames: [b.example.com]
  rules:
  - backendRefs: [{name: web, port: 8080}]
`)
	expectBody(t, gw, "b.example.com", "/", "team-b b.example.com /")

	// team-a's route on team-b's ListenerSet is refused.
	err := e.cp.tryApply(t, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-b, namespace: team-a}
spec:
  parentRefs: [{kind: ListenerSet, name: team-b, namespace: team-b}]
  hostnames: [b.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: web, port: 8080}]
`)
	if err == nil || !strings.Contains(err.Error(), "TRL2005") {
		t.Errorf("team-a's route on team-b's ListenerSet: %v, want TRL2005", err)
	}
	for i, hosts := range []string{"[b.example.com]", `["*.example.com"]`, "[]"} {
		applyErr := e.cp.tryApply(t, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: any, namespace: team-a}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: any}]
  hostnames: `+hosts+`
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: web, port: 8080}]
`)
		t.Logf("team-a's catch-all route for %s: apply: %v", hosts, applyErr)
		// Once the marker is served (by infra's web, team-a's server too),
		// the change above has been pushed as well.
		marker := fmt.Sprintf("m%d.marker.example.com", i)
		e.cp.apply(t, routeYAML("infra", "marker", "markers", marker, "infra", "web"))
		expectBody(t, gw, marker, "/", "team-a "+marker+" /")
		for _, path := range []string{"/", "/api", "/api/x"} {
			code, body, err := httpGet(gw, "b.example.com", path)
			if want := "team-b b.example.com " + path; err != nil || code != http.StatusOK || body != want {
				t.Errorf("team-a's catch-all route for %s: b.example.com%s answers %d %q %v, want %q", hosts, path, code, body, err, want)
			}
		}
	}
}

// callRatings makes a unary call on conn until the ratings backend
// answers it.
func callRatings(t *testing.T, conn *grpc.ClientConn, what string) {
	t.Helper()
	eventually(t, 30*time.Second, what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if err != nil {
			return err
		}
		if resp.ServerId != "ratings-1" {
			return fmt.Errorf("answered by %q", resp.ServerId)
		}
		return nil
	})
}
