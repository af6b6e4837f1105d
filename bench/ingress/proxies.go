package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"trellis.dev/trellis/bench/internal/benchproc"
	"trellis.dev/trellis/bench/internal/load"
	"trellis.dev/trellis/bench/internal/meshproc"
)

// Addresses: each server has a loopback address of its own, in a /24 that
// bench/dataplane (127.0.0.2-6) does not use, so that both can run at
// once; every proxy listens on the same two ports.
const (
	backendIP = "127.0.2.1"
	gatewayIP = "127.0.2.2"
	haproxyIP = "127.0.2.3"
	nginxIP   = "127.0.2.4"

	httpPort  = 8080 // plain HTTP, on every proxy and the backend
	httpsPort = 8443 // HTTPS terminated by the proxy; the backend's own TLS port

	// host and prefix are the route every proxy serves: requests for
	// another host or path get 404.
	host   = "bench.example.com"
	prefix = "/api"
	// reqPath is what the load asks for.
	reqPath = "/api/1k"
)

// missingTools says what is not installed and how to install it.
func missingTools() []string {
	var out []string
	if load.Fortio() == "" {
		out = append(out, "fortio is not on PATH nor in $(go env GOPATH)/bin: "+load.FortioInstall)
	}
	for _, t := range []struct{ bin, pkg string }{{"haproxy", "haproxy"}, {"nginx", "nginx"}, {"taskset", "util-linux"}} {
		if benchproc.Find(t.bin) == "" {
			out = append(out, fmt.Sprintf("%s is not installed: apt-get install %s", t.bin, t.pkg))
		}
	}
	return out
}

// mesh is the configuration the control plane serves: the Gateway
// infra/edge with an HTTP and an HTTPS listener for host, an HTTPRoute
// sending prefix to the Service bench/backend, and the backend as a
// Workload without a sidecar (no meshPort: the gateway reaches it in
// plaintext).
var mesh = fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: trellis}
spec: {controllerName: trellis.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: trellis
  listeners:
  - name: http
    protocol: HTTP
    port: %[1]d
    hostname: %[3]s
    allowedRoutes: {namespaces: {from: All}}
  - name: https
    protocol: HTTPS
    port: %[2]d
    hostname: %[3]s
    tls: {mode: Terminate, certificateRefs: [{name: bench-cert}]}
    allowedRoutes: {namespaces: {from: All}}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: %[1]d, appProtocol: http}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: backend-1, namespace: bench, labels: {app: backend}}
