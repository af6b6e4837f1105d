package translate

import (
	"fmt"
	"strconv"

	"trellis.dev/trellis/internal/model"
)

// Secret names delivered over SDS to every proxy.
const (
	// SecretCertificate holds the proxy's certificate chain. The private key
	// never leaves the proxy: the secret carries only the public chain the
	// CA issued.
	SecretCertificate = "default"
	// SecretTrustBundle holds the root certificates peers are verified with.
	SecretTrustBundle = "ROOTCA"
)

// InboundListener is the name of a sidecar's mesh mTLS listener. The
// proxy's telemetry reports requests on listeners whose names start with
// "inbound" as their destination.
const InboundListener = "inbound_mesh"

// TransportSocketMatchKey and TLSModeMTLS mark endpoints reached over mesh
// mTLS, in the envoy.transport_socket_match endpoint metadata.
const (
	TransportSocketMatchFilter = "envoy.transport_socket_match"
	TransportSocketMatchKey    = "tlsMode"
	TLSModeMTLS                = "mtls"
)

// OutboundCluster names the cluster of port on a service host.
func OutboundCluster(port uint32, host string) string {
	return fmt.Sprintf("outbound|%d||%s", port, host)
}

// InboundCluster names the cluster that reaches the app's port.
func InboundCluster(port uint32) string {
	return fmt.Sprintf("inbound|%d||", port)
}

// SNI is the server name a client proxy sends to reach port of a service
// host through the destination's mesh port. East-west gateways route on
// it without terminating mTLS.
func SNI(port uint32, host string) string {
	return fmt.Sprintf("outbound_.%d_._.%s", port, host)
}

// OutboundListener names an explicit outbound listener.
func OutboundListener(addr string, port uint32) string {
	return "outbound_" + addr + "_" + strconv.FormatUint(uint64(port), 10)
}

// GatewayListener names a gateway's listener on port.
func GatewayListener(port uint32) string {
	return "gateway_" + strconv.FormatUint(uint64(port), 10)
}

// GatewayCertificatePrefix begins the names of the SDS secrets of Gateway
// listeners' certificates.
const GatewayCertificatePrefix = "gateway-cert/"

// GatewayCertificateSecret names the SDS secret of a Gateway listener's
// certificateRef to Secret k. The control plane never holds or sends it:
// the gateway proxy resolves the name to files of its own
// (trellis-proxy --certs-dir DIR: DIR/NAMESPACE/NAME/tls.crt and tls.key).
func GatewayCertificateSecret(k model.Key) string {
	return GatewayCertificatePrefix + k.Namespace + "/" + k.Name
}

// GatewayHTTPSRoute names the route configuration of a gateway's HTTPS
// listener with hostname host ("" for any) on port.
func GatewayHTTPSRoute(port uint32, host string) string {
	if host == "" {
		host = "*"
	}
	return "https." + strconv.FormatUint(uint64(port), 10) + "." + host
}

// GatewayRoute names the route configuration of a gateway's HTTP port.
func GatewayRoute(port uint32) string {
	return "http." + strconv.FormatUint(uint64(port), 10)
}
