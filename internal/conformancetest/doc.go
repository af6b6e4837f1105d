// Package conformancetest runs the Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance, v1.6.3) against Trellis on a test
// cluster of internal/kubetest: a real kube-apiserver, and a process node
// that runs the suite's pods from locally built images
// (kubetest.ConformanceImages), with a cluster DNS and the kubelet API
// that pods/exec and pods/log need.
//
// So far its tests show that the suite's pods run there: the backends of
// its base manifests (echo-basic) come up Ready and answer, and Istio's
// echo client, in a pod of the mesh manifests, reaches a Service by its
// cluster DNS name through pods/exec, as the mesh tests do.
package conformancetest
