package inject

import (
	"cmp"
	"path"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// GatewayContainer is the name of the container of a gateway pod. It is
// not ProxyContainer: a gateway pod has no sidecar, and the control plane
// must not read it as a meshed workload.
const GatewayContainer = "gateway"

// GatewayCertsDir is where a gateway pod finds its listeners'
// certificates: GatewayCertsDir/NAMESPACE/NAME/tls.crt and tls.key for
// Secret NAMESPACE/NAME (trellis-proxy --certs-dir).
const GatewayCertsDir = "/var/run/trellis/gateway-certs"

// Gateway describes the pod that serves one Gateway resource.
type Gateway struct {
	// Namespace and Name of the Gateway (trellis-proxy --gateway).
	Namespace, Name string
	// ServiceAccount of the pod: the gateway's identity.
	ServiceAccount string
	// Ports the listeners bind.
	Ports []int32
	// Certificates are the Secrets the listeners' certificateRefs name.
	Certificates []GatewayCertificate
	// TrustDomain of the mesh; "" is trellis-proxy's default.
	TrustDomain string
}

// GatewayCertificate is a certificateRef's Secret, Namespace/Name as the
// listener names it, held by Secret Local of the gateway's namespace (the
// Secret itself, or a copy of one in another namespace).
type GatewayCertificate struct {
	Namespace, Name string
	Local           string
}

// GatewayPodSpec is the pod of a gateway: trellis-proxy --gateway, as a
// non-root user binding the listeners' ports (the pod's sysctl
// net.ipv4.ip_unprivileged_port_start=0 lets it bind ports under 1024, as
// Istio's gateways do), with the sidecar's credentials (the projected
// service account token, the mesh's roots) and the listeners'
// certificates projected into one directory, GatewayCertsDir. A Secret
// that does not exist leaves its files out (the listener is then not
// programmed), rather than keeping the pod from starting.
func GatewayPodSpec(g Gateway, opts Options) corev1.PodSpec {
	opts = opts.withDefaults()
	no, yes := false, true
	uid := int64(ProxyUID)
	args := []string{
		"--gateway", g.Namespace + "/" + g.Name,
		"--control-plane", opts.ControlPlane,
		"--ca-bundle", caDir + "/root-cert.pem",
		"--token-file", tokenDir + "/token",
		"--name", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)", "--service-account", "$(SERVICE_ACCOUNT)",
		"--address", "$(POD_IP)",
	}
	if g.TrustDomain != "" {
		args = append(args, "--trust-domain", g.TrustDomain)
	}
	mounts := []corev1.VolumeMount{
		{Name: "trellis-token", MountPath: tokenDir, ReadOnly: true},
		{Name: "trellis-ca", MountPath: caDir, ReadOnly: true},
	}
	vols := credentialVolumes()
	if len(g.Certificates) > 0 {
		args = append(args, "--certs-dir", GatewayCertsDir)
		mounts = append(mounts, corev1.VolumeMount{Name: "trellis-gateway-certs", MountPath: GatewayCertsDir, ReadOnly: true})
		certs := slices.Clone(g.Certificates)
		slices.SortFunc(certs, func(a, b GatewayCertificate) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
		var sources []corev1.VolumeProjection
		for _, c := range certs {
			dir := path.Join(c.Namespace, c.Name)
			sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: c.Local},
				Items: []corev1.KeyToPath{
					{Key: corev1.TLSCertKey, Path: path.Join(dir, corev1.TLSCertKey)},
					{Key: corev1.TLSPrivateKeyKey, Path: path.Join(dir, corev1.TLSPrivateKeyKey)},
				},
				Optional: &yes,
			}})
		}
		vols = append(vols, corev1.Volume{Name: "trellis-gateway-certs", VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: sources}}})
	}
	ports := []corev1.ContainerPort{
		{Name: "trellis-stats", ContainerPort: StatsPort},
		{Name: "trellis-ready", ContainerPort: ReadinessPort},
	}
	listeners := slices.Clone(g.Ports)
	slices.Sort(listeners)
	for _, p := range slices.Compact(listeners) {
		ports = append(ports, corev1.ContainerPort{Name: "listener-" + strconv.Itoa(int(p)), ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	automount := false
	return corev1.PodSpec{
		ServiceAccountName:           g.ServiceAccount,
		AutomountServiceAccountToken: &automount,
		Containers: []corev1.Container{{
			Name:           GatewayContainer,
			Image:          opts.Image,
			Args:           args,
			Env:            podEnv(),
			Ports:          ports,
			ReadinessProbe: &corev1.Probe{ProbeHandler: readiness(), PeriodSeconds: 2, FailureThreshold: 3},
			SecurityContext: &corev1.SecurityContext{
				RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
			VolumeMounts: mounts,
		}},
		Volumes: vols,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   &yes,
			RunAsUser:      &uid,
			RunAsGroup:     &uid,
			FSGroup:        &uid,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			Sysctls:        []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
		},
	}
}
