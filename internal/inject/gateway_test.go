package inject

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestGatewayPodSpec: a gateway pod runs trellis-proxy --gateway as 1337,
// may bind ports under 1024, listens on its listeners' ports once each,
// and finds each certificate, its own namespace's or a copy's, under the
// name the listener gives it.
func TestGatewayPodSpec(t *testing.T) {
	spec := GatewayPodSpec(Gateway{
		Namespace: "infra", Name: "public", ServiceAccount: "public-trellis", Ports: []int32{443, 80, 443},
		Certificates: []GatewayCertificate{
			{Namespace: "certs", Name: "other", Local: "public-trellis-0123456789"},
			{Namespace: "infra", Name: "shop", Local: "shop"},
		},
	}, Options{Image: "img", ControlPlane: "cp:15012"})
	c := spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--gateway infra/public", "--control-plane cp:15012", "--certs-dir " + GatewayCertsDir, "--address $(POD_IP)"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q: no %q", args, want)
		}
	}
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if !slices.Equal(ports, []int32{StatsPort, ReadinessPort, 80, 443}) {
		t.Errorf("ports %v", ports)
	}
	if sc := spec.SecurityContext; *sc.RunAsUser != ProxyUID || !*sc.RunAsNonRoot ||
		!slices.Equal(sc.Sysctls, []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}) {
		t.Errorf("pod security context %+v", sc)
	}
	var certs *corev1.ProjectedVolumeSource
	for _, v := range spec.Volumes {
		if v.Name == "trellis-gateway-certs" {
			certs = v.Projected
		}
	}
	if certs == nil || len(certs.Sources) != 2 {
		t.Fatalf("certificate volume %+v", certs)
	}
	// Sorted by the listener's names; the copy under the original's name.
	other := certs.Sources[0].Secret
	if other.Name != "public-trellis-0123456789" || !*other.Optional ||
		other.Items[0].Path != "certs/other/tls.crt" || other.Items[1].Path != "certs/other/tls.key" {
		t.Errorf("projection of certs/other: %+v", other)
	}
	if s := certs.Sources[1].Secret; s.Name != "shop" || s.Items[0].Path != "infra/shop/tls.crt" {
		t.Errorf("projection of infra/shop: %+v", s)
	}

	plain := GatewayPodSpec(Gateway{Namespace: "infra", Name: "plain", ServiceAccount: "plain-trellis", Ports: []int32{80}}, Options{})
	if a := strings.Join(plain.Containers[0].Args, " "); strings.Contains(a, "--certs-dir") || len(plain.Volumes) != 2 || plain.Containers[0].Image != DefaultProxyImage() {
		t.Errorf("a gateway without certificates: args %q, %d volumes, image %s", a, len(plain.Volumes), plain.Containers[0].Image)
	}
}
