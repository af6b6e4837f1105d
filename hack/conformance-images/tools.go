//go:build tools

// Package tools pins the commands that play the Gateway API conformance
// suite's container images for internal/kubetest's process kubelet, so
// that `go mod tidy` keeps their dependencies: see
// `go run ./hack/dev conformance-images`. CoreDNS is v1.15.0, not the
// manifests' v1.12.2, which does not build with the quic-go that Istio
// needs.
package tools

import (
	_ "github.com/coredns/coredns"
	_ "istio.io/istio/pkg/test/echo/cmd/client"
	_ "istio.io/istio/pkg/test/echo/cmd/server"
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
)