spec:
  address: %[5]s
  ports: [{name: http, port: %[1]d, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: backend, namespace: bench}
spec:
  parentRefs: [{name: edge, namespace: infra}]
  hostnames: [%[3]s]
  rules:
  - matches: [{path: {type: PathPrefix, value: %[4]s}}]
    backendRefs: [{name: backend, port: 80}]
`, httpPort, httpsPort, host, prefix, backendIP)

// certs are the files of the one certificate every TLS server presents:
// an ECDSA P-256 leaf for host, signed by a CA made for the run.
type certs struct {
	CA         string // the CA certificate, which the clients trust
	Cert, Key  string // the leaf chain and its key, PEM
	Combined   string // chain and key in one file (haproxy's crt)
	GatewayDir string // the gateway's --certs-dir: infra/bench-cert/tls.crt, tls.key
	pair       tls.Certificate
}

// makeCerts writes the CA and the leaf under dir.
func makeCerts(dir string) (*certs, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ingress bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	c := &certs{
		CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"),
		Combined: filepath.Join(dir, "tls.pem"), GatewayDir: filepath.Join(dir, "gateway-certs"),
	}
	if c.pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	gw := filepath.Join(c.GatewayDir, "infra", "bench-cert")
	if err := os.MkdirAll(gw, 0o700); err != nil {
		return nil, err
	}
	for path, b := range map[string][]byte{
		c.CA:                         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		c.Cert:                       certPEM,
		c.Key:                        keyPEM,
		c.Combined:                   append(append([]byte{}, certPEM...), keyPEM...),
		filepath.Join(gw, "tls.crt"): certPEM,
		filepath.Join(gw, "tls.key"): keyPEM,
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// pinning is where the proxies run: taskset's CPU list (empty: nowhere
// in particular) and how many threads or worker processes each proxy
// runs.
type pinning struct {
	CPUs    string
	Threads int
}

// command is bin with args, run under taskset when p pins.
func (p pinning) command(bin string, args ...string) (string, []string) {
	if p.CPUs == "" {
		return bin, args
	}
	return benchproc.Find("taskset"), append([]string{"-c", p.CPUs, bin}, args...)
}

// gateway starts trellis-proxy serving the Gateway infra/edge with
// GOMAXPROCS as many as the pinned CPUs.
func gateway(dir, proxy, xds string, c *certs, pin pinning) (*benchproc.Proc, error) {
	args := []string{
		"--gateway", "infra/edge", "--namespace", "infra", "--service-account", "edge",
		"--control-plane", xds, "--ca-bundle", meshproc.CABundle(dir), "--token-file", meshproc.TokenFile(dir, "edge"),
		"--address", gatewayIP, "--admin-address", gatewayIP + ":15000", "--certs-dir", c.GatewayDir,
	}
	args = append(args, meshproc.QuietArgs(proxy)...)
	bin, args := pin.command(proxy, args...)
	// env(1) execs, as taskset does: the process measured is the proxy.
	return benchproc.Start(dir, "gateway", "env", append([]string{"GOMAXPROCS=" + strconv.Itoa(pin.Threads), bin}, args...)...)
}

// haproxyConfig is haproxy doing what the gateway does: one frontend on
// both ports (TLS 1.3 only, X25519, HTTP/1.1 by ALPN on the TLS one), the
// route as an ACL on Host (without port) and path, 404 for the rest, and
// kept-alive connections to the backend reused across clients; no log.
func haproxyConfig(c *certs, threads int) string {
	return fmt.Sprintf(`global
    nbthread %[1]d
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend edge
    bind %[2]s:%[3]d
    bind %[2]s:%[4]d ssl crt %[5]s ssl-min-ver TLSv1.3 curves X25519 alpn http/1.1
    acl route_host req.hdr(host),field(1,:) -i %[6]s
    acl route_path path %[7]s
    acl route_path path_beg %[7]s/
    use_backend app if route_host route_path
    default_backend not_found
backend app
    http-reuse always
    server app %[8]s:%[3]d
backend not_found
    http-request return status 404
`, threads, haproxyIP, httpPort, httpsPort, c.Combined, host, prefix, backendIP)
}

// startHaproxy writes haproxy's config and starts it in the foreground.
func startHaproxy(dir string, c *certs, pin pinning) (*benchproc.Proc, error) {
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(c, pin.Threads)), 0o644); err != nil {
		return nil, err
	}
	bin, args := pin.command(benchproc.Find("haproxy"), "-db", "-f", cfg)
	return benchproc.Start(dir, "haproxy", bin, args...)
}

// nginxConfig is nginx doing what the gateway does: a server for host on
// both ports (TLS 1.3 only, X25519), the route as locations, 404 from a
// default server for other hosts, an upstream pool of kept-alive
// connections; no access log, no limit on requests per connection (as
// the others have none).
func nginxConfig(dir string, c *certs, workers int) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers need nothing of another user's
	}
	proxy := `proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";`
	return fmt.Sprintf(`%[1]s
worker_processes %[2]d;
daemon off;
master_process on;
pid %[3]s/nginx.pid;
error_log %[3]s/nginx-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[3]s/nginx-tmp/body;
    proxy_temp_path %[3]s/nginx-tmp/proxy;
    fastcgi_temp_path %[3]s/nginx-tmp/fastcgi;
    uwsgi_temp_path %[3]s/nginx-tmp/uwsgi;
    scgi_temp_path %[3]s/nginx-tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_certificate %[4]s;
    ssl_certificate_key %[5]s;
    upstream app {
        server %[6]s:%[7]d;
        keepalive 256;
        keepalive_requests 100000000;
    }
    server {
        listen %[8]s:%[7]d default_server;
        listen %[8]s:%[9]d ssl default_server;
        return 404;
    }
    server {
        listen %[8]s:%[7]d;
        listen %[8]s:%[9]d ssl;
        server_name %[10]s;
        location = %[11]s {
            %[12]s
        }
        location %[11]s/ {
            %[12]s
        }
    }
}
`, user, workers, dir, c.Cert, c.Key, backendIP, httpPort, nginxIP, httpsPort, host, prefix, proxy)
}

// startNginx writes nginx's config and starts it in the foreground, its
// workers child processes of the process measured.
func startNginx(dir string, c *certs, pin pinning) (*benchproc.Proc, error) {
	ndir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(ndir, "nginx-tmp"), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(nginxConfig(ndir, c, pin.Threads)), 0o644); err != nil {
		return nil, err
	}
	bin := benchproc.Find("nginx")
	// -t first: a bad config is reported with nginx's own words.
	if out, err := exec.Command(bin, "-q", "-t", "-p", ndir, "-c", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t: %w\n%s", err, bytes.TrimSpace(out))
	}
	bin, args := pin.command(bin, "-p", ndir, "-c", cfg)
	return benchproc.Start(dir, "nginx", bin, args...)
}
