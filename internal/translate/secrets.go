package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// secrets delivers the proxy's certificate chain (without its key, which
// never leaves the proxy) and the trust bundle.
func (b *builder) secrets() {
	if len(b.in.CertificateChain) > 0 {
		b.out.Secrets = append(b.out.Secrets, &tlsv3.Secret{
			Name: SecretCertificate,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inlineBytes(b.in.CertificateChain),
			}},
		})
	}
	if len(b.in.TrustBundle) > 0 {
		b.out.Secrets = append(b.out.Secrets, &tlsv3.Secret{
			Name: SecretTrustBundle,
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inlineBytes(b.in.TrustBundle),
			}},
		})
	}
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}
