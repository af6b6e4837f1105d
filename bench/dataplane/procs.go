package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/internal/controlapi"
)

// Addresses: each process gets a loopback address of its own, so that the
// sidecars can use the standard ports.
const (
	clientIP  = "127.0.0.2" // client sidecar
	serverIP  = "127.0.0.3" // server sidecar and the backend
	hapClient = "127.0.0.4"
	hapServer = "127.0.0.5"

	backendHTTP = 8080 // the backend's port behind the L7 paths
	backendTCP  = 8081 // the same backend behind the L4 paths
	localHTTP   = 18080
	localTCP    = 18081
	namespace   = "bench"
)

// missingTools says what is not on PATH and how to install it.
func missingTools() []string {
	var out []string
	if fortioBin() == "" {
		out = append(out, "fortio is not on PATH nor in $(go env GOPATH)/bin: go install fortio.org/fortio@v1.68.2")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
			out = append(out, "haproxy is not installed: apt-get install haproxy")
		}
	}
	return out
}

// fortioBin finds fortio on PATH or where go install puts it; "" if
// neither has it.
func fortioBin() string {
	if p, err := exec.LookPath("fortio"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "fortio")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return ""
}

func haproxyBin() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	return "/usr/sbin/haproxy"
}

func build(ctx context.Context, root, dir string) (trellis, proxy string, err error) {
	for _, b := range []struct{ out, pkg string }{{"trellis", "./cmd/trellis"}, {"trellis-proxy", "./cmd/trellis-proxy"}} {
		// The release build's tags (hack/dev's buildTags).
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "trellis"), filepath.Join(dir, "trellis-proxy"), nil
}

// mesh is the configuration the control plane serves: the backend Service
// with an HTTP and a TCP port, and one HTTPRoute on the HTTP port.
const mesh = `apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec:
  selector: {app: backend}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: tcp, port: 81, targetPort: 8081, appProtocol: tcp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend, namespace: bench}
spec:
  parentRefs: [{group: "", kind: Service, name: backend, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: backend, port: 80}]
`

// controlPlane starts `trellis control` and applies the mesh; client is
// its API.
func controlPlane(ctx context.Context, dir, trellis string) (p *benchproc.Proc, xds string, client *controlapi.Client, err error) {
	xp, err := benchproc.FreePort()
	if err != nil {
		return nil, "", nil, err
	}
	ap, err := benchproc.FreePort()
	if err != nil {
		return nil, "", nil, err
	}
	xds, api := "127.0.0.1:"+strconv.Itoa(xp), "127.0.0.1:"+strconv.Itoa(ap)
	p, err = benchproc.Start(dir, "control", trellis, "control", "--data-dir", filepath.Join(dir, "data"), "--xds-address", xds, "--debug-address", api)
	if err != nil {
		return nil, "", nil, err
	}
	client, err = controlapi.NewClient(api)
	if err != nil {
		p.Stop()
		return nil, "", nil, err
	}
	if err := waitFor(ctx, time.Minute, "the control plane", func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return client.Ready(rctx)
	}); err != nil {
		p.Stop()
		return nil, "", nil, err
	}
	if _, err := client.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "bench.yaml", Content: mesh}}}); err != nil {
		p.Stop()
		return nil, "", nil, fmt.Errorf("applying the mesh: %w", err)
	}
	// A join token for each sidecar's identity, as an operator makes them
	// with trellis token create.
	made, err := client.CreateTokens(ctx, []controlapi.TokenSpec{
		{Namespace: namespace, ServiceAccount: "backend"}, {Namespace: namespace, ServiceAccount: "client"},
	})
	if err != nil {
		p.Stop()
		return nil, "", nil, fmt.Errorf("making join tokens: %w", err)
	}
	for i, name := range []string{"backend", "client"} {
		if err := os.WriteFile(tokenFile(dir, name), []byte(made[i].Token+"\n"), 0o600); err != nil {
			p.Stop()
			return nil, "", nil, err
		}
	}
	return p, xds, client, nil
}

