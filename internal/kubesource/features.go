package kubesource

import (
	"slices"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// SupportedFeatures are the Gateway API features Trellis claims in its
// GatewayClasses' status.supportedFeatures, which the conformance suite
// reads to choose the tests it runs: the core features of the gateway
// profiles Trellis serves (GATEWAY-HTTP, GATEWAY-GRPC, GATEWAY-TLS); mesh
// features belong to a Mesh resource, not to a GatewayClass. An extended
// feature is added here only once the suite's tests for it pass
// (docs/conformance/ lists the report).
var SupportedFeatures = []features.FeatureName{
	features.SupportGateway,
	features.SupportHTTPRoute,
	features.SupportReferenceGrant,
	features.SupportGRPCRoute,
	features.SupportTLSRoute,
}

// supportedFeatures is SupportedFeatures in the GatewayClass status
// shape, sorted by name as the API requires.
func supportedFeatures() []gwv1.SupportedFeature {
	out := make([]gwv1.SupportedFeature, 0, len(SupportedFeatures))
	for _, f := range SupportedFeatures {
		out = append(out, gwv1.SupportedFeature{Name: gwv1.FeatureName(f)})
	}
	slices.SortFunc(out, func(a, b gwv1.SupportedFeature) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}
