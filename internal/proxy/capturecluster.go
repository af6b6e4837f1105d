package proxy

// isCaptureCluster reports whether cluster is one of the capture
// listeners' fallbacks, which telemetry names as the destination service:
// BlackHoleCluster (refused: registry-only) or PassthroughCluster.
func isCaptureCluster(cluster string) bool {
	return cluster == blackHoleCluster || cluster == "PassthroughCluster"
}

// blackHoleCluster is the cluster a registry-only sidecar sends what it
// refuses to: it has no endpoints.
const blackHoleCluster = "BlackHoleCluster"