func waitFor(ctx context.Context, d time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tokenFile is where controlPlane writes the join token of a service
// account.
func tokenFile(dir, account string) string { return filepath.Join(dir, account+".token") }

// caBundle is the mesh's root certificate, which the control plane writes
// in its data directory.
func caBundle(dir string) string { return filepath.Join(dir, "data", "ca", "root-cert.pem") }

// quietArgs turn off the access log of a trellis-proxy that has one: the
// figures are the proxying's; access logs are measured apart.
func quietArgs(proxy string) []string {
	if help, _ := exec.Command(proxy, "--help").CombinedOutput(); bytes.Contains(help, []byte("--access-log")) {
		return []string{"--access-log", "off"}
	}
	return nil
}

// sidecars starts the client and server sidecars.
func sidecars(dir, proxy, xds string) (client, server *benchproc.Proc, err error) {
	common := []string{"--control-plane", xds, "--ca-bundle", caBundle(dir), "--namespace", namespace}
	common = append(common, quietArgs(proxy)...)
	server, err = benchproc.Start(dir, "server-sidecar", proxy, append([]string{
		"--name", "backend-1", "--service-account", "backend", "--label", "app=backend", "--token-file", tokenFile(dir, "backend"),
		"--address", serverIP, "--app-address", serverIP, "--outbound-address", serverIP,
		"--admin-address", serverIP + ":15000",
		"--port", "http:" + strconv.Itoa(backendHTTP) + "/HTTP", "--port", "tcp:" + strconv.Itoa(backendTCP) + "/TCP",
	}, common...)...)
	if err != nil {
		return nil, nil, err
	}
	client, err = benchproc.Start(dir, "client-sidecar", proxy, append([]string{
		"--name", "client-1", "--service-account", "client", "--label", "app=client", "--token-file", tokenFile(dir, "client"),
		"--address", clientIP, "--app-address", clientIP, "--outbound-address", clientIP,
		"--admin-address", clientIP + ":15000",
		"--upstream", fmt.Sprintf("backend:80=%d", localHTTP), "--upstream", fmt.Sprintf("backend:81=%d", localTCP),
	}, common...)...)
	if err != nil {
		server.Stop()
		return nil, nil, err
	}
	return client, server, nil
}

// issue signs a leaf certificate for a SPIFFE ID with the mesh CA's root,
// for haproxy, and writes it with its key to path (haproxy's crt format).
func issue(dir, path, id string) error {
	caDir := filepath.Join(dir, "data", "ca")
	certPEM, err := os.ReadFile(filepath.Join(caDir, "root-cert.pem"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(caDir, "root-key.pem"))
	if err != nil {
		return err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return errors.New("the mesh CA's root is not PEM")
	}
	root, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return err
	}
	var rootKey any
	if rootKey, err = x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
		if rootKey, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
			return fmt.Errorf("the mesh CA's root key: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "haproxy"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// haproxyConfig is a pair of haproxies doing what the sidecars do: the
// client side accepts plaintext and sends mTLS, the server side requires
// a client certificate of the mesh CA and sends plaintext to the backend;
// HTTP (keep-alive and connection reuse between the two) and TCP.
func haproxyConfig(dir string) string {
	ca := filepath.Join(dir, "data", "ca", "root-cert.pem")
	cc, sc := filepath.Join(dir, "haproxy-client.pem"), filepath.Join(dir, "haproxy-server.pem")
	return fmt.Sprintf(`global
    maxconn 4000
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend client_http
    mode http
    bind %[1]s:%[5]d
    default_backend mesh_http
backend mesh_http
    mode http
    http-reuse always
    server s1 %[2]s:15443 ssl crt %[3]s ca-file %[6]s verify required alpn http/1.1
frontend server_http
    mode http
    bind %[2]s:15443 ssl crt %[4]s ca-file %[6]s verify required alpn http/1.1
    default_backend app_http
backend app_http
    mode http
    http-reuse always
    server app %[7]s:%[8]d
frontend client_tcp
    mode tcp
    bind %[1]s:%[9]d
    default_backend mesh_tcp
backend mesh_tcp
    mode tcp
    server s1 %[2]s:15444 ssl crt %[3]s ca-file %[6]s verify required
frontend server_tcp
    mode tcp
    bind %[2]s:15444 ssl crt %[4]s ca-file %[6]s verify required
    default_backend app_tcp
backend app_tcp
    mode tcp
    server app %[7]s:%[10]d
`, hapClient, hapServer, cc, sc, localHTTP, ca, serverIP, backendHTTP, localTCP, backendTCP)
}

// haproxies starts the haproxy pair as two processes, so that each side's
// CPU is its own.
func haproxies(dir string) (client, server *benchproc.Proc, err error) {
	if err := issue(dir, filepath.Join(dir, "haproxy-client.pem"), "spiffe://cluster.local/ns/bench/sa/client"); err != nil {
		return nil, nil, err
	}
	if err := issue(dir, filepath.Join(dir, "haproxy-server.pem"), "spiffe://cluster.local/ns/bench/sa/backend"); err != nil {
		return nil, nil, err
	}
	cfg := haproxyConfig(dir)
	// One config file per side: the sections of the other side are left out.
	parts := strings.Split(cfg, "frontend ")
	head := parts[0]
	var cside, sside strings.Builder
	cside.WriteString(head)
	sside.WriteString(head)
	for _, p := range parts[1:] {
		sec := "frontend " + p
		name := strings.Fields(p)[0]
		if strings.HasPrefix(name, "client_") {
			cside.WriteString(sec)
		} else {
			sside.WriteString(sec)
		}
	}
	cf, sf := filepath.Join(dir, "haproxy-client.cfg"), filepath.Join(dir, "haproxy-server.cfg")
	if err := os.WriteFile(cf, []byte(cside.String()), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(sf, []byte(sside.String()), 0o644); err != nil {
		return nil, nil, err
	}
	if server, err = benchproc.Start(dir, "haproxy-server", haproxyBin(), "-db", "-f", sf); err != nil {
		return nil, nil, err
	}
	if client, err = benchproc.Start(dir, "haproxy-client", haproxyBin(), "-db", "-f", cf); err != nil {
		server.Stop()
		return nil, nil, err
	}
	return client, server, nil
}

// backend answers every request with 1 KB, on both backend ports.
func backend(ctx context.Context) (stop func(), err error) {
	body := bytes.Repeat([]byte("x"), 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
	var srvs []*http.Server
	for _, port := range []int{backendHTTP, backendTCP} {
		ln, err := net.Listen("tcp", net.JoinHostPort(serverIP, strconv.Itoa(port)))
		if err != nil {
			for _, s := range srvs {
				s.Close()
			}
			return nil, fmt.Errorf("backend: %w", err)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		srvs = append(srvs, s)
		go s.Serve(ln)
	}
	return func() {
		for _, s := range srvs {
			s.Close()
		}
	}, nil
}
