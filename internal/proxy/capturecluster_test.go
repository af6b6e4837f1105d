package proxy

import "testing"

// TestCaptureClusterService: what a registry-only sidecar refuses is
// counted and logged with BlackHoleCluster as its destination service, as
// Istio names it, so that blocked egress is visible in the metrics.
func TestCaptureClusterService(t *testing.T) {
	for cluster, want := range map[string]string{
		"BlackHoleCluster":                        "BlackHoleCluster",
		"PassthroughCluster":                      "PassthroughCluster",
		"outbound|80||web.shop.svc.cluster.local": "web.shop.svc.cluster.local",
	} {
		if got := serviceOf(cluster, "", ""); got != want {
			t.Errorf("serviceOf(%q) = %q, want %q", cluster, got, want)
		}
	}
}
