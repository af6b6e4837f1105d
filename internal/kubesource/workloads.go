package kubesource

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"trellis.dev/trellis/api/v1alpha1"
	"trellis.dev/trellis/internal/inject"
)

// SidecarContainer is the name of the container that marks a Pod as
// having the Trellis sidecar (what package inject adds, as a native
// sidecar among the init containers, or a container added by hand). Its
// container port named MeshPortName, else DefaultMeshPort, is the Pod's
// mesh port.
const (
	SidecarContainer = inject.ProxyContainer
	MeshPortName     = inject.MeshPortName
	DefaultMeshPort  = inject.MeshPort
)

// podWorkload is the Workload a Pod stands for: one with an IP, running
// and not being deleted; nil for any other Pod. The Workload has the
// Pod's name, labels and service account, and its containers' ports
// (the sidecar's left out).
func podWorkload(pod *corev1.Pod) *v1alpha1.Workload {
	if pod.Status.PodIP == "" || pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || pod.Spec.HostNetwork {
		return nil
	}
	w := &v1alpha1.Workload{
		TypeMeta: metav1.TypeMeta{Kind: "Workload", APIVersion: v1alpha1.GroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, Labels: pod.Labels,
			CreationTimestamp: pod.CreationTimestamp,
		},
		Spec: v1alpha1.WorkloadSpec{
			Address:        pod.Status.PodIP,
			ServiceAccount: cmp.Or(pod.Spec.ServiceAccountName, "default"),
		},
	}
	seen := map[int32]bool{}
	names := map[string]bool{}
	// Init containers that keep running (native sidecars) serve their
	// ports as containers do.
	var running []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			running = append(running, c)
		}
	}
	for _, c := range append(running, pod.Spec.Containers...) {
		if c.Name == SidecarContainer {
			mesh := int32(DefaultMeshPort)
			for _, p := range c.Ports {
				if p.Name == MeshPortName {
					mesh = p.ContainerPort
				}
			}
			w.Spec.MeshPort = &mesh
			continue
		}
		for _, p := range c.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP || seen[p.ContainerPort] {
				continue
			}
			seen[p.ContainerPort] = true
			wp := v1alpha1.WorkloadPort{Port: p.ContainerPort, Protocol: "TCP"}
			if p.Name != "" && !names[p.Name] {
				names[p.Name] = true
				wp.Name = p.Name
			}
			w.Spec.Ports = append(w.Spec.Ports, wp)
		}
	}
	if w.Spec.MeshPort != nil && seen[*w.Spec.MeshPort] {
		// Not a port the sidecar can have; the Pod is served without it
		// rather than not at all.
		w.Spec.MeshPort = nil
	}
	slices.SortFunc(w.Spec.Ports, func(a, b v1alpha1.WorkloadPort) int { return cmp.Compare(a.Port, b.Port) })
	return w
}

// sliceWorkloads are the Workloads of the ready endpoints of a
// selector-less Service's EndpointSlices, one per address, named
// <service>-<address> and listing the Service in services.
func sliceWorkloads(service string, list []*discoveryv1.EndpointSlice) []*v1alpha1.Workload {
	byAddr := map[string]*v1alpha1.Workload{}
	for _, es := range list {
		if es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				w := byAddr[addr]
				if w == nil {
					w = &v1alpha1.Workload{
						TypeMeta: metav1.TypeMeta{Kind: "Workload", APIVersion: v1alpha1.GroupVersion.String()},
						ObjectMeta: metav1.ObjectMeta{
							Name: endpointName(service, addr), Namespace: es.Namespace,
						},
						Spec: v1alpha1.WorkloadSpec{Address: addr, ServiceAccount: "default", Services: []string{service}},
					}
					byAddr[addr] = w
				}
				for _, p := range es.Ports {
					if p.Port == nil || p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP ||
						slices.ContainsFunc(w.Spec.Ports, func(q v1alpha1.WorkloadPort) bool { return q.Port == *p.Port }) {
						continue
					}
					wp := v1alpha1.WorkloadPort{Port: *p.Port, Protocol: "TCP"}
					if p.Name != nil && *p.Name != "" && !slices.ContainsFunc(w.Spec.Ports, func(q v1alpha1.WorkloadPort) bool { return q.Name == *p.Name }) {
						wp.Name = *p.Name
					}
					w.Spec.Ports = append(w.Spec.Ports, wp)
				}
			}
		}
	}
	out := make([]*v1alpha1.Workload, 0, len(byAddr))
	for _, addr := range slices.Sorted(maps.Keys(byAddr)) {
		w := byAddr[addr]
		slices.SortFunc(w.Spec.Ports, func(a, b v1alpha1.WorkloadPort) int { return cmp.Compare(a.Port, b.Port) })
		out = append(out, w)
	}
	return out
}

// endpointName names the Workload of an endpoint address of a Service:
// <service>-<address>, with the address's dots and colons as dashes.
func endpointName(service, addr string) string {
	return service + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(addr)
}
