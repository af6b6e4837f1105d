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
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/bench/internal/load"
	"trellis.dev/trellis/bench/internal/meshproc"
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
	if load.Fortio() == "" {
		out = append(out, "fortio is not on PATH nor in $(go env GOPATH)/bin: "+load.FortioInstall)
	}
	if benchproc.Find("haproxy") == "" {
		out = append(out, "haproxy is not installed: apt-get install haproxy")
	}
	return out
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

// controlPlane starts `trellis control`, applies the mesh and writes a
// join token for each sidecar's identity, as an operator makes them with
// trellis token create.
func controlPlane(ctx context.Context, dir, trellis string) (*meshproc.Control, error) {
	cp, err := meshproc.StartControl(ctx, dir, trellis)
	if err != nil {
		return nil, err
	}
	if err := cp.Apply(ctx, "bench.yaml", mesh); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("applying the mesh: %w", err)
	}
	if err := cp.Tokens(ctx, namespace, "backend", "client"); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("making join tokens: %w", err)
	}
	return cp, nil
}

// sidecars starts the client and server sidecars.
func sidecars(dir, proxy, xds string) (client, server *benchproc.Proc, err error) {
	common := []string{"--control-plane", xds, "--ca-bundle", meshproc.CABundle(dir), "--namespace", namespace}
	common = append(common, meshproc.QuietArgs(proxy)...)
	server, err = benchproc.Start(dir, "server-sidecar", proxy, append([]string{
		"--name", "backend-1", "--service-account", "backend", "--label", "app=backend", "--token-file", meshproc.TokenFile(dir, "backend"),
		"--address", serverIP, "--app-address", serverIP, "--outbound-address", serverIP,
		"--admin-address", serverIP + ":15000",
		"--port", "http:" + strconv.Itoa(backendHTTP) + "/HTTP", "--port", "tcp:" + strconv.Itoa(backendTCP) + "/TCP",
	}, common...)...)
	if err != nil {
		return nil, nil, err
	}
	client, err = benchproc.Start(dir, "client-sidecar", proxy, append([]string{
		"--name", "client-1", "--service-account", "client", "--label", "app=client", "--token-file", meshproc.TokenFile(dir, "client"),
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
	if server, err = benchproc.Start(dir, "haproxy-server", benchproc.Find("haproxy"), "-db", "-f", sf); err != nil {
		return nil, nil, err
	}
	if client, err = benchproc.Start(dir, "haproxy-client", benchproc.Find("haproxy"), "-db", "-f", cf); err != nil {
		server.Stop()
		return nil, nil, err
	}
	return client, server, nil
}
