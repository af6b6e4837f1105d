// Package inject adds the Trellis sidecar to Kubernetes pod specs: the
// same change for the mutating admission webhook and for `trellis inject
// -f FILE`, which clusters without webhooks use.
//
//	pod spec ──Spec──► initContainers: trellis-init     (trellis-proxy init: the capture rules;
//	                                                     NET_ADMIN, NET_RAW, as root, then exits)
//	                                   trellis-proxy    (a native sidecar, restartPolicy Always:
//	                                                     up, and ready on 15021, before the
//	                                                     app's init containers and containers)
//	                                   the pod's own init containers
//	                   containers:     the app's, with httpGet, tcpSocket and grpc probes
//	                                   rewritten to the sidecar's 15020 (/app-health, /app-tcp,
//	                                   /app-grpc), which kubelet reaches in plaintext under STRICT
//	                   volumes:        the projected service account token (audience trellis.dev),
//	                                   the mesh's root certificates (ConfigMap trellis-ca-root),
//	                                   the SPIFFE Workload API socket directory, shared with the app
//
// The sidecar registers the pod's TCP container ports, runs as UID 1337
// (the capture rules let that UID's traffic through), and is told its pod
// name, namespace, service account and IP by the downward API. Injection
// is idempotent (a pod spec with a trellis-proxy container is left as it
// is) and skipped for pods labelled trellis.dev/inject=disabled and for
// pods on the host's network, whose capture rules would be the node's.
package inject

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"trellis.dev/trellis/internal/identity"
	"trellis.dev/trellis/internal/version"
)

// Names and ports of what is injected.
const (
	ProxyContainer = "trellis-proxy"
	InitContainer  = "trellis-init"
	// InjectLabel, "disabled" on a pod, keeps it out of the mesh.
	InjectLabel = "trellis.dev/inject"
	// StatusAnnotation records the version that injected the pod.
	StatusAnnotation = "trellis.dev/injected"

	ProxyUID = 1337
	// MeshPort, named MeshPortName on the sidecar container, accepts mesh
	// mTLS: what the control plane reads as the pod's meshPort.
	MeshPort      = 15008
	MeshPortName  = "trellis-mesh"
	StatsPort     = 15020
	ReadinessPort = 15021

	// TokenAudience is the audience of the service account token the
	// sidecar presents to the CA, which reviews it with TokenReview.
	TokenAudience = "trellis.dev"
	// CARootConfigMap holds the mesh's root certificates (root-cert.pem),
	// published by the control plane in every injected namespace.
	CARootConfigMap = "trellis-ca-root"

	tokenDir       = "/var/run/secrets/trellis"
	caDir          = "/var/run/trellis/ca"
	workloadAPIDir = "/var/run/trellis/workload-api"
)

// ProxyImageRepository is where the trellis-proxy image is published.
const ProxyImageRepository = "ghcr.io/trellis-mesh/trellis-proxy"

// DefaultProxyImage is the sidecar image of this binary's version.
func DefaultProxyImage() string { return ProxyImageRepository + ":" + version.Version }

// DefaultControlPlane is the xDS and CA address of a control plane
// installed by `trellis install` in its default namespace.
const DefaultControlPlane = "trellis-control." + identity.ControlPlaneNamespace + ".svc:15012"

// Options say what to inject.
type Options struct {
	// Image of the sidecar and init container; "" means DefaultProxyImage().
	Image string
	// ControlPlane is the control plane's HOST:PORT; "" means
	// DefaultControlPlane.
	ControlPlane string
	// CaptureMode is iptables (default) or nftables.
	CaptureMode string
}

func (o Options) withDefaults() Options {
	o.Image = cmp.Or(o.Image, DefaultProxyImage())
	o.ControlPlane = cmp.Or(o.ControlPlane, DefaultControlPlane)
	o.CaptureMode = cmp.Or(o.CaptureMode, "iptables")
	return o
}

// Skipped is why a pod spec was left as it was.
type Skipped string

// Spec injects the sidecar into a pod (meta and spec of a Pod, or of a
// workload's pod template). It returns why it did nothing, or "".
func Spec(meta *metav1.ObjectMeta, spec *corev1.PodSpec, opts Options) (Skipped, error) {
	opts = opts.withDefaults()
	if opts.CaptureMode != "iptables" && opts.CaptureMode != "nftables" {
		return "", fmt.Errorf("inject: capture mode %q: want iptables or nftables", opts.CaptureMode)
	}
	switch {
	case meta.Labels[InjectLabel] == "disabled":
		return Skipped("labelled " + InjectLabel + "=disabled"), nil
	case spec.HostNetwork:
		return "on the host's network: capture rules there would be the node's", nil
	case hasContainer(spec, ProxyContainer):
		return "already injected", nil
	}
	ports, err := appPorts(spec)
	if err != nil {
		return "", err
	}
	for i := range spec.Containers {
		if err := rewriteProbes(&spec.Containers[i]); err != nil {
			return "", err
		}
		spec.Containers[i].VolumeMounts = append(spec.Containers[i].VolumeMounts,
			corev1.VolumeMount{Name: "trellis-workload-api", MountPath: workloadAPIDir, ReadOnly: true})
	}
	spec.InitContainers = append([]corev1.Container{initContainer(opts), proxyContainer(opts, ports)}, spec.InitContainers...)
	spec.Volumes = append(spec.Volumes, volumes()...)
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[StatusAnnotation] = version.Version
	return "", nil
}

