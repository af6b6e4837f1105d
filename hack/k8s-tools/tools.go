//go:build tools

// Package tools pins the Kubernetes commands that hack/dev k8s-binaries
// builds, so that `go mod tidy` keeps their dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
