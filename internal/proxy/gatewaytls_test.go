package proxy

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/certfiles"
	"trellis.dev/trellis/internal/testcert"
)

func gatewayTLSContext(secrets ...string) *tlsv3.DownstreamTlsContext {
	c := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}}
	for _, s := range secrets {
		c.TlsCertificateSdsSecretConfigs = append(c.TlsCertificateSdsSecretConfigs, &tlsv3.SdsSecretConfig{
			Name: s, SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}})
	}
	return &tlsv3.DownstreamTlsContext{CommonTlsContext: c}
}

// TestGatewayTLSNames: only gateway-cert/NAMESPACE/NAME names are
// resolved, and client certificates are not asked for.
func TestGatewayTLSNames(t *testing.T) {
	p := testProxy(t)
	for _, bad := range []string{"gateway-cert/infra", "gateway-cert//x", "gateway-cert/infra/a/b", "gateway-cert/../x", "gateway-cert/infra/.."} {
		if _, err := p.compileGatewayTLS(gatewayTLSContext(bad)); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if _, err := p.compileGatewayTLS(gatewayTLSContext("gateway-cert/infra/web", "default")); err == nil {
		t.Error("a gateway certificate mixed with the proxy's own was accepted")
	}
	ctx := gatewayTLSContext("gateway-cert/infra/web")
	ctx.RequireClientCertificate = wrapperspb.Bool(true)
	if _, err := p.compileGatewayTLS(ctx); err == nil {
		t.Error("require_client_certificate was accepted")
	}
	if _, err := p.compileGatewayTLS(gatewayTLSContext("gateway-cert/infra/web")); err != nil {
		t.Errorf("a good context: %v", err)
	}
}

func writeGatewayCert(t *testing.T, dir string, serial int64, host string) {
	t.Helper()
	p := testcert.Make(t, testcert.Options{Hosts: []string{host}, Serial: serial})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tls.key"), p.KeyPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "tls.crt"), p.CertPEM, 0o644)
}

// handshake runs a TLS handshake with server config conf and returns the
// serial of the certificate served.
func handshake(t *testing.T, conf *tls.Config, sni string) (int64, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		s := tls.Server(b, conf)
		s.Handshake()
		s.Close()
	}()
	c := tls.Client(a, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestGatewayTLSFiles: the compiled config serves the files of the
// certificate directory, a rotated pair from the next handshake on, and
// fails the handshakes of a secret without files.
func TestGatewayTLSFiles(t *testing.T) {
	dir := t.TempDir()
	writeGatewayCert(t, filepath.Join(dir, "infra", "web"), 1, "web.example.com")
	p := testProxy(t, func(o *Options) { o.GatewayCertsDir = dir; o.GatewayCertsInterval = time.Hour })
	conf, err := p.compileGatewayTLS(gatewayTLSContext("gateway-cert/infra/web"))
	if err != nil {
		t.Fatal(err)
	}
	if serial, err := handshake(t, conf, "web.example.com"); err != nil || serial != 1 {
		t.Fatalf("serial %d, %v; want 1", serial, err)
	}
	writeGatewayCert(t, filepath.Join(dir, "infra", "web"), 2, "web.example.com")
	p.gatewayCerts.Poll()
	if serial, err := handshake(t, conf, "web.example.com"); err != nil || serial != 2 {
		t.Fatalf("after rotation: serial %d, %v; want 2", serial, err)
	}
	missing, err := p.compileGatewayTLS(gatewayTLSContext("gateway-cert/infra/missing"))
	if err != nil {
		t.Fatalf("a missing certificate must not fail the config: %v", err)
	}
	if _, err := handshake(t, missing, "missing.example.com"); err == nil {
		t.Error("a handshake without certificate files succeeded")
	}
	st := p.gatewayCerts.Statuses()
	if len(st) != 2 || st[0].Secret != "infra/missing" || st[0].Serving || !strings.Contains(st[0].Error, "no such file") {
		t.Errorf("statuses %+v", st)
	}
}

// TestGatewayCertsRetained: certificates no listener names any more are
// forgotten when listener updates remove or change the listeners that
// named them.
func TestGatewayCertsRetained(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a", "b"} {
		writeGatewayCert(t, filepath.Join(dir, "infra", name), 1, name+".example.com")
	}
	p := testProxy(t, func(o *Options) { o.GatewayCertsDir = dir })
	p.gatewayCerts.Want(certfiles.Key{Namespace: "infra", Name: "a"}, certfiles.Key{Namespace: "infra", Name: "b"})
	ln := &listenerv3.Listener{Name: "gateway_443", FilterChains: []*listenerv3.FilterChain{{
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, gatewayTLSContext("gateway-cert/infra/b"))}},
	}, {}}}
	other := &listenerv3.Listener{Name: "gateway_8443", FilterChains: []*listenerv3.FilterChain{{
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, gatewayTLSContext("gateway-cert/infra/a"))}},
	}}}
	p.mu.Lock()
	p.retainGatewayCerts(map[string]proto.Message{ln.Name: ln, other.Name: other}, nil)
	p.mu.Unlock()
	if st := p.gatewayCerts.Statuses(); len(st) != 2 {
		t.Errorf("after listeners naming infra/a and infra/b: %+v", st)
	}
	// An update that removes one listener and leaves the other as it is.
	p.mu.Lock()
	p.retainGatewayCerts(nil, []string{other.Name})
	p.mu.Unlock()
	st := p.gatewayCerts.Statuses()
	if len(st) != 1 || st[0].Secret != "infra/b" {
		t.Errorf("after the listener naming infra/a was removed: %+v", st)
	}
}