func hasContainer(spec *corev1.PodSpec, name string) bool {
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// appPorts are the TCP ports of the app's containers, as trellis-proxy
// --port values (NAME:PORT), sorted by port. A port without a name is
// called port-N.
func appPorts(spec *corev1.PodSpec) ([]string, error) {
	seen := map[int32]string{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue
			}
			switch p.ContainerPort {
			case MeshPort, StatsPort, ReadinessPort, 15000, 15001, 15006:
				return nil, fmt.Errorf("inject: container %s port %d: the sidecar uses that port", c.Name, p.ContainerPort)
			}
			if _, ok := seen[p.ContainerPort]; !ok {
				seen[p.ContainerPort] = cmp.Or(p.Name, "port-"+strconv.Itoa(int(p.ContainerPort)))
			}
		}
	}
	var out []string
	for _, port := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, seen[port]+":"+strconv.Itoa(int(port)))
	}
	return out, nil
}

func initContainer(o Options) corev1.Container {
	no, yes := false, true
	root := int64(0)
	return corev1.Container{
		Name:  InitContainer,
		Image: o.Image,
		Args:  []string{"init", "--mode", o.CaptureMode, "--proxy-uid", strconv.Itoa(ProxyUID)},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &root, RunAsNonRoot: &no, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
	}
}

func proxyContainer(o Options, ports []string) corev1.Container {
	no, yes := false, true
	uid := int64(ProxyUID)
	always := corev1.ContainerRestartPolicyAlways
	args := []string{
		"--control-plane", o.ControlPlane,
		"--ca-bundle", caDir + "/root-cert.pem",
		"--token-file", tokenDir + "/token",
		"--name", "$(POD_NAME)", "--namespace", "$(POD_NAMESPACE)", "--service-account", "$(SERVICE_ACCOUNT)",
		"--address", "$(POD_IP)", "--capture",
		"--workload-api-socket", workloadAPIDir + "/socket",
	}
	for _, p := range ports {
		args = append(args, "--port", p)
	}
	ready := &corev1.Probe{ProbeHandler: readiness(), PeriodSeconds: 2, FailureThreshold: 30}
	return corev1.Container{
		Name:          ProxyContainer,
		Image:         o.Image,
		Args:          args,
		RestartPolicy: &always,
		Env:           podEnv(),
		Ports: []corev1.ContainerPort{
			{Name: MeshPortName, ContainerPort: MeshPort},
			{Name: "trellis-stats", ContainerPort: StatsPort},
			{Name: "trellis-ready", ContainerPort: ReadinessPort},
		},
		// The app's containers start once the sidecar is ready.
		StartupProbe:   ready,
		ReadinessProbe: &corev1.Probe{ProbeHandler: ready.ProbeHandler, PeriodSeconds: 5},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "trellis-token", MountPath: tokenDir, ReadOnly: true},
			{Name: "trellis-ca", MountPath: caDir, ReadOnly: true},
			{Name: "trellis-workload-api", MountPath: workloadAPIDir},
		},
	}
}

// podEnv tells a proxy its pod's name, namespace, service account and IP
// (the $(VAR)s of its arguments) by the downward API.
func podEnv() []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return []corev1.EnvVar{
		field("POD_NAME", "metadata.name"), field("POD_NAMESPACE", "metadata.namespace"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"), field("POD_IP", "status.podIP"),
	}
}

// readiness is the proxy's readiness endpoint.
func readiness() corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(ReadinessPort)}}
}

func volumes() []corev1.Volume {
	return append(credentialVolumes(),
		corev1.Volume{Name: "trellis-workload-api", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
}

// credentialVolumes are what a proxy needs to join the mesh: its projected
// service account token and the mesh's roots.
func credentialVolumes() []corev1.Volume {
	expiry := int64(3600)
	return []corev1.Volume{
		{Name: "trellis-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: &expiry, Path: "token"}}}}}},
		{Name: "trellis-ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: CARootConfigMap}}}},
	}
}

// rewriteProbes sends the container's httpGet (plaintext), tcpSocket and
// grpc probes to the sidecar's stats port, which forwards them to the
// app. A probe of another host, an HTTPS probe and an exec probe stay as
// they are.
func rewriteProbes(c *corev1.Container) error {
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if pr == nil {
			continue
		}
		var path string
		switch h := pr.ProbeHandler; {
		case h.HTTPGet != nil && h.HTTPGet.Host == "" && (h.HTTPGet.Scheme == "" || h.HTTPGet.Scheme == corev1.URISchemeHTTP):
			port, err := resolvePort(c, h.HTTPGet.Port)
			if err != nil {
				return err
			}
			path = fmt.Sprintf("/app-health/%d/%s", port, strings.TrimPrefix(h.HTTPGet.Path, "/"))
			pr.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(StatsPort), Scheme: corev1.URISchemeHTTP,
				HTTPHeaders: h.HTTPGet.HTTPHeaders}
		case h.TCPSocket != nil && h.TCPSocket.Host == "":
			port, err := resolvePort(c, h.TCPSocket.Port)
			if err != nil {
				return err
			}
			pr.TCPSocket = nil
			pr.HTTPGet = &corev1.HTTPGetAction{Path: fmt.Sprintf("/app-tcp/%d", port), Port: intstr.FromInt32(StatsPort), Scheme: corev1.URISchemeHTTP}
		case h.GRPC != nil:
			path = fmt.Sprintf("/app-grpc/%d", h.GRPC.Port)
			if s := h.GRPC.Service; s != nil && *s != "" {
				path += "/" + *s
			}
			pr.GRPC = nil
			pr.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(StatsPort), Scheme: corev1.URISchemeHTTP}
		}
	}
	return nil
}

// resolvePort returns the number of a probe's port, looking a named port
// up among the container's ports.
func resolvePort(c *corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("inject: container %s: a probe names port %q, which the container does not declare", c.Name, p.StrVal)
}
