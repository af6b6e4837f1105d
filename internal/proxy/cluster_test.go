package proxy

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// mtlsCluster is an EDS cluster whose endpoints are reached over mesh
// mTLS with the given SNI, accepting the peer id.
func mtlsCluster(t testing.TB, name, sni, id string) *clusterv3.Cluster {
	c := edsCluster(name)
	c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: mustAny(t, &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secretCertificate}},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}},
				}}},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: secretTrustBundle},
			}},
		}}),
	}}
	return c
}

// TestClustersShareTheirTLS: clusters with the same transport socket (a
// service's cluster and its workloads' in capture mode) share one
// compiled TLS config; another SNI or identity gets its own.
func TestClustersShareTheirTLS(t *testing.T) {
	p := testProxy(t)
	const id = "spiffe://cluster.local/ns/a/sa/a"
	compile := func(name, sni, id string) *upstreamTLS {
		t.Helper()
		c, err := p.compileCluster(mtlsCluster(t, name, sni, id))
		if err != nil {
			t.Fatal(err)
		}
		if c.defaultTLS == nil || c.defaultTLS.sni != sni {
			t.Fatalf("cluster %s: TLS %+v, want SNI %s", name, c.defaultTLS, sni)
		}
		return c.defaultTLS
	}
	svc := compile("svc", "outbound_.80_._.a.a.svc.cluster.local", id)
	pod := compile("pod", "outbound_.80_._.a.a.svc.cluster.local", id)
	if svc != pod {
		t.Error("two clusters with the same transport socket compiled it twice")
	}
	if other := compile("other", "outbound_.81_._.a.a.svc.cluster.local", id); other == svc {
		t.Error("another SNI shares the TLS config")
	}
	if other := compile("other-id", "outbound_.80_._.a.a.svc.cluster.local", "spiffe://cluster.local/ns/b/sa/b"); other == svc {
		t.Error("another peer identity shares the TLS config")
	}
	// A bad transport socket is refused, not remembered.
	bad := mtlsCluster(t, "bad", "x", id)
	bad.TransportSocket.GetTypedConfig().Value = append(bad.TransportSocket.GetTypedConfig().Value, 0xff)
	for range 2 {
		if _, err := p.compileCluster(bad); err == nil {
			t.Fatal("a transport socket that does not decode was accepted")
		}
	}
}
