package proxy

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/certfiles"
)

// GatewayCertificatePrefix begins the names of the SDS secrets of Gateway
// listeners' certificates: gateway-cert/NAMESPACE/NAME names Secret
// NAMESPACE/NAME, which the proxy reads from its certificate directory
// (Options.GatewayCertsDir, package certfiles) instead of asking the
// control plane, which never holds the key.
const GatewayCertificatePrefix = "gateway-cert/"

// isGatewayTLS reports whether a downstream TLS context terminates a
// Gateway listener's TLS (with certificates from files), rather than mesh
// mTLS.
func isGatewayTLS(dtc *tlsv3.DownstreamTlsContext) bool {
	for _, s := range dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
		if strings.HasPrefix(s.GetName(), GatewayCertificatePrefix) {
			return true
		}
	}
	return false
}

// compileGatewayTLS is the server side of a Gateway listener's TLS: the
// certificate of the named secrets that suits each client, TLS 1.2 or
// later, no client certificate asked for. Certificates are looked up at
// each handshake, so a rotated file is used by the next connection; a
// missing one fails the handshakes that need it, not the config.
func (p *Proxy) compileGatewayTLS(dtc *tlsv3.DownstreamTlsContext) (*tls.Config, error) {
	if err := unsupported(dtc, "common_tls_context", "require_client_certificate"); err != nil {
		return nil, err
	}
	if dtc.GetRequireClientCertificate().GetValue() {
		return nil, errors.New("require_client_certificate: client certificates are not asked for on gateway listeners")
	}
	c := dtc.GetCommonTlsContext()
	if err := unsupported(c, "tls_certificate_sds_secret_configs", "alpn_protocols"); err != nil {
		return nil, err
	}
	var keys []certfiles.Key
	for i, s := range c.GetTlsCertificateSdsSecretConfigs() {
		rest, ok := strings.CutPrefix(s.GetName(), GatewayCertificatePrefix)
		ns, name, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || ns == "" || name == "" || strings.Contains(name, "/") || ns == ".." || name == ".." || ns == "." || name == "." {
			return nil, fmt.Errorf("tls_certificate_sds_secret_configs[%d]: %q: want %sNAMESPACE/NAME", i, s.GetName(), GatewayCertificatePrefix)
		}
		keys = append(keys, certfiles.Key{Namespace: ns, Name: name})
	}
	if p.gatewayCerts != nil {
		// Load now, so that a missing file is logged when the listener
		// arrives rather than at the first handshake.
		p.gatewayCerts.Want(keys...)
	}
	store := p.gatewayCerts
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: c.GetAlpnProtocols(),
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if store == nil {
				return nil, certfiles.ErrNoDir
			}
			return store.Choose(hello, keys)
		},
	}, nil
}

// handleGatewayCerts serves, as JSON, the state of the Gateway listener
// certificates the proxy was asked for: serving or not, until when, and
// why the files could not be loaded last time.
func (p *Proxy) handleGatewayCerts(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"gatewayCertificates": p.gatewayCerts.Statuses()})
}

// retainGatewayCerts keeps, of the certificates read from files, those
// the listeners now in force name: the listener update applied changed
// fresh and removed removed; the others name what they named. Callers
// hold p.mu.
func (p *Proxy) retainGatewayCerts(fresh map[string]proto.Message, removed []string) {
	if p.listenerCerts == nil {
		p.listenerCerts = map[string][]certfiles.Key{}
	}
	for _, name := range removed {
		delete(p.listenerCerts, name)
	}
	for name, m := range fresh {
		var keys []certfiles.Key
		for _, fc := range m.(*listenerv3.Listener).GetFilterChains() {
			var dtc tlsv3.DownstreamTlsContext
			if fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&dtc) != nil {
				continue
			}
			for _, s := range dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
				rest, gateway := strings.CutPrefix(s.GetName(), GatewayCertificatePrefix)
				if ns, name, ok := strings.Cut(rest, "/"); gateway && ok {
					keys = append(keys, certfiles.Key{Namespace: ns, Name: name})
				}
			}
		}
		if len(keys) == 0 {
			delete(p.listenerCerts, name)
		} else {
			p.listenerCerts[name] = keys
		}
	}
	var all []certfiles.Key
	for _, keys := range p.listenerCerts {
		all = append(all, keys...)
	}
	p.gatewayCerts.Retain(all...)
}
