package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// greeter is a server-first TCP server that greets with its name.
func greeter(t *testing.T, name string) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		fmt.Fprintf(c, "%s\n", name)
		c.Close()
	}).Addr().String()
}

// TestOnePortMTLSAndPlaintext is PERMISSIVE and STRICT on one port, as
// the inbound capture listener does it: the tls_inspector tells a
// ClientHello from plaintext, a chain per transport protocol; without a
// raw_buffer chain, plaintext is refused. A client that sends nothing
// (server-first) is taken as plaintext after the bounded wait.
func TestOnePortMTLSAndPlaintext(t *testing.T) {
	ca := newTestMeshCA(t)
	p := startSidecar(t, ca, io.Discard)
	clusters := map[string]proto.Message{}
	for _, name := range []string{"mtls", "plain"} {
		clusters[name] = staticCluster(t, name, greeter(t, name))
	}
	if err := p.Apply(xdsclient.ClusterType, clusters); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	chain := func(transport, cluster string) *listenerv3.FilterChain {
		ch := &listenerv3.FilterChain{
			Name:             cluster,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port), TransportProtocol: transport},
			Filters: []*listenerv3.Filter{{Name: "tcp", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t,
				&tcpproxyv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})}}},
		}
		if transport == transportTLS {
			ch.TransportSocket = &corev3.TransportSocket{Name: "tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &tlsv3.DownstreamTlsContext{
				RequireClientCertificate: wrapperspb.Bool(true),
				CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secretCertificate}},
					ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
						DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
						ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: secretTrustBundle},
					}},
				},
			})}}
		}
		return ch
	}
	listener := func(chains ...*listenerv3.FilterChain) {
		t.Helper()
		l := &listenerv3.Listener{
			Name:    "inbound",
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
			ListenerFilters: []*listenerv3.ListenerFilter{{Name: "tls_inspector", ConfigType: &listenerv3.ListenerFilter_TypedConfig{
				TypedConfig: mustAny(t, &tlsinspectorv3.TlsInspector{})}}},
			ListenerFiltersTimeout:           durationpb.New(50 * time.Millisecond),
			ContinueOnListenerFiltersTimeout: true,
			FilterChains:                     chains,
		}
		if err := p.Apply(xdsclient.ListenerType, map[string]proto.Message{"inbound": l}); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	greeting := func(c net.Conn, hello string) (string, error) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if hello != "" {
			if _, err := io.WriteString(c, hello); err != nil {
				return "", err
			}
		}
		return bufio.NewReader(c).ReadString('\n')
	}
	viaTLS := func() (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			Certificates: []tls.Certificate{ca.client(t, "spiffe://cluster.local/ns/shop/sa/web")}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		})
		if err != nil {
			return "", err
		}
		return greeting(c, "")
	}
	plain := func(hello string) (string, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		return greeting(c, hello)
	}

	// PERMISSIVE.
	listener(chain(transportTLS, "mtls"), chain(transportRaw, "plain"))
	if got, err := viaTLS(); got != "mtls\n" {
		t.Errorf("PERMISSIVE, mTLS: %q, %v", got, err)
	}
	if got, err := plain("hello\n"); got != "plain\n" {
		t.Errorf("PERMISSIVE, plaintext: %q, %v", got, err)
	}
	if got, err := plain(""); got != "plain\n" {
		t.Errorf("PERMISSIVE, a client that sends nothing: %q, %v", got, err)
	}
	// STRICT.
	listener(chain(transportTLS, "mtls"))
	if got, err := viaTLS(); got != "mtls\n" {
		t.Errorf("STRICT, mTLS: %q, %v", got, err)
	}
	if got, err := plain("hello\n"); err == nil {
		t.Errorf("STRICT, plaintext: got %q, want the connection closed", got)
	}
}
